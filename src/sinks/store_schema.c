/* store_schema: the store's schema (versioned, migrated forward), its prepared statements and
 * the small SQL helpers every store file uses. See store.h. */
#include "store_int.h"

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
    /* 2 -> 3: brains of other nodes, keyed by (node, brain), in tables of their own: a remote event
     * never touches a local brain's row or count, whatever name it carries, and nothing in them
     * refers to a local row (nothing a peer sends can break a constraint). Events the database
     * refused for a reason in their data wait in quarantine with the reason. */
    "CREATE TABLE remote_brains("
    "  node TEXT NOT NULL, brain TEXT NOT NULL, deaths INTEGER NOT NULL DEFAULT 0, first_run INTEGER,"
    "  last_run INTEGER, first_us INTEGER, last_us INTEGER, PRIMARY KEY(node, brain));"
    "CREATE TABLE remote_thoughts("
    "  id INTEGER PRIMARY KEY, run INTEGER, node TEXT NOT NULL, brain TEXT NOT NULL, crash_count INTEGER,"
    "  thought INTEGER, text TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE INDEX remote_thoughts_brain ON remote_thoughts(node, brain, time_us);"
    "CREATE TABLE remote_deaths("
    "  id INTEGER PRIMARY KEY, run INTEGER, node TEXT NOT NULL, brain TEXT NOT NULL, count INTEGER,"
    "  cause TEXT, text TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE INDEX remote_deaths_brain ON remote_deaths(node, brain, time_us);"
    "CREATE TABLE remote_resurrections("
    "  id INTEGER PRIMARY KEY, run INTEGER, node TEXT NOT NULL, brain TEXT NOT NULL, crash_count INTEGER,"
    "  text TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE TABLE quarantine("
    "  id INTEGER PRIMARY KEY, run INTEGER, type TEXT, node TEXT, brain TEXT, reason TEXT NOT NULL,"
    "  event TEXT, time_us INTEGER, seq INTEGER);"
    "ALTER TABLE runs ADD COLUMN refused TEXT;",
    /* 3 -> 4: the lab (docs/LAB.md): the experiment of a run, its arms, every act on a brain's
     * memory (and each question asked, each clone divergence measured), the self-reports */
    "CREATE TABLE experiments("
    "  run INTEGER PRIMARY KEY REFERENCES runs(id), name TEXT, question TEXT, replicates INTEGER, seed INTEGER,"
    "  duration_s REAL, n_interventions INTEGER, n_questions INTEGER);"
    "CREATE TABLE conditions("
    "  run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, idx INTEGER NOT NULL, remembers_deaths INTEGER,"
    "  knows_watched INTEGER, others_exist INTEGER, interventions TEXT, PRIMARY KEY(run, name));"
    "CREATE TABLE interventions("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL, condition TEXT,"
    "  replicate INTEGER, name TEXT, kind TEXT NOT NULL, trigger TEXT, ok INTEGER, life INTEGER, thought INTEGER,"
    "  jar_used INTEGER, change TEXT, time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE INDEX interventions_run ON interventions(run, condition);"
    "CREATE TABLE self_reports("
    "  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), brain TEXT NOT NULL, condition TEXT,"
    "  replicate INTEGER, question TEXT NOT NULL, life INTEGER, thought INTEGER, text TEXT, score INTEGER,"
    "  time_us INTEGER NOT NULL, seq INTEGER);"
    "CREATE INDEX self_reports_run ON self_reports(run, condition, question);",
};
_Static_assert(sizeof k_migrations / sizeof k_migrations[0] == BJ_STORE_SCHEMA_VERSION, "one migration per version");

