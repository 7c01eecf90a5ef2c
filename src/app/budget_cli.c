/* budget_cli: see budget_cli.h. Parses flags, calls estimate/budget, prints. */
#include "budget_cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <llama.h>

#include "board.h"
#include "budget.h"
#include "cli.h"
#include "devices.h"
#include "estimate.h"
#include "log.h"
#include "prompt.h"
#include "util.h"

#define MB (1024.0 * 1024.0)

static void estimate_usage(FILE *to)
{
    fprintf(to,
            "usage: brainjar estimate MODEL.gguf [options]\n"
            "  --ctx N            tokens in each brain's jar (default: the model's training context)\n"
            "  --brains N         brains sharing the model (default 1, at most %d)\n"
            "  --kv-type T        KV cache type: f16 (default), q8_0, q4_0, f32, bf16\n"
            "  --gpu-layers N|all layers to offload (default all; ignored without a GPU backend)\n"
            "  --no-mmap          read the weights instead of mapping the file\n"
            "  --no-repack        keep llama.cpp from repacking weights (use_extra_bufts off)\n"
            "  --no-dry-run       size compute buffers by formula, not by a llama.cpp dry run\n"
            "  --threads N        CPU threads (default: all cores)\n"
            "  --schedule S       auto (default: as the engine decides), batched or parallel\n"
            "  --rpc HOST:PORT,... --split-mode none|layer|row  --main-gpu N  --tensor-split A,B,...\n"
            "                     the devices, as for run (docs/OPERATIONS.md)\n"
            "  --measure          also load the model like the engine, fill the jars and measure RSS (slow)\n"
            "  --no-fill          with --measure: stop after the first decode and the decode steps\n"
            "  --decode-steps N   with --measure: single-token steps timed at the end (default 8)\n"
            "  --first-batch N    tokens in the measured first decode (default: a prefill chunk, 64, per brain)\n"
            "  --board B          also the decode speed this board's memory bandwidth allows, and whether\n"
            "                     the hive fits its memory: pi5, orin-nano, orin-nx, orin-agx\n"
            "  --bandwidth GB/s   the same for any other machine, from its memory bandwidth\n",
            BJ_MAX_BRAINS);
}

/* "12.3 MB" / "1.23 GB" */
static const char *fmt(char *buf, size_t len, uint64_t b)
{
    if ((double)b >= BJ_GB)
        snprintf(buf, len, "%.2f GB", (double)b / BJ_GB);
    else
        snprintf(buf, len, "%.1f MB", (double)b / MB);
    return buf;
}

static double pct_off(uint64_t predicted, uint64_t measured)
{
    return measured ? 100.0 * ((double)predicted - (double)measured) / (double)measured : 0.0;
}

static void print_row(FILE *out, const char *label, uint64_t cpu, uint64_t gpu, bool with_gpu, const char *note)
{
    char a[32], b[32];
    if (with_gpu)
        fprintf(out, "  %-30s %12s %12s  %s\n", label, fmt(a, sizeof a, cpu), fmt(b, sizeof b, gpu), note);
    else
        fprintf(out, "  %-30s %12s  %s\n", label, fmt(a, sizeof a, cpu), note);
}

