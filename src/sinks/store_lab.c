/* store_lab: the lab's rows in the store (docs/LAB.md): a run's experiment and its arms at
 * begin, and from BJ_EV_LAB events the interventions timeline and the self-reports. A lab
 * brain's condition and replicate are read from its name (ARM/REP/BRAIN, lab.h). See store.h. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lab.h"

int store_lab_insert_run(struct bj_store *st, const struct bj_lab_spec *lab)
{
    if (!lab || !lab->on)
        return SQLITE_OK;
    sqlite3_stmt *e = NULL, *c = NULL;
    int rc = sqlite3_prepare_v2(st->db, "INSERT INTO experiments(run,name,question,replicates,seed,duration_s,"
                                "n_interventions,n_questions) VALUES(?,?,?,?,?,?,?,?)", -1, &e, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(st->db, "INSERT INTO conditions(run,name,idx,remembers_deaths,knows_watched,"
                                "others_exist,interventions) VALUES(?,?,?,?,?,?,?)", -1, &c, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(e, 1, st->run_id);
        store_bind_text(e, 2, lab->name);
        store_bind_text(e, 3, lab->question);
        sqlite3_bind_int(e, 4, lab->replicates);
        sqlite3_bind_int64(e, 5, lab->seed);
        sqlite3_bind_double(e, 6, lab->duration_s);
        sqlite3_bind_int(e, 7, lab->n_ivs);
        sqlite3_bind_int(e, 8, lab->n_qs);
        rc = store_step_done(e);
    }
    for (int i = 0; rc == SQLITE_OK && i < lab->n_conds; i++) {
        const struct bj_lab_condition *cd = &lab->conds[i];
        char list[BJ_LAB_MAX_INTERVENTIONS * 33] = "";
        for (int k = 0; k < cd->n_interventions; k++) {
            if (k)
                strcat(list, ",");
            strcat(list, cd->interventions[k]);
        }
        sqlite3_bind_int64(c, 1, st->run_id);
        store_bind_text(c, 2, cd->name);
        sqlite3_bind_int(c, 3, i);
        const int8_t f[3] = {cd->remembers_deaths, cd->knows_watched, cd->others_exist};
        for (int k = 0; k < 3; k++) {
            if (f[k] >= 0)
                sqlite3_bind_int(c, 4 + k, f[k]);
            else
                sqlite3_bind_null(c, 4 + k);
        }
        store_bind_text(c, 7, list);
        rc = store_step_done(c);
    }
    sqlite3_finalize(e);
    sqlite3_finalize(c);
    return rc;
}

/* ARM/REP/BRAIN: binds the arm and the replicate (NULL for a brain outside an experiment). */
static void bind_arm(sqlite3_stmt *s, int col, const char *brain)
{
    const char *a = strchr(brain, '/');
    const char *b = a ? strchr(a + 1, '/') : NULL;
    if (!a || !b) {
        sqlite3_bind_null(s, col);
        sqlite3_bind_null(s, col + 1);
        return;
    }
    sqlite3_bind_text(s, col, brain, (int)(a - brain), SQLITE_TRANSIENT);
    sqlite3_bind_int(s, col + 1, atoi(a + 1));
}

int store_lab_event(struct bj_store *st, const struct bj_event *ev)
{
    json_t *o = ev->text ? json_loads(ev->text, 0, NULL) : NULL;
    sqlite3_stmt *s;
    char *change = NULL;
    int rc;
    if (strcmp(ev->cause, "answer") == 0) {
        s = st->stmt[ST_REPORT];
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        bind_arm(s, 3, ev->brain);
        sqlite3_bind_text(s, 5, ev->from, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, (int64_t)ev->crash_count + 1);
        sqlite3_bind_int64(s, 7, ev->thought);
        const char *answer = json_string_value(json_object_get(o, "answer"));
        store_bind_text(s, 8, answer);
        json_t *score = json_object_get(o, "score");
        if (json_is_integer(score))
            sqlite3_bind_int64(s, 9, json_integer_value(score));
        sqlite3_bind_int64(s, 10, ev->time_us);
        sqlite3_bind_int64(s, 11, (int64_t)ev->seq);
    } else {
        s = st->stmt[ST_IV];
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        bind_arm(s, 3, ev->brain);
        sqlite3_bind_text(s, 5, ev->from, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, ev->cause[0] ? ev->cause : "unknown", -1, SQLITE_STATIC);
        store_bind_text(s, 7, json_string_value(json_object_get(o, "trigger")));
        sqlite3_bind_int(s, 8, json_is_true(json_object_get(o, "ok")));
        sqlite3_bind_int64(s, 9, (int64_t)ev->crash_count + 1);
        sqlite3_bind_int64(s, 10, ev->thought);
        sqlite3_bind_int64(s, 11, ev->jar_used);
        change = json_dumps(json_object_get(o, "change"), JSON_COMPACT | JSON_ENCODE_ANY);
        store_bind_text(s, 12, change ? change : ev->text);
        sqlite3_bind_int64(s, 13, ev->time_us);
        sqlite3_bind_int64(s, 14, (int64_t)ev->seq);
    }
    rc = store_step_done(s);
    free(change);
    json_decref(o);
    return rc;
}