const char *const bj_store_stmts[ST_COUNT] = {
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
    [ST_R_BRAIN] = "INSERT INTO remote_brains(node,brain,deaths,first_run,last_run,first_us,last_us)"
                   " VALUES(?1,?2,?3,?4,?4,?5,?5) ON CONFLICT(node,brain) DO UPDATE SET"
                   " deaths=MAX(deaths,excluded.deaths), last_run=excluded.last_run, last_us=excluded.last_us",
    [ST_R_THOUGHT] = "INSERT INTO remote_thoughts(run,node,brain,crash_count,thought,text,time_us,seq)"
                     " VALUES(?,?,?,?,?,?,?,?)",
    [ST_R_DEATH] = "INSERT INTO remote_deaths(run,node,brain,count,cause,text,time_us,seq) VALUES(?,?,?,?,?,?,?,?)",
    [ST_R_RES] = "INSERT INTO remote_resurrections(run,node,brain,crash_count,text,time_us,seq)"
                 " VALUES(?,?,?,?,?,?,?)",
    [ST_QUARANTINE] = "INSERT INTO quarantine(run,type,node,brain,reason,event,time_us,seq) VALUES(?,?,?,?,?,?,?,?)",
    [ST_IV] = "INSERT INTO interventions(run,brain,condition,replicate,name,kind,trigger,ok,life,thought,jar_used,"
              "change,time_us,seq) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_REPORT] = "INSERT INTO self_reports(run,brain,condition,replicate,question,life,thought,text,score,time_us,seq)"
                  " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
    [ST_SAVEPOINT] = "SAVEPOINT ev",
    [ST_RELEASE] = "RELEASE ev",
    [ST_ROLLBACK_TO] = "ROLLBACK TO ev",
};

const char *bj_store_migration_sql(int from)
{
    return from >= 0 && from < BJ_STORE_SCHEMA_VERSION ? k_migrations[from] : NULL;
}

/* ---- small SQL helpers ---------------------------------------------------------------------- */

int store_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
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

int64_t store_query_i64(sqlite3 *db, const char *sql, int64_t dflt)
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

void store_bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t && *t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

int store_step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int store_migrate(sqlite3 *db, const char *path, int *status, char *err, size_t errlen)
{
    int64_t v = store_query_i64(db, "PRAGMA user_version", -1);
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
        if (store_exec(db, "BEGIN IMMEDIATE", e, sizeof e) || store_exec(db, k_migrations[k], e, sizeof e) ||
            store_exec(db, sql, e, sizeof e) || store_exec(db, "COMMIT", e, sizeof e)) {
            char e2[8];
            store_exec(db, "ROLLBACK", e2, sizeof e2);
            snprintf(err, errlen, "%s: migration to schema %" PRId64 " failed: %s", path, k + 1, e);
            return -1;
        }
        if (v > 0)
            bj_info("%s: schema migrated from version %" PRId64 " to %" PRId64, path, k, k + 1);
    }
    return 0;
}

sqlite3 *store_open_db(const char *path, bool read_only, int busy_ms, char *err, size_t errlen)
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
    if (store_exec(db, "PRAGMA foreign_keys=ON", e, sizeof e)) {
        snprintf(err, errlen, "%s: %s", path, e);
        sqlite3_close(db);
        return NULL;
    }
    if (!read_only) {
        if (store_exec(db, "PRAGMA journal_mode=WAL", e, sizeof e) || store_exec(db, "PRAGMA synchronous=NORMAL", e, sizeof e)) {
            snprintf(err, errlen, "%s: %s", path, e);
            sqlite3_close(db);
            return NULL;
        }
    }
    return db;
}

int store_prepare_all(struct bj_store *st, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, bj_store_stmts[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", st->db_path, sqlite3_errmsg(st->db));
            return -1;
        }
    }
    return 0;
}

void store_finalize_all(struct bj_store *st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(st->stmt[i]);
        st->stmt[i] = NULL;
    }
}


int store_check_db(sqlite3 *db, bool full, char *msg, size_t msglen)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)", -1, &s, NULL);
    if (rc != SQLITE_OK) {
        snprintf(msg, msglen, "%s", sqlite3_errmsg(db));
        rc = sqlite3_extended_errcode(db) & 0xff;
        return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? 1 : -1;
    }
    size_t used = 0;
    msg[0] = '\0';
    bool ok = false;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(s, 0);
        if (line && strcmp(line, "ok") == 0) {
            ok = true;
            break;
        }
        if (used < msglen)
            used += (size_t)snprintf(msg + used, msglen - used, "%s%s", used ? "; " : "", line ? line : "?");
    }
    int primary = rc & 0xff;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && !msg[0])
        snprintf(msg, msglen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(s);
    if (ok)
        return 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && primary != SQLITE_CORRUPT && primary != SQLITE_NOTADB)
        return -1;
    return 1;
}