/* A split model: what each device holds, and what it reported. */
static void print_devices(const struct bj_est_model *m, FILE *out)
{
    char a[32], b[32], c[32], d[32];
    if (!bj_est_model_split(m))
        return;
    fprintf(out, "\n  %-8s %-28s %12s %12s %12s %12s  %s\n", "device", "", "weights", "KV", "compute", "total",
            "free (reported)");
    for (int i = 0; i < m->n_devices; i++) {
        const struct bj_est_device *e = &m->dev[i];
        if (bj_est_mem_total(&e->mem) == 0)
            continue;
        char desc[40];
        snprintf(desc, sizeof desc, "%s%s", e->desc, e->remote ? " (rpc)" : "");
        fprintf(out, "  %-8s %-28.28s %12s %12s %12s %12s  ", e->name, desc, fmt(a, sizeof a, e->mem.weights_anon),
                fmt(b, sizeof b, e->mem.kv), fmt(c, sizeof c, e->mem.compute), fmt(d, sizeof d, bj_est_mem_total(&e->mem)));
        if (e->free_known)
            fprintf(out, "%s of %s\n", fmt(a, sizeof a, e->free), fmt(b, sizeof b, e->total));
        else
            fprintf(out, "not known (%s total; an rpc-server on a CPU reports it all as free)\n", fmt(a, sizeof a, e->total));
    }
    if (bj_est_mem_total(&m->remote) > 0)
        fprintf(out, "  (the GPU column is this host's GPUs; %s goes to rpc-servers, other hosts' memory)\n",
                fmt(a, sizeof a, bj_est_mem_total(&m->remote)));
}

static void print_estimate(const struct bj_est_model *m, const struct bj_est_opts *o, const long *jars, FILE *out)
{
    char a[32], b[32], where[1024];
    const struct bj_modelinfo *mi = &m->mi;
    bool with_gpu = bj_est_mem_total(&m->gpu) > 0;
    fprintf(out, "Model: %s\n", m->path);
    fprintf(out, "  %s%s%s%s, %u layers, n_embd %u, %u heads (%u KV) x %u, vocab %u, training context %u\n", mi->arch,
            mi->name[0] ? " \"" : "", mi->name, mi->name[0] ? "\"" : "", mi->n_layer, mi->n_embd, mi->n_head,
            mi->n_head_kv, mi->head_dim_k, mi->n_vocab, mi->n_ctx_train);
    fprintf(out, "  file %s, %.1f M parameters\n", fmt(a, sizeof a, mi->file_size), (double)mi->n_params / 1e6);
    fprintf(out, "  load: %s, repack %s (%d tensors, %s), KV %s, ", m->plan.use_mmap ? "mmap" : "read (no mmap)",
            o->repack ? "on" : "off", m->n_repacked, fmt(b, sizeof b, m->repacked_bytes), ggml_type_name(o->kv_type));
    fprintf(out, "%s\n", bj_est_placement(m, where, sizeof where));
    fprintf(out, "  context: %d brain%s, %u cells in %u stream%s%s, n_batch %u, n_ubatch %u%s\n\n", m->n_brains,
            m->n_brains == 1 ? "" : "s", m->n_ctx, m->n_stream, m->n_stream == 1 ? "" : "s",
            m->unified ? " (unified)" : "", m->n_batch, m->n_ubatch,
            m->n_contexts > 1 ? " (per brain: parallel schedule)" : "");

    if (with_gpu)
        fprintf(out, "  %-30s %12s %12s\n", "memory", "CPU (RAM)", "GPU");
    else
        fprintf(out, "  %-30s %12s\n", "memory", "CPU (RAM)");
    print_row(out, "weights, anonymous", m->cpu.weights_anon, m->gpu.weights_anon, with_gpu,
              m->plan.use_mmap ? "(repacked copies)" : "(read into memory)");
    print_row(out, "weights, mmap'd file resident", m->cpu.weights_file, m->gpu.weights_file, with_gpu, "");
    print_row(out, "KV cache", m->cpu.kv, m->gpu.kv, with_gpu, "");
    print_row(out, "compute buffers", m->cpu.compute, m->gpu.compute, with_gpu,
              m->compute_from_llama ? "(llama.cpp dry run)" : "(formula)");
    print_row(out, "output (logits)", m->cpu.output, m->gpu.output, with_gpu, "");
    print_row(out, "runtime overhead", m->cpu.overhead, m->gpu.overhead, with_gpu, with_gpu ? "(GPU: calibrated, H100)" : "");
    print_row(out, "total", bj_est_mem_total(&m->cpu), bj_est_mem_total(&m->gpu), with_gpu, "");
    uint64_t all = bj_est_mem_total(&m->cpu) + bj_est_mem_total(&m->gpu);
    fprintf(out, "  %-30s %12s  (the estimate is %+.0f%% of it)\n", "seed heuristic (file x 1.5)",
            fmt(a, sizeof a, m->heuristic), pct_off(all, m->heuristic));
    if (m->note[0])
        fprintf(out, "  note: %s\n", m->note);
    print_devices(m, out);

    fprintf(out, "\n  %-12s %10s %12s\n", "brain", "jar tokens", "KV");
    for (int i = 0; i < m->n_brains; i++) {
        char id[16];
        snprintf(id, sizeof id, "brain %d", i + 1);
        fprintf(out, "  %-12s %10ld %12s\n", id, jars[i],
                fmt(a, sizeof a, bj_modelinfo_kv_bytes(mi, o->kv_type, o->kv_type, (uint64_t)jars[i])));
    }
    fprintf(out, "  shared by the brains (weights, buffers, overhead, KV padding): %s RAM",
            fmt(a, sizeof a, bj_est_model_shared_cpu(m)));
    if (with_gpu)
        fprintf(out, ", %s GPU", fmt(b, sizeof b, bj_est_model_shared_gpu(m)));
    fputc('\n', out);
}

