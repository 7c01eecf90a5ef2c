/* store: see store.h. This file: opening (lock, schema, recovery), runs, closing. The writer
 * thread (store_writer.c) owns the write connection after bj_store_start; the main thread uses it
 * before (open, begin_run) and after (stop). Readers (store_read.c) use their own connection. */
#include "store_int.h"

void bj_store_params_default(struct bj_store_params *p)
{
    memset(p, 0, sizeof *p);
    p->commit_ms = 100;
    p->batch = 512;
    p->backlog_max = 100000;
    p->busy_timeout_ms = 50;
    p->journal_max_bytes = 64ull << 20;
    p->journal_keep = 5;
}

const char *bj_store_path(const struct bj_store *st) { return st->db_path; }
int bj_store_unclean_recorded(const struct bj_store *st) { return st->unclean; }

/* Publishes a problem of the store as an ERROR event (never from a tap: the writer's thread). */
void store_report(struct bj_store *st, const char *text)
{
    if (!st->p.report_bus)
        return;
    struct bj_event ev = {.type = BJ_EV_ERROR};
    bj_strlcpy(ev.cause, "STORE", sizeof ev.cause);
    ev.text = (char *)text;
    bj_bus_publish(st->p.report_bus, &ev);
}

/* ---- opening: lock, schema, migrations ---------------------------------------------------- */

int store_take_lock(struct bj_store *st, int *status, char *err, size_t errlen)
{
    st->lock_fd = open(st->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        snprintf(err, errlen, "%s: %s", st->lock_path, strerror(errno));
        return -1;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = pread(st->lock_fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(err, errlen, "data directory %s is in use by another brainjar (pid %s, lock %s); "
                 "stop it or give another --data-dir", st->dir, *buf ? buf : "unknown", st->lock_path);
        close(st->lock_fd);
        st->lock_fd = -1;
        *status = 2;
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid, (size_t)n, 0) != n)
        bj_warn("%s: could not write the pid: %s", st->lock_path, strerror(errno));
    return 0;
}

/* Opens the writer's database at db_path: schema, statements. */
int store_open_writer_db(struct bj_store *st, int *status, char *err, size_t errlen)
{
    st->db = store_open_db(st->db_path, false, st->p.busy_timeout_ms, err, errlen);
    if (!st->db)
        return -1;
    if (store_retain_setup(st, err, errlen) || store_migrate(st->db, st->db_path, status, err, errlen) || store_prepare_all(st, err, errlen))
        return -1;
    return 0;
}

/* A damaged database is moved aside (with its -wal and -shm) as brainjar.db.damaged-TIME and a
 * fresh one is started; the counts come back from the journal. Kept, never deleted: `brainjar
 * check` and sqlite3's .recover can still read what is in it. Returns 0 (sound, absent, or
 * moved aside), -1 with err when it could not be moved. */
static int set_aside_if_damaged(struct bj_store *st, char *err, size_t errlen)
{
    if (access(st->db_path, F_OK) != 0)
        return 0;
    sqlite3 *db = NULL;
    char msg[512] = "";
    int damaged = 0;
    if (sqlite3_open_v2(st->db_path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        damaged = store_check_db(db, false, msg, sizeof msg);
    }
    sqlite3_close(db);
    if (damaged != 1)
        return 0; /* sound, or a problem the normal open reports (permissions, a lock) */
    char stamp[32], aside[PATH_MAX + 96];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    static const char *const suffix[] = {"-wal", "-shm", ""}; /* the database itself last */
    for (int i = 0; i < 3; i++) {
        char from[PATH_MAX + 40];
        snprintf(from, sizeof from, "%s%s", st->db_path, suffix[i]);
        snprintf(aside, sizeof aside, "%s.damaged-%s%s", st->db_path, stamp, suffix[i]);
        if (rename(from, aside) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "%s is damaged (%s) and could not be moved aside: %s; move it away by hand",
                     st->db_path, msg, strerror(errno));
            return -1;
        }
    }
    bj_error("%s is damaged (quick_check: %s): moved aside as %s; a fresh store starts now, with the death "
             "counts taken back from %s (see docs/OPERATIONS.md, \"A damaged database\")", st->db_path, msg, aside,
             BJ_JOURNAL_NAME);
    st->set_aside = true;
    return 0;
}

