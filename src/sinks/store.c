/* store: see store.h. The writer thread owns the write connection after bj_store_start; the main
 * thread uses it before (open, begin_run) and after (stop). Readers use their own connection. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "logfile.h"
#include "util.h"

/* ---- schema --------------------------------------------------------------------------------
 * k_migrations[k] takes a database from user_version k to k+1. Append, never edit: a database
 * made by any older brainjar is brought forward step by step; nothing is dropped. */
static const char *const k_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY, started_us INTEGER NOT NULL, ended_us INTEGER, last_us INTEGER,"
    "  clean INTEGER NOT NULL DEFAULT 0, recovered INTEGER NOT NULL DEFAULT 0, pid INTEGER,"
    "  version TEXT, llama_version TEXT, config TEXT, hive_text TEXT, models TEXT, seeds TEXT,"
    "  pause_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE brains("
    "  id TEXT PRIMARY KEY, role TEXT, deaths INTEGER NOT NULL DEFAULT 0, first_run INTEGER REFERENCES runs(id),"
    "  last_run INTEGER REFERENCES runs(id));"
    "CREATE TABLE run_brains("
    "  run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL REFERENCES brains(id), role TEXT, model TEXT,"
    "  jar_tokens INTEGER, seed INTEGER, started INTEGER NOT NULL DEFAULT 1, PRIMARY KEY(run, brain));"
    "CREATE TABLE thoughts("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL REFERENCES brains(id),"
    "  life INTEGER NOT NULL, thought INTEGER NOT NULL, started_us INTEGER, ended_us INTEGER NOT NULL,"
    "  tokens INTEGER, complete INTEGER NOT NULL, text TEXT NOT NULL, seq INTEGER);"
    "CREATE INDEX thoughts_brain_time ON thoughts(brain, ended_us);"
    "CREATE INDEX thoughts_run ON thoughts(run);"
    "CREATE TABLE deaths("
    "  id INTEGER PRIMARY KEY, run INTEGER REFERENCES runs(id), brain TEXT NOT NULL REFERENCES brains(id),"
    "  count INTEGER NOT NULL, cause TEXT NOT NULL, time_us INTEGER NOT NULL, jar_used INTEGER, jar_tokens INTEGER,"
    "  source TEXT NOT NULL DEFAULT 'event', seq INTEGER, UNIQUE(brain, count));"
    "CREATE INDEX deaths_run ON deaths(run);"
    "CREATE TABLE resurrections("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL REFERENCES brains(id),"
    "  life INTEGER NOT NULL, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE INDEX resurrections_run ON resurrections(run, brain);"
    "CREATE TABLE operator_actions("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT, action TEXT NOT NULL,"
    "  text TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE TABLE observations("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL, from_brain TEXT,"
    "  node TEXT, text TEXT, time_us INTEGER NOT NULL, seq INTEGER);",
    /* 1 -> 2: notices (errors, watchdog stages, budget reports), peer link events, the command line */
    "CREATE TABLE notices("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), kind TEXT NOT NULL, brain TEXT,"
    "  cause TEXT, text TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE TABLE link_events("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), peer TEXT, state TEXT, text TEXT,"
    "  time_us INTEGER NOT NULL, seq INTEGER);"
    "ALTER TABLE runs ADD COLUMN argv TEXT;"
    "ALTER TABLE runs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;",
};
_Static_assert(sizeof k_migrations / sizeof k_migrations[0] == BJ_STORE_SCHEMA_VERSION, "one migration per version");

enum { ST_THOUGHT, ST_DEATH, ST_DEATH_BRAIN, ST_RES, ST_OBS, ST_OP, ST_NOTICE, ST_LINK, ST_NOT_STARTED,
       ST_LAST_US, ST_COUNT };
static const char *const k_stmts[ST_COUNT] = {
    [ST_THOUGHT] = "INSERT INTO thoughts(run,brain,life,thought,started_us,ended_us,tokens,complete,text,seq)"
                   " VALUES(?,?,?,?,?,?,?,?,?,?)",
    [ST_DEATH] = "INSERT OR IGNORE INTO deaths(run,brain,count,cause,time_us,jar_used,jar_tokens,source,seq)"
                 " VALUES(?,?,?,?,?,?,?,'event',?)",
    [ST_DEATH_BRAIN] = "UPDATE brains SET deaths=MAX(deaths,?2), last_run=?3 WHERE id=?1",
    [ST_RES] = "INSERT INTO resurrections(run,brain,life,time_us,seq) VALUES(?,?,?,?,?)",
    [ST_OBS] = "INSERT INTO observations(run,brain,from_brain,node,text,time_us,seq) VALUES(?,?,?,?,?,?,?)",
    [ST_OP] = "INSERT INTO operator_actions(run,brain,action,text,time_us,seq) VALUES(?,?,?,?,?,?)",
    [ST_NOTICE] = "INSERT INTO notices(run,kind,brain,cause,text,time_us,seq) VALUES(?,?,?,?,?,?,?)",
    [ST_LINK] = "INSERT INTO link_events(run,peer,state,text,time_us,seq) VALUES(?,?,?,?,?,?)",
    [ST_NOT_STARTED] = "UPDATE run_brains SET started=0 WHERE run=? AND brain=?",
    [ST_LAST_US] = "UPDATE runs SET last_us=MAX(COALESCE(last_us,0),?2) WHERE id=?1",
};