static void print_rss(FILE *out, const char *when, const struct bj_est_measured *ms, const struct bj_est_rss *r,
                      uint64_t pred, uint64_t heur)
{
    char a[32], b[32], c[32], d[32];
    uint64_t grow = bj_est_rss_growth(ms, r);
    uint64_t anon = r->anon > ms->before.anon ? r->anon - ms->before.anon : 0;
    uint64_t file = r->model_file > ms->before.model_file ? r->model_file - ms->before.model_file : 0;
    uint64_t rss = r->rss > ms->before.rss ? r->rss - ms->before.rss : 0;
    fprintf(out, "  %-22s +%s (anonymous %s, model file %s; VmRSS +%s): estimate %+.1f%%, seed heuristic %+.1f%%\n",
            when, fmt(a, sizeof a, grow), fmt(b, sizeof b, anon), fmt(c, sizeof c, file), fmt(d, sizeof d, rss),
            pct_off(pred, grow), pct_off(heur, grow));
}

static void print_measured(const struct bj_est_model *m, const struct bj_est_measured *ms, FILE *out)
{
    char a[32], b[32];
    uint64_t pred = bj_est_mem_total(&m->cpu);
    fprintf(out, "\nMeasured (loaded as the engine does; estimate %s = anonymous %s + file %s):\n",
            fmt(a, sizeof a, pred), fmt(b, sizeof b, pred - m->cpu.weights_file),
            fmt((char[32]){0}, 32, m->cpu.weights_file));
    char when[48];
    snprintf(when, sizeof when, "first decode (%d tok)", ms->first_batch);
    print_rss(out, when, ms, &ms->first, pred, m->heuristic);
    print_rss(out, ms->filled ? "jars full" : "after decode steps", ms, &ms->full, pred, m->heuristic);
    uint64_t gpu_pred = bj_est_mem_total(&m->gpu);
    if (gpu_pred > 0) {
        uint64_t g = bj_est_gpu_growth(ms, &ms->full);
        if (g > 0)
            fprintf(out, "  GPU memory (NVML)      +%s: estimate %s, %+.1f%%\n", fmt(a, sizeof a, g),
                    fmt(b, sizeof b, gpu_pred), pct_off(gpu_pred, g));
        else
            fprintf(out, "  GPU memory             not measured (no NVML); estimate %s\n", fmt(b, sizeof b, gpu_pred));
    }
    fprintf(out, "  load %.2f s, prompt steps %.1f tokens/s, single-token steps %.1f tokens/s (%ld tokens)\n",
            ms->load_s, ms->prefill_tok_s, ms->decode_tok_s, ms->tokens);
    const struct bj_est_rss *r = ms->filled ? &ms->full : &ms->first;
    uint64_t grow = bj_est_rss_growth(ms, r);
    fprintf(out,
            "  summary predicted_mib=%.1f measured_mib=%.1f error_pct=%.2f heuristic_pct=%.1f first_mib=%.1f "
            "load_s=%.2f prompt_tps=%.1f decode_tps=%.1f\n",
            (double)pred / MB, (double)grow / MB, pct_off(pred, grow), pct_off(m->heuristic, grow),
            (double)bj_est_rss_growth(ms, &ms->first) / MB, ms->load_s, ms->prefill_tok_s, ms->decode_tok_s);
}