int bj_store_check(struct bj_store *st, bool full, char *msg, size_t msglen)
{
    pthread_mutex_lock(&st->rlock);
    int rc = st->rdb ? store_check_db(st->rdb, full, msg, msglen) : -1;
    pthread_mutex_unlock(&st->rlock);
    if (rc < 0 && !st->rdb)
        snprintf(msg, msglen, "no database");
    return rc;
}

struct bj_store *bj_store_new_reader(const char *data_dir, int *status, char *err, size_t errlen)
{
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = data_dir;
    p.read_only = true;
    return bj_store_new(&p, status, err, errlen);
}

struct bj_store *bj_store_new(const struct bj_store_params *p, int *status, char *err, size_t errlen)
{
    int dummy;
    if (!status)
        status = &dummy;
    *status = 1;
    struct bj_store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->p = *p;
    if (st->p.commit_ms <= 0) st->p.commit_ms = 100;
    if (st->p.batch <= 0) st->p.batch = 512;
    if (st->p.backlog_max == 0) st->p.backlog_max = 100000;
    if (st->p.busy_timeout_ms <= 0) st->p.busy_timeout_ms = 50;
    st->lock_fd = -1;
    pthread_mutex_init(&st->rlock, NULL);
    pthread_mutex_init(&st->slock, NULL);
    bj_strlcpy(st->dir, p->data_dir && *p->data_dir ? p->data_dir : ".", sizeof st->dir);
    snprintf(st->db_path, sizeof st->db_path, "%s/%s", st->dir, BJ_STORE_DB_NAME);
    snprintf(st->journal_path, sizeof st->journal_path, "%s/%s", st->dir, BJ_JOURNAL_NAME);
    snprintf(st->lock_path, sizeof st->lock_path, "%s/%s", st->dir, BJ_STORE_LOCK_NAME);

    if (!p->read_only && (!p->data_dir || !*p->data_dir)) {
        snprintf(err, errlen, "the data directory is empty (--data-dir ''): give a directory");
        *status = 2;
        goto fail;
    }
    if (p->read_only) {
        if (access(st->db_path, R_OK) != 0) {
            snprintf(err, errlen, "%s: %s (no store in this data directory)", st->db_path, strerror(errno));
            goto fail;
        }
        st->rdb = store_open_db(st->db_path, true, 2000, err, errlen);
        if (!st->rdb)
            goto fail;
        int64_t v = store_query_i64(st->rdb, "PRAGMA user_version", -1);
        st->schema_version = (int)v;
        if (v < 1 || v > BJ_STORE_SCHEMA_VERSION) {
            snprintf(err, errlen, "%s: schema version %" PRId64 " (this brainjar reads 1..%d)", st->db_path, v,
                     BJ_STORE_SCHEMA_VERSION);
            *status = 2;
            goto fail;
        }
        return st;
    }

