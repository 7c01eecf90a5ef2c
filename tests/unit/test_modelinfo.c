/* Unit tests for modelinfo: header facts of the tiny model, and bad files rejected clearly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelinfo.h"
#include "util.h"

static const char *tiny(void)
{
    const char *p = getenv("BJ_TINY_MODEL");
    assert_non_null(p);
    return p;
}

static void test_tiny_header(void **state)
{
    (void)state;
    struct bj_modelinfo mi;
    char err[512];
    assert_int_equal(bj_modelinfo_read(tiny(), &mi, err, sizeof err), 0);
    assert_string_equal(mi.arch, "llama");
    assert_int_equal(mi.n_layer, 2);
    assert_int_equal(mi.n_embd, 64);
    assert_int_equal(mi.n_head_kv, 2);
    assert_int_equal(mi.head_dim_k, 16);
    assert_int_equal(mi.n_vocab, 32000);
    assert_true(mi.weight_bytes > 1000000 && mi.weight_bytes < mi.file_size);
    /* f16 K and V: 2 layers x 2 kv heads x 16 dims x 2 bytes x 2 (K, V) = 256 bytes/token */
    assert_int_equal(bj_modelinfo_kv_bytes(&mi, GGML_TYPE_F16, GGML_TYPE_F16, 1), 256);
    assert_int_equal(bj_modelinfo_kv_bytes(&mi, GGML_TYPE_F16, GGML_TYPE_F16, 1000), 256000);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void expect_error(const char *path, const char *needle)
{
    struct bj_modelinfo mi;
    char err[512] = "";
    assert_int_equal(bj_modelinfo_read(path, &mi, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_bad_files(void **state)
{
    (void)state;
    char dir[256], p[512];
    snprintf(dir, sizeof dir, "/tmp/bj-modelinfo-%d", (int)getpid());
    bj_mkdirs(dir);

    expect_error("/nonexistent/model.gguf", "cannot open");
    snprintf(p, sizeof p, "%s/text.gguf", dir);
    write_bytes(p, "hello, I am not a model\n", 24);
    expect_error(p, "not a GGUF");
    expect_error(dir, "not a regular file");

    /* The first 4 KB of a real model: header cut short or data missing. */
    char *data;
    size_t n;
    assert_int_equal(bj_read_file(tiny(), &data, &n), 0);
    snprintf(p, sizeof p, "%s/head.gguf", dir);
    write_bytes(p, data, 4096);
    struct bj_modelinfo mi;
    char err[512];
    assert_int_equal(bj_modelinfo_read(p, &mi, err, sizeof err), -1);
    snprintf(p, sizeof p, "%s/cut.gguf", dir);
    write_bytes(p, data, n - 1000);
    expect_error(p, "truncated");
    free(data);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Patches the scalar value of GGUF key `key` (its bytes follow the key string and the u32 type)
 * in a copy of the model's bytes. */
static void patch_key(char *data, size_t n, const char *key, const void *val, size_t vlen)
{
    size_t klen = strlen(key);
    char *at = memmem(data, n, key, klen);
    assert_non_null(at);
    memcpy(at + klen + 4, val, vlen);
}

static void expect_patched_error(const char *dir, const char *key, const void *val, size_t vlen, const char *needle)
{
    char *data, p[512];
    size_t n;
    assert_int_equal(bj_read_file(tiny(), &data, &n), 0);
    patch_key(data, n, key, val, vlen);
    snprintf(p, sizeof p, "%s/patched.gguf", dir);
    write_bytes(p, data, n);
    free(data);
    expect_error(p, needle);
}

static void test_gate_refuses_what_llama_cannot_run(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/bj-modelinfo-gate-%d", (int)getpid());
    bj_mkdirs(dir);
    float neg = -1.0f, nan_ = NAN, zero = 0.0f;
    uint32_t three = 3, one = 1, eight = 8;
    /* ggml aborts the process on a negative epsilon: refused here instead */
    expect_patched_error(dir, "llama.attention.layer_norm_rms_epsilon", &neg, 4, "layer_norm_rms_epsilon is -1");
    expect_patched_error(dir, "llama.attention.layer_norm_rms_epsilon", &nan_, 4, "not a finite number");
    expect_patched_error(dir, "llama.rope.freq_base", &zero, 4, "freq_base is 0");
    expect_patched_error(dir, "llama.block_count", &three, 4, "tensors for 2 blocks");
    expect_patched_error(dir, "llama.block_count", &one, 4, "tensors for 2 blocks");
    expect_patched_error(dir, "llama.attention.head_count_kv", &three, 4, "does not divide");
    expect_patched_error(dir, "llama.attention.head_count_kv", &one, 4, "attn_k.weight is 64 x 32");
    expect_patched_error(dir, "llama.attention.head_count", &eight, 4, "attn_");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_header),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_gate_refuses_what_llama_cannot_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