/* What the writer knows of each brain between events: the life it is in and the thought whose
 * tokens are streaming (for the thought's start time and token count). */
struct brain_acc {
    char id[32];
    uint32_t life;
    uint32_t thought;
    int64_t started_us;
    int tokens;
    int32_t first_jar, last_jar;
};

/* A queued event with what the writer knew when it took it off the bus. */
struct queued {
    struct bj_event ev;
    uint32_t life;       /* the brain's life at that moment */
    int tokens;          /* THOUGHT: tokens streamed (-1: unknown) */
    int64_t started_us;  /* THOUGHT: first token's time (0: unknown) */
};

struct bj_store {
    struct bj_store_params p;
    char dir[PATH_MAX];
    char db_path[PATH_MAX + 32];
    char journal_path[PATH_MAX + 32];
    char lock_path[PATH_MAX + 32];
    int lock_fd;
    dev_t dir_dev;
    ino_t dir_ino;
    sqlite3 *db;              /* writer connection */
    sqlite3_stmt *stmt[ST_COUNT];
    sqlite3 *rdb;             /* reader connection */
    pthread_mutex_t rlock;
    int64_t run_id;
    int unclean;
    struct bj_store_run_info *info; /* a copy, to re-create the run after the directory vanished */

    /* writer */
    struct bj_bus *bus;
    struct bj_sub *sub;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    atomic_int stop_timeout_ms;
    struct queued *backlog; /* ring */
    size_t cap, head, len;
    struct brain_acc *acc;
    size_t n_acc, cap_acc;
    int64_t backoff_us, retry_at_us, last_report_us, last_dir_check_us;
    bool need_journal_import;
    bool run_ended_clean;

    pthread_mutex_t slock;    /* guards stats */
    struct bj_store_stats stats;
};

void bj_store_default_params(struct bj_store_params *p)
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
const char *bj_store_migration_sql(int from)
{
    return from >= 0 && from < BJ_STORE_SCHEMA_VERSION ? k_migrations[from] : NULL;
}
int bj_store_unclean_recorded(const struct bj_store *st) { return st->unclean; }

/* ---- small SQL helpers ---------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int64_t query_i64(sqlite3 *db, const char *sql, int64_t dflt)
{
    sqlite3_stmt *s;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return dflt;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t && *t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Publishes a problem of the store as an ERROR event (never from a tap: the writer's thread). */
static void report(struct bj_store *st, const char *text)
{
    if (!st->p.report_bus)
        return;
    struct bj_event ev = {.type = BJ_EV_ERROR};
    bj_strlcpy(ev.cause, "STORE", sizeof ev.cause);
    ev.text = (char *)text;
    bj_bus_publish(st->p.report_bus, &ev);
}

/* ---- opening: lock, schema, migrations ---------------------------------------------------- */

static int take_lock(struct bj_store *st, int *status, char *err, size_t errlen)
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

static int migrate(sqlite3 *db, const char *path, int *status, char *err, size_t errlen)
{
    int64_t v = query_i64(db, "PRAGMA user_version", -1);
    if (v < 0) {
        snprintf(err, errlen, "%s: not a database brainjar can read: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (v > BJ_STORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s has schema version %" PRId64 ", newer than this brainjar knows (%d): "
                 "use the newer brainjar, or another --data-dir", path, v, BJ_STORE_SCHEMA_VERSION);
        *status = 2;
        return -1;
    }
    for (int64_t k = v; k < BJ_STORE_SCHEMA_VERSION; k++) {
        char e[300], sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%" PRId64, k + 1);
        if (exec(db, "BEGIN IMMEDIATE", e, sizeof e) || exec(db, k_migrations[k], e, sizeof e) ||
            exec(db, sql, e, sizeof e) || exec(db, "COMMIT", e, sizeof e)) {
            char e2[8];
            exec(db, "ROLLBACK", e2, sizeof e2);
            snprintf(err, errlen, "%s: migration to schema %" PRId64 " failed: %s", path, k + 1, e);
            return -1;
        }
        if (v > 0)
            bj_info("%s: schema migrated from version %" PRId64 " to %" PRId64, path, k, k + 1);
    }
    return 0;
}

static sqlite3 *open_db(const char *path, bool read_only, int busy_ms, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, busy_ms);
    sqlite3_extended_result_codes(db, 1);
    char e[200];
    if (exec(db, "PRAGMA foreign_keys=ON", e, sizeof e)) {
        snprintf(err, errlen, "%s: %s", path, e);
        sqlite3_close(db);
        return NULL;
    }
    if (!read_only) {
        if (exec(db, "PRAGMA journal_mode=WAL", e, sizeof e) || exec(db, "PRAGMA synchronous=NORMAL", e, sizeof e)) {
            snprintf(err, errlen, "%s: %s", path, e);
            sqlite3_close(db);
            return NULL;
        }
    }
    return db;
}

