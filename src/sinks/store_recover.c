/* store_recover: what the store takes back at open: deaths of the journal (crash_reports.log)
 * the store lacks, and one UNCLEAN_EXIT death per brain alive in a run that never ended. */
#include "store_int.h"

/* ---- the journal (crash_reports.log) ------------------------------------------------------ */

/* "2026-11-25T13:40:56.123456Z - CRASH #9: GOD JAR_FULL (...)" -> fields. 0 or -1. */
static int parse_journal_line(const char *line, int64_t *t_us, uint32_t *count, char *brain, size_t blen,
                              char *cause, size_t clen)
{
    struct tm tm = {0};
    const char *p = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    long frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                frac = frac * 10 + (*p - '0');
        for (; digits < 6; digits++)
            frac *= 10;
    }
    if (*p == 'Z')
        p++;
    unsigned long n;
    int used = 0;
    char b[64], c[64];
    if (sscanf(p, " - CRASH #%lu: %63s %63s%n", &n, b, c, &used) < 3 || n == 0 || n > UINT32_MAX)
        return -1;
    *t_us = (int64_t)timegm(&tm) * 1000000 + frac;
    *count = (uint32_t)n;
    bj_strlcpy(brain, b, blen);
    bj_strlcpy(cause, c, clen);
    return 0;
}

/* Imports every death of the journal (current file and the newest rotated one) that the store
 * lacks. Writer connection, outside a transaction. Returns deaths imported or -1. */
int store_import_journal(struct bj_store *st, char *err, size_t errlen)
{
    int imported = 0;
    sqlite3_stmt *ins = NULL, *brain = NULL, *upd = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO deaths(run,brain,count,cause,time_us,source) VALUES("
                           "(SELECT id FROM runs WHERE started_us<=?1 ORDER BY started_us DESC, id DESC LIMIT 1),"
                           "?2,?3,?4,?1,'journal')", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO brains(id) VALUES(?)", -1, &brain, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE brains SET deaths=MAX(deaths,?2) WHERE id=?1", -1, &upd, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
        imported = -1;
        goto out;
    }
    char e[200];
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        imported = -1;
        goto out;
    }
    for (int f = 1; f >= 0; f--) {
        char path[PATH_MAX + 48];
        snprintf(path, sizeof path, f ? "%s.1" : "%s", st->journal_path);
        FILE *in = fopen(path, "re");
        if (!in)
            continue;
        char line[1024];
        while (fgets(line, sizeof line, in)) {
            int64_t t;
            uint32_t n;
            char b[32], c[24];
            if (parse_journal_line(line, &t, &n, b, sizeof b, c, sizeof c))
                continue;
            sqlite3_bind_text(brain, 1, b, -1, SQLITE_TRANSIENT);
            int rc = store_step_done(brain);
            sqlite3_bind_int64(ins, 1, t);
            sqlite3_bind_text(ins, 2, b, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 3, n);
            sqlite3_bind_text(ins, 4, c, -1, SQLITE_TRANSIENT);
            if (rc == SQLITE_OK)
                rc = store_step_done(ins);
            if (rc == SQLITE_OK && sqlite3_changes(st->db) > 0) {
                imported++;
                sqlite3_bind_text(upd, 1, b, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(upd, 2, n);
                rc = store_step_done(upd);
            }
            if (rc != SQLITE_OK) {
                snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
                fclose(in);
                store_exec(st->db, "ROLLBACK", e, sizeof e);
                imported = -1;
                goto out;
            }
        }
        fclose(in);
    }
    if (store_exec(st->db, "COMMIT", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        store_exec(st->db, "ROLLBACK", e, sizeof e);
        imported = -1;
    }
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(brain);
    sqlite3_finalize(upd);
    return imported;
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
                                   " VALUES(?,?,?,'UNCLEAN_EXIT',?,'recovery')", -1, &ins, NULL) != SQLITE_OK ||
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
    struct bj_logfile lf;
    if (n_done && bj_logfile_open(&lf, st->journal_path, 0, 1) == 0) {
        for (size_t i = 0; i < n_done; i++) {
            char line[256];
            time_t secs = (time_t)(done[i].t / 1000000);
            struct tm tm;
            gmtime_r(&secs, &tm);
            snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ - CRASH #%u: %s UNCLEAN_EXIT "
                     "(the process died; found at the next start)", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(done[i].t % 1000000), done[i].count, done[i].brain);
            if (bj_logfile_append(&lf, line, i + 1 == n_done) != 0)
                bj_warn("%s: could not append an UNCLEAN_EXIT line", st->journal_path);
        }
        bj_logfile_close(&lf);
    }
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

