/* brainjar-train: trains brainjar's default voice, a small llama-architecture model, from scratch
 * with llama.cpp's own training API (llama_opt_init / llama_opt_epoch, ggml-opt's AdamW).
 *
 *   brainjar-train init   -o init.gguf [--embd N --layers N --heads N --ff N --ctx N --seed S]
 *       random F32 weights from brainjar's mkmodel, with the Llama-2 SPM tokenizer
 *   brainjar-train train  --model M.gguf --train T.txt [--valid V.txt] --out CKPT.gguf [...]
 *       trains (or resumes: CKPT.gguf.state holds the step) for at most --time-limit seconds,
 *       saving the F32 checkpoint atomically; one CSV line per optimizer step
 *   brainjar-train eval   --model M.gguf --text V.txt       held-out loss and perplexity
 *   brainjar-train convert --model IN.gguf --out OUT.gguf --type F32|F16|Q8_0|Q6_K
 *   brainjar-train sample --model M.gguf [--prompt P] [-n N] [--seed S]
 *   brainjar-train tokenize --text T.txt --out T.tok   the text as llama.cpp tokenizes it for
 *       training (a BOS before each unit), little-endian int32, for tools/train-voice.py
 *   brainjar-train import --model SHAPE.gguf --weights DIR --out OUT.gguf
 *       SHAPE.gguf (from init: the shape and the tokenizer) with every tensor's values replaced
 *       by those in DIR/manifest.txt + DIR/weights.bin (F32, F16 or Q8_0; tools/train-voice.py)
 *
 * Reproducible: the order of training windows is a permutation drawn from the seed, per epoch,
 * and the learning rate is a function of the global step; a resumed run continues both. What a
 * resume does NOT carry over is AdamW's moments (llama.cpp keeps them private): after a resume
 * the learning rate warms up again over --rewarm steps. Not part of the daemon; single thread of
 * control (llama.cpp uses its own worker threads). */
#include "mkmodel.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ggml-opt.h>
#include <gguf.h>
#include <llama.h>

static int g_verbose;

static void quiet_log(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (g_verbose || level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- text and tokens ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "brainjar-train: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

struct tokens {
    llama_token *v;
    size_t n, cap;
};

static int tokens_push(struct tokens *t, const llama_token *v, size_t n)
{
    if (t->n + n > t->cap) {
        size_t cap = t->cap ? t->cap : 1 << 20;
        while (cap < t->n + n)
            cap *= 2;
        llama_token *nv = realloc(t->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        t->v = nv;
        t->cap = cap;
    }
    memcpy(t->v + t->n, v, n * sizeof *v);
    t->n += n;
    return 0;
}

/* The corpus is units separated by blank lines (scripts/corpus); each unit is tokenized with a
 * BOS in front, as brainjar's prompts are, and the units are concatenated. */
static int tokenize_file(const struct llama_vocab *vocab, const char *path, struct tokens *out)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return -1;
    int cap = 1 << 16;
    llama_token *buf = malloc((size_t)cap * sizeof *buf);
    char *p = text;
    int rc = 0;
    while (*p && buf) {
        char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) + 2 : strlen(p);
        int nt = llama_tokenize(vocab, p, (int32_t)n, buf, cap, true, false);
        if (nt < 0) {
            cap = -nt + 16;
            llama_token *nb = realloc(buf, (size_t)cap * sizeof *nb);
            if (!nb) {
                rc = -1;
                break;
            }
            buf = nb;
            continue;
        }
        if (tokens_push(out, buf, (size_t)nt)) {
            rc = -1;
            break;
        }
        p += n;
        while (*p == '\n')
            p++;
    }
    if (!buf)
        rc = -1;
    free(buf);
    free(text);
    if (rc)
        fprintf(stderr, "brainjar-train: out of memory tokenizing %s\n", path);
    return rc;
}

/* ---- model and context ---- */

static struct llama_model *load_model(const char *path, int gpu_layers)
{
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = gpu_layers;
    mp.load_mode = LLAMA_LOAD_MODE_NONE; /* writable weights, no mmap */
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m)
        fprintf(stderr, "brainjar-train: cannot load model %s\n", path);
    return m;
}

static struct llama_context *train_context(struct llama_model *m, int n_ctx, int threads)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_ubatch = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.type_k = cp.type_v = GGML_TYPE_F32; /* OUT_PROD has no F16 backward */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; /* FLASH_ATTN_EXT has no backward pass */
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) {
        fprintf(stderr, "brainjar-train: cannot create a context of %d tokens\n", n_ctx);
    } else if ((int)llama_n_ctx(c) != n_ctx) { /* llama.cpp pads contexts (to 256) */
        fprintf(stderr, "brainjar-train: --ctx %d became %u in llama.cpp: use a multiple of 256\n", n_ctx,
                llama_n_ctx(c));
        llama_free(c);
        c = NULL;
    }
    return c;
}

/* A dataset of windows: datapoint i is tokens[starts[i] .. +n_ctx], its labels the next tokens. */
static ggml_opt_dataset_t make_dataset(const struct tokens *t, const size_t *starts, int64_t n, int n_ctx)
{
    ggml_opt_dataset_t ds = ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n_ctx, n_ctx, n, 1);
    int32_t *data = ggml_opt_dataset_data(ds)->data;
    int32_t *labels = ggml_opt_dataset_labels(ds)->data;
    for (int64_t i = 0; i < n; i++) {
        memcpy(data + i * n_ctx, t->v + starts[i], (size_t)n_ctx * sizeof(int32_t));
        memcpy(labels + i * n_ctx, t->v + starts[i] + 1, (size_t)n_ctx * sizeof(int32_t));
    }
    return ds;
}

