/* store: the history of every run in SQLite, fed by the bus; the source of truth for history.
 *
 * One database file, <data dir>/brainjar.db, in WAL mode with foreign keys on. The schema is
 * versioned with PRAGMA user_version and migrated forward at open; nothing is ever dropped.
 * Tables: runs (config, hive file text, model hashes, seeds, versions, start/end, clean flag),
 * brains (death count so far, alive), run_brains, thoughts (full text, tokens, start/end, life),
 * deaths (cause, count, time, jar use; unique per brain and count), resurrections, operator
 * actions, observations, notices (errors, watchdog stages, budget reports) and link events.
 * Brains of other nodes (events with `node` set: THOUGHT, DEATH, RESURRECTION from peer links)
 * have tables of their own keyed by (node, brain): remote_brains, remote_thoughts, remote_deaths,
 * remote_resurrections; a remote event never changes a local brain's row, count or life.
 *
 * Durability: a writer thread takes events from its bus subscription and commits them in small
 * transactions: as soon as the bus goes quiet (at most one commit per 10 ms), and at the latest
 * `commit_ms` after an event or every `batch` events. A commit in WAL mode with
 * synchronous=NORMAL survives a kill of the process (not a power cut: the deaths of the journal,
 * crash_reports.log, are fdatasync'ed and re-imported from there at the next open). When a commit
 * fails (full disk, read-only directory, locked database) the batch is kept, the failure is
 * reported (log, an ERROR event, the stats below) and retried with backoff (100 ms doubling to
 * 5 s); the writer never exits and never blocks the hive. Each event is written in a savepoint
 * of its own: one refused for its data (a constraint, a type, a size) is rolled back alone and
 * kept in the quarantine table with the reason, and the batch goes on. Events wait in a backlog bounded by
 * `backlog_max`; what overflows is counted and reported, and deaths lost that way are taken back
 * from the journal as soon as writing works again.
 *
 * Start-up (bj_store_new, on the main thread before the hive exists): one daemon per data
 * directory (brainjar.lock, holding the owner's pid, under an flock); the journal's torn last line
 * is cut; PRAGMA quick_check, and a damaged database is moved aside (brainjar.db.damaged-TIME)
 * and a fresh one started; deaths in the journal that the store lacks are imported, and deaths the
 * journal lacks (their lines failed) are written back into it; a previous run that never
 * ended cleanly gets, once, one UNCLEAN_EXIT death for each of its brains that was alive (in the
 * store and as a journal line). bj_store_brain_deaths() then gives the counts to continue from.
 *
 * Threads: open/begin_run/brain_deaths/start/stop/close on one thread (main); the writer is its
 * own thread; the read API (bj_store_read_*) and bj_store_stats from any thread (its own
 * connection under its own lock). */
#ifndef BJ_STORE_H
#define BJ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "lab.h"

#define BJ_STORE_SCHEMA_VERSION 4
#define BJ_STORE_DB_NAME "brainjar.db"
#define BJ_STORE_LOCK_NAME "brainjar.lock"

struct bj_store;

struct bj_store_params {
    const char *data_dir;   /* created when missing */
    int commit_ms;          /* longest time between an event and its commit (100) */
    int batch;              /* events per transaction at most (512) */
    size_t backlog_max;     /* events held in memory while commits fail (100000) */
    bool read_only;         /* export/runs: no lock, no migration, no writer, no repairs */
    struct bj_bus *report_bus; /* where failures are published as ERROR events; may be NULL */
    /* test hook: the writer's database is opened with this busy timeout (ms, default 50) */
    int busy_timeout_ms;
    /* crash_reports.log is rotated past this size (bj_store_rotate_journal; 0: never), keeping
     * `journal_keep` older files (.1 newest). Defaults 64 MiB, 5. */
    uint64_t journal_max_bytes;
    int journal_keep;
    /* Retention (weeks on an SD card): thoughts (local and remote) that ended more than
     * keep_days ago, and the oldest ones while the database's pages in use pass max_bytes, are
     * deleted in batches of 256 by the writer (about once a second, at once while behind) and
     * their pages given back by incremental vacuum. Deaths, resurrections, runs, brains, notices
     * and the rest are never pruned. 0: off (the default). A database made before retention
     * existed is VACUUMed once into incremental auto-vacuum at the first open with retention on. */
    int keep_days;
    uint64_t max_bytes;
};
void bj_store_params_default(struct bj_store_params *p);

