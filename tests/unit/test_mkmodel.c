/* Unit tests for mkmodel: the tiny model loads through llama.h, its tokenizer round-trips,
 * generation is deterministic for a fixed seed, and bad input leaves no file behind. */
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

#include <llama.h>

#include "mkmodel.h"
#include "util.h"

static char g_dir[1024];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("BJ_TEST_TMP") ? getenv("BJ_TEST_TMP") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/mkmodel-%d", base, (int)getpid());
    bj_mkdirs(g_dir);
    llama_backend_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llama_backend_free();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void make_tiny(const char *path, uint64_t seed)
{
    struct bj_mkmodel_params p = bj_mkmodel_params_default();
    p.out_path = path;
    p.seed = seed;
    p.quiet = true;
    char err[512] = "";
    assert_int_equal(bj_mkmodel_write(&p, err, sizeof err), 0);
}

/* Generates n tokens greedily-with-seed from a prompt; returns them in out. */
static void generate(struct llama_model *m, uint32_t seed, llama_token *out, int n)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    assert_non_null(ctx);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    llama_token prompt[64];
    int np = llama_tokenize(v, "The jar is full.", 16, prompt, 64, true, false);
    assert_true(np > 0);
    struct llama_sampler *s = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(s, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(s, llama_sampler_init_temp(0.8f));
    llama_sampler_chain_add(s, llama_sampler_init_dist(seed));
    struct llama_batch b = llama_batch_get_one(prompt, np);
    for (int i = 0; i < n; i++) {
        assert_int_equal(llama_decode(ctx, b), 0);
        out[i] = llama_sampler_sample(s, ctx, -1);
        b = llama_batch_get_one(&out[i], 1);
    }
    llama_sampler_free(s);
    llama_free(ctx);
}

static void test_tiny_loads_tokenizes_generates(void **state)
{
    (void)state;
    char path[1100];
    snprintf(path, sizeof path, "%s/tiny.gguf", g_dir);
    make_tiny(path, 7);
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *m = llama_model_load_from_file(path, mp);
    assert_non_null(m);
    assert_int_equal(llama_model_n_layer(m), 2);

    /* The real Llama tokenizer: a sentence round-trips through tokens. */
    const struct llama_vocab *v = llama_model_get_vocab(m);
    assert_int_equal(llama_vocab_n_tokens(v), 32000);
    const char *text = "I think, therefore I am in a jar.";
    llama_token toks[64];
    int n = llama_tokenize(v, text, (int)strlen(text), toks, 64, false, false);
    assert_true(n > 5 && n < 20);
    char back[256];
    int len = llama_detokenize(v, toks, n, back, sizeof back - 1, false, false);
    assert_true(len > 0);
    back[len] = '\0';
    assert_string_equal(back, text);

    /* A few hundred tokens, twice with the same seed: identical. */
    enum { N = 300 };
    llama_token a[N], b[N], c[N];
    generate(m, 1234, a, N);
    generate(m, 1234, b, N);
    generate(m, 999, c, N);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    llama_model_free(m);
}

static void test_same_seed_same_file(void **state)
{
    (void)state;
    char p1[1100], p2[1100];
    snprintf(p1, sizeof p1, "%s/a.gguf", g_dir);
    snprintf(p2, sizeof p2, "%s/b.gguf", g_dir);
    make_tiny(p1, 3);
    make_tiny(p2, 3);
    char *d1, *d2;
    size_t n1, n2;
    assert_int_equal(bj_read_file(p1, &d1, &n1), 0);
    assert_int_equal(bj_read_file(p2, &d2, &n2), 0);
    assert_int_equal(n1, n2);
    assert_memory_equal(d1, d2, n1);
    free(d1);
    free(d2);
}

static void expect_failure(struct bj_mkmodel_params *p, const char *needle)
{
    char err[512] = "";
    p->quiet = true;
    assert_int_equal(bj_mkmodel_write(p, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    if (p->out_path)
        assert_false(exists(p->out_path));
}

static void test_bad_input(void **state)
{
    (void)state;
    char path[1100];
    snprintf(path, sizeof path, "%s/bad.gguf", g_dir);
    struct bj_mkmodel_params p = bj_mkmodel_params_default();
    assert_int_equal(bj_mkmodel_preset("llama-9000", &p), -1);
    assert_int_equal(bj_mkmodel_ftype_parse("Q3_XYZ"), -1);

    p.out_path = path;
    p.n_head = 3; /* 64 does not split into 3 heads */
    expect_failure(&p, "impossible shape");

    p = bj_mkmodel_params_default();
    p.out_path = path;
    p.vocab_path = "/nonexistent/vocab.gguf";
    expect_failure(&p, "vocabulary");

    p = bj_mkmodel_params_default();
    p.out_path = "/nonexistent-dir/x.gguf";
    expect_failure(&p, "cannot write");

    /* Only a regular file is ever replaced: not a device, not a symlink (left as they are). */
    char err[512] = "", link[1100];
    p = bj_mkmodel_params_default();
    p.quiet = true;
    p.out_path = "/dev/null";
    assert_int_equal(bj_mkmodel_write(&p, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    snprintf(link, sizeof link, "%s/link.gguf", g_dir);
    assert_int_equal(symlink("/dev/null", link), 0);
    p.out_path = link;
    assert_int_equal(bj_mkmodel_write(&p, err, sizeof err), -1);
    assert_non_null(strstr(err, "symbolic link"));
    unlink(link);

    p = bj_mkmodel_params_default();
    p.out_path = "";
    expect_failure(&p, "output path");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_loads_tokenizes_generates),
        cmocka_unit_test(test_same_seed_same_file),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
