/* Unit tests of the store: schema and migrations, batching, restored counts, unclean exits,
 * the journal (import, torn lines), a full disk, the bounded backlog, the lock, a vanished
 * data directory, and the read API. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "bus.h"
#include "journal.h"
#include "log.h"
#include "logfile.h"
#include "store.h"
#include "util.h"

static char g_dir[512];

static void make_dir(const char *tag)
{
    const char *base = getenv("BJ_TEST_TMP") ? getenv("BJ_TEST_TMP") : "/tmp";
    bj_mkdirs(base);
    snprintf(g_dir, sizeof g_dir, "%s/store-%s-%d-XXXXXX", base, tag, (int)getpid());
    assert_non_null(mkdtemp(g_dir));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct bj_store *open_store(int *status)
{
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = g_dir;
    char err[512] = "";
    int s = 0;
    struct bj_store *st = bj_store_new(&p, &s, err, sizeof err);
    if (status)
        *status = s;
    if (!st && !status)
        fail_msg("open: %s", err);
    return st;
}

static const struct bj_store_brain_info k_brains[] = {
    {.id = "SUBJECT", .role = "subject", .jar_tokens = 512, .seed = 1},
    {.id = "OBSERVER", .role = "observer", .jar_tokens = 512, .seed = 2},
};

static void begin(struct bj_store *st, int pause_ms)
{
    struct bj_store_run_info ri = {.config = "{\"mode\":\"matrix\"}", .version = "test", .pause_ms = pause_ms,
                                   .n_brains = 2, .brains = k_brains, .argv = "brainjar run"};
    char err[256];
    assert_true(bj_store_begin_run(st, &ri, err, sizeof err) > 0);
}

static void pub(struct bj_bus *bus, enum bj_event_type t, const char *brain, uint32_t count, uint32_t thought,
                const char *text, const char *cause)
{
    struct bj_event ev = {.type = t, .crash_count = count, .thought = thought, .complete = true};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    if (cause)
        bj_strlcpy(ev.cause, cause, sizeof ev.cause);
    ev.text = text ? strdup(text) : NULL;
    bj_bus_publish(bus, &ev);
    free(ev.text);
}

static int64_t q(const char *sql)
{
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_STORE_DB_NAME, g_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void wait_rows(struct bj_store *st, uint64_t rows, int ms)
{
    struct bj_store_stats ss;
    for (int i = 0; i < ms / 10; i++) {
        bj_store_stats(st, &ss);
        if (ss.rows >= rows)
            return;
        sleep_ms(10);
    }
    bj_store_stats(st, &ss);
    fail_msg("only %llu of %llu rows written", (unsigned long long)ss.rows, (unsigned long long)rows);
}

static void test_schema(void **state)
{
    (void)state;
    make_dir("schema");
    struct bj_store *st = open_store(NULL);
    assert_int_equal(q("PRAGMA user_version"), BJ_STORE_SCHEMA_VERSION);
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_STORE_DB_NAME, g_dir);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
    bj_store_free(st);
}

static void test_migration_from_v1(void **state)
{
    (void)state;
    make_dir("migrate");
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_STORE_DB_NAME, g_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, bj_store_migration_sql(0), NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=1;"
                                      "INSERT INTO runs(id,started_us,ended_us,clean) VALUES(1,1000,2000,1);"
                                      "INSERT INTO brains(id,deaths) VALUES('SUBJECT',7);"
                                      "INSERT INTO deaths(run,brain,count,cause,time_us) VALUES(1,'SUBJECT',7,'JAR_FULL',1500);",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct bj_store *st = open_store(NULL);
    assert_int_equal(q("PRAGMA user_version"), BJ_STORE_SCHEMA_VERSION);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths"), 1); /* nothing dropped */
    assert_int_equal(q("SELECT COUNT(*) FROM notices"), 0); /* the v2 table exists */
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 7);
    assert_int_equal(bj_store_unclean_recorded(st), 0); /* the old run ended cleanly */
    bj_store_free(st);
    /* A schema newer than this binary is refused with status 2. */
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL);
    sqlite3_close(db);
    int status = 0;
    assert_null(open_store(&status));
    assert_int_equal(status, 2);
}

