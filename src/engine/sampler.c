#include "sampler.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The loops over the whole row, twice as fast with AVX2 (x86-64-v3), faster again with AVX-512
 * (x86-64-v4): on x86-64 GCC builds them for each and picks one at load time (the default build
 * targets any x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ROW_LOOP __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
/* The top-k heap is branchy scalar code: its AVX-512 build measured 1.5x slower than AVX2's. */
#define HEAP_LOOP __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ROW_LOOP
#define HEAP_LOOP
#endif

/* Weights are summed per block, so a draw scans one block instead of the whole row; a block
 * whose best token is below min-p's threshold is skipped without computing a weight. */
#define BLOCK 256
/* Independent accumulators in the row loops: one AVX-512 register, two AVX2 ones. */
#define LANES 16

struct bj_sampler {
    struct bj_sampling cfg;
    bool fast;
    int n_vocab, n_blocks;
    struct llama_sampler *chain;
    uint64_t seed, rng;
    float *block_sum;        /* fast path: the weights' sums per block (lazily) */
    float *block_max;        /* ... and each block's largest logit */
    int32_t *ids;            /* top-k: the kept tokens (a heap) */
    float *w;                /* ... and their weights */
    llama_token_data *cand;  /* fallback: llama.cpp's candidate array (lazily) */
};

static struct llama_sampler *make_chain(const struct bj_sampling *s)
{
    struct llama_sampler *c = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (!c)
        return NULL;
    if (s->temp <= 0.0f) {
        llama_sampler_chain_add(c, llama_sampler_init_greedy());
        return c;
    }
    if (s->top_k > 0)
        llama_sampler_chain_add(c, llama_sampler_init_top_k(s->top_k));
    if (s->top_p < 1.0f)
        llama_sampler_chain_add(c, llama_sampler_init_top_p(s->top_p, 1));
    if (s->min_p > 0.0f)
        llama_sampler_chain_add(c, llama_sampler_init_min_p(s->min_p, 1));
    llama_sampler_chain_add(c, llama_sampler_init_temp(s->temp));
    llama_sampler_chain_add(c, llama_sampler_init_dist(s->seed));
    return c;
}

bool bj_sampler_fast(const struct bj_sampling *s) { return s->temp <= 0.0f || s->top_p >= 1.0f; }

struct bj_sampler *bj_sampler_new(const struct bj_sampling *cfg, int n_vocab)
{
    assert(n_vocab > 0);
    struct bj_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->fast = bj_sampler_fast(cfg);
    s->n_vocab = n_vocab;
    s->n_blocks = (n_vocab + BLOCK - 1) / BLOCK;
    /* As llama.cpp's dist: the default seed asks for a random one. */
    s->seed = cfg->seed == LLAMA_DEFAULT_SEED ? (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)s : cfg->seed;
    s->rng = s->seed;
    if (!(s->chain = make_chain(cfg))) {
        free(s);
        return NULL;
    }
    return s;
}

void bj_sampler_free(struct bj_sampler *s)
{
    if (!s)
        return;
    llama_sampler_free(s->chain);
    free(s->w);
    free(s->block_sum);
    free(s->block_max);
    free(s->ids);
    free(s->cand);
    free(s);
}

struct llama_sampler *bj_sampler_chain(struct bj_sampler *s) { return s->chain; }

void bj_sampler_accept(struct bj_sampler *s, llama_token t) { llama_sampler_accept(s->chain, t); }

/* splitmix64 */
static uint64_t next_u64(struct bj_sampler *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void bj_sampler_begin_life(struct bj_sampler *s, uint64_t life)
{
    s->rng = s->seed ^ (life * 0xD1B54A32D192ED03ull);
    (void)next_u64(s); /* one step of mixing, so neighbouring lives start far apart */
}

/* A uniform double in [0, 1). */
static double next_uniform(struct bj_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

/* Inlined into the row loops below, so it is built for each of their targets. */
static inline float max_lanes(const float *x, int n)
{
    float m[LANES];
    for (int j = 0; j < LANES; j++)
        m[j] = -FLT_MAX;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    float r = -FLT_MAX;
    for (int j = 0; j < LANES; j++)
        r = m[j] > r ? m[j] : r;
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

ROW_LOOP static float max_of(const float *x, int n) { return max_lanes(x, n); }

/* The largest logit of each block into bmax, and of the row. */
ROW_LOOP static float block_maxima(const float *x, int n, float *bmax)
{
    float r = -FLT_MAX;
    for (int b = 0; b * BLOCK < n; b++) {
        int len = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
        bmax[b] = max_lanes(x + b * BLOCK, len);
        r = bmax[b] > r ? bmax[b] : r;
    }
    return r;
}

/* The first of the best tokens (llama.cpp's greedy), in two passes that vectorize. */
ROW_LOOP static int argmax(const float *x, int n)
{
    float max = max_of(x, n);
    for (int i = 0; i < n; i++)
        if (x[i] == max)
            return i;
    return 0; /* NaNs only */
}

/* The k best tokens of x (k < n) into ids, as a min-heap on their logits: one comparison per
 * token for all but the few that enter. Of tokens tied with the k-th best, the first stay. */
HEAP_LOOP static void top_k(const float *x, int n, int k, int32_t *ids)
{
    for (int i = 0; i < n; i++) {
        int at;
        if (i < k) { /* grow: sift the new one up */
            at = i;
            while (at > 0 && x[i] < x[ids[(at - 1) / 2]]) {
                ids[at] = ids[(at - 1) / 2];
                at = (at - 1) / 2;
            }
        } else if (x[i] > x[ids[0]]) { /* replace the smallest: sift down */
            at = 0;
            for (int c; (c = 2 * at + 1) < k; at = c) {
                if (c + 1 < k && x[ids[c + 1]] < x[ids[c]])
                    c++;
                if (x[ids[c]] >= x[i])
                    break;
                ids[at] = ids[c];
            }
        } else {
            continue;
        }
        ids[at] = (int32_t)i;
    }
}

/* exp(x) for x <= 0 by a degree-6 polynomial (Cephes' expf), written so that the loop calling
 * it vectorizes: no branches, no library calls. Relative error under 2e-7 above -87. Below -87
 * and NaN become -87 (NaN must not reach the integer conversion below: a row of NaNs or
 * infinities gives (x - max) = NaN; such tokens get no weight anyway). x - max is never above 0. */
static inline float exp_neg(float x)
{
    x = x >= -87.0f ? x : -87.0f;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* The weight of one token: exp((x - max) / temp) where x >= thr, else 0. */
static inline float weight(float x, float max, float thr, float inv_temp)
{
    float e = exp_neg((x - max) * inv_temp);
    return x >= thr ? e : 0.0f;
}

/* The weights' sum per block of the row, and in all. Nothing is stored but the block sums: the
 * draw recomputes the weights of one block, so the row is read twice and never written. */
ROW_LOOP static double weigh(struct bj_sampler *s, const float *x, float max, float thr, float inv_temp)
{
    int n = s->n_vocab, full = n / BLOCK;
    double total = 0.0;
    for (int b = 0; b < s->n_blocks; b++) {
        const float *xb = x + b * BLOCK;
        int len = b < full ? BLOCK : n - full * BLOCK;
        if (s->block_max[b] < thr) { /* no token of it survives min-p */
            s->block_sum[b] = 0.0f;
            continue;
        }
        float acc[LANES] = {0};
        int i = 0;
        for (; i + LANES <= len; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += weight(xb[i + j], max, thr, inv_temp);
        for (; i < len; i++)
            acc[0] += weight(xb[i], max, thr, inv_temp);
        float sum = 0.0f;
        for (int j = 0; j < LANES; j++)
            sum += acc[j];
        s->block_sum[b] = sum;
        total += sum;
    }
    return total;
}

/* The token whose weight interval holds u (0 <= u < total). */
static int draw(const struct bj_sampler *s, const float *x, float max, float thr, float inv_temp, double u)
{
    int last = -1;
    for (int b = 0; b < s->n_blocks; b++) {
        if (s->block_sum[b] <= 0.0f)
            continue;
        last = b;
        if (u >= s->block_sum[b]) {
            u -= s->block_sum[b];
            continue;
        }
        break;
    }
    /* In the chosen block (or, when rounding left u past the end, the last with a weight). */
    assert(last >= 0);
    int end = last * BLOCK + BLOCK < s->n_vocab ? last * BLOCK + BLOCK : s->n_vocab, pick = -1;
    for (int i = last * BLOCK; i < end; i++) {
        float w = weight(x[i], max, thr, inv_temp);
        if (w <= 0.0f)
            continue;
        pick = i;
        if (u < w)
            break;
        u -= w;
    }
    return pick >= 0 ? pick : last * BLOCK;
}

/* With min-p, every surviving token's weight is at least min_p^(1/temp) of the best one's (1),
 * so a token drawn uniformly from the row and kept with probability equal to its weight (none
 * below the threshold) is a draw from the exact distribution (rejection sampling): a try is one
 * random index, one compare and at most one exp, where the weights cost an exp per token. Tried
 * only when most blocks hold survivors (a flat row, as random-weight models give); a peaked
 * row's few live blocks make the weights cheap instead. Gives up after REJECT_TRIES tries
 * (LLAMA_TOKEN_NULL); the caller then draws from the weights, which keeps the distribution
 * exact: every try's outcome, given that it accepts, already follows it. */
#define REJECT_TRIES 256

static llama_token sample_rejection(struct bj_sampler *s, const float *x, float max, float thr, float inv_temp)
{
    int live = 0;
    for (int b = 0; b < s->n_blocks; b++)
        live += s->block_max[b] >= thr;
    if (live * 4 < s->n_blocks * 3)
        return LLAMA_TOKEN_NULL;
    for (int t = 0; t < REJECT_TRIES; t++) {
        int i = (int)(((next_u64(s) >> 32) * (uint64_t)s->n_vocab) >> 32); /* uniform in [0, n_vocab) */
        if (x[i] >= thr && next_uniform(s) < (double)exp_neg((x[i] - max) * inv_temp))
            return i;
    }
    return LLAMA_TOKEN_NULL;
}

/* top-k: weights and the draw over the k kept tokens only. */
static llama_token sample_top_k(struct bj_sampler *s, const float *x)
{
    const struct bj_sampling *c = &s->cfg;
    int k = c->top_k;
    top_k(x, s->n_vocab, k, s->ids);
    float max = -FLT_MAX;
    for (int j = 0; j < k; j++)
        max = x[s->ids[j]] > max ? x[s->ids[j]] : max;
    float thr = c->min_p > 0.0f ? max + logf(c->min_p) : -INFINITY;
    double total = 0.0;
    for (int j = 0; j < k; j++) {
        float l = x[s->ids[j]];
        s->w[j] = l >= thr ? exp_neg((l - max) / c->temp) : 0.0f;
        total += s->w[j];
    }
    if (!(total >= 1.0) || !isfinite(total))
        return argmax(x, s->n_vocab);
    double u = next_uniform(s) * total;
    int last = 0;
    for (int j = 0; j < k; j++) {
        if (s->w[j] <= 0.0f)
            continue;
        if (u < s->w[j])
            return s->ids[j];
        u -= s->w[j];
        last = j;
    }
    return s->ids[last];
}

static llama_token sample_fast(struct bj_sampler *s, const float *x)
{
    const struct bj_sampling *c = &s->cfg;
    if (c->temp <= 0.0f)
        return argmax(x, s->n_vocab);
    bool use_top_k = c->top_k > 0 && c->top_k < s->n_vocab;
    if (!s->block_sum) {
        s->block_sum = malloc((size_t)s->n_blocks * sizeof *s->block_sum);
        s->block_max = malloc((size_t)s->n_blocks * sizeof *s->block_max);
        if (use_top_k) {
            s->ids = malloc((size_t)c->top_k * sizeof *s->ids);
            s->w = malloc((size_t)c->top_k * sizeof *s->w);
        }
        if (!s->block_sum || !s->block_max || (use_top_k && (!s->ids || !s->w))) {
            free(s->w), free(s->block_sum), free(s->block_max), free(s->ids);
            s->w = s->block_sum = s->block_max = NULL, s->ids = NULL;
            return LLAMA_TOKEN_NULL;
        }
    }
    if (use_top_k)
        return sample_top_k(s, x);
    float max = block_maxima(x, s->n_vocab, s->block_max), inv_temp = 1.0f / c->temp;
    float thr = c->min_p > 0.0f ? max + logf(c->min_p) : -INFINITY;
    if (c->min_p > 0.0f && isfinite(max) && max > -FLT_MAX) { /* not for rows of NaNs or infinities */
        llama_token t = sample_rejection(s, x, max, thr, inv_temp);
        if (t != LLAMA_TOKEN_NULL)
            return t;
    }
    double total = weigh(s, x, max, thr, inv_temp);
    /* The best token has weight 1, so total >= 1, unless the row holds NaNs or infinities. */
    if (!(total >= 1.0) || !isfinite(total))
        return argmax(x, s->n_vocab);
    return draw(s, x, max, thr, inv_temp, next_uniform(s) * total);
}

static llama_token sample_chain(struct bj_sampler *s, const float *x)
{
    if (!s->cand && !(s->cand = malloc((size_t)s->n_vocab * sizeof *s->cand)))
        return LLAMA_TOKEN_NULL;
    for (int t = 0; t < s->n_vocab; t++)
        s->cand[t] = (llama_token_data){t, x[t], 0.0f};
    llama_token_data_array cur = {s->cand, (size_t)s->n_vocab, -1, false};
    llama_sampler_apply(s->chain, &cur);
    return cur.data[cur.selected].id;
}

llama_token bj_sampler_sample(struct bj_sampler *s, const float *logits)
{
    llama_token t = s->fast ? sample_fast(s, logits) : sample_chain(s, logits);
    if (t != LLAMA_TOKEN_NULL)
        llama_sampler_accept(s->chain, t);
    return t;
}
