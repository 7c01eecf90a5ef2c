/* Unit tests for split: the --rpc list (hosts, ports, duplicates, limits, as llama.cpp's RPC client
 * reads an endpoint), split modes, tensor splits (',' and '/', shares, limits), and the checks
 * that need no device (every contradiction, and --main-gpu alone meaning split mode none). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "split.h"
#include "util.h"

static void test_rpc_list(void **state)
{
    (void)state;
    char out[BJ_MAX_RPC][BJ_ENDPOINT_MAX], err[400];
    int n;
    assert_int_equal(bj_rpc_parse("127.0.0.1:50052", out, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "127.0.0.1:50052");
    assert_int_equal(bj_rpc_parse("gpu-a:1,gpu_b.lan:65535,10.0.0.3:50052", out, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(out[1], "gpu_b.lan:65535");
    assert_int_equal(bj_rpc_parse("a:1", NULL, &n, err, sizeof err), 0); /* only checked */
    static const struct {
        const char *list, *why;
    } bad[] = {
        {"", "no rpc-server given"},
        {"host", "'host' is not HOST:PORT"},
        {"host:", "'host:' is not HOST:PORT"},
        {":1", "':1' is not HOST:PORT"},
        {"h:0", "'h:0' is not HOST:PORT"},
        {"h:65536", "'h:65536' is not HOST:PORT"},
        {"h:+1", "'h:+1' is not HOST:PORT"},
        {"h:1 ", "'h:1 ' is not HOST:PORT"},
        {"::1:5", "is not HOST:PORT"},
        {"[::1]:5", "is not HOST:PORT"},
        {"h[1]:5", "a character a host name cannot have"},
        {"a b:5", "a character a host name cannot have"},
        {"h:1,", "has an empty entry"},
        {",h:1", "has an empty entry"},
        {"a:1,b:2,a:1", "'a:1' is given twice"},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(bad); i++) {
        if (bj_rpc_parse(bad[i].list, out, &n, err, sizeof err) != -1 || !strstr(err, bad[i].why))
            fail_msg("'%s': '%s', expected '%s'", bad[i].list, err, bad[i].why);
    }
    /* llama.cpp's limit of servers, and a host name's length */
    char list[BJ_RPC_LIST_MAX + 300];
    size_t at = 0;
    for (int i = 0; i <= BJ_MAX_RPC; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%sh%d:1", i ? "," : "", i);
    assert_int_equal(bj_rpc_parse(list, out, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 16 rpc-servers"));
    memset(list, 'x', 256);
    strcpy(list + 256, ":1");
    assert_int_equal(bj_rpc_parse(list, out, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than 255"));
    memset(list, 'x', sizeof list - 1);
    list[sizeof list - 1] = '\0';
    assert_int_equal(bj_rpc_parse(list, NULL, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
}

static void test_modes(void **state)
{
    (void)state;
    int m = 99;
    assert_int_equal(bj_split_parse("none", &m), 0);
    assert_int_equal(m, BJ_SPLIT_NONE);
    assert_int_equal(bj_split_parse("layer", &m), 0);
    assert_int_equal(m, BJ_SPLIT_LAYER);
    assert_int_equal(bj_split_parse("row", &m), 0);
    assert_int_equal(m, BJ_SPLIT_ROW);
    assert_int_equal(bj_split_parse("tensor", &m), -1); /* llama.cpp's experimental one: not offered */
    assert_int_equal(bj_split_parse("Layer", &m), -1);
    assert_string_equal(bj_split_name(BJ_SPLIT_ROW), "row");
    assert_string_equal(bj_split_name(BJ_SPLIT_AUTO), "auto");
}

static void test_tensor_split(void **state)
{
    (void)state;
    float ts[BJ_MAX_DEVICES];
    int n;
    char err[400];
    assert_int_equal(bj_tensor_split_parse("3,1", ts, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_true(ts[0] == 3.0f && ts[1] == 1.0f);
    assert_int_equal(bj_tensor_split_parse("0.5/0/1.5", ts, &n, err, sizeof err), 0); /* llama.cpp's '/' too */
    assert_int_equal(n, 3);
    assert_true(ts[1] == 0.0f && ts[2] == 1.5f);
    assert_int_equal(bj_tensor_split_parse("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", ts, &n, err, sizeof err), 0);
    assert_int_equal(n, 16);
    const char *bad[] = {"", ",", "1,", "1,,1", "0", "0,0", "-1,2", "x", "1e99", "inf", "nan",
                         "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"};
    for (size_t i = 0; i < BJ_ARRAY_LEN(bad); i++) {
        if (bj_tensor_split_parse(bad[i], ts, &n, err, sizeof err) != -1)
            fail_msg("'%s' accepted", bad[i]);
        if (!strstr(err, bad[i]))
            fail_msg("'%s': the message '%s' does not quote it", bad[i], err);
    }
}

static void test_check(void **state)
{
    (void)state;
    char err[400];
    struct bj_split_settings s = bj_split_default();
    assert_false(bj_split_given(&s));
    assert_int_equal(bj_split_check(&s, false, -1, err, sizeof err), 0);
    assert_int_equal(bj_split_check(&s, false, 0, err, sizeof err), 0); /* nothing given, nothing offloaded */
    assert_int_equal(bj_split_check(&s, true, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "--gpu-layers 0"));
    s.main_gpu = 1; /* alone: split mode none */
    assert_true(bj_split_given(&s));
    assert_int_equal(bj_split_check(&s, true, -1, err, sizeof err), 0);
    assert_int_equal(s.mode, BJ_SPLIT_NONE);
    s.n_tensor_split = 2;
    s.tensor_split[0] = s.tensor_split[1] = 1;
    assert_int_equal(bj_split_check(&s, false, -1, err, sizeof err), -1);
    assert_non_null(strstr(err, "but --main-gpu uses one"));
    s = bj_split_default();
    s.mode = BJ_SPLIT_LAYER;
    s.main_gpu = 0;
    assert_int_equal(bj_split_check(&s, false, -1, err, sizeof err), -1);
    assert_non_null(strstr(err, "with --split-mode layer every device takes layers"));
    s = bj_split_default();
    s.mode = BJ_SPLIT_ROW;
    assert_int_equal(bj_split_check(&s, false, 10, err, sizeof err), 0);
    assert_int_equal(bj_split_check(&s, true, 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "rpc-servers cannot join"));
    s = bj_split_default();
    s.mode = BJ_SPLIT_NONE;
    s.n_tensor_split = 1;
    s.tensor_split[0] = 1;
    assert_int_equal(bj_split_check(&s, false, -1, err, sizeof err), -1);
    assert_non_null(strstr(err, "but --split-mode none uses one"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpc_list),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_tensor_split),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
