/* sampler: the fast path draws from the same distribution as llama.cpp's chain (checked against
 * the exact probabilities and against llama.cpp's own chain), with min-p by rejection sampling
 * and by weights alike, honours min-p and top-k, is
 * reproducible from its seed, restarts with reset, and survives rows of NaNs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

#define N_VOCAB 1000 /* not a multiple of the sampler's block: the last block is partial */
#define DRAWS 200000

static struct bj_sampling cfg(float temp, float min_p, int top_k, float top_p, uint32_t seed)
{
    return (struct bj_sampling){.temp = temp, .min_p = min_p, .top_k = top_k, .top_p = top_p, .seed = seed};
}

/* Logits with a few strong tokens, scattered over the row, and a long flat tail. */
static void make_row(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = -2.0f + 0.001f * (float)(i % 97);
    x[3] = 4.0f;
    x[300] = 3.5f;
    x[511] = 3.0f;
    x[998] = 2.0f;
    x[256] = 1.0f;
}

/* The exact distribution of llama.cpp's chain: top-k, min-p, temperature, softmax. */
static void expected(const float *x, int n, const struct bj_sampling *c, double *p)
{
    float max = x[0];
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    float kth = -INFINITY;
    if (c->top_k > 0) {
        float *s = malloc((size_t)n * sizeof *s);
        memcpy(s, x, (size_t)n * sizeof *s);
        for (int k = 0; k < c->top_k; k++) { /* selection by repeated max: small k */
            int best = 0;
            for (int i = 1; i < n; i++)
                best = s[i] > s[best] ? i : best;
            kth = s[best];
            s[best] = -INFINITY;
        }
        free(s);
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        bool keep = x[i] >= kth && (c->min_p <= 0 || x[i] >= max + logf(c->min_p));
        p[i] = keep ? exp(((double)x[i] - max) / c->temp) : 0.0;
        sum += p[i];
    }
    for (int i = 0; i < n; i++)
        p[i] /= sum;
}

static void histogram(struct bj_sampler *s, const float *x, int *count)
{
    memset(count, 0, N_VOCAB * sizeof *count);
    for (int d = 0; d < DRAWS; d++) {
        llama_token t = bj_sampler_sample(s, x);
        assert_true(t >= 0 && t < N_VOCAB);
        count[t]++;
    }
}

/* Every token's count within 5 standard deviations (+ a little) of its expectation; tokens the
 * chain excludes never drawn. */
static void check_counts(const int *count, const double *p)
{
    for (int i = 0; i < N_VOCAB; i++) {
        double mean = p[i] * DRAWS, sd = sqrt(DRAWS * p[i] * (1 - p[i]));
        if (p[i] == 0.0)
            assert_int_equal(count[i], 0);
        else if (fabs(count[i] - mean) > 5 * sd + 3)
            fail_msg("token %d drawn %d times, expected %.1f +- %.1f", i, count[i], mean, sd);
    }
}

static void check_chain(struct bj_sampling c)
{
    float x[N_VOCAB];
    double p[N_VOCAB];
    static int count[N_VOCAB];
    make_row(x, N_VOCAB);
    expected(x, N_VOCAB, &c, p);
    struct bj_sampler *s = bj_sampler_new(&c, N_VOCAB);
    assert_non_null(s);
    histogram(s, x, count);
    check_counts(count, p);
    bj_sampler_free(s);
}

static void test_default_chain(void **state) { check_chain(cfg(0.8f, 0.05f, 0, 1.0f, 7)); }
static void test_min_p_strict(void **state) { check_chain(cfg(1.0f, 0.3f, 0, 1.0f, 8)); }
static void test_no_filter(void **state) { check_chain(cfg(1.5f, 0.0f, 0, 1.0f, 9)); }
/* With min-p the fast path tries rejection sampling first and draws from the weights when its
 * tries run out: cold (few accepted tries) and a loose min-p (a thousand survivors, most tries
 * rejected) exercise the hand-over; the distribution stays exact in both. */
static void test_min_p_cold(void **state) { check_chain(cfg(0.1f, 0.05f, 0, 1.0f, 13)); }
static void test_min_p_loose(void **state) { check_chain(cfg(1.0f, 0.001f, 0, 1.0f, 14)); }
static void test_top_k(void **state) { check_chain(cfg(0.7f, 0.0f, 3, 1.0f, 10)); }
static void test_top_k_and_min_p(void **state) { check_chain(cfg(2.0f, 0.2f, 4, 1.0f, 11)); }

