/* store_int: what the store's files share (store.c: opening and runs; store_schema.c: schema
 * and SQL helpers; store_recover.c: the journal's import and unclean runs; store_writer.c: the
 * writer thread; store_read.c: the read API). Not a public header: only src/sinks/store*.c. */
#ifndef BJ_STORE_INT_H
#define BJ_STORE_INT_H

#include "journal.h"
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


enum { ST_THOUGHT, ST_DEATH, ST_DEATH_BRAIN, ST_RES, ST_OBS, ST_OP, ST_NOTICE, ST_LINK, ST_NOT_STARTED,
       ST_LAST_US, ST_R_BRAIN, ST_R_THOUGHT, ST_R_DEATH, ST_R_RES, ST_QUARANTINE, ST_SAVEPOINT, ST_RELEASE,
       ST_ROLLBACK_TO, ST_IV, ST_REPORT, ST_COUNT };
extern const char *const bj_store_stmts[ST_COUNT];

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
    int schema_version;       /* of the database as opened (read-only: may be older) */
    bool ever_started;        /* bj_store_start ran: the run is not a refused start */
    bool journal_reported;    /* unparsable journal lines were reported (once per open) */
    bool set_aside;           /* a damaged database was moved aside at open */
    bool run_marked;          /* bj_store_stop recorded the run's end */
    char refused[200];        /* bj_store_refuse_run's reason; empty: the run ran */
    int64_t next_retain_us;   /* monotonic: the writer's next retention step */
    bool retain_full_reported; /* over --store-max-mb with nothing left to prune (said once) */

    pthread_mutex_t slock;    /* guards stats */
    struct bj_store_stats stats;
};

/* store_schema.c: SQL helpers. exec: 0 or -1 with err; step_done: one step, reset, SQLITE_OK or
 * the error code. */
int store_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
int64_t store_query_i64(sqlite3 *db, const char *sql, int64_t dflt);
void store_bind_text(sqlite3_stmt *s, int i, const char *t);
int store_step_done(sqlite3_stmt *s);
int store_migrate(sqlite3 *db, const char *path, int *status, char *err, size_t errlen);
sqlite3 *store_open_db(const char *path, bool read_only, int busy_ms, char *err, size_t errlen);
int store_prepare_all(struct bj_store *st, char *err, size_t errlen);
void store_finalize_all(struct bj_store *st);
/* PRAGMA quick_check (full: integrity_check) on db: 0 ok, 1 damaged (msg says how), -1 the check
 * itself could not run (msg says why). */
int store_check_db(sqlite3 *db, bool full, char *msg, size_t msglen);
/* store_read.c: ends a read on the reader connection (rlock held, s from it or NULL): a step that
 * stopped on an error (rc neither SQLITE_ROW nor SQLITE_DONE) is reported into err; s is
 * finalized and rlock released. Returns n, or -1 after an error. */
int store_read_end(struct bj_store *st, sqlite3_stmt *s, int rc, int n, char *err, size_t errlen);
/* store_lab.c: a run's experiment and arms (inside the run's transaction), and a BJ_EV_LAB
 * event as an interventions or self_reports row. SQLite result codes. */
int store_lab_insert_run(struct bj_store *st, const struct bj_lab_spec *lab);
int store_lab_event(struct bj_store *st, const struct bj_event *ev);

/* store.c */
void store_report(struct bj_store *st, const char *text);
int store_take_lock(struct bj_store *st, int *status, char *err, size_t errlen);
int store_open_writer_db(struct bj_store *st, int *status, char *err, size_t errlen);
int store_insert_run(struct bj_store *st, const struct bj_store_run_info *in, int64_t started_us, char *err,
                     size_t errlen);

/* store_retain.c: retention (writer connection). setup: at open, before the schema (a new
 * database gets incremental auto-vacuum; an old one is VACUUMed into it once when retention is
 * on). step: one batch of the oldest thoughts past keep_days or over max_bytes, deleted, and their
 * pages given back; *more when another batch is due at once. Returns rows deleted or -1. */
bool store_retain_on(const struct bj_store *st);
int store_retain_setup(struct bj_store *st, char *err, size_t errlen);
int store_retain_step(struct bj_store *st, bool *more);
/* Bytes of the database's pages in use (page_count - freelist_count, times page_size). */
int64_t store_used_bytes(sqlite3 *db);

/* store_recover.c: writer connection, outside a transaction. */
int store_import_journal(struct bj_store *st, char *err, size_t errlen);
int store_recover_unclean(struct bj_store *st, char *err, size_t errlen);
int store_backfill_journal(struct bj_store *st, char *err, size_t errlen);
/* Takes each brain's count from crash_reports.counts (deaths whose lines failed) where it is
 * higher than the store's; the deaths in between are added to the lost of the run that never
 * ended. Returns deaths found lost, or -1. */
int store_apply_counts(struct bj_store *st, char *err, size_t errlen);

#endif
