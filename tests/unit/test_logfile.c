/* Unit tests for logfile: a torn last line cut off at open (and nothing cut from a whole file),
 * a newline added to a line without one, size rotation keeping exactly `keep` old files with the
 * newest as name.1, and the identity check: a file deleted or rotated away by someone else is
 * noticed and reopened, an unchanged one is left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logfile.h"
#include "util.h"

static char g_dir[400], g_path[500];

static int setup(void **state)
{
    (void)state;
    static int n;
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-logfile-%d-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid(), n++);
    assert_int_equal(bj_mkdirs(g_dir), 0);
    snprintf(g_path, sizeof g_path, "%s/test.log", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (bj_read_file(path, &text, &len))
        return NULL;
    return text;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void torn_line_cut_at_open(void **state)
{
    (void)state;
    put(g_path, "one\ntwo\nthr");
    struct bj_logfile lf;
    assert_int_equal(bj_logfile_open(&lf, g_path, 0, 0), 0);
    assert_int_equal(lf.repaired, 3);
    assert_int_equal(bj_logfile_append(&lf, "four", false), 0);
    bj_logfile_close(&lf);
    char *t = slurp(g_path);
    assert_string_equal(t, "one\ntwo\nfour\n");
    free(t);
    /* a whole file loses nothing */
    assert_int_equal(bj_logfile_repair(g_path), 0);
    t = slurp(g_path);
    assert_string_equal(t, "one\ntwo\nfour\n");
    free(t);
}

static void missing_file_is_created(void **state)
{
    (void)state;
    assert_int_equal(bj_logfile_repair(g_path), 0);
    struct bj_logfile lf;
    assert_int_equal(bj_logfile_open(&lf, g_path, 0, 0), 0);
    assert_int_equal(bj_logfile_append(&lf, "a line\n", true), 0);
    assert_int_equal(lf.size, 7);
    bj_logfile_close(&lf);
    assert_int_equal(lf.fd, -1);
    char *t = slurp(g_path);
    assert_string_equal(t, "a line\n");
    free(t);
}

static void rotation_keeps_keep_files(void **state)
{
    (void)state;
    struct bj_logfile lf;
    assert_int_equal(bj_logfile_open(&lf, g_path, 20, 2), 0);
    /* 10 bytes a line: every third line rotates */
    char line[16];
    for (int i = 0; i < 9; i++) {
        snprintf(line, sizeof line, "line %04d", i);
        assert_int_equal(bj_logfile_append(&lf, line, false), 0);
    }
    bj_logfile_close(&lf);
    char p1[520], p2[520], p3[520];
    snprintf(p1, sizeof p1, "%s.1", g_path);
    snprintf(p2, sizeof p2, "%s.2", g_path);
    snprintf(p3, sizeof p3, "%s.3", g_path);
    char *cur = slurp(g_path), *one = slurp(p1), *two = slurp(p2);
    assert_non_null(cur);
    assert_non_null(one);
    assert_non_null(two);
    assert_string_equal(cur, "line 0008\n");
    assert_string_equal(one, "line 0006\nline 0007\n"); /* name.1 is the newest old file */
    assert_string_equal(two, "line 0004\nline 0005\n");
    assert_int_equal(access(p3, F_OK), -1);             /* keep = 2: nothing older is kept */
    free(cur);
    free(one);
    free(two);
}

static void identity_check_reopens(void **state)
{
    (void)state;
    struct bj_logfile lf;
    assert_int_equal(bj_logfile_open(&lf, g_path, 0, 0), 0);
    assert_int_equal(bj_logfile_check(&lf), 0); /* unchanged */
    assert_int_equal(bj_logfile_append(&lf, "before", false), 0);
    char moved[520];
    snprintf(moved, sizeof moved, "%s.old", g_path);
    assert_int_equal(rename(g_path, moved), 0); /* someone else's rotation */
    assert_int_equal(bj_logfile_check(&lf), 1);
    assert_int_equal(lf.reopens, 1);
    assert_int_equal(bj_logfile_append(&lf, "after", false), 0);
    assert_int_equal(unlink(g_path), 0);        /* deleted */
    assert_int_equal(bj_logfile_check(&lf), 1);
    assert_int_equal(bj_logfile_append(&lf, "again", false), 0);
    bj_logfile_close(&lf);
    char *old = slurp(moved), *cur = slurp(g_path);
    assert_string_equal(old, "before\n");
    assert_string_equal(cur, "again\n");
    free(old);
    free(cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(torn_line_cut_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_file_is_created, setup, teardown),
        cmocka_unit_test_setup_teardown(rotation_keeps_keep_files, setup, teardown),
        cmocka_unit_test_setup_teardown(identity_check_reopens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