static void test_batching_and_restore(void **state)
{
    (void)state;
    make_dir("batch");
    struct bj_store *st = open_store(NULL);
    begin(st, 0);
    struct bj_bus *bus = bj_bus_new();
    char err[256];
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    for (int i = 1; i <= 1000; i++) {
        pub(bus, BJ_EV_TOKEN, "SUBJECT", 0, (uint32_t)i, "a", NULL);
        pub(bus, BJ_EV_TOKEN, "SUBJECT", 0, (uint32_t)i, "b", NULL);
        pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, (uint32_t)i, "ab", NULL);
    }
    pub(bus, BJ_EV_DEATH, "SUBJECT", 1, 0, NULL, "JAR_FULL");
    pub(bus, BJ_EV_RESURRECTION, "SUBJECT", 1, 0, NULL, NULL);
    pub(bus, BJ_EV_DEATH, "OBSERVER", 1, 0, NULL, "OPERATOR");
    /* Committed within the latency bound, in transactions of at most `batch` events. */
    wait_rows(st, 1003, 2000);
    struct bj_store_stats ss;
    bj_store_stats(st, &ss);
    assert_true(ss.commits >= 2);
    assert_int_equal(bj_store_stop(st, true, 2000), 0);
    bj_store_free(st);
    assert_int_equal(q("SELECT COUNT(*) FROM thoughts"), 1000);
    assert_int_equal(q("SELECT tokens FROM thoughts WHERE thought=5"), 2);
    assert_int_equal(q("SELECT COUNT(*) FROM thoughts WHERE started_us IS NULL"), 0);
    assert_int_equal(q("SELECT clean FROM runs"), 1);

    /* Counts come back at the next open; a clean run adds no UNCLEAN_EXIT. */
    st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 1);
    assert_int_equal(bj_store_brain_deaths(st, "OBSERVER"), 1);
    assert_int_equal(bj_store_brain_deaths(st, "GOD"), 0);
    assert_int_equal(bj_store_unclean_recorded(st), 0);
    struct bj_stored_thought *t;
    int n = bj_store_read_thoughts(st, "SUBJECT", 0, 0, 10, &t, err, sizeof err);
    assert_int_equal(n, 10);
    assert_int_equal(t[0].thought, 1000); /* newest first */
    assert_string_equal(t[0].text, "ab");
    int64_t before = t[4].ended_us;
    bj_store_free_thoughts(t, n);
    n = bj_store_read_thoughts(st, "SUBJECT", 0, before, 3, &t, err, sizeof err);
    assert_int_equal(n, 3);
    assert_true(t[0].ended_us < before);
    bj_store_free_thoughts(t, n);
    struct bj_stored_run *r;
    n = bj_store_read_runs(st, &r, err, sizeof err);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].deaths, 2);
    assert_int_equal(r[0].thoughts, 1000);
    bj_store_free_runs(r, n);
    bj_store_free(st);
    bj_bus_free(bus);
}

static void pub_remote(struct bj_bus *bus, enum bj_event_type t, const char *node, const char *brain,
                       uint32_t count, const char *text)
{
    struct bj_event ev = {.type = t, .crash_count = count, .thought = 1, .complete = true};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    bj_strlcpy(ev.node, node, sizeof ev.node);
    if (t == BJ_EV_DEATH)
        bj_strlcpy(ev.cause, "OUT_OF_MEMORY", sizeof ev.cause);
    ev.text = text ? strdup(text) : NULL;
    bj_bus_publish(bus, &ev);
    free(ev.text);
}

/* Remote brains have rows of their own, keyed by (node, brain): a peer's SUBJECT with a forged
 * count never changes the local SUBJECT's row or its restored count, and a brain unknown to the
 * store (no row) neither stops the writer nor is retried forever: it waits in quarantine. */