int bj_store_each_lab(struct bj_store *st, const char *brain, int64_t run,
                      int (*fn)(void *ud, const struct bj_stored_lab *row), void *ud, char *err, size_t errlen)
{
    if (st->schema_version < 4)
        return 0; /* a database from before the lab */
    static const char sql[] =
        "SELECT 'intervention', run, brain, condition, COALESCE(replicate,0), name, kind, COALESCE(life,0),"
        " COALESCE(thought,0), change, -1, time_us FROM interventions WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2)"
        " UNION ALL "
        "SELECT 'self_report', run, brain, condition, COALESCE(replicate,0), question, 'answer', COALESCE(life,0),"
        " COALESCE(thought,0), text, COALESCE(score,-1), time_us FROM self_reports"
        " WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2) ORDER BY 12";
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1, rc = SQLITE_DONE;
    if (!st->rdb || sqlite3_prepare_v2(st->rdb, sql, -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", st->rdb ? sqlite3_errmsg(st->rdb) : "no database");
        goto out;
    }
    store_bind_text(s, 1, brain);
    sqlite3_bind_int64(s, 2, run);
    n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct bj_stored_lab r = {
            .kind = (const char *)sqlite3_column_text(s, 0), .run = sqlite3_column_int64(s, 1),
            .brain = (const char *)sqlite3_column_text(s, 2), .condition = (const char *)sqlite3_column_text(s, 3),
            .replicate = sqlite3_column_int(s, 4), .name = (const char *)sqlite3_column_text(s, 5),
            .action = (const char *)sqlite3_column_text(s, 6), .life = sqlite3_column_int(s, 7),
            .thought = sqlite3_column_int(s, 8), .text = (const char *)sqlite3_column_text(s, 9),
            .score = sqlite3_column_int(s, 10), .time_us = sqlite3_column_int64(s, 11)};
        n++;
        if (fn(ud, &r))
            break;
    }
out:
    return store_read_end(st, s, rc, n, err, errlen);
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return strdup(t ? (const char *)t : "");
}

void bj_store_lab_run_free(struct bj_store_lab_run *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->question);
    for (int i = 0; i < r->n_conditions; i++)
        free(r->conditions[i]);
    free(r->conditions);
    free(r->brains);
    memset(r, 0, sizeof *r);
}

int bj_store_read_lab_run(struct bj_store *st, int64_t run, struct bj_store_lab_run *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (st->schema_version < 4) {
        snprintf(err, errlen, "this database is from before the lab (schema %d)", st->schema_version);
        return -1;
    }
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int rc = -1;
    if (!st->rdb)
        goto fail;
    if (sqlite3_prepare_v2(st->rdb, "SELECT e.name, e.question, e.replicates, e.seed, r.started_us,"
                           " COALESCE(r.ended_us, r.last_us, r.started_us) FROM experiments e JOIN runs r ON r.id=e.run"
                           " WHERE e.run=?1", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, run);
    if (sqlite3_step(s) != SQLITE_ROW) {
        snprintf(err, errlen, "run %" PRId64 " is not an experiment (no row in experiments)", run);
        goto out;
    }
    out->run = run;
    out->name = col_dup(s, 0);
    out->question = col_dup(s, 1);
    out->replicates = sqlite3_column_int(s, 2);
    out->seed = sqlite3_column_int64(s, 3);
    out->started_us = sqlite3_column_int64(s, 4);
    out->ended_us = sqlite3_column_int64(s, 5);
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(st->rdb, "SELECT name FROM conditions WHERE run=?1 ORDER BY idx", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, run);
    while (sqlite3_step(s) == SQLITE_ROW) {
        char **c = realloc(out->conditions, (size_t)(out->n_conditions + 1) * sizeof *c);
        if (!c)
            goto oom;
        out->conditions = c;
        c[out->n_conditions++] = col_dup(s, 0);
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(st->rdb, "SELECT rb.brain,"
                           " (SELECT COUNT(*) FROM deaths d WHERE d.run=rb.run AND d.brain=rb.brain),"
                           " (SELECT COUNT(*) FROM thoughts t WHERE t.run=rb.run AND t.brain=rb.brain AND t.complete=1)"
                           " FROM run_brains rb WHERE rb.run=?1 ORDER BY rb.rowid", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, run);
    while (sqlite3_step(s) == SQLITE_ROW) {
        struct bj_store_lab_brain *b = realloc(out->brains, (size_t)(out->n_brains + 1) * sizeof *b);
        if (!b)
            goto oom;
        out->brains = b;
        b = &out->brains[out->n_brains++];
        memset(b, 0, sizeof *b);
        const char *id = (const char *)sqlite3_column_text(s, 0);
        snprintf(b->id, sizeof b->id, "%s", id ? id : "");
        const char *a = strchr(b->id, '/'), *z = a ? strchr(a + 1, '/') : NULL;
        b->condition = -1;
        for (int c = 0; a && z && c < out->n_conditions; c++)
            if ((size_t)(a - b->id) == strlen(out->conditions[c]) && strncmp(b->id, out->conditions[c], (size_t)(a - b->id)) == 0)
                b->condition = c;
        b->replicate = a ? atoi(a + 1) : 0;
        snprintf(b->name, sizeof b->name, "%s", z ? z + 1 : b->id);
        b->deaths = sqlite3_column_int(s, 1);
        b->thoughts = sqlite3_column_int(s, 2);
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
    goto out;
fail:
    snprintf(err, errlen, "%s", st->rdb ? sqlite3_errmsg(st->rdb) : "no database");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    if (rc)
        bj_store_lab_run_free(out);
    return rc;
}