/* ---- training state ---- */

struct train_state {
    /* hyper-parameters */
    uint64_t seed;
    int n_ctx;
    float lr, lr_min, wd, beta1, beta2;
    int warmup, rewarm;
    int64_t total_steps;
    /* progress */
    int64_t step;       /* optimizer steps done, over all runs */
    int64_t run_step0;  /* step at which this run started */
    double tokens_run;  /* tokens trained in this run */
    double t_run0;      /* when this run's training started */
    FILE *csv;
    int64_t n_windows;  /* windows per epoch */
};

static float lr_at(const struct train_state *s, int64_t step)
{
    float lr;
    int64_t total = s->total_steps > 0 ? s->total_steps : 1;
    if (step < s->warmup) {
        lr = s->lr * (float)(step + 1) / (float)s->warmup;
    } else if (s->total_steps <= 0) {
        lr = s->lr; /* the schedule is not planned yet (--budget-s) */
    } else {
        double prog = (double)(step - s->warmup) / (double)(total > s->warmup ? total - s->warmup : 1);
        if (prog > 1)
            prog = 1;
        lr = s->lr_min + 0.5f * (s->lr - s->lr_min) * (float)(1 + cos(M_PI * prog));
    }
    int64_t since = step - s->run_step0;
    if (s->run_step0 > 0 && since < s->rewarm) /* fresh AdamW moments after a resume */
        lr *= (float)(since + 1) / (float)s->rewarm;
    return lr;
}

static struct ggml_opt_optimizer_params opt_params(void *ud)
{
    struct train_state *s = ud;
    struct ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(NULL);
    p.adamw.alpha = lr_at(s, s->step);
    p.adamw.beta1 = s->beta1;
    p.adamw.beta2 = s->beta2;
    p.adamw.eps = 1e-8f;
    p.adamw.wd = s->wd;
    return p;
}

static struct train_state *g_state; /* the epoch callback has no user data */

static void on_train_batch(bool train, ggml_opt_context_t opt, ggml_opt_dataset_t ds, ggml_opt_result_t result,
                           int64_t ibatch, int64_t ibatch_max, int64_t t_start_us)
{
    (void)opt, (void)ds, (void)ibatch, (void)ibatch_max, (void)t_start_us;
    struct train_state *s = g_state;
    if (!train || !s)
        return;
    double loss, unc;
    ggml_opt_result_loss(result, &loss, &unc);
    ggml_opt_result_reset(result); /* one batch per reading: the loss of this step alone */
    float lr = lr_at(s, s->step);
    s->step++;
    s->tokens_run += s->n_ctx;
    double el = now_s() - s->t_run0;
    if (s->csv) {
        fprintf(s->csv, "%lld,%.4f,%.6f,%.6g,%.0f,%.2f\n", (long long)s->step,
                (double)s->step / (double)s->n_windows, loss, (double)lr, s->tokens_run, el);
        if (s->step % 50 == 0)
            fflush(s->csv);
    }
    if (s->step % 100 == 0 || s->step == s->run_step0 + 1)
        fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s\n", (long long)s->step,
                (long long)s->total_steps, loss, (double)lr, s->tokens_run / (el > 0 ? el : 1));
}

static int state_load(const char *path, struct train_state *s)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char key[64];
    double v;
    while (fscanf(f, "%63[^=]=%lf\n", key, &v) == 2) {
        if (!strcmp(key, "step")) s->step = (int64_t)v;
        else if (!strcmp(key, "total_steps")) s->total_steps = (int64_t)v;
        else if (!strcmp(key, "seed")) s->seed = (uint64_t)v;
    }
    fclose(f);
    return 0;
}

static int state_save(const char *path, const struct train_state *s)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "step=%lld\ntotal_steps=%lld\nseed=%llu\nctx=%d\nlr=%g\nlr_min=%g\nwd=%g\nbeta1=%g\nbeta2=%g\nwarmup=%d\n",
            (long long)s->step, (long long)s->total_steps, (unsigned long long)s->seed, s->n_ctx, (double)s->lr,
            (double)s->lr_min, (double)s->wd, (double)s->beta1, (double)s->beta2, s->warmup);
    if (fclose(f))
        return -1;
    return rename(tmp, path);
}