static int bad_flag(const char *flag, const char *arg, const char *want)
{
    fprintf(stderr, "brainjar estimate: %s wants %s, got '%s'\n", flag, want, arg);
    return 2;
}

struct est_args {
    const char *model;
    const char *rpc;
    const struct bj_board *board; /* --board */
    double bandwidth_gbs;         /* --board's or --bandwidth's; 0: no speed bound asked for */
    long ctx, brains, first_batch, decode_steps;
    bool measure, no_fill;
    struct bj_est_opts o;
};

/* The decode speed the memory bandwidth allows, and on a named board whether the hive fits. */
static void print_board(const struct bj_est_model *m, const struct est_args *a, long jar_tokens, FILE *out)
{
    char w[32], k[32];
    struct bj_decode_bound b = bj_decode_bound(&m->mi, a->o.kv_type, jar_tokens, (int)a->brains, a->bandwidth_gbs);
    fprintf(out, "\nDecode speed bound%s%s (%.1f GB/s of memory bandwidth):\n", a->board ? " on the " : "",
            a->board ? a->board->what : "", a->bandwidth_gbs);
    fprintf(out, "  each step reads the weights once (%s) and each brain's KV cache (%s in all, jars half full)\n",
            fmt(w, sizeof w, b.weight_read), fmt(k, sizeof k, b.kv_read_half));
    fprintf(out, "  %ld brain%s: at most %.1f tokens/s each, %.1f in all (a life's average); %.1f each with empty jars\n",
            a->brains, a->brains == 1 ? "" : "s", b.brain_tok_s, b.total_tok_s, b.brain_tok_s_empty);
    fprintf(out, "  (decoding reaches about half this bound on such boards: docs/OPERATIONS.md)\n");
    if (a->board) {
        uint64_t need = bj_est_mem_total(&m->cpu) + bj_est_mem_total(&m->gpu);
        double have = a->board->memory_gb * 1e9;
        fprintf(out, "  memory: the hive needs %s of the board's %.0f GB (%s; the system and its reserve need the rest)\n",
                fmt(w, sizeof w, need), a->board->memory_gb, (double)need <= 0.85 * have ? "fits" : "too big");
    }
    fprintf(out, "  summary board=%s bandwidth_gbs=%.1f weight_read_mb=%.1f brain_tok_s=%.2f total_tok_s=%.2f "
                 "brain_tok_s_empty=%.2f\n",
            a->board ? a->board->name : "-", a->bandwidth_gbs, (double)b.weight_read / MB, b.brain_tok_s, b.total_tok_s,
            b.brain_tok_s_empty);
}

/* Parses argv into a; returns 0, 1 after --help, or 2 after printing what is wrong. */
/* estimate's device options (--rpc, --split-mode, --main-gpu, --tensor-split: which = 0..3), as
 * run takes them. 0, or 2 after saying why. */
static int device_opt(int which, const char *optarg, struct est_args *a)
{
    long v;
    int n;
    char why[400];
    switch (which) {
    case 0:
        if (bj_rpc_parse(optarg, NULL, &n, why, sizeof why))
            return bad_flag("--rpc", optarg, "HOST:PORT[,HOST:PORT...]");
        a->rpc = optarg;
        break;
    case 1:
        if (bj_split_parse(optarg, &a->o.split.mode))
            return bad_flag("--split-mode", optarg, "none, layer or row");
        break;
    case 2:
        if (bj_parse_long(optarg, 0, BJ_MAX_DEVICES - 1, &v))
            return bad_flag("--main-gpu", optarg, "a device index (0-15)");
        a->o.split.main_gpu = (int)v;
        break;
    case 3:
        if (bj_tensor_split_parse(optarg, a->o.split.tensor_split, &a->o.split.n_tensor_split, why, sizeof why)) {
            fprintf(stderr, "brainjar estimate: --tensor-split: %s\n", why);
            return 2;
        }
        break;
    }
    return 0;
}