static void test_remote_and_quarantine(void **state)
{
    (void)state;
    make_dir("remote");
    struct bj_store *st = open_store(NULL);
    begin(st, 0);
    struct bj_bus *bus = bj_bus_new();
    char err[256];
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    pub(bus, BJ_EV_DEATH, "SUBJECT", 3, 0, NULL, "JAR_FULL");
    pub_remote(bus, BJ_EV_THOUGHT, "NEURAL_NODE_4821", "PEER", 4, "far away");
    pub_remote(bus, BJ_EV_DEATH, "NEURAL_NODE_4821", "PEER", 5, "the jar broke");
    pub_remote(bus, BJ_EV_RESURRECTION, "NEURAL_NODE_4821", "PEER", 5, "back");
    pub_remote(bus, BJ_EV_DEATH, "EVIL", "SUBJECT", 100000, "forged");
    pub_remote(bus, BJ_EV_RESURRECTION, "EVIL", "SUBJECT", 100000, NULL);
    pub_remote(bus, BJ_EV_THOUGHT, "B", "SUBJECT", 7, "same name, other node");
    /* a local thought of a brain the run never declared: no brains row, a foreign key fails */
    pub(bus, BJ_EV_THOUGHT, "STRANGER", 0, 1, "who am I", NULL);
    pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, 1, "after the stranger", NULL);
    wait_rows(st, 8, 3000);
    struct bj_store_stats ss;
    bj_store_stats(st, &ss);
    assert_int_equal(ss.quarantined, 1);
    assert_false(ss.failing);
    assert_int_equal(bj_store_stop(st, true, 2000), 0);
    bj_store_free(st);
    assert_int_equal(q("SELECT deaths FROM brains WHERE id='SUBJECT'"), 3);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths"), 1);
    assert_int_equal(q("SELECT COUNT(*) FROM thoughts"), 1);
    assert_int_equal(q("SELECT life FROM thoughts WHERE brain='SUBJECT'"), 1); /* not 100001 */
    assert_int_equal(q("SELECT COUNT(*) FROM remote_brains"), 3);
    assert_int_equal(q("SELECT deaths FROM remote_brains WHERE node='NEURAL_NODE_4821' AND brain='PEER'"), 5);
    assert_int_equal(q("SELECT deaths FROM remote_brains WHERE node='EVIL' AND brain='SUBJECT'"), 100000);
    assert_int_equal(q("SELECT COUNT(*) FROM remote_thoughts WHERE text='far away' AND crash_count=4"), 1);
    assert_int_equal(q("SELECT COUNT(*) FROM remote_deaths WHERE node='NEURAL_NODE_4821' AND count=5"
                       " AND cause='OUT_OF_MEMORY'"), 1);
    assert_int_equal(q("SELECT COUNT(*) FROM remote_resurrections"), 2);
    assert_int_equal(q("SELECT COUNT(*) FROM quarantine WHERE brain='STRANGER' AND reason LIKE '%FOREIGN KEY%'"
                       " AND event LIKE '%who am I%'"), 1);
    assert_int_equal(q("SELECT lost FROM runs"), 0);
    assert_int_equal(q("SELECT clean FROM runs"), 1);
    st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 3);
    assert_int_equal(bj_store_brain_deaths(st, "PEER"), 0);
    bj_store_free(st);
    bj_bus_free(bus);
}

/* A child writes events and dies without stopping (as a kill -9 would); the parent reopens. */
static void child_dies(int pause_ms, bool observer_dead)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct bj_store *st = open_store(NULL);
        begin(st, pause_ms);
        struct bj_bus *bus = bj_bus_new();
        char err[256];
        if (bj_store_start(st, bus, err, sizeof err))
            _exit(3);
        pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, 1, "I think", NULL);
        if (observer_dead)
            pub(bus, BJ_EV_DEATH, "OBSERVER", bj_store_brain_deaths(st, "OBSERVER") + 1, 0, NULL, "JAR_FULL");
        sleep_ms(400); /* committed (100 ms latency bound) */
        _exit(0);      /* no stop, no close: the run never ends */
    }
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

static void test_unclean_exit(void **state)
{
    (void)state;
    make_dir("unclean");
    /* Pause long: the OBSERVER died and was still waiting to come back: only SUBJECT was alive. */
    child_dies(60000, true);
    struct bj_store *st = open_store(NULL);
    assert_int_equal(bj_store_unclean_recorded(st), 1);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 1);
    assert_int_equal(bj_store_brain_deaths(st, "OBSERVER"), 1);
    bj_store_free(st);
    /* Recorded once: another open adds nothing. */
    st = open_store(NULL);
    assert_int_equal(bj_store_unclean_recorded(st), 0);
    bj_store_free(st);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths WHERE cause='UNCLEAN_EXIT'"), 1);
    assert_int_equal(q("SELECT COUNT(*) FROM runs WHERE recovered=1 AND clean=0"), 1);
    /* Pause 0: a dead brain resurrects at once, so both count as alive. */
    child_dies(0, true);
    st = open_store(NULL);
    assert_int_equal(bj_store_unclean_recorded(st), 2);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 2);
    assert_int_equal(bj_store_brain_deaths(st, "OBSERVER"), 3); /* JAR_FULL #2, UNCLEAN_EXIT #3 */
    bj_store_free(st);
    /* The journal has one line per UNCLEAN_EXIT, and the store re-imports nothing twice. */
    char path[600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/" BJ_JOURNAL_NAME, g_dir);
    assert_int_equal(bj_read_file(path, &text, &len), 0);
    int lines = 0;
    for (char *p = text; (p = strstr(p, "UNCLEAN_EXIT")); p++)
        lines++;
    free(text);
    assert_int_equal(lines, 3);
    st = open_store(NULL);
    bj_store_free(st);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths WHERE cause='UNCLEAN_EXIT'"), 3);
}