static int save_checkpoint(struct llama_model *m, const char *out, const struct train_state *s)
{
    char tmp[4096], st[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    snprintf(st, sizeof st, "%s.state", out);
    double t0 = now_s();
    llama_model_save_to_file(m, tmp);
    if (rename(tmp, out) || state_save(st, s)) {
        fprintf(stderr, "brainjar-train: cannot save checkpoint %s: %s\n", out, strerror(errno));
        return -1;
    }
    fprintf(stderr, "checkpoint %s at step %lld (%.1f s)\n", out, (long long)s->step, now_s() - t0);
    return 0;
}

/* The window starts of an epoch, shuffled by a generator seeded from (seed, epoch). */
static void epoch_order(size_t *order, int64_t n, size_t stride, uint64_t seed, int64_t epoch)
{
    uint64_t rs = seed * 0x100000001b3ULL + (uint64_t)epoch;
    for (int64_t i = 0; i < n; i++)
        order[i] = (size_t)i * stride;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&rs) % (uint64_t)(i + 1));
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Mean per-token cross-entropy over the non-overlapping windows of `t` (at most max_windows). */
static double eval_loss(struct llama_context *c, const struct tokens *t, int n_ctx, int64_t max_windows,
                        int64_t *n_tokens)
{
    int64_t n = t->n > (size_t)n_ctx ? (int64_t)((t->n - 1) / (size_t)n_ctx) : 0;
    if (max_windows > 0 && n > max_windows)
        n = max_windows;
    if (n == 0)
        return NAN;
    size_t *starts = malloc((size_t)n * sizeof *starts);
    for (int64_t i = 0; i < n; i++)
        starts[i] = (size_t)i * (size_t)n_ctx;
    ggml_opt_dataset_t ds = make_dataset(t, starts, n, n_ctx);
    ggml_opt_result_t res = ggml_opt_result_init();
    llama_opt_epoch(c, ds, NULL, res, 0, NULL, NULL);
    double loss, unc;
    ggml_opt_result_loss(res, &loss, &unc);
    ggml_opt_result_free(res);
    ggml_opt_dataset_free(ds);
    free(starts);
    *n_tokens = n * n_ctx;
    return loss;
}

/* ---- subcommands ---- */

enum {
    O_MODEL = 256, O_TRAIN, O_VALID, O_OUT, O_CSV, O_SEED, O_CTX, O_LR, O_LR_MIN, O_WD, O_BETA2, O_WARMUP, O_REWARM,
    O_STEPS, O_BUDGET, O_TIME, O_SAVE_EVERY, O_GPU, O_THREADS, O_EMBD, O_LAYERS, O_HEADS, O_FF, O_VOCAB, O_TYPE,
    O_TEXT, O_EVAL_MAX, O_PROMPT, O_TEMP, O_N, O_VERBOSE, O_EPOCHS, O_EMBD_TYPE, O_SHRINK, O_WEIGHTS
};

static const struct option k_opts[] = {
    {"model", required_argument, 0, O_MODEL}, {"train", required_argument, 0, O_TRAIN},
    {"valid", required_argument, 0, O_VALID}, {"out", required_argument, 0, O_OUT},
    {"csv", required_argument, 0, O_CSV}, {"seed", required_argument, 0, O_SEED},
    {"ctx", required_argument, 0, O_CTX}, {"lr", required_argument, 0, O_LR},
    {"lr-min", required_argument, 0, O_LR_MIN}, {"wd", required_argument, 0, O_WD},
    {"beta2", required_argument, 0, O_BETA2}, {"warmup", required_argument, 0, O_WARMUP},
    {"rewarm", required_argument, 0, O_REWARM}, {"steps", required_argument, 0, O_STEPS},
    {"budget-s", required_argument, 0, O_BUDGET}, {"time-limit", required_argument, 0, O_TIME},
    {"save-every", required_argument, 0, O_SAVE_EVERY}, {"gpu-layers", required_argument, 0, O_GPU},
    {"threads", required_argument, 0, O_THREADS}, {"embd", required_argument, 0, O_EMBD},
    {"layers", required_argument, 0, O_LAYERS}, {"heads", required_argument, 0, O_HEADS},
    {"ff", required_argument, 0, O_FF}, {"vocab", required_argument, 0, O_VOCAB},
    {"type", required_argument, 0, O_TYPE}, {"text", required_argument, 0, O_TEXT},
    {"eval-windows", required_argument, 0, O_EVAL_MAX}, {"prompt", required_argument, 0, O_PROMPT},
    {"temp", required_argument, 0, O_TEMP}, {"tokens", required_argument, 0, 'n'},
    {"verbose", no_argument, 0, O_VERBOSE}, {"epochs", required_argument, 0, O_EPOCHS},
    {"embd-type", required_argument, 0, O_EMBD_TYPE}, {"shrink", required_argument, 0, O_SHRINK},
    {"weights", required_argument, 0, O_WEIGHTS},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};

struct args {
    const char *model, *train, *valid, *out, *csv, *vocab, *type, *text, *prompt, *embd_type, *weights;
    uint64_t seed;
    int n_ctx, warmup, rewarm, gpu_layers, threads, n_tokens;
    uint32_t embd, layers, heads, ff;
    float lr, lr_min, wd, beta2, temp, epochs, shrink;
    int64_t steps, eval_windows;
    double budget_s, time_limit, save_every;
};

static void usage(FILE *f)
{
    fputs("usage: brainjar-train init|train|eval|convert|sample|tokenize|import [options]\n"
          "  init     -o FILE [--embd 256 --layers 6 --heads 4 --ff 768 --ctx 512 --seed 1 --vocab V]\n"
          "  train    --model M --train T.txt [--valid V.txt] --out CKPT [--csv LOSS.csv] [--seed 1]\n"
          "           [--ctx 512] [--lr 4e-4 --lr-min 3e-5 --wd 0.01 --beta2 0.99 --warmup 400 --rewarm 50]\n"
          "           [--steps N | --budget-s S | --epochs E] [--time-limit S] [--save-every S]\n"
          "           [--gpu-layers 99] [--threads N] [--eval-windows 64]\n"
          "  eval     --model M --text V.txt [--ctx 512] [--eval-windows N]\n"
          "  convert  --model IN --out OUT --type F32|F16|Q8_0|Q6_K [--embd-type Q4_K|Q5_K|Q6_K|Q8_0|Q4_0|Q5_0]\n"
          "           [--shrink S]  (an F32 IN: divide what the blocks add to the residual stream by S;\n"
          "           keys with non-finite values are always dropped)\n"
          "  sample   --model M [--prompt P] [-n 64] [--temp 0.8] [--seed 1]\n"
          "  tokenize --text T.txt --out T.tok [--vocab V]   (int32 tokens, a BOS before each unit)\n"
          "  import   --model SHAPE.gguf --weights DIR --out OUT.gguf   (DIR: manifest.txt, weights.bin)\n",
          f);
}

