/* store_read: the read API (any thread; its own connection under its own lock). See store.h. */
#include "store_int.h"

/* ---- read API ------------------------------------------------------------------------------- */

static void row_thought(sqlite3_stmt *s, struct bj_stored_thought *t)
{
    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(s, 0);
    t->run = sqlite3_column_int64(s, 1);
    bj_strlcpy(t->brain, (const char *)sqlite3_column_text(s, 2) ? (const char *)sqlite3_column_text(s, 2) : "",
               sizeof t->brain);
    t->life = (uint32_t)sqlite3_column_int64(s, 3);
    t->thought = (uint32_t)sqlite3_column_int64(s, 4);
    t->started_us = sqlite3_column_int64(s, 5);
    t->ended_us = sqlite3_column_int64(s, 6);
    t->tokens = sqlite3_column_int(s, 7);
    t->complete = sqlite3_column_int(s, 8) != 0;
    const char *text = (const char *)sqlite3_column_text(s, 9);
    t->text = strdup(text ? text : "");
}

#define THOUGHT_COLS "id,run,brain,life,thought,started_us,ended_us,tokens,complete,text"

/* The read API's queries share their filters: prepares sql on the read connection (caller holds
 * rlock) and binds ?1 brain (NULL or "": every brain), ?2 run (0: every run) and, where the query
 * has them, ?3 before (0: no bound) and ?4 limit. 0, or -1 with err. */
static int prepare_read(struct bj_store *st, const char *sql, const char *brain, int64_t run, int64_t before_us,
                        int limit, sqlite3_stmt **s, char *err, size_t errlen)
{
    if (!st->rdb || sqlite3_prepare_v2(st->rdb, sql, -1, s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", st->rdb ? sqlite3_errmsg(st->rdb) : "no database");
        return -1;
    }
    store_bind_text(*s, 1, brain);
    sqlite3_bind_int64(*s, 2, run);
    if (sqlite3_bind_parameter_count(*s) >= 4) {
        sqlite3_bind_int64(*s, 3, before_us > 0 ? before_us : INT64_MAX);
        sqlite3_bind_int(*s, 4, limit);
    }
    return 0;
}

/* Room for row n in the array v of *cap rows of `size` bytes (doubling from 64): returns the
 * array, or NULL with err when out of memory (v is then left as it was, for the caller to free). */
int store_read_end(struct bj_store *st, sqlite3_stmt *s, int rc, int n, char *err, size_t errlen)
{
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->rdb));
        n = -1;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    return n;
}

static void *grow_rows(void *v, int *cap, int n, size_t size, char *err, size_t errlen)
{
    if (n < *cap)
        return v;
    int nc = *cap ? *cap * 2 : 64;
    void *nv = realloc(v, (size_t)nc * size);
    if (!nv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *cap = nc;
    return nv;
}

int bj_store_read_thoughts(struct bj_store *st, const char *brain, int64_t run, int64_t before_us, int limit,
                           struct bj_stored_thought **out, char *err, size_t errlen)
{
    *out = NULL;
    if (limit <= 0)
        return 0;
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1;
    if (prepare_read(st, "SELECT " THOUGHT_COLS " FROM thoughts WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2)"
                     " AND ended_us<?3 ORDER BY ended_us DESC, id DESC LIMIT ?4",
                     brain, run, before_us, limit, &s, err, errlen))
        goto out;
    struct bj_stored_thought *v = NULL;
    int cap = 0;
    n = 0;
    while (n < limit && sqlite3_step(s) == SQLITE_ROW) {
        struct bj_stored_thought *nv = grow_rows(v, &cap, n, sizeof *v, err, errlen);
        if (!nv) {
            bj_store_free_thoughts(v, n);
            n = -1;
            goto out;
        }
        v = nv;
        row_thought(s, &v[n++]);
    }
    *out = v;
out:
    return store_read_end(st, s, SQLITE_DONE, n, err, errlen);
}

void bj_store_free_thoughts(struct bj_stored_thought *t, int n)
{
    for (int i = 0; t && i < n; i++)
        free(t[i].text);
    free(t);
}

int bj_store_each_thought(struct bj_store *st, const char *brain, int64_t run,
                          int (*fn)(void *ud, const struct bj_stored_thought *t), void *ud, char *err, size_t errlen)
{
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1, rc = SQLITE_DONE;
    if (prepare_read(st, "SELECT " THOUGHT_COLS " FROM thoughts WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2)"
                     " ORDER BY id", brain, run, 0, 0, &s, err, errlen))
        goto out;
    n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct bj_stored_thought t;
        row_thought(s, &t);
        int stop = fn(ud, &t);
        free(t.text);
        n++;
        if (stop)
            break;
    }
out:
    return store_read_end(st, s, rc, n, err, errlen);
}