static int parse_estimate(int argc, char **argv, struct est_args *a)
{
    enum { O_CTX = 256, O_BRAINS, O_KV, O_NGL, O_NOMMAP, O_NOREPACK, O_NODRY, O_MEASURE, O_FIRST, O_THREADS, O_NOFILL, O_STEPS, O_SCHED,
           O_RPC, O_SPLIT, O_MAIN_GPU, O_TSPLIT, O_BOARD, O_BANDWIDTH };
    static const struct option opts[] = {
        {"ctx", required_argument, 0, O_CTX},         {"brains", required_argument, 0, O_BRAINS},
        {"kv-type", required_argument, 0, O_KV},      {"gpu-layers", required_argument, 0, O_NGL},
        {"no-mmap", no_argument, 0, O_NOMMAP},        {"no-repack", no_argument, 0, O_NOREPACK},
        {"no-dry-run", no_argument, 0, O_NODRY},      {"measure", no_argument, 0, O_MEASURE},
        {"first-batch", required_argument, 0, O_FIRST}, {"threads", required_argument, 0, O_THREADS},
        {"no-fill", no_argument, 0, O_NOFILL},        {"decode-steps", required_argument, 0, O_STEPS},
        {"schedule", required_argument, 0, O_SCHED}, {"help", no_argument, 0, 'h'},
        {"rpc", required_argument, 0, O_RPC},         {"split-mode", required_argument, 0, O_SPLIT},
        {"main-gpu", required_argument, 0, O_MAIN_GPU}, {"tensor-split", required_argument, 0, O_TSPLIT},
        {"board", required_argument, 0, O_BOARD},     {"bandwidth", required_argument, 0, O_BANDWIDTH},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->brains = 1;
    a->decode_steps = 8;
    bj_est_opts_default(&a->o);
    long v;
    int c;
    char why[400];
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_BOARD:
            if (!(a->board = bj_board_find(optarg)))
                return bad_flag("--board", optarg, bj_board_names());
            a->bandwidth_gbs = a->board->bandwidth_gbs;
            break;
        case O_BANDWIDTH: {
            double d;
            if (bj_parse_double(optarg, 0.1, 100000, &d))
                return bad_flag("--bandwidth", optarg, "a memory bandwidth in GB/s (0.1-100000)");
            a->bandwidth_gbs = d;
            break;
        }
        case O_CTX:
            if (bj_parse_long(optarg, 1, 1L << 24, &a->ctx))
                return bad_flag("--ctx", optarg, "a positive number of tokens (at most 16777216)");
            break;
        case O_BRAINS:
            if (bj_parse_long(optarg, 1, BJ_MAX_BRAINS, &a->brains))
                return bad_flag("--brains", optarg, "a number of brains from 1 to 16");
            break;
        case O_KV:
            if (bj_kv_type_parse(optarg, &a->o.kv_type))
                return bad_flag("--kv-type", optarg, "f16, q8_0, q4_0, q4_1, q5_0, q5_1, f32 or bf16");
            break;
        case O_NGL:
            if (strcmp(optarg, "all") == 0)
                a->o.n_gpu_layers = -1;
            else if (bj_parse_long(optarg, 0, 100000, &v))
                return bad_flag("--gpu-layers", optarg, "a non-negative number of layers or 'all'");
            else
                a->o.n_gpu_layers = (int)v;
            break;
        case O_NOMMAP: a->o.use_mmap = 0; break;
        case O_NOREPACK: a->o.repack = false; break;
        case O_NODRY: a->o.dry_run = false; break;
        case O_MEASURE: a->measure = true; break;
        case O_NOFILL: a->no_fill = true; break;
        case O_SCHED:
            if (bj_schedule_parse(optarg, &a->o.schedule))
                return bad_flag("--schedule", optarg, "auto, batched or parallel");
            break;
        case O_STEPS:
            if (bj_parse_long(optarg, 0, 100000, &a->decode_steps))
                return bad_flag("--decode-steps", optarg, "a non-negative number of steps");
            break;
        case O_FIRST:
            if (bj_parse_long(optarg, 1, 1L << 20, &a->first_batch))
                return bad_flag("--first-batch", optarg, "a positive number of tokens");
            break;
        case O_THREADS:
            if (bj_parse_long(optarg, 1, bj_max_threads(), &v)) {
                char want[64];
                snprintf(want, sizeof want, "a number of threads from 1 to %ld (4 per core)", bj_max_threads());
                return bad_flag("--threads", optarg, want);
            }
            a->o.n_threads = (int)v;
            break;
        case O_RPC: case O_SPLIT: case O_MAIN_GPU: case O_TSPLIT:
            if ((v = device_opt(c - O_RPC, optarg, a)))
                return (int)v;
            break;
        case 'h': estimate_usage(stdout); return 1;
        default: estimate_usage(stderr); return 2;
        }
    }
    if (bj_split_check(&a->o.split, a->rpc != NULL, a->o.n_gpu_layers, why, sizeof why)) {
        fprintf(stderr, "brainjar estimate: %s\n", why);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "brainjar estimate: which model? (brainjar estimate MODEL.gguf)\n");
        return 2;
    }
    if (bj_cli_no_more_args("estimate", optind + 1, argc, argv))
        return 2;
    a->model = argv[optind];
    return 0;
}

