/* board: the boards by name, and the decode bound from bytes and bandwidth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "board.h"

static void test_find(void **state)
{
    (void)state;
    const struct bj_board *b = bj_board_find("pi5");
    assert_non_null(b);
    assert_true(b->bandwidth_gbs > 17.0 && b->bandwidth_gbs < 17.2);
    assert_non_null(bj_board_find("orin-agx"));
    assert_null(bj_board_find("pi6"));
    assert_null(bj_board_find(""));
}

/* A model of 1e9 bytes of weights (1e8 of them the token embedding, with an output layer of its
 * own) on 10 GB/s: 0.9e9 bytes read a step, so 11.1 steps/s with empty jars. */
static void test_bound(void **state)
{
    (void)state;
    struct bj_modelinfo mi;
    memset(&mi, 0, sizeof mi);
    mi.weight_bytes = 1000000000u;
    mi.tok_embd_bytes = 100000000u;
    mi.output_bytes = 100000000u;
    mi.n_layer = 2;
    mi.n_head_kv = 2;
    mi.head_dim_k = mi.head_dim_v = 16; /* 256 bytes a token in f16 */
    struct bj_decode_bound b = bj_decode_bound(&mi, GGML_TYPE_F16, 2000, 4, 10.0);
    assert_int_equal(b.weight_read, 900000000u);
    assert_int_equal(b.kv_read_half, 4u * 1000u * 256u);
    assert_true(b.brain_tok_s_empty > 11.11 && b.brain_tok_s_empty < 11.12);
    double step = (900000000.0 + 4 * 1000 * 256) / 10e9;
    assert_true(b.brain_tok_s > 1 / step - 1e-6 && b.brain_tok_s < 1 / step + 1e-6);
    assert_true(b.total_tok_s > 4 / step - 1e-6 && b.total_tok_s < 4 / step + 1e-6);
    /* Tied output: the embedding is read whole as the output layer. */
    mi.output_bytes = 0;
    b = bj_decode_bound(&mi, GGML_TYPE_F16, 2000, 4, 10.0);
    assert_int_equal(b.weight_read, 1000000000u);
    /* No bandwidth: no speed, no division by zero. */
    b = bj_decode_bound(&mi, GGML_TYPE_F16, 2000, 4, 0.0);
    assert_true(b.brain_tok_s == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