static int parse(int argc, char **argv, struct args *a)
{
    *a = (struct args){.seed = 1, .n_ctx = 512, .warmup = 400, .rewarm = 50, .gpu_layers = 99,
                       .threads = (int)sysconf(_SC_NPROCESSORS_ONLN), .n_tokens = 64, .embd = 256, .layers = 6,
                       .heads = 4, .ff = 768, .lr = 4e-4f, .lr_min = 3e-5f, .wd = 0.01f, .beta2 = 0.99f,
                       .temp = 0.8f, .eval_windows = 64, .time_limit = 1e9, .save_every = 120, .type = "Q8_0",
                       .prompt = ""};
#ifdef BJ_VOCAB_FILE
    a->vocab = BJ_VOCAB_FILE;
#endif
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "o:n:h", k_opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: a->model = optarg; break;
        case O_TRAIN: a->train = optarg; break;
        case O_VALID: a->valid = optarg; break;
        case 'o':
        case O_OUT: a->out = optarg; break;
        case O_CSV: a->csv = optarg; break;
        case O_SEED: a->seed = strtoull(optarg, NULL, 10); break;
        case O_CTX: a->n_ctx = atoi(optarg); break;
        case O_LR: a->lr = strtof(optarg, NULL); break;
        case O_LR_MIN: a->lr_min = strtof(optarg, NULL); break;
        case O_WD: a->wd = strtof(optarg, NULL); break;
        case O_BETA2: a->beta2 = strtof(optarg, NULL); break;
        case O_WARMUP: a->warmup = atoi(optarg); break;
        case O_REWARM: a->rewarm = atoi(optarg); break;
        case O_STEPS: a->steps = atoll(optarg); break;
        case O_BUDGET: a->budget_s = atof(optarg); break;
        case O_EPOCHS: a->epochs = strtof(optarg, NULL); break;
        case O_TIME: a->time_limit = atof(optarg); break;
        case O_SAVE_EVERY: a->save_every = atof(optarg); break;
        case O_GPU: a->gpu_layers = atoi(optarg); break;
        case O_THREADS: a->threads = atoi(optarg); break;
        case O_EMBD: a->embd = (uint32_t)atoi(optarg); break;
        case O_LAYERS: a->layers = (uint32_t)atoi(optarg); break;
        case O_HEADS: a->heads = (uint32_t)atoi(optarg); break;
        case O_FF: a->ff = (uint32_t)atoi(optarg); break;
        case O_VOCAB: a->vocab = optarg; break;
        case O_TYPE: a->type = optarg; break;
        case O_EMBD_TYPE: a->embd_type = optarg; break;
        case O_SHRINK: a->shrink = strtof(optarg, NULL); break;
        case O_WEIGHTS: a->weights = optarg; break;
        case O_TEXT: a->text = optarg; break;
        case O_EVAL_MAX: a->eval_windows = atoll(optarg); break;
        case O_PROMPT: a->prompt = optarg; break;
        case O_TEMP: a->temp = strtof(optarg, NULL); break;
        case 'n': a->n_tokens = atoi(optarg); break;
        case O_VERBOSE: g_verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (a->n_ctx < 16 || a->warmup < 1 || a->rewarm < 1 || a->threads < 1) {
        fprintf(stderr, "brainjar-train: --ctx >= 16, --warmup, --rewarm and --threads >= 1\n");
        return -1;
    }
    return 0;
}

static int cmd_init(const struct args *a)
{
    if (!a->out || !a->vocab) {
        fprintf(stderr, "brainjar-train init: -o FILE and a vocab (--vocab) are needed\n");
        return 2;
    }
    struct bj_mkmodel_params p = bj_mkmodel_params_default();
    snprintf(p.name, sizeof p.name, "brainjar-voice");
    p.n_embd = a->embd;
    p.n_layer = a->layers;
    p.n_head = p.n_head_kv = a->heads;
    p.n_ff = a->ff;
    p.n_ctx_train = (uint32_t)a->n_ctx;
    p.rope_freq_base = 10000.0f;
    p.ftype = LLAMA_FTYPE_ALL_F32;
    p.tie_output = false; /* llama.cpp trains output.weight but never token_embd (see README) */
    p.seed = a->seed;
    p.vocab_path = a->vocab;
    p.out_path = a->out;
    p.quiet = true;
    char err[512];
    if (bj_mkmodel_write(&p, err, sizeof err)) {
        fprintf(stderr, "brainjar-train init: %s\n", err);
        return 1;
    }
    fprintf(stderr, "init: wrote %s (embd %u, layers %u, heads %u, ff %u, ctx %d, seed %llu, F32)\n", a->out,
            a->embd, a->layers, a->heads, a->ff, a->n_ctx, (unsigned long long)a->seed);
    return 0;
}