    int rc = bj_mkdirs(st->dir);
    if (rc) {
        snprintf(err, errlen, "data directory %s: %s", st->dir, strerror(-rc));
        goto fail;
    }
    if (store_take_lock(st, status, err, errlen))
        goto fail;
    bj_dir_identity(st->dir, &st->dir_dev, &st->dir_ino);
    char e[300];
    struct bj_journal *jl = bj_journal_open(st->dir, e, sizeof e); /* cuts a torn last line */
    if (!jl)
        bj_warn("%s", e);
    bj_journal_close(jl);
    if (set_aside_if_damaged(st, err, errlen) || store_open_writer_db(st, status, err, errlen))
        goto fail;
    st->schema_version = BJ_STORE_SCHEMA_VERSION;
    int imported = store_import_journal(st, e, sizeof e);
    if (imported < 0)
        bj_warn("%s: deaths not imported from the journal: %s", st->db_path, e);
    else if (imported > 0)
        bj_info("%s: %d death%s taken from %s that the store had not written yet", st->db_path, imported,
                imported == 1 ? "" : "s", BJ_JOURNAL_NAME);
    int back = imported < 0 ? 0 : store_backfill_journal(st, e, sizeof e);
    if (back < 0)
        bj_warn("%s: the journal was not written back from the store: %s", st->journal_path, e);
    else if (back > 0)
        bj_info("%s: %d death%s the journal lacked written back from the store", st->journal_path, back,
                back == 1 ? "" : "s");
    if (store_apply_counts(st, e, sizeof e) < 0)
        bj_warn("%s: %s not read: %s", st->db_path, BJ_JOURNAL_COUNTS_NAME, e);
    if (store_recover_unclean(st, e, sizeof e)) {
        snprintf(err, errlen, "%s: recording the unclean end of an earlier run failed: %s%s", st->db_path, e,
                 strstr(e, "locked") ? " (another program holds the database open; stop it and start again)" : "");
        goto fail;
    }
    bj_store_rotate_journal(st); /* after the import: it reads the newest rotated file too */
    st->rdb = store_open_db(st->db_path, false, 2000, err, errlen);
    if (!st->rdb)
        goto fail;
    store_exec(st->rdb, "PRAGMA query_only=ON", e, sizeof e);
    return st;
fail:
    bj_store_free(st);
    return NULL;
}

int bj_store_rotate_journal(struct bj_store *st)
{
    int rc = bj_journal_rotate(st->dir, st->p.journal_max_bytes, st->p.journal_keep > 0 ? st->p.journal_keep : 5);
    if (rc < 0) {
        bj_warn("%s: rotation failed: %s", st->journal_path, strerror(-rc));
        return -1;
    }
    return rc;
}

uint32_t bj_store_brain_deaths(struct bj_store *st, const char *id)
{
    sqlite3 *db = st->db ? st->db : st->rdb;
    sqlite3_stmt *s;
    uint32_t n = 0;
    if (sqlite3_prepare_v2(db, "SELECT MAX(COALESCE((SELECT deaths FROM brains WHERE id=?1),0),"
                               " COALESCE((SELECT MAX(count) FROM deaths WHERE brain=?1),0))", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) == SQLITE_ROW)
            n = (uint32_t)sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    return n;
}

