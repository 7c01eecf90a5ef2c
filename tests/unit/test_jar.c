/* Unit tests for jar: GB to tokens at the model's KV bytes per token, tokens winning over GB,
 * clamping to the training context, a jar that holds no token, and the KV cell layout
 * (streams vs one shared pool, llama.cpp's 256-cell padding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "jar.h"

/* A llama-shaped model: 2 layers, 2 KV heads of 16: 2 * (32 + 32) * 2 bytes = 256 bytes per
 * token in f16. */
static struct bj_modelinfo model(uint32_t n_ctx_train)
{
    struct bj_modelinfo mi;
    memset(&mi, 0, sizeof mi);
    mi.n_layer = 2;
    mi.n_head_kv = 2;
    mi.head_dim_k = mi.head_dim_v = 16;
    mi.n_ctx_train = n_ctx_train;
    return mi;
}

static struct bj_brain_cfg brain(double gb, long tokens)
{
    struct bj_brain_cfg b;
    memset(&b, 0, sizeof b);
    strcpy(b.id, "SUBJECT");
    b.jar_gb = gb;
    b.jar_tokens = tokens;
    return b;
}

static void test_gb_to_tokens(void **state)
{
    (void)state;
    struct bj_modelinfo mi = model(0);
    assert_int_equal(bj_modelinfo_kv_bytes(&mi, GGML_TYPE_F16, GGML_TYPE_F16, 1), 256);
    struct bj_jar j;
    char err[200];
    /* 1 MiB (as a fraction of the original's 1024**3-byte GB) holds 4096 tokens of 256 bytes. */
    struct bj_brain_cfg b = brain(1.0 / 1024.0, 0);
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 4096);
    assert_int_equal(j.requested_tokens, 4096);
    assert_false(j.clamped);
    assert_int_equal(j.kv_bytes, 4096u * 256u);
    /* f32 doubles the bytes per token: half the tokens. */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F32, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 2048);
    assert_int_equal(j.kv_bytes, 1024u * 1024u);
    /* q8_0: 34 bytes per 32 values. */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_Q8_0, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, (long)(BJ_GB / 1024.0 / (2.0 * 2.0 * 34.0)));
    /* 8 GB is 33554432 tokens here: no training context, no clamp. */
    b = brain(8.0, 0);
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 8L * 1024 * 1024 * 1024 / 256);
}

static void test_tokens_win(void **state)
{
    (void)state;
    struct bj_modelinfo mi = model(4096);
    struct bj_jar j;
    char err[200];
    struct bj_brain_cfg b = brain(8.0, 1000);
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 1000);
    assert_false(j.clamped);
    assert_int_equal(j.kv_bytes, 1000u * 256u);
    b = brain(0, 1);
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 1);
}

static void test_clamp(void **state)
{
    (void)state;
    struct bj_modelinfo mi = model(4096);
    struct bj_jar j;
    char err[200];
    struct bj_brain_cfg b = brain(8.0, 0);
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_true(j.clamped);
    assert_int_equal(j.tokens, 4096);
    assert_int_equal(j.requested_tokens, 8L * 1024 * 1024 * 1024 / 256);
    assert_int_equal(j.kv_bytes, 4096u * 256u);
    b = brain(0, 4097); /* tokens are clamped too */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_true(j.clamped);
    assert_int_equal(j.tokens, 4096);
    assert_int_equal(j.requested_tokens, 4097);
    b = brain(0, 4096); /* exactly the training context: not clamped */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_false(j.clamped);
}

/* The original's 8:10:12 GB on a model of 512 tokens: 341, 426, 512, not 512 three times; a jar
 * given in tokens is only clamped. */
static void test_proportions(void **state)
{
    (void)state;
    struct bj_modelinfo mi = model(512);
    struct bj_jar j[4];
    struct bj_jar *all[4] = {&j[0], &j[1], &j[2], &j[3]};
    char err[200];
    struct bj_brain_cfg b[4] = {brain(8.0, 0), brain(10.0, 0), brain(12.0, 0), brain(0, 300)};
    for (int i = 0; i < 4; i++)
        assert_int_equal(bj_jar_resolve(&b[i], &mi, GGML_TYPE_F16, &j[i], err, sizeof err), 0);
    bj_jar_keep_proportions(all, 4, &mi, GGML_TYPE_F16);
    assert_int_equal(j[0].tokens, 341);
    assert_int_equal(j[1].tokens, 426);
    assert_int_equal(j[2].tokens, 512);
    assert_int_equal(j[3].tokens, 300);
    assert_true(j[0].clamped && j[1].clamped && j[2].clamped);
    assert_false(j[3].clamped);
    assert_int_equal(j[0].kv_bytes, 341u * 256u);
    /* Nothing clamped: nothing changes. */
    mi = model(0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bj_jar_resolve(&b[i], &mi, GGML_TYPE_F16, &j[i], err, sizeof err), 0);
    bj_jar_keep_proportions(all, 3, &mi, GGML_TYPE_F16);
    assert_int_equal(j[0].tokens, 8L * 1024 * 1024 * 1024 / 256);
    assert_false(j[0].clamped);
}

static void test_holds_no_token(void **state)
{
    (void)state;
    struct bj_modelinfo mi = model(4096);
    struct bj_jar j;
    char err[200] = "";
    struct bj_brain_cfg b = brain(100.0 / BJ_GB, 0); /* 100 bytes < 256 */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), -1);
    assert_non_null(strstr(err, "SUBJECT"));
    assert_non_null(strstr(err, "holds no token"));
    assert_non_null(strstr(err, "256 bytes per token"));
    b = brain(300.0 / BJ_GB, 0); /* one token */
    assert_int_equal(bj_jar_resolve(&b, &mi, GGML_TYPE_F16, &j, err, sizeof err), 0);
    assert_int_equal(j.tokens, 1);
}

static void test_kv_cells(void **state)
{
    (void)state;
    bool unified = true;
    long one[] = {1000};
    assert_int_equal(bj_jar_kv_cells(one, 1, &unified), 1024);
    assert_false(unified);
    long exact[] = {512};
    assert_int_equal(bj_jar_kv_cells(exact, 1, &unified), 512);
    /* Equal jars: one stream per brain, each padded. */
    long equal[] = {1000, 1000, 1000};
    assert_int_equal(bj_jar_kv_cells(equal, 3, &unified), 3 * 1024);
    assert_false(unified);
    /* Very different jars: one pool of the sum. */
    long diff[] = {4096, 256, 256};
    assert_int_equal(bj_jar_kv_cells(diff, 3, &unified), 4608);
    assert_true(unified);
    /* The 10% rule: 2*110 = 220 <= 1.1*210 streams; 2*130 = 260 > 1.1*230 pool. */
    long near[] = {110, 100};
    assert_int_equal(bj_jar_kv_cells(near, 2, &unified), 2 * 256);
    assert_false(unified);
    long far[] = {130, 100};
    assert_int_equal(bj_jar_kv_cells(far, 2, &unified), 256);
    assert_true(unified);
    /* Never fewer cells than the jars hold, whatever the layout. */
    long many[64];
    for (int i = 0; i < 64; i++)
        many[i] = 100 + 37 * i;
    uint32_t cells = bj_jar_kv_cells(many, 64, &unified);
    long sum = 0;
    for (int i = 0; i < 64; i++)
        sum += many[i];
    assert_true(cells >= sum);
    assert_int_equal(cells % 256, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gb_to_tokens),
        cmocka_unit_test(test_tokens_win),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_proportions),
        cmocka_unit_test(test_holds_no_token),
        cmocka_unit_test(test_kv_cells),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