static void test_journal_import_and_torn_line(void **state)
{
    (void)state;
    make_dir("journal");
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_JOURNAL_NAME, g_dir);
    FILE *f = fopen(path, "w");
    fputs("2026-11-25T13:40:55.5Z - CRASH #1: GOD JAR_FULL (jar full)\n"
          "2026-11-25T13:40:56Z - CRASH #2: GOD DECODE_ERROR (x)\n"
          "2026-11-25T13:40:57Z - CRASH #3: GOD OBSER", f); /* torn */
    fclose(f);
    struct bj_store *st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "GOD"), 2);
    bj_store_free(st);
    char *text;
    size_t len;
    assert_int_equal(bj_read_file(path, &text, &len), 0);
    assert_int_equal(text[len - 1], '\n');
    assert_null(strstr(text, "OBSER"));
    free(text);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths WHERE source='journal'"), 2);
    assert_int_equal(q("SELECT time_us FROM deaths WHERE count=1") % 1000000, 500000);
}

/* Deaths the store has and the journal lacks (their lines failed on a full disk) are written back
 * into the journal at the next open; the journal's deaths the store lacks go the other way. */
static void test_journal_backfill(void **state)
{
    (void)state;
    make_dir("backfill");
    struct bj_store *st = open_store(NULL);
    begin(st, 0);
    struct bj_bus *bus = bj_bus_new();
    char err[256];
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    pub(bus, BJ_EV_DEATH, "SUBJECT", 1, 0, NULL, "JAR_FULL");
    pub(bus, BJ_EV_DEATH, "SUBJECT", 2, 0, NULL, "JAR_FULL");
    pub(bus, BJ_EV_DEATH, "OBSERVER", 1, 0, NULL, "OPERATOR");
    wait_rows(st, 3, 3000);
    assert_int_equal(bj_store_stop(st, true, 2000), 0);
    bj_store_free(st);
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_JOURNAL_NAME, g_dir);
    FILE *f = fopen(path, "w"); /* the journal has only SUBJECT's first death, and one the store lacks */
    fputs("2020-01-01T00:00:00Z - CRASH #1: SUBJECT JAR_FULL (x)\n"
          "2099-01-01T00:00:00Z - CRASH #3: SUBJECT JAR_FULL (y)\n", f);
    fclose(f);
    st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 3);
    bj_store_free(st);
    char *text;
    size_t len;
    assert_int_equal(bj_read_file(path, &text, &len), 0);
    assert_non_null(strstr(text, "CRASH #2: SUBJECT JAR_FULL (written back from the store)"));
    assert_non_null(strstr(text, "CRASH #1: OBSERVER OPERATOR (written back from the store)"));
    assert_null(strstr(text, "CRASH #1: SUBJECT JAR_FULL (written back"));
    free(text);
    /* once written back, never again */
    st = open_store(NULL);
    bj_store_free(st);
    assert_int_equal(bj_read_file(path, &text, &len), 0);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 4);
    free(text);
    bj_bus_free(bus);
}

static void keep_count(void *ud, const char *brain, uint32_t count)
{
    if (strcmp(brain, "SUBJECT") == 0)
        *(uint32_t *)ud = count;
}

/* A death published while the disk was full (its line failed: here a file size limit) and the
 * process killed before the store wrote it: its number is kept in crash_reports.counts, the next
 * start continues after it and counts it as lost for the killed run. */
