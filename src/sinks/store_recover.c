/* store_recover: what the store takes back at open: deaths of the journal (crash_reports.log)
 * the store lacks, and one UNCLEAN_EXIT death per brain alive in a run that never ended. */
#include "store_int.h"

/* ---- the journal (crash_reports.log) ------------------------------------------------------ */

struct import_ctx {
    struct bj_store *st;
    sqlite3_stmt *ins, *brain, *upd, *seen;
    int imported;
    int rc;
};

/* One journal death: its brain row, its death row unless the store has it (then the brain's
 * count), and a mark in journal_seen (for the back-fill). Non-zero stops the scan. */
static int import_one(void *ud, const struct bj_journal_entry *e)
{
    struct import_ctx *c = ud;
    sqlite3_bind_text(c->brain, 1, e->brain, -1, SQLITE_TRANSIENT);
    int rc = store_step_done(c->brain);
    sqlite3_bind_int64(c->ins, 1, e->time_us);
    sqlite3_bind_text(c->ins, 2, e->brain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(c->ins, 3, e->count);
    sqlite3_bind_text(c->ins, 4, e->cause, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = store_step_done(c->ins);
    if (rc == SQLITE_OK && sqlite3_changes(c->st->db) > 0) {
        c->imported++;
        sqlite3_bind_text(c->upd, 1, e->brain, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(c->upd, 2, e->count);
        rc = store_step_done(c->upd);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(c->seen, 1, e->brain, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(c->seen, 2, e->count);
        sqlite3_bind_int64(c->seen, 3, e->time_us);
        rc = store_step_done(c->seen);
    }
    c->rc = rc;
    return rc != SQLITE_OK;
}

/* Lines the journal holds that are not deaths (damaged, or not ours): counted and said once. */
static void report_unparsable(const char *path, const struct bj_journal_scan *sc)
{
    if (!sc->unparsable)
        return;
    bj_warn("%s: %llu line%s could not be read as deaths and %s skipped (first: line %llu, '%s')", path,
            (unsigned long long)sc->unparsable, sc->unparsable == 1 ? "" : "s", sc->unparsable == 1 ? "was" : "were",
            (unsigned long long)sc->first_bad, sc->first_bad_text);
}

/* Imports every death of the journal (current file and the newest rotated one) that the store
 * lacks, and notes in the temporary table journal_seen which deaths the journal holds. Writer
 * connection, outside a transaction. Returns deaths imported or -1. */
int store_import_journal(struct bj_store *st, char *err, size_t errlen)
{
    struct import_ctx c = {.st = st};
    char e[200];
    int out = -1;
    if (store_exec(st->db, "CREATE TEMP TABLE IF NOT EXISTS journal_seen(brain TEXT, count INTEGER, time_us INTEGER,"
                           " PRIMARY KEY(brain, count)) WITHOUT ROWID; DELETE FROM journal_seen", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO deaths(run,brain,count,cause,time_us,source) VALUES("
                           "(SELECT id FROM runs WHERE started_us<=?1 ORDER BY started_us DESC, id DESC LIMIT 1),"
                           "?2,?3,?4,?1,'journal')", -1, &c.ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO brains(id) VALUES(?)", -1, &c.brain, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE brains SET deaths=MAX(deaths,?2) WHERE id=?1", -1, &c.upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO journal_seen(brain,count,time_us) VALUES(?,?,?)", -1, &c.seen,
                           NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
        goto done;
    }
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        goto done;
    }
    for (int f = 1; f >= 0; f--) {
        char path[PATH_MAX + 48];
        snprintf(path, sizeof path, f ? "%s.1" : "%s", st->journal_path);
        struct bj_journal_scan sc;
        int rc = bj_journal_scan(path, import_one, &c, &sc);
        if (c.rc != SQLITE_OK || rc) {
            snprintf(err, errlen, "%s", c.rc != SQLITE_OK ? sqlite3_errmsg(st->db) : strerror(-rc));
            store_exec(st->db, "ROLLBACK", e, sizeof e);
            goto done;
        }
        if (!st->journal_reported)
            report_unparsable(path, &sc);
    }
    st->journal_reported = true;
    if (store_exec(st->db, "COMMIT", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        store_exec(st->db, "ROLLBACK", e, sizeof e);
        goto done;
    }
    out = c.imported;
done:
    sqlite3_finalize(c.ins);
    sqlite3_finalize(c.brain);
    sqlite3_finalize(c.upd);
    sqlite3_finalize(c.seen);
    return out;
}

/* The other way: deaths in the store that the journal lacks (their lines failed: a full disk)
 * are appended to it, oldest first, once the import above has marked what it holds. Only deaths
 * as new as the oldest line read (older ones may sit in older rotated files); all of them when
 * the journal is empty. Returns lines written, or -1. */
int store_backfill_journal(struct bj_store *st, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db,
            "SELECT brain, count, cause, time_us FROM deaths d"
            " WHERE d.time_us >= COALESCE((SELECT MIN(time_us) FROM journal_seen), 0)"
            " AND NOT EXISTS (SELECT 1 FROM journal_seen j WHERE j.brain=d.brain AND j.count=d.count)"
            " ORDER BY d.time_us, d.id", -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
        return -1;
    }
    struct bj_journal *j = NULL;
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (!j && !(j = bj_journal_open(st->dir, err, errlen))) {
            n = -1;
            break;
        }
        struct bj_journal_entry e = {.count = (uint32_t)sqlite3_column_int64(s, 1),
                                     .time_us = sqlite3_column_int64(s, 3)};
        const char *b = (const char *)sqlite3_column_text(s, 0), *c = (const char *)sqlite3_column_text(s, 2);
        bj_strlcpy(e.brain, b ? b : "?", sizeof e.brain);
        bj_strlcpy(e.cause, c ? c : BJ_DEATH_UNKNOWN_NAME, sizeof e.cause);
        if (bj_journal_append(j, &e, "written back from the store") != 0) {
            snprintf(err, errlen, "%s: cannot append", BJ_JOURNAL_NAME);
            n = -1;
            break;
        }
        n++;
    }
    sqlite3_finalize(s);
    bj_journal_close(j);
    return n;
}

struct counts_ctx {
    struct bj_store *st;
    sqlite3_stmt *brain, *max, *upd;
    int64_t lost;
    int rc;
};

/* One brain of crash_reports.counts: deaths up to `count` were published although their lines
 * failed; those the store lacks are lost, and their numbers are never given again. */
static void apply_count(void *ud, const char *brain, uint32_t count)
{
    struct counts_ctx *c = ud;
    if (c->rc != SQLITE_OK)
        return;
    sqlite3_bind_text(c->max, 1, brain, -1, SQLITE_TRANSIENT);
    int64_t have = sqlite3_step(c->max) == SQLITE_ROW ? sqlite3_column_int64(c->max, 0) : 0;
    sqlite3_reset(c->max);
    if ((int64_t)count <= have)
        return;
    c->lost += (int64_t)count - have;
    bj_warn("%s: %s's deaths #%" PRId64 "..#%u were published but neither journaled nor stored (a full disk when "
            "the process died): lost; their numbers are not given again", c->st->db_path, brain, have + 1, count);
    sqlite3_bind_text(c->brain, 1, brain, -1, SQLITE_TRANSIENT);
    c->rc = store_step_done(c->brain);
    sqlite3_bind_text(c->upd, 1, brain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(c->upd, 2, count);
    if (c->rc == SQLITE_OK)
        c->rc = store_step_done(c->upd);
}

int store_apply_counts(struct bj_store *st, char *err, size_t errlen)
{
    struct counts_ctx c = {.st = st, .rc = SQLITE_OK};
    char e[200];
    int out = -1;
    if (sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO brains(id) VALUES(?)", -1, &c.brain, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "SELECT MAX(COALESCE((SELECT deaths FROM brains WHERE id=?1),0),"
                                   " COALESCE((SELECT MAX(count) FROM deaths WHERE brain=?1),0))", -1, &c.max,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE brains SET deaths=MAX(deaths,?2) WHERE id=?1", -1, &c.upd, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
        goto done;
    }
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        goto done;
    }
    int rc = bj_journal_read_counts(st->dir, apply_count, &c);
    if (c.rc == SQLITE_OK && rc == 0 && c.lost > 0) {
        /* counted as lost by the run that was writing them: the newest that never ended */
        char sql[160];
        snprintf(sql, sizeof sql, "UPDATE runs SET lost=lost+%" PRId64 " WHERE id=(SELECT MAX(id) FROM runs"
                 " WHERE ended_us IS NULL)", c.lost);
        if (store_exec(st->db, sql, e, sizeof e))
            c.rc = SQLITE_ERROR;
    }
    if (c.rc != SQLITE_OK || rc) {
        snprintf(err, errlen, "%s", rc ? strerror(-rc) : sqlite3_errmsg(st->db));
        store_exec(st->db, "ROLLBACK", e, sizeof e);
        goto done;
    }
    if (store_exec(st->db, "COMMIT", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        store_exec(st->db, "ROLLBACK", e, sizeof e);
        goto done;
    }
    out = (int)c.lost;
done:
    sqlite3_finalize(c.brain);
    sqlite3_finalize(c.max);
    sqlite3_finalize(c.upd);
    return out;
}

/* ---- recovery of runs that never ended ------------------------------------------------------ */

struct unclean_death { char brain[32]; uint32_t count; int64_t t; };

/* Each run that never ended and was not yet recovered: every brain of it that was alive at its
 * last durable moment gets one UNCLEAN_EXIT death; the run is marked recovered (so this happens
 * once). A brain counts as dead when its last death is newer than its last resurrection and
 * its pause had not run out by the run's last sign of life. */
int store_recover_unclean(struct bj_store *st, char *err, size_t errlen)
{
    sqlite3_stmt *runs = NULL, *brains = NULL, *ins = NULL, *upd = NULL, *mark = NULL;
    struct unclean_death *done = NULL;
    size_t n_done = 0, cap_done = 0;
    int rc = -1;
    char e[200];
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    if (sqlite3_prepare_v2(st->db,
            "SELECT r.id, r.pause_ms, MAX(r.started_us, COALESCE(r.last_us,0),"
            "  COALESCE((SELECT MAX(time_us) FROM deaths d WHERE d.run=r.id),0)), r.started_us FROM runs r"
            " WHERE r.ended_us IS NULL AND r.recovered=0 ORDER BY r.id", -1, &runs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
            "SELECT rb.brain, b.deaths,"
            "  (SELECT MAX(time_us) FROM deaths d WHERE d.run=rb.run AND d.brain=rb.brain),"
            "  (SELECT MAX(time_us) FROM resurrections x WHERE x.run=rb.run AND x.brain=rb.brain)"
            " FROM run_brains rb JOIN brains b ON b.id=rb.brain WHERE rb.run=? AND rb.started=1", -1, &brains, NULL)
            != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO deaths(run,brain,count,cause,time_us,source)"
                                   " VALUES(?1,?2,?3,?5,?4,'recovery')", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE brains SET deaths=MAX(deaths,?2) WHERE id=?1", -1, &upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE runs SET recovered=1, clean=0, ended_us=?2 WHERE id=?1", -1, &mark, NULL)
            != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
        goto out;
    }
    while (sqlite3_step(runs) == SQLITE_ROW) {
        int64_t run = sqlite3_column_int64(runs, 0);
        int64_t pause_us = sqlite3_column_int64(runs, 1) * 1000;
        int64_t last = sqlite3_column_int64(runs, 2);
        /* Nothing was ever written for it: it died before its brains lived (e.g. loading). */
        bool lived = last > sqlite3_column_int64(runs, 3);
        int alive = 0;
        sqlite3_bind_int64(brains, 1, run);
        while (lived && sqlite3_step(brains) == SQLITE_ROW) {
            const char *b = (const char *)sqlite3_column_text(brains, 0);
            uint32_t deaths = (uint32_t)sqlite3_column_int64(brains, 1);
            bool has_death = sqlite3_column_type(brains, 2) != SQLITE_NULL;
            int64_t td = sqlite3_column_int64(brains, 2);
            int64_t tr = sqlite3_column_type(brains, 3) != SQLITE_NULL ? sqlite3_column_int64(brains, 3) : INT64_MIN;
            bool dead = has_death && td > tr && td + pause_us > last;
            if (dead)
                continue;
            uint32_t count = deaths + 1;
            sqlite3_bind_int64(ins, 1, run);
            sqlite3_bind_text(ins, 2, b, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 3, count);
            sqlite3_bind_int64(ins, 4, last);
            sqlite3_bind_text(ins, 5, bj_death_cause_name(BJ_DEATH_UNCLEAN_EXIT), -1, SQLITE_STATIC);
            sqlite3_bind_text(upd, 1, b, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(upd, 2, count);
            if (store_step_done(ins) != SQLITE_OK || store_step_done(upd) != SQLITE_OK) {
                snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
                sqlite3_reset(brains);
                goto out;
            }
            if (n_done == cap_done) {
                cap_done = cap_done ? cap_done * 2 : 16;
                struct unclean_death *nd = realloc(done, cap_done * sizeof *done);
                if (!nd) {
                    snprintf(err, errlen, "out of memory");
                    sqlite3_reset(brains);
                    goto out;
                }
                done = nd;
            }
            bj_strlcpy(done[n_done].brain, b, sizeof done[n_done].brain);
            done[n_done].count = count;
            done[n_done].t = last;
            n_done++;
            alive++;
        }
        sqlite3_reset(brains);
        sqlite3_bind_int64(mark, 1, run);
        sqlite3_bind_int64(mark, 2, last);
        if (store_step_done(mark) != SQLITE_OK) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
            goto out;
        }
        bj_warn("run %" PRId64 " ended uncleanly (the process died): %d brain%s that were alive get an UNCLEAN_EXIT "
                "death", run, alive, alive == 1 ? "" : "s");
    }
    sqlite3_reset(runs);
    if (store_exec(st->db, "COMMIT", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        goto out;
    }
    rc = 0;
    /* Committed: now the journal lines (a line without its row is re-imported; a row without its
     * line is only a missing line, never a second death). */
    struct bj_journal *jl = n_done ? bj_journal_open(st->dir, e, sizeof e) : NULL;
    for (size_t i = 0; jl && i < n_done; i++) {
        struct bj_journal_entry je = {.time_us = done[i].t, .count = done[i].count};
        bj_strlcpy(je.cause, bj_death_cause_name(BJ_DEATH_UNCLEAN_EXIT), sizeof je.cause);
        bj_strlcpy(je.brain, done[i].brain, sizeof je.brain);
        if (bj_journal_append(jl, &je, "the process died; found at the next start") != 0)
            bj_warn("%s: could not append an UNCLEAN_EXIT line", st->journal_path);
    }
    bj_journal_close(jl); /* commits */
    st->unclean += (int)n_done;
out:
    if (rc)
        store_exec(st->db, "ROLLBACK", e, sizeof e);
    sqlite3_finalize(runs);
    sqlite3_finalize(brains);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    sqlite3_finalize(mark);
    free(done);
    return rc;
}