/* Opens (and for writers: locks, migrates, repairs, recovers) the store. NULL with err on
 * failure; *status is the exit status the failure deserves: 2 when another process holds the
 * data directory (err names its pid) or the schema is newer than this binary, 1 otherwise. */
struct bj_store *bj_store_new(const struct bj_store_params *p, int *status, char *err, size_t errlen);

/* bj_store_new read-only on data_dir's database, the other settings their defaults: for the
 * commands that read what a daemon stored (history, reports, a replay's source). */
struct bj_store *bj_store_new_reader(const char *data_dir, int *status, char *err, size_t errlen);

/* What a run is, recorded by bj_store_begin_run. Strings may be NULL. */
struct bj_store_brain_info {
    const char *id, *role, *model;
    long jar_tokens;
    uint32_t seed;
};
struct bj_store_run_info {
    const char *config;        /* the effective settings, as text (JSON) */
    const char *hive_text;     /* the hive file's text, when one was used */
    const char *models;        /* model files and their hashes, as text (JSON) */
    const char *seeds;         /* as text */
    const char *version, *llama_version;
    const char *argv;          /* the command line, for --replay */
    int pause_ms;
    int n_brains;
    const struct bj_store_brain_info *brains;
    const struct bj_lab_spec *lab; /* the experiment (lab.h), or NULL; must outlive the store */
};
/* The lab's rows (interventions and self_reports, in time order) of a run (0: all) and brain
 * (NULL: all), to fn until it returns non-zero. Strings live for the call. Returns the count or -1
 * with err; 0 for a database from before the lab. Any thread (the read connection). */
struct bj_stored_lab {
    const char *kind;      /* "intervention" (also asks and clone divergences) or "self_report" */
    int64_t run;
    const char *brain, *condition; /* condition NULL outside an experiment */
    int replicate;
    const char *name;      /* the intervention's or the question's id */
    const char *action;    /* erase, inject, ..., ask, divergence; "answer" for self-reports */
    int life, thought;
    const char *text;      /* what it changed (JSON), or the answer */
    int score;             /* self-reports: 0-100, -1: none */
    int64_t time_us;
};
int bj_store_each_lab(struct bj_store *st, const char *brain, int64_t run,
                      int (*fn)(void *ud, const struct bj_stored_lab *row), void *ud, char *err, size_t errlen);

/* An experiment run as the report needs it: its experiment, its arms (in order) and each brain
 * copy with its arm (index in conditions, -1: none), replicate and counts this run. */
struct bj_store_lab_brain {
    char id[64], name[64];
    int condition, replicate;
    int deaths, thoughts;
};
struct bj_store_lab_run {
    int64_t run, started_us, ended_us, seed;
    char *name, *question;
    int replicates;
    char **conditions;
    int n_conditions;
    struct bj_store_lab_brain *brains;
    int n_brains;
};
/* 0, or -1 with err (no such experiment run, a database from before the lab). Free with
 * bj_store_lab_run_free (also after a failure). Any thread. */
int bj_store_read_lab_run(struct bj_store *st, int64_t run, struct bj_store_lab_run *out, char *err, size_t errlen);
void bj_store_lab_run_free(struct bj_store_lab_run *r);

/* Records a new run (and its brains). Returns the run id (> 0) or -1 with err. Main thread,
 * before bj_store_start. */
int64_t bj_store_begin_run(struct bj_store *st, const struct bj_store_run_info *info, char *err, size_t errlen);

/* Rotates crash_reports.log when it is past journal_max_bytes (name -> name.1 -> ... ->
 * name.<keep>; the oldest is dropped). Returns 1 when it rotated (whoever holds the file open
 * must reopen it: bj_hive_reopen_logs), 0 when not needed, -1 on error (logged). Main thread;
 * bj_store_new does it once before the hive opens the journal. */
int bj_store_rotate_journal(struct bj_store *st);

/* Deaths so far of brain `id` in this data directory (0 for a new brain). */
uint32_t bj_store_brain_deaths(struct bj_store *st, const char *id);
/* UNCLEAN_EXIT deaths recorded by this open (for the log and tests). */
int bj_store_unclean_recorded(const struct bj_store *st);

/* Subscribes to `bus` and starts the writer thread. 0 or -1 with err. */
int bj_store_start(struct bj_store *st, struct bj_bus *bus, char *err, size_t errlen);
/* Writes what is queued (waiting up to timeout_ms for the commit when the database fails), marks
 * the run ended (clean when everything was written and `clean`), stops the writer and
 * unsubscribes. Call after the publishers have stopped. Returns 0 when everything was written. */