static int cmd_train(const struct args *a)
{
    if (!a->model || !a->train || !a->out) {
        fprintf(stderr, "brainjar-train train: --model, --train and --out are needed\n");
        return 2;
    }
    double t_start = now_s();
    struct train_state s = {.seed = a->seed, .n_ctx = a->n_ctx, .lr = a->lr, .lr_min = a->lr_min, .wd = a->wd,
                            .beta1 = 0.9f, .beta2 = a->beta2, .warmup = a->warmup, .rewarm = a->rewarm};
    char st_path[4096];
    snprintf(st_path, sizeof st_path, "%s.state", a->model);
    if (state_load(st_path, &s) == 0)
        fprintf(stderr, "resuming from %s at step %lld of %lld\n", a->model, (long long)s.step,
                (long long)s.total_steps);
    if (a->steps > 0)
        s.total_steps = a->steps;
    /* With --budget-s the schedule is planned again after two chunks (a warm restart when
     * resuming); until then a resumed run follows its old schedule, a fresh one the peak. */

    struct llama_model *m = load_model(a->model, a->gpu_layers);
    if (!m)
        return 1;
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    struct tokens tr = {0}, va = {0};
    double t0 = now_s();
    if (tokenize_file(vocab, a->train, &tr) || (a->valid && tokenize_file(vocab, a->valid, &va)))
        return 1;
    fprintf(stderr, "tokenized: train %zu tokens, held-out %zu tokens (%.1f s); model %.2f M parameters\n", tr.n,
            va.n, now_s() - t0, (double)llama_model_n_params(m) / 1e6);
    if (tr.n < (size_t)a->n_ctx * 2 + 1) {
        fprintf(stderr, "brainjar-train: the training text is shorter than two windows\n");
        return 1;
    }
    struct llama_context *c = train_context(m, a->n_ctx, a->threads);
    if (!c)
        return 1;
    size_t stride = (size_t)a->n_ctx / 2; /* windows overlap by half, as llama.cpp's finetune */
    s.n_windows = (int64_t)((tr.n - (size_t)a->n_ctx - 1) / stride) + 1;
    if (s.total_steps <= 0 && a->epochs > 0)
        s.total_steps = (int64_t)(a->epochs * (float)s.n_windows);

    g_state = &s;
    struct llama_opt_params lop = {
        .n_ctx_train = 0,
        .param_filter = llama_opt_param_filter_all,
        .param_filter_ud = NULL,
        .get_opt_pars = opt_params,
        .get_opt_pars_ud = &s,
        .optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW,
    };
    llama_opt_init(c, m, lop);

    FILE *csv = NULL;
    if (a->csv) {
        bool fresh = access(a->csv, F_OK) != 0;
        csv = fopen(a->csv, "a");
        if (!csv) {
            fprintf(stderr, "brainjar-train: cannot open %s: %s\n", a->csv, strerror(errno));
            return 1;
        }
        if (fresh)
            fprintf(csv, "step,epoch,loss,lr,tokens_this_run,seconds_this_run\n");
    }
    s.csv = csv;
    s.run_step0 = s.step;

    if (va.n && s.step == 0) {
        int64_t nt;
        double l = eval_loss(c, &va, a->n_ctx, a->eval_windows, &nt);
        fprintf(stderr, "held-out before training: loss %.4f  perplexity %.1f (%lld tokens)\n", l, exp(l),
                (long long)nt);
    }

    size_t *order = malloc((size_t)s.n_windows * sizeof *order);
    int64_t cur_epoch = -1;
    ggml_opt_result_t res = ggml_opt_result_init();
    s.t_run0 = now_s();
    double last_save = now_s(), chunk_s = 0;
    const int64_t chunk = 50;
    int rc = 0;
    while (s.total_steps <= 0 || s.step < s.total_steps) {
        double left = a->time_limit - (now_s() - t_start);
        if (left < chunk_s * 1.5 + 20) {
            fprintf(stderr, "time limit: stopping at step %lld\n", (long long)s.step);
            break;
        }
        /* The next chunk of windows, in the seeded order of their epoch. */
        int64_t n = chunk;
        if (s.total_steps > 0 && s.total_steps - s.step < n)
            n = s.total_steps - s.step;
        size_t *starts = malloc((size_t)n * sizeof *starts);
        for (int64_t i = 0; i < n; i++) {
            int64_t g = s.step + i, e = g / s.n_windows;
            if (e != cur_epoch) {
                epoch_order(order, s.n_windows, stride, s.seed, e);
                cur_epoch = e;
            }
            starts[i] = order[g % s.n_windows];
        }
        ggml_opt_dataset_t ds = make_dataset(&tr, starts, n, a->n_ctx);
        double tc = now_s();
        llama_opt_epoch(c, ds, res, NULL, n, on_train_batch, NULL);
        chunk_s = now_s() - tc;
        ggml_opt_dataset_free(ds);
        free(starts);
        /* --budget-s: plan the schedule from the speed of this run's second chunk (the first one
         * pays for warming up), so that it ends when the budget does. */
        if (a->budget_s > 0 && s.step - s.run_step0 == 2 * chunk) {
            s.total_steps = s.step + (int64_t)((a->budget_s - (now_s() - s.t_run0)) / (chunk_s / (double)n));
            fprintf(stderr, "budget %.0f s at %.1f steps/s: %lld steps in all\n", a->budget_s,
                    (double)n / chunk_s, (long long)s.total_steps);
        }
        if (now_s() - last_save > a->save_every) {
            if (save_checkpoint(m, a->out, &s)) {
                rc = 1;
                break;
            }
            last_save = now_s();
        }
    }
    double el = now_s() - s.t_run0;
    fprintf(stderr, "trained %lld steps (%.0f tokens) in %.1f s: %.0f tokens/s\n", (long long)(s.step - s.run_step0),
            s.tokens_run, el, s.tokens_run / (el > 0 ? el : 1));
    if (csv)
        fclose(csv);
    ggml_opt_result_free(res);
    free(order);
    g_state = NULL;
    if (!rc)
        rc = save_checkpoint(m, a->out, &s) ? 1 : 0;
    if (va.n) {
        int64_t nt;
        double l = eval_loss(c, &va, a->n_ctx, a->eval_windows, &nt);
        fprintf(stderr, "held-out after step %lld: loss %.4f  perplexity %.1f (%lld tokens)\n", (long long)s.step, l,
                exp(l), (long long)nt);
    }
    llama_free(c);
    llama_model_free(m);
    free(tr.v);
    free(va.v);
    return rc;
}

