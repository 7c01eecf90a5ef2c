/* Unit tests for util: strict parsers and the UTF-8 sanitizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void test_parse_long(void **state)
{
    (void)state;
    long v;
    assert_int_equal(bj_parse_long("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(bj_parse_long("-1", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("4x", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("101", 0, 100, &v), -1);
}

static void test_parse_double(void **state)
{
    (void)state;
    double d;
    assert_int_equal(bj_parse_double("6.5", 0, 100, &d), 0);
    assert_true(d == 6.5);
    assert_int_equal(bj_parse_double("nan", 0, 100, &d), -1);
    assert_int_equal(bj_parse_double("-2", 0, 100, &d), -1);
    assert_int_equal(bj_parse_double("1e999", 0, 1e300, &d), -1);
}

static void test_utf8_split_sequence(void **state)
{
    (void)state;
    struct bj_utf8 st = {0};
    char out[64];
    /* "é" = C3 A9 split across two tokens */
    assert_int_equal(bj_utf8_feed(&st, "a\xC3", 2, out), 1);
    assert_string_equal(out, "a");
    assert_int_equal(bj_utf8_feed(&st, "\xA9" "b", 2, out), 3);
    assert_string_equal(out, "\xC3\xA9" "b");
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    struct bj_utf8 st = {0};
    char out[64];
    bj_utf8_feed(&st, "\xFF" "x", 2, out);
    assert_string_equal(out, "\xEF\xBF\xBD" "x");
    bj_utf8_feed(&st, "\xE2\x82" "y", 3, out); /* truncated 3-byte sequence */
    assert_string_equal(out, "\xEF\xBF\xBD" "y");
}

/* A fresh scratch directory under BJ_TEST_TMP (or /tmp). */
static void scratch(char *dir, size_t len)
{
    const char *base = getenv("BJ_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    bj_mkdirs(base);
    snprintf(dir, len, "%s/test_util.XXXXXX", base);
    assert_non_null(mkdtemp(dir));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_read_file_regular_and_limit(void **state)
{
    (void)state;
    char dir[512], p[600];
    scratch(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/a.txt", dir);
    write_text(p, "hello\n");
    char *t = NULL;
    size_t n = 0;
    assert_int_equal(bj_read_file_max(p, 6, NULL, &t, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal(t, "hello\n");
    free(t);
    assert_int_equal(bj_read_file_max(p, 5, NULL, &t, &n), -EFBIG);
    int stop = 1;
    assert_int_equal(bj_read_file_max(p, 100, &stop, &t, &n), -EINTR);
    assert_int_equal(bj_read_file_max("/nonexistent/x", 100, NULL, &t, &n), -ENOENT);
    /* /proc files say 0 bytes but are read whole */
    assert_int_equal(bj_read_file("/proc/self/status", &t, &n), 0);
    assert_true(n > 0);
    free(t);
    unlink(p);
    rmdir(dir);
}

static void test_read_file_refuses_fifo_devices_dirs(void **state)
{
    (void)state;
    char dir[512], fifo[600], link[600];
    scratch(dir, sizeof dir);
    snprintf(fifo, sizeof fifo, "%s/fifo.txt", dir);
    snprintf(link, sizeof link, "%s/zero.txt", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(symlink("/dev/zero", link), 0);
    char *t = NULL;
    int64_t t0 = bj_now_us();
    assert_int_equal(bj_read_file(fifo, &t, NULL), -EINVAL); /* no writer: must not hang */
    assert_int_equal(bj_read_file(link, &t, NULL), -EINVAL);
    assert_int_equal(bj_read_file("/dev/zero", &t, NULL), -EINVAL);
    assert_int_equal(bj_read_file(dir, &t, NULL), -EINVAL);
    assert_true(bj_now_us() - t0 < 1000000);
    assert_non_null(strstr(bj_file_strerror(-EINVAL), "regular"));
    unlink(fifo);
    unlink(link);
    rmdir(dir);
}

static void test_read_file_stops_on_pending_sigint(void **state)
{
    (void)state;
    char dir[512], p[600];
    scratch(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/a.txt", dir);
    write_text(p, "x");
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGINT); /* stays pending */
    char *t = NULL;
    assert_int_equal(bj_read_file(p, &t, NULL), -EINTR);
    struct timespec zero = {0, 0};
    assert_int_equal(sigtimedwait(&set, NULL, &zero), SIGINT); /* consume it */
    sigprocmask(SIG_SETMASK, &old, NULL);
    assert_int_equal(bj_read_file(p, &t, NULL), 0);
    free(t);
    unlink(p);
    rmdir(dir);
}

static void test_output_check(void **state)
{
    (void)state;
    char dir[512], reg[600], link[600], tmp[700];
    scratch(dir, sizeof dir);
    snprintf(reg, sizeof reg, "%s/out.bin", dir);
    snprintf(link, sizeof link, "%s/link.bin", dir);
    assert_int_equal(bj_output_check(reg), 0); /* absent */
    write_text(reg, "old");
    assert_int_equal(bj_output_check(reg), 0);
    assert_int_equal(symlink(reg, link), 0);
    assert_int_equal(bj_output_check(link), -ELOOP);
    assert_int_equal(bj_output_check("/dev/null"), -EINVAL);
    assert_int_equal(bj_output_check(dir), -EINVAL);
    assert_true(bj_output_open_tmp("/dev/null", tmp, sizeof tmp) < 0);
    int fd = bj_output_open_tmp(reg, tmp, sizeof tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "new", 3), 3);
    close(fd);
    assert_int_equal(bj_output_commit(tmp, reg), 0);
    char *t = NULL;
    assert_int_equal(bj_read_file(reg, &t, NULL), 0);
    assert_string_equal(t, "new");
    free(t);
    /* a symlink planted at the target after the temp file was made: refused, temp removed */
    fd = bj_output_open_tmp(reg, tmp, sizeof tmp);
    assert_true(fd >= 0);
    close(fd);
    unlink(reg);
    assert_int_equal(symlink("/dev/null", reg), 0);
    assert_int_equal(bj_output_commit(tmp, reg), -ELOOP);
    assert_int_equal(access(tmp, F_OK), -1);
    unlink(reg);
    unlink(link);
    rmdir(dir);
}

static void test_escape_controls(void **state)
{
    (void)state;
    char out[128];
    const char in[] = "a\rb\x1b[2Jc\td\ne\x7f" "f\xC2\x9B" "g\xC3\xA9";
    bj_escape_controls(in, sizeof in - 1, out);
    assert_string_equal(out, "a\\rb\\x1b[2Jc\td\ne\\x7f" "f\\u009b" "g\xC3\xA9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_utf8_split_sequence),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_read_file_regular_and_limit),
        cmocka_unit_test(test_read_file_refuses_fifo_devices_dirs),
        cmocka_unit_test(test_read_file_stops_on_pending_sigint),
        cmocka_unit_test(test_output_check),
        cmocka_unit_test(test_escape_controls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