static void test_count_of_unjournaled_death(void **state)
{
    (void)state;
    make_dir("counts");
    child_dies(0, false);
    char err[256];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    assert_non_null(j);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 70; /* the line (~80 bytes) does not fit; the first 64-byte record does */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct bj_journal_entry e = {.time_us = bj_event_now(), .count = 9, .brain = "SUBJECT", .cause = "JAR_FULL"};
    enum bj_log_level lv = bj_log_get_level();
    bj_log_set_level(BJ_LOG_ERROR + 1);
    assert_true(bj_journal_append(j, &e, "there is no room left for this line") != 0);
    bj_journal_commit(j);
    bj_log_set_level(lv);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    bj_journal_close(j);
    uint32_t kept = 0;
    assert_int_equal(bj_journal_read_counts(g_dir, keep_count, &kept), 0);
    assert_int_equal(kept, 9);

    struct bj_store *st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 10); /* 9 published, then UNCLEAN_EXIT #10 */
    bj_store_free(st);
    assert_int_equal(q("SELECT count FROM deaths WHERE brain='SUBJECT' AND cause='UNCLEAN_EXIT'"), 10);
    assert_int_equal(q("SELECT lost FROM runs WHERE id=1"), 9);
    /* applied once */
    st = open_store(NULL);
    assert_int_equal(bj_store_brain_deaths(st, "SUBJECT"), 10);
    bj_store_free(st);
    assert_int_equal(q("SELECT SUM(lost) FROM runs"), 9);
}

/* A journal past its size limit is rotated at open; its deaths still count. */
static void test_journal_rotation(void **state)
{
    (void)state;
    make_dir("jrot");
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_JOURNAL_NAME, g_dir);
    FILE *f = fopen(path, "w");
    for (int i = 1; i <= 100; i++)
        fprintf(f, "2026-11-25T13:40:%02dZ - CRASH #%d: GOD JAR_FULL (padding padding padding)\n", i % 60, i);
    fclose(f);
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = g_dir;
    p.journal_max_bytes = 1000;
    char err[300];
    int status;
    struct bj_store *st = bj_store_new(&p, &status, err, sizeof err);
    assert_non_null(st);
    assert_int_equal(bj_store_brain_deaths(st, "GOD"), 100);
    bj_store_free(st);
    struct stat sb;
    assert_int_not_equal(stat(path, &sb) == 0 && sb.st_size > 0, 1); /* a fresh, empty file */
    char old[620];
    snprintf(old, sizeof old, "%s.1", path);
    assert_int_equal(stat(old, &sb), 0);
    st = bj_store_new(&p, &status, err, sizeof err);
    assert_int_equal(bj_store_brain_deaths(st, "GOD"), 100);
    bj_store_free(st);
}

static void test_lock(void **state)
{
    (void)state;
    make_dir("lock");
    struct bj_store *st = open_store(NULL);
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = g_dir;
    char err[512] = "";
    int status = 0;
    assert_null(bj_store_new(&p, &status, err, sizeof err));
    assert_int_equal(status, 2);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)getpid());
    assert_non_null(strstr(err, pid));
    bj_store_free(st);
    st = open_store(NULL); /* released */
    bj_store_free(st);
}

/* A full disk (RLIMIT_FSIZE): commits fail, are reported and retried, the backlog stays within
 * its bound (overflow counted), and writing resumes when there is room again. */
static void test_disk_full(void **state)
{
    (void)state;
    make_dir("full");
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = g_dir;
    p.backlog_max = 200;
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *errors = bj_bus_subscribe(bus, "errors", BJ_EV_MASK(BJ_EV_ERROR), 64);
    p.report_bus = bus;
    char err[512];
    int status;
    struct bj_store *st = bj_store_new(&p, &status, err, sizeof err);
    assert_non_null(st);
    begin(st, 0);
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, 1, "before", NULL);
    wait_rows(st, 1, 2000);

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    struct stat sb;
    char wal[600];
    snprintf(wal, sizeof wal, "%s/" BJ_STORE_DB_NAME "-wal", g_dir);
    stat(wal, &sb);
    lim = old;
    lim.rlim_cur = (rlim_t)sb.st_size + 8192;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 500; i++)
        pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, (uint32_t)(i + 2), big, NULL);
    sleep_ms(700);
    struct bj_store_stats ss;
    bj_store_stats(st, &ss);
    assert_true(ss.failing);
    assert_true(ss.commit_errors >= 1);
    assert_true(ss.backlog <= 200 && ss.backlog_peak <= 200);
    assert_true(ss.overflow >= 300 - 2); /* all but what fit in the backlog (and maybe one commit) */
    struct bj_event ev;
    assert_int_equal(bj_sub_next(errors, &ev, 100), 1); /* reported as an event */
    assert_non_null(strstr(ev.text, "failed"));
    bj_event_clear(&ev);

    /* Room again: the waiting events are written, failing clears. */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    for (int i = 0; i < 100; i++) {
        bj_store_stats(st, &ss);
        if (!ss.failing && ss.backlog == 0)
            break;
        sleep_ms(100);
    }
    assert_false(ss.failing);
    assert_int_equal(ss.backlog, 0);
    bj_store_stop(st, true, 2000);
    bj_store_free(st);
    bj_bus_unsubscribe(bus, errors);
    bj_bus_free(bus);
    assert_true(q("SELECT COUNT(*) FROM thoughts") >= 200);
    assert_int_equal(q("SELECT clean FROM runs"), 1); /* stopped in order... */
    assert_true(q("SELECT lost FROM runs") >= 298);   /* ...but what overflowed is on record */
}

