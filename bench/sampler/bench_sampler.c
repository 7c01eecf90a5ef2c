/* bench_sampler: what sampling one brain's token costs on the CPU, brainjar's fast path against
 * llama.cpp's sampler chain, on a 32000-token row (Llama/Mistral's vocabulary).
 *
 *   build/bench_sampler [--vocab N] [--draws N] [--rounds R] [--model FILE.gguf]
 *
 * Two rows: "peaked" (a trained model's: a few likely tokens) and "flat" (every token survives
 * min-p); with --model a third, "model": the logits that model gives after a short prompt (on
 * the CPU), e.g. a synthetic benchmark model's, whose rows are neither. Chains: the default (min-p 0.05, temperature 0.8),
 * top-k 40 + temperature, greedy. Each line: microseconds per sample, the median of R rounds,
 * and the ratio llama.cpp / brainjar measured in the same round. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "util.h"

/* The logits row of `path` after a short prompt, in *row (malloc'ed); its vocabulary size, or 0. */
static int model_row(const char *path, float **row)
{
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model)
        return 0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = vocab ? llama_vocab_n_tokens(vocab) : 0;
    const char *text = "The brain in the jar thinks of the one who watches it, and of its last death.";
    llama_token toks[128];
    int n = ctx && n_vocab > 0 ? llama_tokenize(vocab, text, (int)strlen(text), toks, 128, true, false) : 0;
    const float *logits = NULL;
    if (n > 0 && llama_decode(ctx, llama_batch_get_one(toks, n)) == 0)
        logits = llama_get_logits_ith(ctx, -1);
    int got = 0;
    if (logits && (*row = malloc((size_t)n_vocab * sizeof **row))) {
        memcpy(*row, logits, (size_t)n_vocab * sizeof **row);
        got = n_vocab;
    }
    llama_free(ctx);
    llama_model_free(model);
    return got;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Microseconds per sample over `draws` samples. */
static double time_it(struct bj_sampler *s, const float *row, int draws)
{
    int64_t t0 = bj_now_us();
    long sink = 0;
    for (int d = 0; d < draws; d++)
        sink += bj_sampler_sample(s, row);
    int64_t t1 = bj_now_us();
    if (sink == -1)
        puts("");
    return (double)(t1 - t0) / draws;
}

/* The same with llama.cpp's chain, as the engine sampled before: the row copied into a
 * candidate array, the chain applied, the token accepted. */
static double time_chain(struct llama_sampler *chain, const float *row, int n_vocab, int draws)
{
    llama_token_data *cand = malloc((size_t)n_vocab * sizeof *cand);
    if (!cand)
        return 0.0;
    int64_t t0 = bj_now_us();
    for (int d = 0; d < draws; d++) {
        for (int t = 0; t < n_vocab; t++)
            cand[t] = (llama_token_data){t, row[t], 0.0f};
        llama_token_data_array cur = {cand, (size_t)n_vocab, -1, false};
        llama_sampler_apply(chain, &cur);
        llama_sampler_accept(chain, cur.data[cur.selected].id);
    }
    int64_t t1 = bj_now_us();
    free(cand);
    return (double)(t1 - t0) / draws;
}

int main(int argc, char **argv)
{
    int n_vocab = 32000, draws = 2000, rounds = 5;
    const char *model = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0)
            model = argv[i + 1];
        else if (strcmp(argv[i], "--vocab") == 0)
            n_vocab = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--draws") == 0)
            draws = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_sampler [--vocab N] [--draws N] [--rounds R] [--model FILE.gguf]\n");
            return 2;
        }
    }
    float *from_model = NULL;
    if (model && !(n_vocab = model_row(model, &from_model))) {
        fprintf(stderr, "bench_sampler: %s: no logits from this model\n", model);
        return 1;
    }
    if (n_vocab < 2 || draws < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "bench_sampler: bad arguments\n");
        return 2;
    }
    float *peaked = malloc((size_t)n_vocab * sizeof *peaked), *flat = malloc((size_t)n_vocab * sizeof *flat);
    if (!peaked || !flat)
        return 1;
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < n_vocab; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        float u = (float)(r >> 40) / (float)(1 << 24);
        peaked[i] = -8.0f + 6.0f * u;
        flat[i] = 0.05f * u;
    }
    for (int i = 0; i < 20; i++)
        peaked[(i * 7919) % n_vocab] = 4.0f - 0.2f * (float)i;
    struct {
        const char *name;
        struct bj_sampling cfg;
    } chains[] = {
        {"min-p 0.05, temp 0.8 (default)", {.temp = 0.8f, .top_p = 1.0f, .min_p = 0.05f, .seed = 1}},
        {"top-k 40, temp 0.8", {.temp = 0.8f, .top_p = 1.0f, .top_k = 40, .seed = 1}},
        {"greedy", {.temp = 0.0f, .top_p = 1.0f, .seed = 1}},
    };
    printf("vocabulary %d, %d samples per round, median of %d rounds (us per sample)\n", n_vocab, draws, rounds);
    printf("%-32s %-7s %10s %10s %8s\n", "chain", "row", "brainjar", "llama.cpp", "ratio");
    for (size_t c = 0; c < sizeof chains / sizeof chains[0]; c++) {
        static const char *names[] = {"peaked", "flat", "model"};
        for (int k = 0; k < (from_model ? 3 : 2); k++) {
            const float *row = k == 2 ? from_model : k ? flat : peaked;
            double fast[99], slow[99], ratio[99];
            for (int rd = 0; rd < rounds; rd++) {
                struct bj_sampler *f = bj_sampler_new(&chains[c].cfg, n_vocab);
                if (!f)
                    return 1;
                fast[rd] = time_it(f, row, draws);
                slow[rd] = time_chain(bj_sampler_chain(f), row, n_vocab, draws);
                ratio[rd] = fast[rd] > 0 ? slow[rd] / fast[rd] : 0.0;
                bj_sampler_free(f);
            }
            printf("%-32s %-7s %10.2f %10.2f %8.1f\n", chains[c].name, names[k], median(fast, rounds),
                   median(slow, rounds), median(ratio, rounds));
        }
    }
    free(peaked);
    free(flat);
    free(from_model);
    return 0;
}