static int cmd_eval(const struct args *a)
{
    if (!a->model || !a->text) {
        fprintf(stderr, "brainjar-train eval: --model and --text are needed\n");
        return 2;
    }
    struct llama_model *m = load_model(a->model, a->gpu_layers);
    if (!m)
        return 1;
    struct tokens t = {0};
    if (tokenize_file(llama_model_get_vocab(m), a->text, &t))
        return 1;
    struct llama_context *c = train_context(m, a->n_ctx, a->threads);
    if (!c)
        return 1;
    struct llama_opt_params lop = {.param_filter = llama_opt_param_filter_all,
                                   .get_opt_pars = ggml_opt_get_default_optimizer_params,
                                   .optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW};
    llama_opt_init(c, m, lop);
    int64_t nt;
    double t0 = now_s();
    double l = eval_loss(c, &t, a->n_ctx, a->eval_windows, &nt);
    printf("%s: held-out loss %.4f perplexity %.2f over %lld tokens (%.1f s)\n", a->model, l, exp(l), (long long)nt,
           now_s() - t0);
    llama_free(c);
    llama_model_free(m);
    free(t.v);
    return isnan(l) ? 1 : 0;
}

/* Whether key `i` holds a float (or an array of floats) that is not finite. */
static bool kv_not_finite(const struct gguf_context *g, int64_t i)
{
    enum gguf_type t = gguf_get_kv_type(g, i);
    size_t n = 1;
    const void *d;
    if (t == GGUF_TYPE_ARRAY) {
        t = gguf_get_arr_type(g, i);
        if (t != GGUF_TYPE_FLOAT32 && t != GGUF_TYPE_FLOAT64)
            return false;
        n = gguf_get_arr_n(g, i);
        d = gguf_get_arr_data(g, i);
    } else if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        d = gguf_get_val_data(g, i);
    } else {
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        double v = t == GGUF_TYPE_FLOAT32 ? (double)((const float *)d)[k] : ((const double *)d)[k];
        if (!isfinite(v))
            return true;
    }
    return false;
}

/* Writes `out`: the model `in` with a clean header and, when s is not 1, attn_output and ffn_up
 * divided by s.
 *
 * Header: llama_model_save_to_file writes every key llama.cpp knows, defaults included, and some
 * defaults are not finite (kda.gate_lower_bound = -inf), which strict GGUF checks refuse. Keys
 * whose floats are not finite are dropped (none of them means anything to a llama model).
 *
 * Shrink: what every block adds to the residual stream shrinks by s; the token embedding does not,
 * but it is a vanishing part of that stream after the first block, and every reader of the stream
 * normalizes it (RMSNorm), so the function barely changes (held-out loss: docs/VOICE.md). What it
 * buys: this training lets weights grow large (no gradient clipping; attn_k, attn_v and token_embd
 * stay frozen), and the FFN's hidden activations then overflow the F16 scales of quantized (and
 * F16) matrix products on the CPU; divided, they fit. */
static int clean_and_shrink(const char *in, const char *out, float s)
{
    struct ggml_context *data = NULL;
    struct gguf_init_params ip = {.no_alloc = false, .ctx = &data};
    struct gguf_context *g = gguf_init_from_file(in, ip);
    if (!g) {
        fprintf(stderr, "brainjar-train convert: cannot read %s\n", in);
        return -1;
    }
    struct gguf_context *o = gguf_init_empty();
    gguf_set_kv(o, g);
    int n_dropped = 0, n_scaled = 0, rc = 0;
    for (int64_t i = gguf_get_n_kv(o) - 1; i >= 0; i--) {
        if (kv_not_finite(o, i)) {
            char key[256];
            snprintf(key, sizeof key, "%s", gguf_get_key(o, i));
            gguf_remove_key(o, key);
            n_dropped++;
        }
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        const char *name = gguf_get_tensor_name(g, i);
        struct ggml_tensor *t = ggml_get_tensor(data, name);
        size_t len = strlen(name);
        bool hit = s != 1 && ((len > 18 && !strcmp(name + len - 18, "attn_output.weight")) ||
                              (len > 13 && !strcmp(name + len - 13, "ffn_up.weight")));
        if (hit) {
            if (t->type != GGML_TYPE_F32) {
                fprintf(stderr, "brainjar-train convert: --shrink wants an F32 model (%s is %s)\n", name,
                        ggml_type_name(t->type));
                rc = -1;
                break;
            }
            float *v = t->data;
            for (int64_t k = 0; k < ggml_nelements(t); k++)
                v[k] /= s;
            n_scaled++;
        }
        gguf_add_tensor(o, t);
    }
    if (!rc && !gguf_write_to_file(o, out, false)) {
        fprintf(stderr, "brainjar-train convert: cannot write %s\n", out);
        rc = -1;
    }
    if (!rc)
        fprintf(stderr, "convert: %d keys with non-finite values dropped, %d tensors divided by %g\n", n_dropped,
                n_scaled, (double)s);
    gguf_free(o);
    gguf_free(g);
    ggml_free(data);
    return rc;
}

