/* Unit tests for journal: the line of a death, a torn last line cut at open, a short write
 * (RLIMIT_FSIZE, as a full disk) that leaves no partial line, failures counted, reopen after a
 * rotation, lines that stay lines whatever the detail holds, and appends from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "util.h"

static char g_dir[400], g_path[500];

static int setup(void **state)
{
    (void)state;
    static int n;
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-journal-%d-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid(), n++);
    assert_int_equal(bj_mkdirs(g_dir), 0);
    snprintf(g_path, sizeof g_path, "%s/crash_reports.log", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *read_all(const char *path, size_t *n)
{
    char *s = NULL;
    size_t len = 0;
    int rc = bj_read_file(path, &s, &len);
    if (rc != 0 || !s)
        fail_msg("cannot read %s", path);
    if (n)
        *n = len;
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static struct bj_event death(const char *brain, uint32_t n, const char *cause, const char *detail)
{
    struct bj_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = BJ_EV_DEATH;
    ev.time_us = 1763283340004210LL;
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    bj_strlcpy(ev.cause, cause, sizeof ev.cause);
    ev.crash_count = n;
    ev.text = (char *)detail;
    return ev;
}

static void test_lines(void **state)
{
    (void)state;
    char err[300] = "";
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    assert_non_null(j);
    struct stat st;
    assert_int_equal(stat(g_path, &st), 0);
    assert_int_equal(st.st_size, 0);
    struct bj_event d = death("SUBJECT", 1, "JAR_FULL", "4096 tokens");
    bj_journal_death(j, &d);
    d = death("GOD", 12, "OPERATOR", NULL);
    bj_journal_death(j, &d);
    bj_journal_commit(j);
    bj_journal_commit(j); /* nothing pending: harmless */
    char *s = read_all(g_path, NULL);
    assert_string_equal(s, "2025-11-16T08:55:40.004210Z - CRASH #1: SUBJECT JAR_FULL (4096 tokens)\n"
                           "2025-11-16T08:55:40.004210Z - CRASH #12: GOD OPERATOR ()\n");
    free(s);
    /* No time: now. */
    d = death("SUBJECT", 2, "DECODE_ERROR", "x");
    d.time_us = 0;
    bj_journal_death(j, &d);
    assert_int_equal(bj_journal_failures(j), 0);
    bj_journal_close(j);
    s = read_all(g_path, NULL);
    assert_int_equal(count_lines(s), 3);
    assert_non_null(strstr(s, "Z - CRASH #2: SUBJECT DECODE_ERROR (x)\n"));
    free(s);
    /* Reopened later: appends. */
    j = bj_journal_open(g_dir, err, sizeof err);
    d = death("SUBJECT", 3, "JAR_FULL", "");
    bj_journal_death(j, &d);
    bj_journal_close(j);
    s = read_all(g_path, NULL);
    assert_int_equal(count_lines(s), 4);
    free(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[300] = "";
    assert_null(bj_journal_open("/nonexistent/dir", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/crash_reports.log"));
    /* A symlink is not followed (O_NOFOLLOW). */
    char target[520];
    snprintf(target, sizeof target, "%s/elsewhere", g_dir);
    write_file(target, "", 0);
    assert_int_equal(symlink(target, g_path), 0);
    err[0] = '\0';
    assert_null(bj_journal_open(g_dir, err, sizeof err));
    assert_true(strlen(err) > 0);
}

/* A crash before the newline reached the disk leaves a torn line: cut at open. */
static void test_torn_line_repair(void **state)
{
    (void)state;
    char err[300];
    static const struct {
        const char *before, *after;
    } cases[] = {
        {"one\ntwo\n", "one\ntwo\n"},     /* whole: untouched */
        {"one\ntw", "one\n"},              /* torn last line */
        {"torn", ""},                      /* a single torn line */
        {"\n", "\n"},
        {"", ""},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(cases); i++) {
        write_file(g_path, cases[i].before, strlen(cases[i].before));
        struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
        assert_non_null(j);
        bj_journal_close(j);
        char *s = read_all(g_path, NULL);
        assert_string_equal(s, cases[i].after);
        free(s);
    }
    /* A torn tail longer than the repair's read buffer, after many whole lines. */
    size_t n = 0, cap = 200000;
    char *big = malloc(cap);
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(big + n, cap - n, "line %d\n", i);
    size_t whole = n;
    memset(big + n, 'x', 5000);
    n += 5000;
    write_file(g_path, big, n);
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    struct bj_event d = death("SUBJECT", 1, "JAR_FULL", "after");
    bj_journal_death(j, &d);
    bj_journal_close(j);
    size_t len;
    char *s = read_all(g_path, &len);
    assert_int_equal(memcmp(s, big, whole), 0);
    assert_string_equal(s + whole, "2025-11-16T08:55:40.004210Z - CRASH #1: SUBJECT JAR_FULL (after)\n");
    free(s);
    free(big);
}

/* A short write (here the file size limit, as a full disk would) is cut back to the last whole
 * line: the next line never starts in the middle of one. */
static void test_short_write(void **state)
{
    (void)state;
    char err[300];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    struct bj_event d = death("SUBJECT", 1, "JAR_FULL", "first");
    bj_journal_death(j, &d);
    bj_journal_commit(j);
    struct stat st;
    assert_int_equal(stat(g_path, &st), 0);
    off_t size = st.st_size;

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)size + 20; /* room for 20 bytes of the next line */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    enum bj_log_level lv = bj_log_get_level();
    bj_log_set_level(BJ_LOG_ERROR + 1); /* the failure is logged: keep the test output clean */
    d = death("SUBJECT", 2, "JAR_FULL", "does not fit");
    bj_journal_death(j, &d);   /* short write: cut back */
    bj_journal_death(j, &d);   /* again: cut back again, nothing glued */
    lim.rlim_cur = (rlim_t)size; /* now at the limit: write fails outright (EFBIG) */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bj_journal_death(j, &d);
    bj_log_set_level(lv);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(bj_journal_failures(j), 3);
    assert_int_equal(stat(g_path, &st), 0);
    assert_int_equal(st.st_size, size); /* no partial line left */

    d = death("SUBJECT", 3, "JAR_FULL", "room again");
    bj_journal_death(j, &d);
    bj_journal_close(j);
    char *s = read_all(g_path, NULL);
    assert_string_equal(s, "2025-11-16T08:55:40.004210Z - CRASH #1: SUBJECT JAR_FULL (first)\n"
                           "2025-11-16T08:55:40.004210Z - CRASH #3: SUBJECT JAR_FULL (room again)\n");
    free(s);
}

/* One death, one line: whatever a detail holds (newlines from an operator, a long error). */
static void test_one_line_per_death(void **state)
{
    (void)state;
    char err[300];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    struct bj_event d = death("SUBJECT", 1, "OPERATOR", "two\nlines\r\tand a \x01 control");
    bj_journal_death(j, &d);
    char longd[3000];
    memset(longd, 'y', sizeof longd - 1);
    longd[sizeof longd - 1] = '\0';
    d = death("SUBJECT", 2, "DECODE_ERROR", longd);
    bj_journal_death(j, &d);
    bj_journal_close(j);
    char *s = read_all(g_path, NULL);
    assert_int_equal(count_lines(s), 2);
    assert_non_null(strstr(s, "CRASH #1: SUBJECT OPERATOR (two lines  and a   control)\n"));
    size_t first_len = strcspn(s, "\n") + 1, total = strlen(s);
    assert_non_null(strstr(s + first_len, "CRASH #2: SUBJECT DECODE_ERROR (yyy"));
    assert_true(s[total - 1] == '\n');
    for (const char *p = s; *p; p++)
        assert_true(*p == '\n' || (unsigned char)*p >= 0x20);
    free(s);
}

static void test_reopen(void **state)
{
    (void)state;
    char err[300], rotated[520];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    struct bj_event d = death("SUBJECT", 1, "JAR_FULL", "old");
    bj_journal_death(j, &d);
    snprintf(rotated, sizeof rotated, "%s.1", g_path);
    assert_int_equal(rename(g_path, rotated), 0); /* logrotate */
    assert_int_equal(bj_journal_reopen(j), 0);
    d = death("SUBJECT", 2, "JAR_FULL", "new");
    bj_journal_death(j, &d);
    bj_journal_commit(j);
    char *s = read_all(rotated, NULL);
    assert_non_null(strstr(s, "(old)"));
    assert_null(strstr(s, "(new)"));
    free(s);
    s = read_all(g_path, NULL);
    assert_non_null(strstr(s, "CRASH #2: SUBJECT JAR_FULL (new)"));
    assert_int_equal(count_lines(s), 1);
    free(s);
    /* The directory is gone: reopen fails, deaths are counted as failures, nothing crashes. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    assert_int_equal(system(cmd), 0);
    enum bj_log_level lv = bj_log_get_level();
    bj_log_set_level(BJ_LOG_ERROR + 1);
    assert_int_equal(bj_journal_reopen(j), -1);
    bj_journal_death(j, &d);
    bj_journal_commit(j);
    bj_log_set_level(lv);
    assert_int_equal(bj_journal_failures(j), 1);
    /* Back: reopen works again. */
    assert_int_equal(bj_mkdirs(g_dir), 0);
    assert_int_equal(bj_journal_reopen(j), 0);
    bj_journal_death(j, &d);
    bj_journal_close(j);
    s = read_all(g_path, NULL);
    assert_int_equal(count_lines(s), 1);
    free(s);
}

struct writer {
    struct bj_journal *j;
    char brain[16];
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    for (uint32_t i = 1; i <= 200; i++) {
        struct bj_event d = death(w->brain, i, "JAR_FULL", "concurrent");
        bj_journal_death(w->j, &d);
        if (i % 10 == 0)
            bj_journal_commit(w->j);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    char err[300];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    pthread_t t[4];
    struct writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i].j = j;
        snprintf(w[i].brain, sizeof w[i].brain, "B%d", i);
        assert_int_equal(pthread_create(&t[i], NULL, write_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    bj_journal_close(j);
    char *s = read_all(g_path, NULL);
    assert_int_equal(count_lines(s), 800);
    int seen[4] = {0};
    for (char *save = NULL, *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int b;
        unsigned n;
        char tail[32];
        assert_int_equal(sscanf(line, "2025-11-16T08:55:40.004210Z - CRASH #%u: B%d JAR_FULL (%31[^)])", &n, &b, tail),
                         3);
        assert_string_equal(tail, "concurrent");
        assert_int_equal(n, (unsigned)++seen[b]); /* each thread's lines in its order */
    }
    free(s);
}

static int collect(void *ud, const struct bj_journal_entry *e)
{
    struct bj_journal_entry *v = ud;
    for (int i = 0; i < 8; i++)
        if (v[i].count == 0) {
            v[i] = *e;
            return 0;
        }
    return 1;
}

/* What is written is read back the same (format -> parse, and through a file with scan); lines that
 * are not deaths are counted, with the first one's number and text. */
static void test_round_trip(void **state)
{
    (void)state;
    struct bj_journal_entry e = {.time_us = 1763283340004210LL, .count = 4294967295u, .brain = "OBSERVER_2",
                                 .cause = "UNCLEAN_EXIT"}, back;
    char line[BJ_JOURNAL_LINE_MAX];
    size_t n = bj_journal_format(&e, "a detail (with parentheses)\n", line, sizeof line);
    assert_int_equal(n, strlen(line));
    assert_int_equal(line[n - 1], '\n');
    assert_int_equal(bj_journal_parse(line, &back), 0);
    assert_int_equal(back.time_us, e.time_us);
    assert_int_equal(back.count, e.count);
    assert_string_equal(back.brain, e.brain);
    assert_string_equal(back.cause, e.cause);
    assert_int_equal(bj_journal_parse("2025-11-16T08:55:40Z - CRASH #0: SUBJECT JAR_FULL ()\n", &back), -1);
    assert_int_equal(bj_journal_parse("hello\n", &back), -1);

    char err[300];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(bj_journal_append(j, &e, "first"), 0);
    e.count = 7;
    bj_strlcpy(e.brain, "GOD", sizeof e.brain);
    assert_int_equal(bj_journal_append(j, &e, NULL), 0);
    bj_journal_close(j);
    FILE *f = fopen(g_path, "a");
    fputs("not a death\n\n", f);
    for (int i = 0; i < 700; i++)
        fputc('z', f); /* longer than any line written */
    fputs("\n2025-11-16T08:55:40.5Z - CRASH #8: GOD JAR_FULL (x)\n", f);
    fclose(f);
    struct bj_journal_entry got[8];
    memset(got, 0, sizeof got);
    struct bj_journal_scan sc;
    assert_int_equal(bj_journal_scan(g_path, collect, got, &sc), 0);
    assert_int_equal(sc.deaths, 3);
    assert_int_equal(sc.unparsable, 2);
    assert_int_equal(sc.first_bad, 3);
    assert_string_equal(sc.first_bad_text, "not a death");
    assert_int_equal(got[0].count, 4294967295u);
    assert_string_equal(got[1].brain, "GOD");
    assert_int_equal(got[1].count, 7);
    assert_int_equal(got[2].count, 8);
    assert_int_equal(got[2].time_us % 1000000, 500000);
    /* a missing file is an empty journal */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.log", g_dir);
    assert_int_equal(bj_journal_scan(missing, collect, got, &sc), 0);
    assert_int_equal(sc.lines, 0);
}

/* Room is kept allocated past the end of the file (for the lines of deaths after the disk fills);
 * the file's size shows only its lines. */
static void test_reserve(void **state)
{
    (void)state;
    char err[300];
    struct bj_journal *j = bj_journal_open(g_dir, err, sizeof err);
    assert_non_null(j);
    struct stat st;
    assert_int_equal(stat(g_path, &st), 0);
    assert_int_equal(st.st_size, 0);
    if ((uint64_t)st.st_blocks * 512 < BJ_JOURNAL_RESERVE) {
        bj_journal_close(j);
        skip(); /* this file system does not preallocate (fallocate) */
    }
    bj_journal_close(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_line_repair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_line_per_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