int bj_estimate_main(int argc, char **argv)
{
    struct est_args a;
    int rc = parse_estimate(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    char err[512];
    struct bj_modelinfo *mi = malloc(sizeof *mi);
    struct bj_est_model *m = malloc(sizeof *m);
    if (!mi || !m) {
        fprintf(stderr, "brainjar estimate: out of memory\n");
        rc = 1;
        goto out;
    }
    if (bj_modelinfo_read(a.model, mi, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar estimate: %s\n", err);
        rc = 2;
        goto out;
    }
    if (a.rpc && bj_devices_add_rpc(a.rpc, BJ_RPC_TIMEOUT_MS, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar estimate: %s\n", err);
        rc = 1;
        goto out;
    }
    long ctx = a.ctx > 0 ? a.ctx : (mi->n_ctx_train > 0 ? (long)mi->n_ctx_train : 4096);
    if (mi->n_ctx_train > 0 && ctx > (long)mi->n_ctx_train) {
        /* as run clamps a jar: a brain cannot use more than the training context, and a dry run
         * of a context far past it costs minutes and gigabytes for nothing */
        fprintf(stderr, "brainjar estimate: --ctx %ld clamped to the model's training context, %u tokens\n", ctx,
                mi->n_ctx_train);
        ctx = (long)mi->n_ctx_train;
    }
    long jars[BJ_MAX_BRAINS];
    for (long i = 0; i < a.brains; i++)
        jars[i] = ctx;
    struct bj_est_measured ms;
    /* measure first: the dry run would leave allocator residue in the process */
    if (a.measure && bj_estimate_measure(a.model, &a.o, jars, (int)a.brains, (int)a.first_batch, !a.no_fill,
                                         (int)a.decode_steps, &ms,
                                         err, sizeof err) != 0) {
        fprintf(stderr, "brainjar estimate: measuring failed: %s\n", err);
        rc = 1;
        goto out;
    }
    if (bj_estimate_model(a.model, &a.o, jars, (int)a.brains, m, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar estimate: %s\n", err);
        rc = 2;
        goto out;
    }
    print_estimate(m, &a.o, jars, stdout);
    if (a.measure)
        print_measured(m, &ms, stdout);
    if (a.bandwidth_gbs > 0)
        print_board(m, &a, ctx, stdout);
    rc = 0;
out:
    free(mi);
    free(m);
    return rc;
}

/* What `run` refuses before it starts, checked without loading any weights: every model must
 * load in llama.cpp (its dry run did) and every brain's first system prompt must fit in its jar
 * (the model's vocabulary alone is loaded to count the tokens). Returns 0, -1 with a one-line
 * reason in err, or -2 when the input itself is bad (a prompts directory that cannot be read: run
 * refuses it with exit 2 too). */
static int check_runnable(const struct bj_config *c, const struct bj_est_hive *h, char *err, size_t errlen)
{
    for (int m = 0; m < h->n_models; m++)
        if (h->models[m].dry_run_failed) {
            snprintf(err, errlen, "model %s: llama.cpp cannot load it: %s", h->models[m].path,
                     h->models[m].dry_run_error[0] ? h->models[m].dry_run_error : "no details");
            return -1;
        }
    struct bj_prompts *prompts = bj_prompts_load(c->spec.prompts_dir, err, errlen);
    if (!prompts)
        return -2;
    int rc = 0;
    for (int m = 0; m < h->n_models && rc == 0; m++) {
        struct llama_model_params mp = llama_model_default_params();
        mp.vocab_only = true;
        mp.n_gpu_layers = 0;
        struct llama_model *model = llama_model_load_from_file(h->models[m].path, mp);
        if (!model) {
            snprintf(err, errlen, "model %s: llama.cpp cannot load its vocabulary", h->models[m].path);
            rc = -1;
            break;
        }
        const struct llama_vocab *vocab = llama_model_get_vocab(model);
        for (int i = 0; i < h->n_brains && rc == 0; i++) {
            if (h->brains[i].model != m)
                continue;
            const struct bj_brain_cfg *b = &c->spec.brains[i]; /* est brain i is spec brain i */
            if (!bj_prompts_has(prompts, b->role)) {
                snprintf(err, errlen, "brain %s: no prompt file for role '%s' (add %s.txt to --prompts DIR)", b->id,
                         b->role, b->role);
                rc = -1;
            } else {
                rc = bj_prompt_check_fits(prompts, vocab, b->role, b->id, h->brains[i].jar.tokens,
                                          (long)h->models[m].mi.n_ctx_train, err, errlen);
            }
        }
        llama_model_free(model);
    }
    bj_prompts_free(prompts);
    return rc;
}

int bj_validate_run_paths(const struct bj_config *c, const char *default_model_path,
                          const struct bj_sysmem_paths *paths, FILE *out)
{
    char err[1024];
    /* the rpc-servers join first, as in run: one that cannot be reached fails the check */
    if (c->spec.rpc[0] && bj_devices_add_rpc(c->spec.rpc, BJ_RPC_TIMEOUT_MS, err, sizeof err) != 0) {
        fprintf(out, "VALIDATION FAILED: %s\n", err);
        return 1;
    }
    struct bj_est_hive *h = bj_estimate_spec(&c->spec, default_model_path, err, sizeof err);
    if (!h) {
        fprintf(out, "validate: %s\n", err);
        return 2;
    }
    int rc;
    int runnable = check_runnable(c, h, err, sizeof err);
    if (runnable != 0) {
        /* run would refuse this hive: the memory report would only mislead ("safe to proceed") */
        fprintf(out, "VALIDATION FAILED: %s\n", err);
        rc = runnable == -2 ? 2 : 1;
    } else {
        struct bj_sysmem sm;
        struct bj_gpu_info gpu;
        rc = bj_validate_hive(&c->spec, bj_mode_name(c->mode), h, paths, out, &sm, &gpu);
    }
    bj_est_hive_free(h);
    return rc;
}

int bj_validate_run(const struct bj_config *c, const char *default_model_path, FILE *out)
{
    struct bj_sysmem_paths p;
    bj_sysmem_paths_default(&p);
    return bj_validate_run_paths(c, default_model_path, &p, out);
}