int bj_store_stop(struct bj_store *st, bool clean, int timeout_ms);
/* The run never ran (a start refused or abandoned before the hive ran, e.g. a bad model, a port
 * in use, a SIGTERM during start): bj_store_stop then records it ended, not clean, with this
 * reason in runs.refused, and it never gets UNCLEAN_EXIT deaths. bj_store_stop also records the
 * end when bj_store_start was never called. NULL st is fine. */
void bj_store_refuse_run(struct bj_store *st, const char *reason);
/* Closes everything and releases the lock. NULL is fine. */
void bj_store_free(struct bj_store *st);

struct bj_store_stats {
    uint64_t events;        /* taken from the bus */
    uint64_t rows;          /* rows committed */
    uint64_t commits;
    uint64_t commit_errors; /* failed commits (each retried) */
    uint64_t overflow;      /* events dropped because the backlog was full */
    uint64_t dir_changes;   /* times the data directory was found replaced or deleted */
    uint64_t backlog;       /* events waiting now */
    uint64_t backlog_peak;
    uint64_t bus_dropped;   /* events the bus dropped for the store's subscription */
    uint64_t quarantined;   /* events refused for their data, kept in the quarantine table */
    uint64_t unwritable;    /* events refused even by the quarantine table (lost) */
    uint64_t pruned;        /* thoughts deleted by retention */
    bool failing;           /* the last commit failed */
    int64_t run_id;
    char last_error[200];
};
void bj_store_stats(struct bj_store *st, struct bj_store_stats *out);

/* ---- read API: any thread; results are owned by the caller ------------------------------- */
struct bj_stored_thought {
    int64_t id, run;
    char brain[32];
    uint32_t life, thought;
    int64_t started_us, ended_us;
    int tokens;
    bool complete;
    char *text;
};
struct bj_stored_death {
    int64_t id, run;
    char brain[32];
    uint32_t count;
    char cause[24];
    int64_t time_us;
    int32_t jar_used, jar_tokens;
};
struct bj_stored_run {
    int64_t id, started_us, ended_us; /* ended_us 0: still running, or it died */
    bool clean, recovered;
    int pid;
    char version[32];
    int n_brains;
    uint64_t deaths, thoughts;
    uint64_t lost;          /* events that never reached the store (deaths: crash_reports.counts) */
    char *config, *argv;
    char *refused;          /* the run never started: why (NULL: it ran) */
};

/* Thoughts of `brain` (NULL: every brain) in run `run` (0: any) that ended before `before_us`
 * (0: now), newest first, at most `limit`. *out is malloc'ed (free with bj_store_free_thoughts).
 * Returns the count, or -1 with err. */
int bj_store_read_thoughts(struct bj_store *st, const char *brain, int64_t run, int64_t before_us, int limit,
                           struct bj_stored_thought **out, char *err, size_t errlen);
void bj_store_free_thoughts(struct bj_stored_thought *t, int n);
/* Deaths, the same way (oldest first when oldest_first). */
int bj_store_read_deaths(struct bj_store *st, const char *brain, int64_t run, int64_t before_us, int limit,
                         bool oldest_first, struct bj_stored_death **out, char *err, size_t errlen);
/* Every run, oldest first. */
int bj_store_read_runs(struct bj_store *st, struct bj_stored_run **out, char *err, size_t errlen);
void bj_store_free_runs(struct bj_stored_run *r, int n);

/* Deaths of `brain` recorded before run `run` started (its count at that run's start), for
 * replaying a run with the counts it began with. */
uint32_t bj_store_deaths_before_run(struct bj_store *st, const char *brain, int64_t run);

/* Calls fn for every thought matching (brain, run), oldest first, without holding them all in
 * memory (export). Returns rows visited or -1 with err. */
int bj_store_each_thought(struct bj_store *st, const char *brain, int64_t run,
                          int (*fn)(void *ud, const struct bj_stored_thought *t), void *ud, char *err, size_t errlen);

/* The SQL that takes a database from schema `from` to from+1 (tests make old databases with it). */
const char *bj_store_migration_sql(int from);

/* Checks the database (full: PRAGMA integrity_check; else quick_check) through the read
 * connection: 0 sound, 1 damaged, -1 the check could not run; msg says what was found. Any
 * thread. (bj_store_new runs the quick check itself and moves a damaged database aside.) */
int bj_store_check(struct bj_store *st, bool full, char *msg, size_t msglen);

/* The database file's path. */
const char *bj_store_path(const struct bj_store *st);

#endif