/* Inserts the run row and its brains (used at begin and after the directory was replaced). */
int store_insert_run(struct bj_store *st, const struct bj_store_run_info *in, int64_t started_us, char *err,
                      size_t errlen)
{
    sqlite3_stmt *r = NULL, *b = NULL, *rb = NULL;
    char e[200];
    int rc = -1;
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    if (sqlite3_prepare_v2(st->db, "INSERT INTO runs(started_us,last_us,pid,version,llama_version,config,hive_text,"
                           "models,seeds,pause_ms,argv) VALUES(?1,?1,?,?,?,?,?,?,?,?,?)", -1, &r, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT INTO brains(id,role,first_run,last_run) VALUES(?1,?2,?3,?3)"
                           " ON CONFLICT(id) DO UPDATE SET role=excluded.role, last_run=excluded.last_run",
                           -1, &b, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT INTO run_brains(run,brain,role,model,jar_tokens,seed) VALUES(?,?,?,?,?,?)",
                           -1, &rb, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(r, 1, started_us);
    sqlite3_bind_int64(r, 2, (int64_t)getpid());
    store_bind_text(r, 3, in->version);
    store_bind_text(r, 4, in->llama_version);
    store_bind_text(r, 5, in->config);
    store_bind_text(r, 6, in->hive_text);
    store_bind_text(r, 7, in->models);
    store_bind_text(r, 8, in->seeds);
    sqlite3_bind_int(r, 9, in->pause_ms);
    store_bind_text(r, 10, in->argv);
    if (store_step_done(r) != SQLITE_OK)
        goto out;
    st->run_id = sqlite3_last_insert_rowid(st->db);
    for (int i = 0; i < in->n_brains; i++) {
        const struct bj_store_brain_info *bi = &in->brains[i];
        store_bind_text(b, 1, bi->id);
        store_bind_text(b, 2, bi->role);
        sqlite3_bind_int64(b, 3, st->run_id);
        sqlite3_bind_int64(rb, 1, st->run_id);
        store_bind_text(rb, 2, bi->id);
        store_bind_text(rb, 3, bi->role);
        store_bind_text(rb, 4, bi->model);
        sqlite3_bind_int64(rb, 5, bi->jar_tokens);
        sqlite3_bind_int64(rb, 6, bi->seed);
        if (store_step_done(b) != SQLITE_OK || store_step_done(rb) != SQLITE_OK)
            goto out;
    }
    if (store_lab_insert_run(st, in->lab) != SQLITE_OK)
        goto out;
    if (store_exec(st->db, "COMMIT", e, sizeof e) == 0)
        rc = 0;
out:
    if (rc) {
        snprintf(err, errlen, "recording the run: %s", sqlite3_errmsg(st->db));
        store_exec(st->db, "ROLLBACK", e, sizeof e);
    }
    sqlite3_finalize(r);
    sqlite3_finalize(b);
    sqlite3_finalize(rb);
    return rc;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void free_info(struct bj_store_run_info *in)
{
    if (!in)
        return;
    free((char *)in->config);
    free((char *)in->hive_text);
    free((char *)in->models);
    free((char *)in->seeds);
    free((char *)in->version);
    free((char *)in->llama_version);
    free((char *)in->argv);
    for (int i = 0; i < in->n_brains; i++) {
        free((char *)in->brains[i].id);
        free((char *)in->brains[i].role);
        free((char *)in->brains[i].model);
    }
    free((void *)in->brains);
    free(in);
}

int64_t bj_store_begin_run(struct bj_store *st, const struct bj_store_run_info *in, char *err, size_t errlen)
{
    if (!st->db) {
        snprintf(err, errlen, "the store is read-only");
        return -1;
    }
    struct bj_store_run_info *c = calloc(1, sizeof *c);
    struct bj_store_brain_info *bs = calloc((size_t)(in->n_brains > 0 ? in->n_brains : 1), sizeof *bs);
    if (!c || !bs) {
        free(c);
        free(bs);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *c = *in;
    c->config = dup_or_null(in->config);
    c->hive_text = dup_or_null(in->hive_text);
    c->models = dup_or_null(in->models);
    c->seeds = dup_or_null(in->seeds);
    c->version = dup_or_null(in->version);
    c->llama_version = dup_or_null(in->llama_version);
    c->argv = dup_or_null(in->argv);
    for (int i = 0; i < in->n_brains; i++) {
        bs[i] = in->brains[i];
        bs[i].id = dup_or_null(in->brains[i].id);
        bs[i].role = dup_or_null(in->brains[i].role);
        bs[i].model = dup_or_null(in->brains[i].model);
    }
    c->brains = bs;
    free_info(st->info);
    st->info = c;
    if (store_insert_run(st, c, bj_event_now(), err, errlen))
        return -1;
    /* Each brain's accumulator starts at the life its restored count implies. */
    pthread_mutex_lock(&st->slock);
    st->stats.run_id = st->run_id;
    pthread_mutex_unlock(&st->slock);
    return st->run_id;
}

void bj_store_stats(struct bj_store *st, struct bj_store_stats *out)
{
    pthread_mutex_lock(&st->slock);
    *out = st->stats;
    pthread_mutex_unlock(&st->slock);
}

void bj_store_free(struct bj_store *st)
{
    if (!st)
        return;
    if (!st->run_marked) { /* a run is never left open by a close */
        if (!st->ever_started && !st->refused[0])
            bj_store_refuse_run(st, "the start failed");
        bj_store_stop(st, false, 1000);
    }
    store_finalize_all(st);
    if (st->db) {
        char e[100];
        store_exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", e, sizeof e);
        sqlite3_close(st->db);
    }
    if (st->rdb)
        sqlite3_close(st->rdb);
    if (st->lock_fd >= 0) {
        if (ftruncate(st->lock_fd, 0) != 0)
            bj_debug("%s: %s", st->lock_path, strerror(errno));
        close(st->lock_fd); /* releases the flock */
    }
    free(st->backlog);
    free(st->acc);
    free_info(st->info);
    pthread_mutex_destroy(&st->rlock);
    pthread_mutex_destroy(&st->slock);
    free(st);
}