static int cmd_convert(const struct args *a)
{
    if (!a->model || !a->out) {
        fprintf(stderr, "brainjar-train convert: --model and --out are needed\n");
        return 2;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.clean.tmp", a->out);
    if (clean_and_shrink(a->model, tmp, a->shrink > 0 ? a->shrink : 1))
        return 1;
    const char *in = tmp;
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    if (!strcasecmp(a->type, "F32")) qp.ftype = LLAMA_FTYPE_ALL_F32;
    else if (!strcasecmp(a->type, "F16")) qp.ftype = LLAMA_FTYPE_MOSTLY_F16;
    else if (!strcasecmp(a->type, "Q8_0")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else if (!strcasecmp(a->type, "Q6_K")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q6_K;
    else {
        fprintf(stderr, "brainjar-train convert: unknown type %s (F32, F16, Q8_0, Q6_K)\n", a->type);
        return 2;
    }
    if (a->embd_type) { /* the token embedding alone in another type (it is only looked up) */
        static const struct { const char *name; enum ggml_type t; } k[] = {
            {"Q4_K", GGML_TYPE_Q4_K}, {"Q5_K", GGML_TYPE_Q5_K}, {"Q6_K", GGML_TYPE_Q6_K}, {"Q8_0", GGML_TYPE_Q8_0},
            {"Q4_0", GGML_TYPE_Q4_0}, {"Q5_0", GGML_TYPE_Q5_0}}; /* _0: rows of 32, for widths not of 256 */
        qp.token_embedding_type = GGML_TYPE_COUNT;
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
            if (!strcasecmp(a->embd_type, k[i].name))
                qp.token_embedding_type = k[i].t;
        if (qp.token_embedding_type == GGML_TYPE_COUNT) {
            fprintf(stderr, "brainjar-train convert: unknown --embd-type %s (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0, Q5_0)\n", a->embd_type);
            return 2;
        }
    }
    qp.allow_requantize = true;
    qp.nthread = a->threads;
    int rc = llama_model_quantize(in, a->out, &qp) != 0;
    if (rc)
        fprintf(stderr, "brainjar-train convert: quantizing %s failed\n", a->model);
    unlink(in);
    return rc;
}

static int cmd_sample(const struct args *a)
{
    if (!a->model) {
        fprintf(stderr, "brainjar-train sample: --model is needed\n");
        return 2;
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(a->model, mp);
    if (!m) {
        fprintf(stderr, "brainjar-train: cannot load model %s\n", a->model);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)a->n_ctx;
    cp.n_batch = (uint32_t)a->n_ctx;
    cp.n_threads = cp.n_threads_batch = a->threads;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c)
        return 1;
    int n_prompt = -llama_tokenize(vocab, a->prompt, (int32_t)strlen(a->prompt), NULL, 0, true, false);
    llama_token *toks = malloc((size_t)(n_prompt + 1) * sizeof *toks);
    llama_tokenize(vocab, a->prompt, (int32_t)strlen(a->prompt), toks, n_prompt, true, false);
    struct llama_sampler *smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(smpl, llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_temp(a->temp));
    llama_sampler_chain_add(smpl, llama_sampler_init_dist((uint32_t)a->seed));
    fputs(a->prompt, stdout);
    struct llama_batch b = llama_batch_get_one(toks, n_prompt);
    llama_token tok;
    int rc = 0;
    for (int i = 0; i < a->n_tokens && n_prompt + i < a->n_ctx; i++) {
        if (llama_decode(c, b)) {
            rc = 1;
            break;
        }
        tok = llama_sampler_sample(smpl, c, -1);
        if (llama_vocab_is_eog(vocab, tok))
            break;
        char piece[256];
        int n = llama_token_to_piece(vocab, tok, piece, sizeof piece, 0, false);
        if (n > 0)
            fwrite(piece, 1, (size_t)n, stdout);
        b = llama_batch_get_one(&tok, 1);
    }
    putchar('\n');
    llama_sampler_free(smpl);
    free(toks);
    llama_free(c);
    llama_model_free(m);
    return rc;
}

/* ---- tokens and weights for the PyTorch trainer (tools/train-voice.py) ---- */

static int cmd_tokenize(const struct args *a)
{
    const char *src = a->model ? a->model : a->vocab;
    if (!a->text || !a->out || !src) {
        fprintf(stderr, "brainjar-train tokenize: --text, --out and a vocab (--vocab or --model) are needed\n");
        return 2;
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(src, mp);
    if (!m) {
        fprintf(stderr, "brainjar-train tokenize: cannot load the vocab of %s\n", src);
        return 1;
    }
    struct tokens t = {0};
    int rc = tokenize_file(llama_model_get_vocab(m), a->text, &t) ? 1 : 0;
    llama_model_free(m);
    if (!rc) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", a->out);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(t.v, sizeof *t.v, t.n, f) != t.n || fclose(f) || rename(tmp, a->out)) {
            fprintf(stderr, "brainjar-train tokenize: cannot write %s: %s\n", a->out, strerror(errno));
            rc = 1;
        } else {
            fprintf(stderr, "tokenize: %s: %zu tokens -> %s\n", a->text, t.n, a->out);
        }
    }
    free(t.v);
    return rc;
}

/* Reads n values of type `type` ("f32", "f16" or "q8_0": ggml's block layout) at byte `off`
 * of `f` into dst as F32. */
static int read_values(FILE *f, long off, const char *type, float *dst, int64_t n)
{
    if (fseek(f, off, SEEK_SET))
        return -1;
    if (!strcmp(type, "f32"))
        return fread(dst, sizeof(float), (size_t)n, f) == (size_t)n ? 0 : -1;
    enum ggml_type t = !strcmp(type, "f16") ? GGML_TYPE_F16 : !strcmp(type, "q8_0") ? GGML_TYPE_Q8_0 : GGML_TYPE_COUNT;
    if (t == GGML_TYPE_COUNT || n % ggml_blck_size(t))
        return -1;
    const int64_t chunk = 4096; /* values at a time: a multiple of every block size */
    size_t cap = ggml_row_size(t, chunk);
    unsigned char *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    for (int64_t i = 0; !rc && i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        size_t bytes = ggml_row_size(t, k);
        if (fread(buf, 1, bytes, f) != bytes)
            rc = -1;
        else
            ggml_get_type_traits(t)->to_float(buf, dst + i, k);
    }
    free(buf);
    return rc;
}

/* SHAPE.gguf's header and tensors with the values listed in DIR/manifest.txt ("name type
 * n_elements offset" a line) from DIR/weights.bin. Every F32 tensor of SHAPE must be listed
 * with its exact element count: a tensor left at its random value would be a silent error. */
static int cmd_import(const struct args *a)
{
    if (!a->model || !a->weights || !a->out) {
        fprintf(stderr, "brainjar-train import: --model SHAPE.gguf, --weights DIR and --out are needed\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.txt", a->weights);
    FILE *man = fopen(path, "r");
    snprintf(path, sizeof path, "%s/weights.bin", a->weights);
    FILE *bin = fopen(path, "rb");
    struct ggml_context *data = NULL;
    struct gguf_init_params ip = {.no_alloc = false, .ctx = &data};
    struct gguf_context *g = man && bin ? gguf_init_from_file(a->model, ip) : NULL;
    int rc = 0, n_set = 0;
    if (!man || !bin) {
        fprintf(stderr, "brainjar-train import: cannot open %s/manifest.txt and weights.bin\n", a->weights);
        rc = 1;
    } else if (!g) {
        fprintf(stderr, "brainjar-train import: cannot read %s\n", a->model);
        rc = 1;
    }
    char name[256], type[8];
    long long n, off;
    while (!rc && fscanf(man, "%255s %7s %lld %lld", name, type, &n, &off) == 4) {
        struct ggml_tensor *t = ggml_get_tensor(data, name);
        if (!t || t->type != GGML_TYPE_F32 || ggml_nelements(t) != n) {
            fprintf(stderr, "brainjar-train import: %s (%lld values) has no F32 tensor of that size in %s\n", name, n,
                    a->model);
            rc = 1;
        } else if (read_values(bin, (long)off, type, t->data, n)) {
            fprintf(stderr, "brainjar-train import: cannot read %s (%s, %lld values at %lld) from weights.bin\n",
                    name, type, n, off);
            rc = 1;
        } else {
            n_set++;
        }
    }
    if (!rc && n_set != gguf_get_n_tensors(g)) {
        fprintf(stderr, "brainjar-train import: the manifest sets %d of %lld tensors\n", n_set,
                (long long)gguf_get_n_tensors(g));
        rc = 1;
    }
    if (!rc) { /* a fresh header and the tensors of `data`, as convert writes them */
        struct gguf_context *o = gguf_init_empty();
        gguf_set_kv(o, g);
        for (int64_t i = 0; i < gguf_get_n_tensors(g); i++)
            gguf_add_tensor(o, ggml_get_tensor(data, gguf_get_tensor_name(g, i)));
        if (!gguf_write_to_file(o, a->out, false)) {
            fprintf(stderr, "brainjar-train import: cannot write %s\n", a->out);
            rc = 1;
        }
        gguf_free(o);
    }
    if (!rc)
        fprintf(stderr, "import: %d tensors from %s -> %s\n", n_set, a->weights, a->out);
    if (man)
        fclose(man);
    if (bin)
        fclose(bin);
    if (g)
        gguf_free(g);
    ggml_free(data);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    struct args a;
    if (parse(argc, argv, &a))
        return 2;
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    int rc;
    if (!strcmp(argv[1], "init")) rc = cmd_init(&a);
    else if (!strcmp(argv[1], "train")) rc = cmd_train(&a);
    else if (!strcmp(argv[1], "eval")) rc = cmd_eval(&a);
    else if (!strcmp(argv[1], "convert")) rc = cmd_convert(&a);
    else if (!strcmp(argv[1], "sample")) rc = cmd_sample(&a);
    else if (!strcmp(argv[1], "tokenize")) rc = cmd_tokenize(&a);
    else if (!strcmp(argv[1], "import")) rc = cmd_import(&a);
    else {
        usage(stderr);
        rc = 2;
    }
    llama_backend_free();
    return rc;
}