static int prepare_all(struct bj_store *st, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, k_stmts[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", st->db_path, sqlite3_errmsg(st->db));
            return -1;
        }
    }
    return 0;
}

static void finalize_all(struct bj_store *st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(st->stmt[i]);
        st->stmt[i] = NULL;
    }
}

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
static int import_journal(struct bj_store *st, char *err, size_t errlen)
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
    if (exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
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
            int rc = step_done(brain);
            sqlite3_bind_int64(ins, 1, t);
            sqlite3_bind_text(ins, 2, b, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 3, n);
            sqlite3_bind_text(ins, 4, c, -1, SQLITE_TRANSIENT);
            if (rc == SQLITE_OK)
                rc = step_done(ins);
            if (rc == SQLITE_OK && sqlite3_changes(st->db) > 0) {
                imported++;
                sqlite3_bind_text(upd, 1, b, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(upd, 2, n);
                rc = step_done(upd);
            }
            if (rc != SQLITE_OK) {
                snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
                fclose(in);
                exec(st->db, "ROLLBACK", e, sizeof e);
                imported = -1;
                goto out;
            }
        }
        fclose(in);
    }
    if (exec(st->db, "COMMIT", e, sizeof e)) {
        snprintf(err, errlen, "%s", e);
        exec(st->db, "ROLLBACK", e, sizeof e);
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
static int recover_unclean(struct bj_store *st, char *err, size_t errlen)
{
    sqlite3_stmt *runs = NULL, *brains = NULL, *ins = NULL, *upd = NULL, *mark = NULL;
    struct unclean_death *done = NULL;
    size_t n_done = 0, cap_done = 0;
    int rc = -1;
    char e[200];
    if (exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
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
            if (step_done(ins) != SQLITE_OK || step_done(upd) != SQLITE_OK) {
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
        if (step_done(mark) != SQLITE_OK) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(st->db));
            goto out;
        }
        bj_warn("run %" PRId64 " ended uncleanly (the process died): %d brain%s that were alive get an UNCLEAN_EXIT "
                "death", run, alive, alive == 1 ? "" : "s");
    }
    sqlite3_reset(runs);
    if (exec(st->db, "COMMIT", e, sizeof e)) {
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
        exec(st->db, "ROLLBACK", e, sizeof e);
    sqlite3_finalize(runs);
    sqlite3_finalize(brains);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    sqlite3_finalize(mark);
    free(done);
    return rc;
}

/* Opens the writer's database at db_path: schema, statements. */
static int open_writer_db(struct bj_store *st, int *status, char *err, size_t errlen)
{
    st->db = open_db(st->db_path, false, st->p.busy_timeout_ms, err, errlen);
    if (!st->db)
        return -1;
    if (migrate(st->db, st->db_path, status, err, errlen) || prepare_all(st, err, errlen))
        return -1;
    return 0;
}

struct bj_store *bj_store_open(const struct bj_store_params *p, int *status, char *err, size_t errlen)
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
    snprintf(st->journal_path, sizeof st->journal_path, "%s/%s", st->dir, BJ_STORE_JOURNAL_NAME);
    snprintf(st->lock_path, sizeof st->lock_path, "%s/%s", st->dir, BJ_STORE_LOCK_NAME);

    if (p->read_only) {
        if (access(st->db_path, R_OK) != 0) {
            snprintf(err, errlen, "%s: %s (no store in this data directory)", st->db_path, strerror(errno));
            goto fail;
        }
        st->rdb = open_db(st->db_path, true, 2000, err, errlen);
        if (!st->rdb)
            goto fail;
        int64_t v = query_i64(st->rdb, "PRAGMA user_version", -1);
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
    if (take_lock(st, status, err, errlen))
        goto fail;
    bj_dir_identity(st->dir, &st->dir_dev, &st->dir_ino);
    long torn = bj_logfile_repair(st->journal_path);
    if (torn < 0)
        bj_warn("%s: %s", st->journal_path, strerror((int)-torn));
    if (open_writer_db(st, status, err, errlen))
        goto fail;
    char e[300];
    int imported = import_journal(st, e, sizeof e);
    if (imported < 0)
        bj_warn("%s: deaths not imported from the journal: %s", st->db_path, e);
    else if (imported > 0)
        bj_info("%s: %d death%s taken from %s that the store had not written yet", st->db_path, imported,
                imported == 1 ? "" : "s", BJ_STORE_JOURNAL_NAME);
    if (recover_unclean(st, err, errlen))
        goto fail;
    bj_store_rotate_journal(st); /* after the import: it reads the newest rotated file too */
    st->rdb = open_db(st->db_path, false, 2000, err, errlen);
    if (!st->rdb)
        goto fail;
    exec(st->rdb, "PRAGMA query_only=ON", e, sizeof e);
    return st;
fail:
    bj_store_close(st);
    return NULL;
}

int bj_store_rotate_journal(struct bj_store *st)
{
    struct stat sb;
    if (!st->p.journal_max_bytes || stat(st->journal_path, &sb) != 0 || (uint64_t)sb.st_size <= st->p.journal_max_bytes)
        return 0;
    struct bj_logfile lf;
    int rc = bj_logfile_open(&lf, st->journal_path, 0, st->p.journal_keep > 0 ? st->p.journal_keep : 5);
    if (rc == 0)
        rc = bj_logfile_rotate(&lf);
    bj_logfile_close(&lf);
    if (rc) {
        bj_warn("%s: rotation failed: %s", st->journal_path, strerror(-rc));
        return -1;
    }
    return 1;
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
static int insert_run(struct bj_store *st, const struct bj_store_run_info *in, int64_t started_us, char *err,
                      size_t errlen)
{
    sqlite3_stmt *r = NULL, *b = NULL, *rb = NULL;
    char e[200];
    int rc = -1;
    if (exec(st->db, "BEGIN IMMEDIATE", e, sizeof e)) {
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
    bind_text(r, 3, in->version);
    bind_text(r, 4, in->llama_version);
    bind_text(r, 5, in->config);
    bind_text(r, 6, in->hive_text);
    bind_text(r, 7, in->models);
    bind_text(r, 8, in->seeds);
    sqlite3_bind_int(r, 9, in->pause_ms);
    bind_text(r, 10, in->argv);
    if (step_done(r) != SQLITE_OK)
        goto out;
    st->run_id = sqlite3_last_insert_rowid(st->db);
    for (int i = 0; i < in->n_brains; i++) {
        const struct bj_store_brain_info *bi = &in->brains[i];
        bind_text(b, 1, bi->id);
        bind_text(b, 2, bi->role);
        sqlite3_bind_int64(b, 3, st->run_id);
        sqlite3_bind_int64(rb, 1, st->run_id);
        bind_text(rb, 2, bi->id);
        bind_text(rb, 3, bi->role);
        bind_text(rb, 4, bi->model);
        sqlite3_bind_int64(rb, 5, bi->jar_tokens);
        sqlite3_bind_int64(rb, 6, bi->seed);
        if (step_done(b) != SQLITE_OK || step_done(rb) != SQLITE_OK)
            goto out;
    }
    if (exec(st->db, "COMMIT", e, sizeof e) == 0)
        rc = 0;
out:
    if (rc) {
        snprintf(err, errlen, "recording the run: %s", sqlite3_errmsg(st->db));
        exec(st->db, "ROLLBACK", e, sizeof e);
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
    if (insert_run(st, c, bj_event_now(), err, errlen))
        return -1;
    /* Each brain's accumulator starts at the life its restored count implies. */
    pthread_mutex_lock(&st->slock);
    st->stats.run_id = st->run_id;
    pthread_mutex_unlock(&st->slock);
    return st->run_id;
}

/* ---- the writer ----------------------------------------------------------------------------- */

static struct brain_acc *acc_of(struct bj_store *st, const char *id)
{
    for (size_t i = 0; i < st->n_acc; i++)
        if (strcmp(st->acc[i].id, id) == 0)
            return &st->acc[i];
    if (st->n_acc == st->cap_acc) {
        size_t cap = st->cap_acc ? st->cap_acc * 2 : 16;
        struct brain_acc *a = realloc(st->acc, cap * sizeof *a);
        if (!a)
            return NULL;
        st->acc = a;
        st->cap_acc = cap;
    }
    struct brain_acc *a = &st->acc[st->n_acc++];
    memset(a, 0, sizeof *a);
    bj_strlcpy(a->id, id, sizeof a->id);
    a->life = bj_store_brain_deaths(st, id) + 1;
    return a;
}

/* Token events only feed the accumulator: a thought's start time and token count. */
static void on_token(struct bj_store *st, const struct bj_event *ev)
{
    struct brain_acc *a = acc_of(st, ev->brain);
    if (!a)
        return;
    if (a->thought != ev->thought || a->tokens == 0) {
        a->thought = ev->thought;
        a->started_us = ev->time_us;
        a->tokens = 0;
        a->first_jar = ev->jar_used;
    }
    a->tokens++;
    a->last_jar = ev->jar_used;
}

static void backlog_push(struct bj_store *st, struct bj_event *ev)
{
    if (st->len >= st->p.backlog_max) {
        pthread_mutex_lock(&st->slock);
        uint64_t n = ++st->stats.overflow;
        pthread_mutex_unlock(&st->slock);
        if (ev->type == BJ_EV_DEATH)
            st->need_journal_import = true;
        if (n == 1 || n % 1000 == 0)
            bj_error("store: backlog full (%zu events): %" PRIu64 " event%s dropped so far (deaths are taken back "
                     "from %s once writing works)", st->len, n, n == 1 ? "" : "s", BJ_STORE_JOURNAL_NAME);
        bj_event_clear(ev);
        return;
    }
    if (st->len == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        if (cap > st->p.backlog_max)
            cap = st->p.backlog_max;
        struct queued *b = malloc(cap * sizeof *b);
        if (!b) {
            bj_event_clear(ev);
            pthread_mutex_lock(&st->slock);
            st->stats.overflow++;
            pthread_mutex_unlock(&st->slock);
            return;
        }
        for (size_t i = 0; i < st->len; i++)
            b[i] = st->backlog[(st->head + i) % st->cap];
        free(st->backlog);
        st->backlog = b;
        st->cap = cap;
        st->head = 0;
    }
    /* What the brain's accumulator says now (later events change it before the flush). */
    struct queued q = {.ev = *ev, .tokens = -1};
    struct brain_acc *a = ev->brain[0] ? acc_of(st, ev->brain) : NULL;
    if (a) {
        if (ev->type == BJ_EV_RESURRECTION)
            a->life = ev->crash_count + 1;
        q.life = a->life;
        if (ev->type == BJ_EV_THOUGHT && a->thought == ev->thought && a->tokens > 0) {
            q.tokens = a->tokens;
            if (a->last_jar > a->first_jar && a->last_jar - a->first_jar + 1 > q.tokens)
                q.tokens = a->last_jar - a->first_jar + 1; /* tokens merged by the bus still took their cells */
            q.started_us = a->started_us;
            a->tokens = 0;
        }
    } else {
        q.life = ev->crash_count + 1;
    }
    st->backlog[(st->head + st->len) % st->cap] = q;
    st->len++;
    pthread_mutex_lock(&st->slock);
    st->stats.backlog = st->len;
    if (st->len > st->stats.backlog_peak)
        st->stats.backlog_peak = st->len;
    pthread_mutex_unlock(&st->slock);
}

/* One event -> its rows. SQLITE_OK or the error. */
static int write_event(struct bj_store *st, const struct queued *q, int *rows)
{
    const struct bj_event *ev = &q->ev;
    sqlite3_stmt *s;
    int64_t run = st->run_id;
    int rc = SQLITE_OK;
    switch (ev->type) {
    case BJ_EV_THOUGHT: {
        s = st->stmt[ST_THOUGHT];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, q->life);
        sqlite3_bind_int64(s, 4, ev->thought);
        if (q->started_us)
            sqlite3_bind_int64(s, 5, q->started_us);
        sqlite3_bind_int64(s, 6, ev->time_us);
        if (q->tokens >= 0)
            sqlite3_bind_int(s, 7, q->tokens);
        sqlite3_bind_int(s, 8, ev->complete);
        sqlite3_bind_text(s, 9, ev->text ? ev->text : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 10, (int64_t)ev->seq);
        rc = step_done(s);
        break;
    }
    case BJ_EV_DEATH:
        s = st->stmt[ST_DEATH];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, ev->crash_count);
        sqlite3_bind_text(s, 4, ev->cause[0] ? ev->cause : "UNKNOWN", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int(s, 6, ev->jar_used);
        sqlite3_bind_int(s, 7, ev->jar_tokens);
        sqlite3_bind_int64(s, 8, (int64_t)ev->seq);
        rc = step_done(s);
        if (rc == SQLITE_OK) {
            s = st->stmt[ST_DEATH_BRAIN];
            sqlite3_bind_text(s, 1, ev->brain, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, ev->crash_count);
            sqlite3_bind_int64(s, 3, run);
            rc = step_done(s);
        }
        break;
    case BJ_EV_RESURRECTION:
        s = st->stmt[ST_RES];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, ev->crash_count + 1);
        sqlite3_bind_int64(s, 4, ev->time_us);
        sqlite3_bind_int64(s, 5, (int64_t)ev->seq);
        rc = step_done(s);
        break;
    case BJ_EV_OBSERVE:
        s = st->stmt[ST_OBS];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        bind_text(s, 3, ev->from);
        bind_text(s, 4, ev->node);
        bind_text(s, 5, ev->text);
        sqlite3_bind_int64(s, 6, ev->time_us);
        sqlite3_bind_int64(s, 7, (int64_t)ev->seq);
        rc = step_done(s);
        break;
    case BJ_EV_OPERATOR:
        s = st->stmt[ST_OP];
        sqlite3_bind_int64(s, 1, run);
        bind_text(s, 2, ev->brain);
        sqlite3_bind_text(s, 3, ev->cause[0] ? ev->cause : "unknown", -1, SQLITE_STATIC);
        bind_text(s, 4, ev->text);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int64(s, 6, (int64_t)ev->seq);
        rc = step_done(s);
        break;
    case BJ_EV_LINK:
        s = st->stmt[ST_LINK];
        sqlite3_bind_int64(s, 1, run);
        bind_text(s, 2, ev->from);
        bind_text(s, 3, ev->state);
        bind_text(s, 4, ev->text);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int64(s, 6, (int64_t)ev->seq);
        rc = step_done(s);
        break;
    case BJ_EV_ERROR:
    case BJ_EV_WATCHDOG:
    case BJ_EV_BUDGET:
        s = st->stmt[ST_NOTICE];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, bj_event_type_name(ev->type), -1, SQLITE_STATIC);
        bind_text(s, 3, ev->brain);
        bind_text(s, 4, ev->cause);
        bind_text(s, 5, ev->text);
        sqlite3_bind_int64(s, 6, ev->time_us);
        sqlite3_bind_int64(s, 7, (int64_t)ev->seq);
        rc = step_done(s);
        /* An error about a brain, but not the store's own: the brain could not start. */
        if (rc == SQLITE_OK && ev->type == BJ_EV_ERROR && ev->brain[0] && strcmp(ev->cause, "STORE") != 0) {
            s = st->stmt[ST_NOT_STARTED];
            sqlite3_bind_int64(s, 1, run);
            sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
            rc = step_done(s);
        }
        break;
    default:
        return SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        (*rows)++;
    return rc;
}

/* Re-creates the database where the data directory now is (it was replaced or deleted). */
static void reopen_after_dir_change(struct bj_store *st)
{
    finalize_all(st);
    sqlite3_close(st->db);
    st->db = NULL;
    char err[300];
    int status;
    int rc = bj_mkdirs(st->dir);
    if (rc) {
        bj_error("store: data directory %s cannot be re-created: %s", st->dir, strerror(-rc));
        return;
    }
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    st->lock_fd = -1;
    if (take_lock(st, &status, err, sizeof err))
        bj_error("store: %s", err);
    bj_dir_identity(st->dir, &st->dir_dev, &st->dir_ino);
    if (open_writer_db(st, &status, err, sizeof err) || !st->info ||
        insert_run(st, st->info, bj_event_now(), err, sizeof err)) {
        bj_error("store: reopening %s failed: %s (retrying)", st->db_path, err);
        if (st->db) {
            finalize_all(st);
            sqlite3_close(st->db);
            st->db = NULL;
        }
        return;
    }
    pthread_mutex_lock(&st->rlock);
    sqlite3_close(st->rdb);
    st->rdb = open_db(st->db_path, false, 2000, err, sizeof err);
    pthread_mutex_unlock(&st->rlock);
    bj_warn("store: a new %s was made in the re-created data directory (run %" PRId64 "); earlier history is "
            "wherever the old directory went", st->db_path, st->run_id);
}

static void check_dir(struct bj_store *st)
{
    dev_t dev = 0;
    ino_t ino = 0;
    const char *why = NULL;
    if (bj_dir_identity(st->dir, &dev, &ino) != 0)
        why = "was deleted";
    else if (dev != st->dir_dev || ino != st->dir_ino)
        why = "was replaced";
    else if (access(st->db_path, F_OK) != 0)
        why = "lost its database file";
    if (!why)
        return;
    pthread_mutex_lock(&st->slock);
    st->stats.dir_changes++;
    pthread_mutex_unlock(&st->slock);
    char msg[PATH_MAX + 160];
    snprintf(msg, sizeof msg, "store: the data directory %s %s while running; writing goes on in a new one there",
             st->dir, why);
    bj_error("%s", msg);
    report(st, msg);
    reopen_after_dir_change(st);
}

/* Commits up to `batch` events of the backlog in one transaction. Returns 0 when they were
 * written (or there was nothing to write), -1 when the commit failed (they stay queued). */
static int flush(struct bj_store *st)
{
    if (st->len == 0)
        return 0;
    int64_t now = bj_now_us();
    if (now < st->retry_at_us)
        return -1;
    if (!st->db) {
        reopen_after_dir_change(st);
        if (!st->db) {
            st->backoff_us = st->backoff_us ? (st->backoff_us * 2 > 5000000 ? 5000000 : st->backoff_us * 2) : 100000;
            st->retry_at_us = now + st->backoff_us;
            return -1;
        }
    }
    size_t n = st->len < (size_t)st->p.batch ? st->len : (size_t)st->p.batch;
    int rows = 0, rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    int64_t last_us = 0;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        const struct queued *q = &st->backlog[(st->head + i) % st->cap];
        rc = write_event(st, q, &rows);
        if (q->ev.time_us > last_us)
            last_us = q->ev.time_us;
    }
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = st->stmt[ST_LAST_US];
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_int64(s, 2, last_us);
        rc = step_done(s);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "store: commit of %zu events failed: %s (%zu waiting; retrying)", n,
                 sqlite3_errmsg(st->db), st->len);
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        st->backoff_us = st->backoff_us ? (st->backoff_us * 2 > 5000000 ? 5000000 : st->backoff_us * 2) : 100000;
        st->retry_at_us = now + st->backoff_us;
        pthread_mutex_lock(&st->slock);
        bool first = !st->stats.failing;
        st->stats.failing = true;
        st->stats.commit_errors++;
        bj_strlcpy(st->stats.last_error, msg, sizeof st->stats.last_error);
        pthread_mutex_unlock(&st->slock);
        if (first || now - st->last_report_us > 10000000) {
            bj_error("%s", msg);
            report(st, msg);
            st->last_report_us = now;
        }
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        bj_event_clear(&st->backlog[(st->head + i) % st->cap].ev);
    st->head = (st->head + n) % st->cap;
    st->len -= n;
    bool recovered = false;
    pthread_mutex_lock(&st->slock);
    st->stats.rows += (uint64_t)rows;
    st->stats.commits++;
    st->stats.backlog = st->len;
    if (st->stats.failing) {
        st->stats.failing = false;
        recovered = true;
    }
    pthread_mutex_unlock(&st->slock);
    st->backoff_us = 0;
    st->retry_at_us = 0;
    if (recovered) {
        bj_info("store: writing works again (%zu events still waiting)", st->len);
        char msg[120];
        snprintf(msg, sizeof msg, "store: writing works again");
        report(st, msg);
    }
    if (st->need_journal_import && st->len == 0) {
        char e[200];
        int k = import_journal(st, e, sizeof e);
        if (k >= 0) {
            st->need_journal_import = false;
            bj_info("store: %d death%s that overflowed the backlog taken back from %s", k, k == 1 ? "" : "s",
                    BJ_STORE_JOURNAL_NAME);
        }
    }
    return 0;
}