int bj_store_read_deaths(struct bj_store *st, const char *brain, int64_t run, int64_t before_us, int limit,
                         bool oldest_first, struct bj_stored_death **out, char *err, size_t errlen)
{
    *out = NULL;
    if (limit <= 0)
        return 0;
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1;
    char sql[400];
    snprintf(sql, sizeof sql, "SELECT id,COALESCE(run,0),brain,count,cause,time_us,COALESCE(jar_used,0),"
             "COALESCE(jar_tokens,0) FROM deaths WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2) AND time_us<?3"
             " ORDER BY time_us %s, id %s LIMIT ?4", oldest_first ? "ASC" : "DESC", oldest_first ? "ASC" : "DESC");
    if (prepare_read(st, sql, brain, run, before_us, limit, &s, err, errlen))
        goto out;
    struct bj_stored_death *v = NULL;
    int cap = 0;
    n = 0;
    while (n < limit && sqlite3_step(s) == SQLITE_ROW) {
        struct bj_stored_death *nv = grow_rows(v, &cap, n, sizeof *v, err, errlen);
        if (!nv) {
            free(v);
            n = -1;
            goto out;
        }
        v = nv;
        struct bj_stored_death *d = &v[n++];
        memset(d, 0, sizeof *d);
        d->id = sqlite3_column_int64(s, 0);
        d->run = sqlite3_column_int64(s, 1);
        const char *b = (const char *)sqlite3_column_text(s, 2), *c = (const char *)sqlite3_column_text(s, 4);
        bj_strlcpy(d->brain, b ? b : "", sizeof d->brain);
        d->count = (uint32_t)sqlite3_column_int64(s, 3);
        bj_strlcpy(d->cause, c ? c : "", sizeof d->cause);
        d->time_us = sqlite3_column_int64(s, 5);
        d->jar_used = sqlite3_column_int(s, 6);
        d->jar_tokens = sqlite3_column_int(s, 7);
    }
    *out = v;
out:
    return store_read_end(st, s, SQLITE_DONE, n, err, errlen);
}

int bj_store_read_runs(struct bj_store *st, struct bj_stored_run **out, char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1, cap = 0;
    struct bj_stored_run *v = NULL;
    char sql[700];
    /* a read-only store may be an older schema: lost came with 2, refused with 3 */
    snprintf(sql, sizeof sql,
             "SELECT r.id, r.started_us, COALESCE(r.ended_us,0), r.clean, r.recovered, COALESCE(r.pid,0),"
             " COALESCE(r.version,''), (SELECT COUNT(*) FROM run_brains b WHERE b.run=r.id),"
             " (SELECT COUNT(*) FROM deaths d WHERE d.run=r.id), (SELECT COUNT(*) FROM thoughts t WHERE t.run=r.id),"
             " r.config, %s, %s, %s FROM runs r ORDER BY r.id", st->schema_version >= 2 ? "r.argv" : "NULL",
             st->schema_version >= 2 ? "r.lost" : "0", st->schema_version >= 3 ? "r.refused" : "NULL");
    if (!st->rdb || sqlite3_prepare_v2(st->rdb, sql, -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", st->rdb ? sqlite3_errmsg(st->rdb) : "no database");
        goto out;
    }
    n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        struct bj_stored_run *nv = grow_rows(v, &cap, n, sizeof *v, err, errlen);
        if (!nv) {
            bj_store_free_runs(v, n);
            v = NULL;
            n = -1;
            goto out;
        }
        v = nv;
        struct bj_stored_run *r = &v[n++];
        memset(r, 0, sizeof *r);
        r->id = sqlite3_column_int64(s, 0);
        r->started_us = sqlite3_column_int64(s, 1);
        r->ended_us = sqlite3_column_int64(s, 2);
        r->clean = sqlite3_column_int(s, 3) != 0;
        r->recovered = sqlite3_column_int(s, 4) != 0;
        r->pid = sqlite3_column_int(s, 5);
        bj_strlcpy(r->version, (const char *)sqlite3_column_text(s, 6), sizeof r->version);
        r->n_brains = sqlite3_column_int(s, 7);
        r->deaths = (uint64_t)sqlite3_column_int64(s, 8);
        r->thoughts = (uint64_t)sqlite3_column_int64(s, 9);
        const char *c = (const char *)sqlite3_column_text(s, 10), *a = (const char *)sqlite3_column_text(s, 11);
        r->config = c ? strdup(c) : NULL;
        r->argv = a ? strdup(a) : NULL;
        r->lost = (uint64_t)sqlite3_column_int64(s, 12);
        const char *why = (const char *)sqlite3_column_text(s, 13);
        r->refused = why ? strdup(why) : NULL;
    }
    *out = v;
out:
    return store_read_end(st, s, SQLITE_DONE, n, err, errlen);
}

uint32_t bj_store_deaths_before_run(struct bj_store *st, const char *brain, int64_t run)
{
    uint32_t n = 0;
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s;
    if (st->rdb && sqlite3_prepare_v2(st->rdb, "SELECT COALESCE(MAX(count),0) FROM deaths WHERE brain=?1 AND"
                                      " (run IS NULL OR run<?2)", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, brain, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, run);
        if (sqlite3_step(s) == SQLITE_ROW)
            n = (uint32_t)sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&st->rlock);
    return n;
}

void bj_store_free_runs(struct bj_stored_run *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        free(r[i].config);
        free(r[i].argv);
        free(r[i].refused);
    }
    free(r);
}

