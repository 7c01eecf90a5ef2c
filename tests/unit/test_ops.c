/* Unit tests for ops: its options (good values applied, bad ones refused with exit status 2,
 * other options left alone), a data directory held by one run refused to a second (status 2) and
 * free again once the first is done, a refused start, and --no-store touching no disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "ops.h"
#include "util.h"

static struct bj_config g_c; /* large: not on the stack */
static char g_dir[400];

static int setup(void **state)
{
    (void)state;
    static int n;
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-ops-%d-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid(), n++);
    assert_int_equal(bj_mkdirs(g_dir), 0);
    bj_config_defaults(&g_c);
    char err[256];
    assert_int_equal(bj_config_apply_brains(&g_c, 3, -1, -1, err, sizeof err), 0);
    bj_strlcpy(g_c.spec.data_dir, g_dir, sizeof g_c.spec.data_dir);
    g_c.ops.no_watchdog = true;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

static void options(void **state)
{
    (void)state;
    struct bj_ops_config o;
    bj_ops_config_defaults(&o);
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 1, "250", &o), 0);
    assert_int_equal(o.store_commit_ms, 250);
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 4, "70,80,90,99", &o), 0);
    assert_true(o.wd_mem.warn == 70);
    assert_true(o.wd_mem.exit == 99);
    /* refused, and nothing changed */
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 1, "0", &o), 2);
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 1, "12abc", &o), 2);
    assert_int_equal(o.store_commit_ms, 250);
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 4, "90,80,70,60", &o), 2); /* not increasing */
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 4, "70,80", &o), 2);
    assert_true(o.wd_mem.warn == 70);
    assert_int_equal(bj_ops_parse_option("run", BJ_OPS_OPT_BASE + 12, "0", &o), 2);
    /* not one of ops' options */
    assert_int_equal(bj_ops_parse_option("run", 'x', "1", &o), -1);
}

static void data_dir_held_once(void **state)
{
    (void)state;
    uint32_t deaths[BJ_MAX_BRAINS];
    char *argv[] = {(char *)"brainjar", (char *)"run", NULL};
    int status = -1;
    struct bj_ops *a = bj_ops_new(&g_c, 2, argv, "model.gguf", deaths, &status);
    assert_non_null(a);
    for (int i = 0; i < g_c.spec.n_brains; i++)
        assert_int_equal(deaths[i], 0);
    struct bj_ops *b = bj_ops_new(&g_c, 2, argv, "model.gguf", deaths, &status);
    assert_null(b);
    assert_int_equal(status, 2); /* held by another run: bad input, not a crash */
    bj_ops_refused(a, "a test that never starts the hive");
    assert_int_equal(bj_ops_stop(a, false), 0);
    assert_int_equal(bj_ops_exit_status(a), 0);
    bj_ops_free(a);
    b = bj_ops_new(&g_c, 2, argv, "model.gguf", deaths, &status); /* free again */
    assert_non_null(b);
    assert_int_equal(bj_ops_stop(b, true), 0);
    bj_ops_free(b);
}

static void no_store_no_disk(void **state)
{
    (void)state;
    g_c.ops.no_store = true;
    char sub[500];
    snprintf(sub, sizeof sub, "%s/never", g_dir);
    bj_strlcpy(g_c.spec.data_dir, sub, sizeof g_c.spec.data_dir);
    uint32_t deaths[BJ_MAX_BRAINS];
    memset(deaths, 0xff, sizeof deaths);
    char *argv[] = {(char *)"brainjar", NULL};
    int status = -1;
    struct bj_ops *o = bj_ops_new(&g_c, 1, argv, "model.gguf", deaths, &status);
    assert_non_null(o);
    for (int i = 0; i < g_c.spec.n_brains; i++)
        assert_int_equal(deaths[i], 0);
    assert_int_equal(bj_ops_stop(o, true), 0);
    bj_ops_free(o);
    assert_int_equal(access(sub, F_OK), -1); /* nothing was created */
    g_c.ops.no_store = false;
}

int main(void)
{
    bj_log_set_level(BJ_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options),
        cmocka_unit_test_setup_teardown(data_dir_held_once, setup, teardown),
        cmocka_unit_test_setup_teardown(no_store_no_disk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