static void *writer_main(void *arg)
{
    struct bj_store *st = arg;
    int64_t deadline = 0;    /* monotonic: when the oldest queued event must be committed */
    int64_t last_commit = 0; /* commits come as soon as the bus goes quiet, at most every 10 ms */
    const int64_t gap_us = 10000;
    bool bus_closed = false;
    for (;;) {
        int64_t now = bj_now_us();
        if (now - st->last_dir_check_us >= 1000000) {
            st->last_dir_check_us = now;
            check_dir(st);
        }
        bool stopping = atomic_load(&st->stopping);
        int wait_ms = 1000;
        if (st->len > 0) {
            int64_t due = last_commit + gap_us < deadline ? last_commit + gap_us : deadline;
            if (due < st->retry_at_us)
                due = st->retry_at_us;
            wait_ms = due <= now ? 0 : (int)((due - now + 999) / 1000);
        }
        if (stopping || bus_closed)
            wait_ms = 0;
        struct bj_event ev;
        int r = bus_closed ? -1 : bj_sub_next(st->sub, &ev, wait_ms);
        if (r == 1) {
            pthread_mutex_lock(&st->slock);
            st->stats.events++;
            pthread_mutex_unlock(&st->slock);
            if (ev.type == BJ_EV_TOKEN) {
                on_token(st, &ev);
                bj_event_clear(&ev);
            } else {
                if (st->len == 0)
                    deadline = bj_now_us() + (int64_t)st->p.commit_ms * 1000;
                backlog_push(st, &ev);
            }
        } else if (r < 0) {
            bus_closed = true;
        }
        now = bj_now_us();
        bool drained = r != 1; /* nothing more was waiting */
        bool quiet = r == 0 && now >= last_commit + gap_us;
        if (st->len > 0 && (st->len >= (size_t)st->p.batch || now >= deadline || quiet ||
                            ((stopping || bus_closed) && drained))) {
            if (flush(st) == 0) {
                last_commit = now;
                if (st->len > 0)
                    deadline = now; /* more than one batch was waiting */
            }
        }
        if ((stopping || bus_closed) && drained) {
            if (st->len == 0)
                break;
            /* The database fails: keep trying until stop's timeout. */
            int64_t wait = st->retry_at_us - bj_now_us();
            if (wait > 0) {
                struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
            if (atomic_load(&st->stop_timeout_ms) <= 0)
                break;
        }
    }
    return NULL;
}

int bj_store_start(struct bj_store *st, struct bj_bus *bus, char *err, size_t errlen)
{
    if (!st->db || st->run_id <= 0) {
        snprintf(err, errlen, "store: bj_store_begin_run must come first");
        return -1;
    }
    st->bus = bus;
    if (!st->p.report_bus)
        st->p.report_bus = bus;
    st->sub = bj_bus_subscribe(bus, "store", BJ_EV_ALL & ~BJ_EV_MASK(BJ_EV_STATUS), 4096);
    if (!st->sub) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->last_dir_check_us = bj_now_us();
    atomic_store(&st->stop_timeout_ms, 1);
    int rc = pthread_create(&st->thread, NULL, writer_main, st);
    if (rc) {
        snprintf(err, errlen, "store writer thread: %s", strerror(rc));
        bj_bus_unsubscribe(bus, st->sub);
        st->sub = NULL;
        return -1;
    }
    st->thread_started = true;
    return 0;
}

int bj_store_stop(struct bj_store *st, bool clean, int timeout_ms)
{
    if (!st || !st->thread_started)
        return 0;
    atomic_store(&st->stop_timeout_ms, timeout_ms);
    atomic_store(&st->stopping, true);
    /* The writer flushes and exits; past the timeout it is told to give up. */
    int64_t end = bj_now_us() + (int64_t)timeout_ms * 1000;
    while (pthread_tryjoin_np(st->thread, NULL) == EBUSY) {
        if (bj_now_us() >= end)
            atomic_store(&st->stop_timeout_ms, 0);
        struct timespec d = {0, 10 * 1000000L};
        nanosleep(&d, NULL);
    }
    st->thread_started = false;
    pthread_mutex_lock(&st->slock);
    st->stats.bus_dropped = bj_sub_dropped(st->sub);
    pthread_mutex_unlock(&st->slock);
    bj_bus_unsubscribe(st->bus, st->sub);
    st->sub = NULL;
    size_t lost = st->len;
    for (size_t i = 0; i < st->len; i++)
        bj_event_clear(&st->backlog[(st->head + i) % st->cap].ev);
    st->len = 0;
    if (lost)
        bj_error("store: %zu events could not be written before stopping (deaths are in %s)", lost,
                 BJ_STORE_JOURNAL_NAME);
    char e[200];
    sqlite3_stmt *s;
    pthread_mutex_lock(&st->slock);
    uint64_t overflow = st->stats.overflow;
    pthread_mutex_unlock(&st->slock);
    bool all = lost == 0 && overflow == 0;
    /* clean: the process stopped in order (the brains' lives ended without a death); lost:
     * events that never reached the database (deaths among them are in the journal). */
    if (st->db && sqlite3_prepare_v2(st->db, "UPDATE runs SET ended_us=?2, clean=?3, lost=?4 WHERE id=?1", -1, &s,
                                     NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_int64(s, 2, bj_event_now());
        sqlite3_bind_int(s, 3, clean);
        sqlite3_bind_int64(s, 4, (int64_t)(lost + overflow));
        int rc = step_done(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_OK) {
            bj_error("store: could not mark run %" PRId64 " ended: %s", st->run_id, sqlite3_errmsg(st->db));
            all = false;
        } else if (!clean) {
            /* Ended but not clean: the next open must not add UNCLEAN_EXIT deaths for it. */
            char sql[96];
            snprintf(sql, sizeof sql, "UPDATE runs SET recovered=1 WHERE id=%" PRId64, st->run_id);
            exec(st->db, sql, e, sizeof e);
        }
    }
    return all ? 0 : -1;
}

void bj_store_stats(struct bj_store *st, struct bj_store_stats *out)
{
    pthread_mutex_lock(&st->slock);
    *out = st->stats;
    pthread_mutex_unlock(&st->slock);
}

void bj_store_close(struct bj_store *st)
{
    if (!st)
        return;
    if (st->thread_started)
        bj_store_stop(st, false, 1000);
    finalize_all(st);
    if (st->db) {
        char e[100];
        exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", e, sizeof e);
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
    bind_text(*s, 1, brain);
    sqlite3_bind_int64(*s, 2, run);
    if (sqlite3_bind_parameter_count(*s) >= 4) {
        sqlite3_bind_int64(*s, 3, before_us > 0 ? before_us : INT64_MAX);
        sqlite3_bind_int(*s, 4, limit);
    }
    return 0;
}

/* Room for row n in the array v of *cap rows of `size` bytes (doubling from 64): returns the
 * array, or NULL with err when out of memory (v is then left as it was, for the caller to free). */
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
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    return n;
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
    int n = -1;
    if (prepare_read(st, "SELECT " THOUGHT_COLS " FROM thoughts WHERE (?1 IS NULL OR brain=?1) AND (?2=0 OR run=?2)"
                     " ORDER BY id", brain, run, 0, 0, &s, err, errlen))
        goto out;
    n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct bj_stored_thought t;
        row_thought(s, &t);
        int stop = fn(ud, &t);
        free(t.text);
        n++;
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(st->rdb));
        n = -1;
    }
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    return n;
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
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    return n;
}

int bj_store_read_runs(struct bj_store *st, struct bj_stored_run **out, char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&st->rlock);
    sqlite3_stmt *s = NULL;
    int n = -1, cap = 0;
    struct bj_stored_run *v = NULL;
    if (!st->rdb || sqlite3_prepare_v2(st->rdb,
            "SELECT r.id, r.started_us, COALESCE(r.ended_us,0), r.clean, r.recovered, COALESCE(r.pid,0),"
            " COALESCE(r.version,''), (SELECT COUNT(*) FROM run_brains b WHERE b.run=r.id),"
            " (SELECT COUNT(*) FROM deaths d WHERE d.run=r.id), (SELECT COUNT(*) FROM thoughts t WHERE t.run=r.id),"
            " r.config, r.argv FROM runs r ORDER BY r.id", -1, &s, NULL) != SQLITE_OK) {
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
    }
    *out = v;
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rlock);
    return n;
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
    }
    free(r);
}