/* llama.cpp's own chain (the fallback, taken with top-p) agrees with the same expectation: the
 * test's model of the chain is llama.cpp's. */
static void test_llama_chain_agrees(void **state)
{
    struct bj_sampling c = cfg(0.8f, 0.05f, 0, 0.9999999f, 12);
    assert_false(bj_sampler_fast(&c));
    check_chain(c);
}

static void test_greedy_first_max(void **state)
{
    struct bj_sampling c = cfg(0.0f, 0.05f, 40, 0.5f, 1);
    assert_true(bj_sampler_fast(&c));
    float x[N_VOCAB];
    make_row(x, N_VOCAB);
    x[700] = x[3]; /* a tie: the first wins, as with llama.cpp's greedy */
    struct bj_sampler *s = bj_sampler_new(&c, N_VOCAB);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bj_sampler_sample(s, x), 3);
    bj_sampler_free(s);
}

static void test_seed_and_lives(void **state)
{
    struct bj_sampling c = cfg(1.0f, 0.0f, 0, 1.0f, 42);
    float x[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++)
        x[i] = 0.0f; /* uniform: every draw is the random stream itself */
    struct bj_sampler *a = bj_sampler_new(&c, N_VOCAB), *b = bj_sampler_new(&c, N_VOCAB);
    llama_token first[64];
    int differ = 0;
    for (int i = 0; i < 64; i++) {
        first[i] = bj_sampler_sample(a, x);
        assert_int_equal(bj_sampler_sample(b, x), first[i]);
        differ += i > 0 && first[i] != first[i - 1];
    }
    assert_true(differ > 50);
    /* Life 2 draws a new stream; life 2 again draws that same stream; life 1 the first. */
    llama_token second[64];
    int same_as_first = 0;
    bj_sampler_begin_life(a, 2);
    for (int i = 0; i < 64; i++)
        same_as_first += (second[i] = bj_sampler_sample(a, x)) == first[i];
    assert_true(same_as_first < 8);
    bj_sampler_begin_life(b, 2);
    for (int i = 0; i < 64; i++)
        assert_int_equal(bj_sampler_sample(b, x), second[i]);
    bj_sampler_begin_life(a, 1);
    bj_sampler_begin_life(b, 1);
    for (int i = 0; i < 64; i++) {
        llama_token t = bj_sampler_sample(a, x);
        assert_int_equal(bj_sampler_sample(b, x), t);
    }
    c.seed = 43;
    struct bj_sampler *other = bj_sampler_new(&c, N_VOCAB);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += bj_sampler_sample(other, x) == first[i];
    assert_true(same < 8);
    bj_sampler_free(a);
    bj_sampler_free(b);
    bj_sampler_free(other);
}

/* A row the model should never produce: no crash, a valid token. */
static void test_nan_row(void **state)
{
    struct bj_sampling c = cfg(0.8f, 0.05f, 0, 1.0f, 3);
    float x[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++)
        x[i] = NAN;
    struct bj_sampler *s = bj_sampler_new(&c, N_VOCAB);
    llama_token t = bj_sampler_sample(s, x);
    assert_true(t >= 0 && t < N_VOCAB);
    x[17] = INFINITY;
    t = bj_sampler_sample(s, x);
    assert_true(t >= 0 && t < N_VOCAB);
    bj_sampler_free(s);
}

/* A large vocabulary with a flat row (as a random-weight model gives): every token survives
 * min-p, draws cover the whole row, including its last, partial block. */
static void test_flat_large_vocab(void **state)
{
    enum { N = 32007 };
    struct bj_sampling c = cfg(0.8f, 0.05f, 0, 1.0f, 5);
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++)
        x[i] = 0.01f * (float)(i % 5);
    struct bj_sampler *s = bj_sampler_new(&c, N);
    int lo = N, hi = 0, tail = 0;
    for (int d = 0; d < 20000; d++) {
        llama_token t = bj_sampler_sample(s, x);
        assert_true(t >= 0 && t < N);
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
        tail += t >= 32000;
    }
    assert_true(lo < 50 && hi > N - 50 && tail > 0);
    bj_sampler_free(s);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_chain),     cmocka_unit_test(test_min_p_strict),
        cmocka_unit_test(test_no_filter),         cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_k_and_min_p),   cmocka_unit_test(test_llama_chain_agrees),
        cmocka_unit_test(test_greedy_first_max),  cmocka_unit_test(test_seed_and_lives),
        cmocka_unit_test(test_min_p_cold),        cmocka_unit_test(test_min_p_loose),
        cmocka_unit_test(test_nan_row),           cmocka_unit_test(test_flat_large_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