/* Another process holds the database locked: commits fail (busy), are reported and retried, and
 * go through once the lock is gone. */
static void test_locked_db(void **state)
{
    (void)state;
    make_dir("locked");
    struct bj_store *st = open_store(NULL);
    begin(st, 0);
    struct bj_bus *bus = bj_bus_new();
    char err[256];
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/" BJ_STORE_DB_NAME, g_dir);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    pub(bus, BJ_EV_DEATH, "SUBJECT", 1, 0, NULL, "JAR_FULL");
    sleep_ms(500);
    struct bj_store_stats ss;
    bj_store_stats(st, &ss);
    assert_true(ss.failing);
    assert_true(ss.commit_errors >= 1);
    assert_non_null(strstr(ss.last_error, "locked"));
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    wait_rows(st, 1, 8000);
    bj_store_stats(st, &ss);
    assert_false(ss.failing);
    bj_store_stop(st, true, 2000);
    bj_store_free(st);
    bj_bus_free(bus);
    assert_int_equal(q("SELECT COUNT(*) FROM deaths"), 1);
}

/* The data directory is moved away while running: noticed, reported, writing goes on in a new one. */
static void test_dir_replaced(void **state)
{
    (void)state;
    make_dir("moved");
    struct bj_store *st = open_store(NULL);
    begin(st, 0);
    struct bj_bus *bus = bj_bus_new();
    char err[256];
    assert_int_equal(bj_store_start(st, bus, err, sizeof err), 0);
    pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, 1, "one", NULL);
    wait_rows(st, 1, 2000);
    char moved[600];
    snprintf(moved, sizeof moved, "%s.old", g_dir);
    assert_int_equal(rename(g_dir, moved), 0);
    sleep_ms(1500);
    struct bj_store_stats ss;
    bj_store_stats(st, &ss);
    assert_int_equal(ss.dir_changes, 1);
    pub(bus, BJ_EV_THOUGHT, "SUBJECT", 0, 2, "two", NULL);
    bj_store_stop(st, true, 2000);
    bj_store_free(st);
    bj_bus_free(bus);
    assert_int_equal(q("SELECT COUNT(*) FROM thoughts WHERE text='two'"), 1);
}

static void test_logfile_rotation(void **state)
{
    (void)state;
    make_dir("rotate");
    char path[600];
    snprintf(path, sizeof path, "%s/x.log", g_dir);
    struct bj_logfile lf;
    assert_int_equal(bj_logfile_open(&lf, path, 100, 2), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(bj_logfile_append(&lf, "0123456789 0123456789", false), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= 100);
    char p2[620];
    snprintf(p2, sizeof p2, "%s.2", path);
    assert_int_equal(stat(p2, &sb), 0);
    snprintf(p2, sizeof p2, "%s.3", path);
    assert_int_not_equal(stat(p2, &sb), 0);
    /* Deleted under it: the check notices and reopens. */
    unlink(path);
    assert_int_equal(bj_logfile_check(&lf), 1);
    assert_int_equal(bj_logfile_check(&lf), 0);
    assert_int_equal(bj_logfile_append(&lf, "after", true), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 6);
    bj_logfile_close(&lf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_migration_from_v1),
        cmocka_unit_test(test_batching_and_restore),
        cmocka_unit_test(test_remote_and_quarantine),
        cmocka_unit_test(test_unclean_exit),
        cmocka_unit_test(test_journal_import_and_torn_line),
        cmocka_unit_test(test_journal_rotation),
        cmocka_unit_test(test_journal_backfill),
        cmocka_unit_test(test_count_of_unjournaled_death),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_locked_db),
        cmocka_unit_test(test_dir_replaced),
        cmocka_unit_test(test_logfile_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
