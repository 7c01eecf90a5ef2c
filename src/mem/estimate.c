/* estimate: see estimate.h.
 *
 * WHICH MEMORY THIS PREDICTS: the resident memory a model costs the process once it runs with
 * its jars full, i.e. the growth of anonymous memory (RssAnon) plus the resident pages of the
 * mmap'd model file, from before the model is loaded to after it is loaded, its context is
 * created, every jar is filled in the engine's steps and the last step prefilled a chunk for
 * every brain at once (the largest graph a hive runs). bj_estimate_measure() measures exactly
 * that; the program's own code pages (paged in once, whatever the model) are left out. Parts:
 *   - weights_anon: anonymous, not reclaimable without swap: every CPU weight when loaded
 *     without mmap; with mmap, only the copies llama.cpp makes when it repacks weights (on x86
 *     with AVX2, Q4_0 matrices go to an interleaved CPU_REPACK buffer);
 *   - weights_file: pages of the mmap'd file. llama.cpp maps the file with MAP_POPULATE and,
 *     after loading, unmaps only what lies outside the span of the tensors still read from the
 *     mapping, so the whole span stays resident, repacked tensors' original pages included (the
 *     "2x weights" trap of DESIGN.md section 4). Clean file pages are reclaimable in principle,
 *     but the weights in them are read on every token, so the budget counts them as needed;
 *   - kv: cleared at creation, so resident at once, padding included;
 *   - compute and output: the buffers llama.cpp sizes in a no_alloc dry run. On the CPU the
 *     compute buffer is virtual memory sized for llama.cpp's worst case (a full ubatch with
 *     every token's logits); only what the engine's largest step writes becomes resident, so
 *     the dry run reserves for that step (a prefill chunk per brain, one output per brain);
 *   - overhead: fitted to measurements (docs/MEMORY.md): tokenizer tables (per vocabulary entry
 *     and per BPE merge), per context, per KV cell in use, and the CPU backend's work buffer.
 * The first decode after loading touches less (its attention spans few cells): the estimate is
 * the upper bound a running hive reaches. Page cache a load leaves behind without mapping it
 * (reading without mmap) is not predicted: the kernel reclaims it. On a GPU the same parts are
 * device memory, in full (allocations there are physical), plus the CUDA runtime's own memory, a
 * constant calibrated on an H100 (EST_GPU_RUNTIME below). */
#include "estimate.h"
#include "estimate_int.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ggml-backend.h>
#include <gguf.h>
#include <llama.h>

#include "log.h"
#include "sysmem.h"
#include "util.h"

#define MIB (1024.0 * 1024.0)
#define EST_UBATCH 512u            /* the engine's n_ubatch */
#define EST_MIN_BATCH 512u         /* the engine's minimum n_batch */
#define EST_CTX_PAD 256u           /* llama.cpp pads n_ctx and n_ctx_seq to this */
#define EST_TENSOR_ALIGN 64u       /* CPU buffer alignment, rounded up */
/* Runtime overhead on the CPU, fitted to measurements of tiny models with five different
 * tokenizers (docs/MEMORY.md): a fixed part, per vocabulary entry and per BPE merge (llama.cpp's
 * token tables and tokenizer maps), per context (graph metadata), and the CPU backend's work
 * buffer, which holds the activations of the largest step converted for the matrix kernels. */
#define EST_OVERHEAD_BASE (0.3 * MIB)
#define EST_OVERHEAD_PER_VOCAB 205.0
#define EST_OVERHEAD_PER_MERGE 133.0
#define EST_OVERHEAD_PER_CTX (0.5 * MIB)
/* Each context beyond the first (the parallel schedule): its scheduler, graph metadata and
 * buffers' bookkeeping, measured at 1.9 MiB more than the first (docs/MEMORY.md). */
#define EST_OVERHEAD_EXTRA_CTX (1.9 * MIB)
#define EST_WORK_PER_TOKEN_FF 2.0 /* bytes per step token per feed-forward unit */
/* llama.cpp's bookkeeping of each KV cell in use (sets of used cells and of positions per
 * sequence): grows as the jars fill, measured (docs/MEMORY.md). */
#define EST_OVERHEAD_PER_CELL 140.0
/* The CUDA runtime's own device memory (its context, the loaded kernels, cuBLAS's workspace) and
 * what grows with the sequences (output state): calibrated on an NVIDIA H100 80GB (CUDA 13.0,
 * driver 580.159, sm_90 build) against nvidia-smi's per-process figure with a Mistral-7B-shaped
 * Q4_K_M for 1 to 128 brains (bench/scale.py; docs/BENCHMARKS.md): process memory minus the
 * estimate's buffers was 594 MiB at 1 brain and 606 at 128 with the CPU sampler, and 626 / 666 with
 * sampling in the decode graph (per-sequence sampler state on the GPU). Other GPUs and CUDA
 * versions differ by some tens of MiB (the context scales with the multiprocessors): measure with
 * bench/gpu/scale and adjust here. */
#define EST_GPU_RUNTIME (594.0 * MIB)
#define EST_GPU_RUNTIME_PER_BRAIN (0.09 * MIB)
#define EST_GPU_BACKEND_SAMPLING (32.0 * MIB)
#define EST_GPU_BACKEND_SAMPLING_PER_BRAIN (0.22 * MIB)

void bj_est_opts_default(struct bj_est_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_gpu_layers = -1;
    o->use_mmap = -1;
    o->repack = true;
    o->n_engines = 1;
    o->backend_sampling = -1;
    o->kv_type = GGML_TYPE_F16;
    o->flash_attn = -1;
    o->prefill_chunk = 64;
    o->n_threads = 0;
    o->schedule = BJ_SCHED_AUTO;
    o->dry_run = true;
    o->split = bj_split_default();
}

void bj_est_opts_from_spec(struct bj_est_opts *o, const struct bj_hive_spec *c)
{
    bj_est_opts_default(o);
    o->n_gpu_layers = c->n_gpu_layers;
    o->use_mmap = c->use_mmap;
    o->kv_type = c->kv_type;
    o->flash_attn = c->flash_attn;
    o->prefill_chunk = c->prefill_chunk > 0 ? c->prefill_chunk : 64;
    o->n_threads = c->n_threads;
    o->schedule = c->schedule;
    o->backend_sampling = c->backend_sampling;
    o->profile = c->profile;
    o->own_openings = c->own_openings;
    o->split = c->split;
}

uint64_t bj_est_mem_total(const struct bj_est_mem *m)
{
    return m->weights_anon + m->weights_file + m->kv + m->compute + m->output + m->overhead;
}

uint64_t bj_est_heuristic(uint64_t file_size) { return file_size + file_size / 2; }

static uint32_t pad_u32(uint32_t v, uint32_t to) { return (v + to - 1) / to * to; }
static uint64_t pad_u64(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

/* ---- context layout ---------------------------------------------------------------------- */

void est_layout_one(uint32_t cells_req, int n_seq, bool unified, int prefill_chunk, struct ctx_layout *l)
{
    uint32_t want_batch = (uint32_t)n_seq * (uint32_t)prefill_chunk;
    if (want_batch < EST_MIN_BATCH)
        want_batch = EST_MIN_BATCH;
    l->n_seq = (uint32_t)n_seq;
    l->unified = unified;
    l->n_batch = cells_req < want_batch ? cells_req : want_batch;
    l->n_ubatch = l->n_batch < EST_UBATCH ? l->n_batch : EST_UBATCH;
    l->n_ctx = pad_u32(cells_req, EST_CTX_PAD);
    if (unified || n_seq <= 1) {
        l->n_ctx_seq = l->n_ctx;
        l->n_stream = unified ? 1 : (uint32_t)n_seq;
    } else {
        l->n_ctx_seq = pad_u32(l->n_ctx / (uint32_t)n_seq, EST_CTX_PAD);
        l->n_ctx = l->n_ctx_seq * (uint32_t)n_seq;
        l->n_stream = (uint32_t)n_seq;
    }
}

/* ---- weight placement -------------------------------------------------------------------- */

/* The buffer types llama.cpp would try before the plain CPU one (use_extra_bufts). */
struct cpu_bufts {
    ggml_backend_dev_t dev;
    ggml_backend_buffer_type_t extra[8];
    int n_extra;
};

static void cpu_bufts_get(bool repack, struct cpu_bufts *b)
{
    memset(b, 0, sizeof *b);
    b->dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!b->dev || !repack)
        return;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(b->dev);
    ggml_backend_dev_get_extra_bufts_t fn = NULL;
    *(void **)&fn = ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!fn)
        return;
    for (ggml_backend_buffer_type_t *e = fn(b->dev); e && *e && b->n_extra < 8; e++)
        b->extra[b->n_extra++] = *e;
}

/* Would llama.cpp put weight w (used by a matrix multiplication) in an extra (repacking) CPU
 * buffer? Asks the CPU device exactly as llama.cpp's weight_buft_supported() does. */
static bool cpu_repacks(const struct cpu_bufts *b, struct ggml_tensor *w)
{
    if (b->n_extra == 0 || ggml_n_dims(w) != 2)
        return false;
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * 4, .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx)
        return false;
    struct ggml_tensor *x = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, w->ne[0], 512, w->ne[2], w->ne[3]);
    struct ggml_tensor *op = ggml_mul_mat(ctx, w, x);
    bool yes = false;
    for (int i = 0; i < b->n_extra && !yes; i++) {
        w->buffer = ggml_backend_buft_alloc_buffer(b->extra[i], 0);
        if (!w->buffer)
            continue;
        yes = ggml_backend_dev_supports_op(b->dev, op);
        ggml_backend_buffer_free(w->buffer);
        w->buffer = NULL;
    }
    ggml_free(ctx);
    return yes;
}

/* Layer index of a tensor: blk.N -> N, token_embd -> -1 (input, always on the CPU), anything
 * else -> n_layer (the output layer). */
static int tensor_layer(const char *name, uint32_t n_layer)
{
    unsigned il;
    if (sscanf(name, "blk.%u.", &il) == 1)
        return (int)il;
    if (strncmp(name, "token_embd", 10) == 0)
        return -1;
    return (int)n_layer;
}

/* Matrix weights (used by MUL_MAT): 2-D ".weight" tensors other than the token embedding and
 * norms. Only those may be repacked. */
static bool is_matmul_weight(const char *name, const struct ggml_tensor *t)
{
    size_t n = strlen(name);
    return ggml_n_dims(t) == 2 && n > 7 && strcmp(name + n - 7, ".weight") == 0 &&
           strncmp(name, "token_embd", 10) != 0 && !strstr(name, "norm");
}

/* The device of a layer (-1: the CPU; the token embedding, layer -1, always is), as the plan says. */
static int layer_device(const struct bj_plan *plan, int layer)
{
    return layer < 0 ? -1 : bj_plan_layer_device(plan, layer);
}

/* Tensor by tensor: where each weight goes and what memory it takes. */
static int place_weights(const char *path, const struct bj_est_opts *o, bool use_mmap, const struct bj_plan *plan,
                         struct bj_est_model *m, char *err, size_t errlen)
{
    struct ggml_context *meta = NULL;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = &meta};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        snprintf(err, errlen, "model file %s: corrupt or truncated GGUF header", path);
        return -1;
    }
    struct cpu_bufts bufts;
    cpu_bufts_get(o->repack, &bufts);
    const uint64_t data0 = gguf_get_data_offset(g);
    int64_t merges = gguf_find_key(g, "tokenizer.ggml.merges");
    m->n_merges = merges >= 0 && gguf_get_kv_type(g, merges) == GGUF_TYPE_ARRAY ? (uint64_t)gguf_get_arr_n(g, merges) : 0;
    uint64_t map_first = UINT64_MAX, map_last = 0;
    bool tied = gguf_find_tensor(g, "output.weight") < 0;
    int64_t n = gguf_get_n_tensors(g);
    /* One extra pass for a tied output: llama.cpp uses token_embd as the output matrix too, and
     * copies it when the output layer's buffer type differs (GPU, or repacked). */
    for (int64_t i = 0; i <= n; i++) {
        bool dup_output = i == n;
        if (dup_output && !tied)
            break;
        int64_t ti = dup_output ? gguf_find_tensor(g, "token_embd.weight") : i;
        if (ti < 0)
            break;
        const char *name = gguf_get_tensor_name(g, ti);
        struct ggml_tensor *t = ggml_get_tensor(meta, name);
        if (!t)
            continue;
        uint64_t bytes = ggml_nbytes(t);
        uint64_t off = data0 + gguf_get_tensor_offset(g, ti);
        int layer = dup_output ? (int)m->mi.n_layer : tensor_layer(name, m->mi.n_layer);
        bool matmul = dup_output || is_matmul_weight(name, t);
        int dev = layer_device(plan, layer);
        if (dev >= 0) {
            m->dev[dev].mem.weights_anon += pad_u64(bytes, EST_TENSOR_ALIGN);
            continue;
        }
        bool repacked = matmul && cpu_repacks(&bufts, t);
        if (dup_output && !repacked)
            break; /* same buffer type as token_embd: llama.cpp reuses the tensor, no copy */
        m->cpu_weight_bytes += pad_u64(bytes, EST_TENSOR_ALIGN);
        if (repacked) {
            m->cpu.weights_anon += pad_u64(bytes, EST_TENSOR_ALIGN);
            m->repacked_bytes += bytes;
            m->n_repacked++;
            continue;
        }
        if (!use_mmap) {
            m->cpu.weights_anon += pad_u64(bytes, EST_TENSOR_ALIGN);
            continue;
        }
        if (off < map_first)
            map_first = off;
        if (off + bytes > map_last)
            map_last = off + bytes;
    }
    if (use_mmap && map_last > map_first) {
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        uint64_t last = pad_u64(map_last, page);
        if (last > m->mi.file_size)
            last = m->mi.file_size;
        m->cpu.weights_file = last - map_first / page * page;
    }
    gguf_free(g);
    ggml_free(meta);
    return 0;
}

/* ---- KV cache ---------------------------------------------------------------------------- */

/* KV bytes of `cells` cells in one layer. All layers are full size: the engine keeps
 * llama.cpp's swa_full default, so sliding-window layers are not capped. */
static uint64_t kv_layer_bytes(const struct bj_modelinfo *mi, enum ggml_type t, uint64_t cells)
{
    uint64_t k = ggml_row_size(t, (int64_t)mi->n_head_kv * mi->head_dim_k);
    uint64_t v = ggml_row_size(t, (int64_t)mi->n_head_kv * mi->head_dim_v);
    return (k + v) * cells;
}

/* Each layer's cache lives on that layer's device. */
static void place_kv(const struct bj_est_opts *o, const struct bj_plan *plan, uint64_t cells, struct bj_est_model *m)
{
    for (uint32_t il = 0; il < m->mi.n_layer; il++) {
        uint64_t b = kv_layer_bytes(&m->mi, o->kv_type, cells);
        int dev = layer_device(plan, (int)il);
        if (dev >= 0)
            m->dev[dev].mem.kv += b;
        else
            m->cpu.kv += b;
    }
}

/* ---- compute and output buffers ---------------------------------------------------------- */

/* A buffer name is host memory when it is the CPU's or a pinned host buffer ("CUDA_Host"). */
static bool host_buffer_name(const char *name)
{
    return strncmp(name, "CPU", 3) == 0 || strstr(name, "_Host") != NULL || strstr(name, "Host") != NULL;
}

static void dry_add_dev(struct dry_capture *c, const char *name, uint64_t bytes)
{
    c->dev_compute += bytes;
    int i = 0;
    while (i < c->n_dev_bufs && strcmp(c->dev_bufs[i].name, name) != 0)
        i++;
    if (i == c->n_dev_bufs) {
        if (i == DRY_MAX_BUFS)
            i--; /* cannot happen with at most BJ_MAX_DEVICES devices; counted with the last one */
        else
            bj_strlcpy(c->dev_bufs[c->n_dev_bufs++].name, name, sizeof c->dev_bufs[0].name);
    }
    c->dev_bufs[i].bytes += bytes;
}

/* Parses "<func>: <NAME> compute buffer size = <x> MiB" and "<NAME>  output buffer size = ...". */
static void dry_parse(struct dry_capture *c, const char *text)
{
    const char *kinds[] = {" compute buffer size = ", " output buffer size = "};
    for (int k = 0; k < 2; k++) {
        const char *at = strstr(text, kinds[k]);
        if (!at)
            continue;
        double mib;
        if (sscanf(at + strlen(kinds[k]), "%lf", &mib) != 1)
            return;
        /* the buffer name is the word before the kind */
        const char *end = at;
        while (end > text && end[-1] == ' ')
            end--;
        const char *start = end;
        while (start > text && start[-1] != ' ')
            start--;
        char name[128];
        size_t len = (size_t)(end - start) < sizeof name - 1 ? (size_t)(end - start) : sizeof name - 1;
        memcpy(name, start, len);
        name[len] = '\0';
        uint64_t bytes = (uint64_t)llround(mib * MIB);
        if (k == 1)
            c->output += bytes;
        else if (host_buffer_name(name))
            c->host_compute += bytes;
        else
            dry_add_dev(c, name, bytes);
        c->n_compute += k == 0;
        return;
    }
}

static void dry_log(enum ggml_log_level level, const char *text, void *ud)
{
    struct dry_capture *c = ud;
    if (text) {
        dry_parse(c, text);
        if (level == GGML_LOG_LEVEL_ERROR && !c->last_error[0]) { /* the first says why */
            bj_strlcpy(c->last_error, text, sizeof c->last_error);
            size_t n = strlen(c->last_error);
            while (n > 0 && (c->last_error[n - 1] == '\n' || c->last_error[n - 1] == ' '))
                c->last_error[--n] = '\0';
        }
    }
    /* keep llama.cpp's chatter at debug level: only errors are forwarded during a dry run */
    if (c->prev && level == GGML_LOG_LEVEL_ERROR)
        c->prev(level, text, c->prev_ud);
}

/* The largest step the engine ever decodes: every brain a prefill chunk, one output (the last
 * token's logits) per brain. */
static uint32_t engine_step_tokens(const struct bj_est_opts *o, const struct ctx_layout *l)
{
    uint32_t t = l->n_seq * (uint32_t)o->prefill_chunk;
    return t < l->n_batch ? t : l->n_batch;
}

/* llama.cpp lays out the model and one context without allocating (no_alloc) and logs the
 * compute and output buffer sizes it would allocate; we read them from its log. With `touched`,
 * the graph is reserved for the engine's largest real step (n_ubatch = that step, one output per
 * brain) instead of llama.cpp's worst case (a full ubatch with every token's logits): on the CPU,
 * only that part of the compute buffer is ever written, so only that part becomes resident.
 * Returns 0 or -1 (c->last_error says why). */
int est_dry_run(const char *path, const struct bj_est_opts *o, const struct bj_plan *plan, int ctx_index,
                   const struct ctx_layout *l, bool touched, struct dry_capture *c)
{
    memset(c, 0, sizeof *c);
    llama_log_get(&c->prev, &c->prev_ud);
    llama_log_set(dry_log, c);
    struct llama_model_params mp = bj_plan_model_params(plan);
    mp.no_alloc = true;
    mp.load_mode = LLAMA_LOAD_MODE_NONE; /* llama.cpp asserts: no_alloc maps nothing */
    int rc = -1;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    struct llama_context *ctx = NULL;
    c->load_failed = true;
    if (!model)
        goto out;
    struct llama_context_params cp = bj_plan_context_params(plan, ctx_index);
    if (touched) {
        uint32_t step = engine_step_tokens(o, l);
        cp.n_ubatch = step < cp.n_ubatch ? step : cp.n_ubatch;
        cp.n_outputs_max = l->n_seq;
    }
    ctx = llama_init_from_model(model, cp);
    if (!ctx)
        goto out;
    c->load_failed = false;
    rc = c->n_compute > 0 ? 0 : -1;
    if (rc)
        bj_strlcpy(c->last_error, "llama.cpp reported no compute buffer", sizeof c->last_error);
out:
    if (ctx)
        llama_free(ctx);
    if (model)
        llama_model_free(model);
    llama_log_set(c->prev, c->prev_ud);
    return rc;
}

/* Formula for when the dry run is off or fails, calibrated on dry runs (docs/MEMORY.md): logits
 * of the outputs, activations of a ubatch, attention scores when flash attention is off. */
static void compute_formula(const struct bj_modelinfo *mi, const struct bj_est_opts *o, const struct ctx_layout *l,
                            uint32_t ubatch, uint32_t outputs, uint64_t *compute, uint64_t *output)
{
    uint64_t ub = ubatch;
    uint64_t c = (uint64_t)outputs * mi->n_vocab * 4 + ub * (4ull * mi->n_embd + 2ull * mi->n_ff) * 4;
    if (o->flash_attn == 0)
        c += ub * (uint64_t)l->n_ctx_seq * mi->n_head * 4;
    *compute = c;
    *output = (uint64_t)l->n_seq * mi->n_vocab * 4;
}

/* The device whose buffer type llama.cpp's log calls `buft`; else the output layer's device, which
 * runs the graph's end (-1: none). */
static int buffer_device(const struct bj_plan *plan, const struct bj_est_model *m, const char *buft)
{
    for (int i = 0; i < plan->facts.devices.n; i++)
        if (buft && strcmp(plan->facts.devices.d[i].buft, buft) == 0)
            return i;
    return layer_device(plan, (int)m->mi.n_layer);
}

/* Compute and output buffers of one context. On the CPU they count as far as the engine's
 * largest step writes them; on a device (physical allocations) in full, on the device whose
 * buffer it is. */
static void add_buffers(const char *path, const struct bj_est_opts *o, const struct bj_plan *plan, int ctx_index,
                        const struct ctx_layout *l, struct bj_est_model *m)
{
    struct dry_capture c;
    uint64_t host_compute, dev_compute = 0, output;
    bool touched = !plan->gpu;
    if (o->dry_run && est_dry_run(path, o, plan, ctx_index, l, touched, &c) == 0) {
        host_compute = c.host_compute;
        output = c.output;
        m->compute_from_llama = true;
        for (int i = 0; i < c.n_dev_bufs; i++) {
            int dev = buffer_device(plan, m, c.dev_bufs[i].name);
            if (dev >= 0)
                m->dev[dev].mem.compute += c.dev_bufs[i].bytes;
            else
                host_compute += c.dev_bufs[i].bytes; /* no device takes a layer: cannot happen */
        }
    } else {
        if (o->dry_run) {
            snprintf(m->note, sizeof m->note, "dry run failed: %s; compute buffers from a formula",
                     c.last_error[0] ? c.last_error : "no details");
            m->dry_run_failed = c.load_failed;
            bj_strlcpy(m->dry_run_error, c.last_error, sizeof m->dry_run_error);
        }
        uint64_t compute;
        if (touched)
            compute_formula(&m->mi, o, l, engine_step_tokens(o, l), l->n_seq, &compute, &output);
        else
            compute_formula(&m->mi, o, l, l->n_ubatch, l->n_ubatch, &compute, &output);
        host_compute = plan->gpu ? compute / 8 : compute;
        dev_compute = plan->gpu ? compute : 0;
        int dev = buffer_device(plan, m, NULL);
        if (dev >= 0)
            m->dev[dev].mem.compute += dev_compute;
    }
    m->cpu.compute += host_compute;
    m->cpu.output += output;
    m->cpu.overhead += (uint64_t)((ctx_index == 0 ? EST_OVERHEAD_PER_CTX : EST_OVERHEAD_EXTRA_CTX) +
                                  EST_WORK_PER_TOKEN_FF * engine_step_tokens(o, l) * (double)m->mi.n_ff);
}

/* The plan the engine will run for these brains (plan.h), from the options and the facts. */
static int plan_for(const struct bj_est_opts *o, const struct bj_plan_facts *f, const long *jars, int n_brains,
                    struct bj_plan *plan, char *err, size_t errlen)
{
    struct bj_plan_settings ps = bj_plan_default_settings();
    ps.schedule = o->schedule;
    ps.n_threads = o->n_threads;
    ps.n_engines = o->n_engines;
    ps.n_gpu_layers = o->n_gpu_layers;
    ps.use_mmap = o->use_mmap;
    ps.repack = o->repack;
    ps.kv_type = o->kv_type;
    ps.flash_attn = o->flash_attn;
    ps.prefill_chunk = o->prefill_chunk;
    ps.backend_sampling = o->backend_sampling;
    ps.profile = o->profile;
    ps.own_openings = o->own_openings;
    ps.split = o->split;
    return bj_plan_make(&ps, f, jars, n_brains, plan, err, errlen);
}

/* Which device takes which layers (from the plan), and what each device reported. */
static void describe_devices(const struct bj_plan *plan, struct bj_est_model *m)
{
    const struct bj_devices *d = &plan->facts.devices;
    m->n_devices = d->n;
    for (int i = 0; i < d->n; i++) {
        struct bj_est_device *e = &m->dev[i];
        bj_strlcpy(e->name, d->d[i].name, sizeof e->name);
        bj_strlcpy(e->desc, d->d[i].desc, sizeof e->desc);
        e->remote = d->d[i].remote;
        e->free = d->d[i].free;
        e->total = d->d[i].total;
        e->free_known = d->d[i].free_known;
    }
    for (int il = 0; il <= (int)m->mi.n_layer; il++) {
        int dev = layer_device(plan, il);
        if (dev < 0)
            continue;
        if (il == (int)m->mi.n_layer) {
            m->dev[dev].output = true;
            m->output_on_gpu = true;
            continue;
        }
        if (m->dev[dev].layers++ == 0)
            m->dev[dev].first_layer = il;
        m->gpu_layers++;
    }
    for (int i = 0; i < d->n; i++)
        m->n_devices_used += m->dev[i].layers > 0 || m->dev[i].output;
}

/* Each local device a layer uses runs the backend's own runtime (the CUDA context, its kernels,
 * cuBLAS's workspace): calibrated for one GPU, charged to every one in use, with the part that
 * grows with the brains on the first. An rpc-server's runtime is the server's own, made when it
 * started: nothing here. Then the totals: local GPUs and rpc-servers. */
static void sum_devices(struct bj_est_model *m, int n_brains)
{
    bool first = true;
    for (int i = 0; i < m->n_devices; i++) {
        struct bj_est_device *e = &m->dev[i];
        if (!e->remote && (e->layers > 0 || e->output)) {
            double runtime = EST_GPU_RUNTIME, per_brain = EST_GPU_RUNTIME_PER_BRAIN;
            if (m->plan.backend_sampling) {
                runtime += EST_GPU_BACKEND_SAMPLING;
                per_brain += EST_GPU_BACKEND_SAMPLING_PER_BRAIN;
            }
            e->mem.overhead += (uint64_t)(runtime + (first ? per_brain * (double)(n_brains - 1) : 0));
            first = false;
        }
        struct bj_est_mem *to = e->remote ? &m->remote : &m->gpu;
        to->weights_anon += e->mem.weights_anon;
        to->weights_file += e->mem.weights_file;
        to->kv += e->mem.kv;
        to->compute += e->mem.compute;
        to->output += e->mem.output;
        to->overhead += e->mem.overhead;
    }
}

/* ---- one model --------------------------------------------------------------------------- */

/* Jars must hold at least a token and fit llama.cpp's 32-bit cell counts with room to spare. */
int est_check_jars(const long *jar_tokens, int n_brains, char *err, size_t errlen)
{
    if (n_brains < 1 || n_brains > BJ_MAX_BRAINS) {
        snprintf(err, errlen, "%d brains on one model (1 to %d)", n_brains, BJ_MAX_BRAINS);
        return -1;
    }
    const long max = (long)(UINT32_MAX / 2 / BJ_MAX_BRAINS);
    for (int i = 0; i < n_brains; i++)
        if (jar_tokens[i] < 1 || jar_tokens[i] > max) {
            snprintf(err, errlen, "brain %d: a jar of %ld tokens is out of range (1 to %ld)", i + 1, jar_tokens[i], max);
            return -1;
        }
    return 0;
}

int bj_estimate_model(const char *path, const struct bj_est_opts *o, const long *jar_tokens, int n_brains,
                      struct bj_est_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    bj_strlcpy(out->path, path, sizeof out->path);
    if (est_check_jars(jar_tokens, n_brains, err, errlen) != 0)
        return -1;
    if (bj_modelinfo_read(path, &out->mi, err, errlen) != 0)
        return -1;
    const struct bj_modelinfo *mi = &out->mi;
    out->n_brains = n_brains;
    out->heuristic = bj_est_heuristic(mi->file_size);

    /* The devices are listed once (an rpc-server is asked over the network, and a GPU's free
     * memory, which the default split follows, moves): both plans below share these facts. */
    struct bj_plan_facts *facts = malloc(sizeof *facts);
    if (!facts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *facts = bj_plan_facts_here((int)mi->n_layer, 0);
    out->gpu_backend = facts->gpu_offload;
    /* Where the weights go (the plan's devices) decides the load mode (repacked weights: read,
     * not mmap), and the load mode decides what the weights cost: place them once to learn, plan
     * with what repacks, and place them again if the load mode changed. */
    int rc = plan_for(o, facts, jar_tokens, n_brains, &out->plan, err, errlen);
    if (rc == 0) {
        describe_devices(&out->plan, out);
        rc = place_weights(path, o, true, &out->plan, out, err, errlen);
    }
    if (rc == 0) {
        facts->n_repacked = out->n_repacked;
        rc = plan_for(o, facts, jar_tokens, n_brains, &out->plan, err, errlen);
    }
    free(facts);
    if (rc != 0)
        return -1;
    if (!out->plan.use_mmap) {
        out->cpu.weights_anon = out->cpu.weights_file = 0;
        for (int i = 0; i < out->n_devices; i++)
            out->dev[i].mem.weights_anon = 0;
        out->cpu_weight_bytes = out->repacked_bytes = 0;
        out->n_repacked = 0;
        if (place_weights(path, o, false, &out->plan, out, err, errlen) != 0)
            return -1;
    }
    const struct bj_plan *plan = &out->plan;
    bool parallel = plan->schedule == BJ_SCHED_PARALLEL;
    out->n_contexts = parallel ? n_brains : 1;
    uint64_t jar_cells = 0;
    for (int i = 0; i < n_brains; i++) {
        out->kv_jars += bj_modelinfo_kv_bytes(mi, o->kv_type, o->kv_type, (uint64_t)jar_tokens[i]);
        jar_cells += (uint64_t)jar_tokens[i];
    }
    out->cpu.overhead += (uint64_t)(EST_OVERHEAD_PER_CELL * (double)jar_cells);
    for (int c = 0; c < out->n_contexts; c++) {
        struct ctx_layout l;
        est_layout_one(bj_plan_cells(plan, c), parallel ? 1 : n_brains, plan->unified, plan->prefill_chunk, &l);
        place_kv(o, plan, (uint64_t)l.n_ctx_seq * l.n_stream, out);
        add_buffers(path, o, plan, c, &l, out);
        if (c == 0) {
            out->n_ctx = l.n_ctx;
            out->n_stream = l.n_stream;
            out->unified = l.unified;
            out->n_batch = l.n_batch;
            out->n_ubatch = l.n_ubatch;
        }
    }
    out->cpu.overhead += (uint64_t)(EST_OVERHEAD_BASE + EST_OVERHEAD_PER_VOCAB * mi->n_vocab +
                                    EST_OVERHEAD_PER_MERGE * (double)out->n_merges);
    sum_devices(out, n_brains);
    return 0;
}

/* The jars are charged where the brains' KV is (bj_est_brain_host/gpu): not in the shared part. */
uint64_t bj_est_model_shared_cpu(const struct bj_est_model *m)
{
    uint64_t t = bj_est_mem_total(&m->cpu);
    uint64_t jars_here = m->gpu.kv > 0 || m->remote.kv > 0 ? 0 : m->kv_jars;
    return t > jars_here ? t - jars_here : 0;
}

uint64_t bj_est_model_shared_gpu(const struct bj_est_model *m)
{
    uint64_t t = bj_est_mem_total(&m->gpu);
    uint64_t jars_here = m->gpu.kv > 0 && m->remote.kv == 0 ? m->kv_jars : 0;
    return t > jars_here ? t - jars_here : 0;
}

bool bj_est_model_split(const struct bj_est_model *m)
{
    if (m->n_devices_used > 1)
        return true;
    for (int i = 0; i < m->n_devices; i++)
        if (m->dev[i].remote && (m->dev[i].layers > 0 || m->dev[i].output))
            return true;
    return false;
}

const char *bj_est_placement(const struct bj_est_model *m, char *buf, size_t len)
{
    if (!m->gpu_backend) {
        snprintf(buf, len, "CPU only (no GPU or rpc-server)");
        return buf;
    }
    if (m->gpu_layers == 0 && !m->output_on_gpu) {
        snprintf(buf, len, "CPU (no layers offloaded)");
        return buf;
    }
    size_t at = 0;
    buf[0] = '\0';
    bool split = bj_est_model_split(m);
    for (int i = 0; i < m->n_devices && at < len; i++) {
        const struct bj_est_device *d = &m->dev[i];
        if (d->layers == 0 && !d->output)
            continue;
        char range[48];
        if (d->layers == 0)
            snprintf(range, sizeof range, "output layer");
        else if (d->layers == 1)
            snprintf(range, sizeof range, "layer %d%s", d->first_layer, d->output ? " + output" : "");
        else
            snprintf(range, sizeof range, "layers %d-%d%s", d->first_layer, d->first_layer + d->layers - 1,
                     d->output ? " + output" : "");
        if (split)
            at += (size_t)snprintf(buf + at, len - at, "%s%s (%s%s): %s", at ? "; " : "", d->name, d->desc,
                                   d->remote ? ", rpc-server" : "", range);
        else
            at += (size_t)snprintf(buf + at, len - at, "%d of %u layers%s on %s (%s)", m->gpu_layers, m->mi.n_layer,
                                   m->output_on_gpu ? " + output" : "", d->name, d->desc);
    }
    int n_cpu = (int)m->mi.n_layer - m->gpu_layers; /* the first ones */
    if (n_cpu == 1 && at < len)
        snprintf(buf + at, len - at, "; layer 0 on the CPU");
    else if (n_cpu > 1 && at < len)
        snprintf(buf + at, len - at, "; layers 0-%d on the CPU", n_cpu - 1);
    return buf;
}

uint64_t bj_est_brain_host(const struct bj_est_brain *b)
{
    return b->kv_on_gpu || b->kv_remote ? 0 : b->jar.kv_bytes;
}

uint64_t bj_est_brain_gpu(const struct bj_est_brain *b) { return b->kv_on_gpu ? b->jar.kv_bytes : 0; }

/* ---- a hive ------------------------------------------------------------------------------ */

static int find_or_add_model(struct bj_est_hive *h, const char *path)
{
    for (int i = 0; i < h->n_models; i++)
        if (strcmp(h->models[i].path, path) == 0)
            return i;
    bj_strlcpy(h->models[h->n_models].path, path, sizeof h->models[0].path);
    return h->n_models++;
}

struct bj_est_hive *bj_estimate_spec(const struct bj_hive_spec *c, const char *default_model_path, char *err,
                                       size_t errlen)
{
    struct bj_est_hive *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    bj_est_opts_from_spec(&h->opts, c);
    if (c->n_brains < 1 || c->n_brains > BJ_MAX_BRAINS) {
        snprintf(err, errlen, "the hive has %d brains (1 to %d)", c->n_brains, BJ_MAX_BRAINS);
        goto fail;
    }
    /* group brains by model file */
    for (int i = 0; i < c->n_brains; i++) {
        const char *path = bj_spec_brain_model(c, &c->brains[i]);
        if (!path || !path[0])
            path = default_model_path;
        if (!path || !path[0]) {
            snprintf(err, errlen, "brain %s: no model (and no default model)", c->brains[i].id);
            goto fail;
        }
        struct bj_est_brain *b = &h->brains[h->n_brains++]; /* index i: the config's brain i */
        bj_strlcpy(b->id, c->brains[i].id, sizeof b->id);
        b->jar_gb = c->brains[i].jar_tokens > 0 ? 0 : c->brains[i].jar_gb;
        b->model = find_or_add_model(h, path);
    }
    h->opts.n_engines = h->n_models; /* engines run at once and split the threads */
    for (int m = 0; m < h->n_models; m++) {
        struct bj_modelinfo *mi = malloc(sizeof *mi);
        char path[PATH_MAX];
        if (!mi) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        bj_strlcpy(path, h->models[m].path, sizeof path);
        if (bj_modelinfo_read(path, mi, err, errlen) != 0) {
            free(mi);
            goto fail;
        }
        if (strncmp(path, "/proc/", 6) == 0) /* the embedded voice (app/embedded.c), as the hive's */
            bj_jar_cap_context(mi, BJ_VOICE_JAR_TOKENS);
        long jars[BJ_MAX_BRAINS];
        struct bj_jar *mine[BJ_MAX_BRAINS];
        int n = 0;
        for (int i = 0; i < h->n_brains; i++) {
            struct bj_est_brain *b = &h->brains[i];
            if (b->model != m)
                continue;
            if (bj_jar_resolve(&c->brains[i], mi, h->opts.kv_type, &b->jar, err, errlen) != 0) {
                free(mi);
                goto fail;
            }
            mine[n++] = &b->jar;
        }
        bj_jar_keep_proportions(mine, n, mi, h->opts.kv_type);
        for (int k = 0; k < n; k++)
            jars[k] = mine[k]->tokens;
        free(mi);
        if (bj_estimate_model(path, &h->opts, jars, n, &h->models[m], err, errlen) != 0)
            goto fail;
        const struct bj_est_model *em = &h->models[m];
        for (int i = 0; i < h->n_brains; i++)
            if (h->brains[i].model == m) {
                h->brains[i].kv_on_gpu = em->gpu.kv > 0 && em->cpu.kv == 0 && em->remote.kv == 0;
                h->brains[i].kv_remote = em->remote.kv > 0 && em->cpu.kv == 0;
            }
    }
    return h;
fail:
    free(h);
    return NULL;
}

void bj_est_hive_free(struct bj_est_hive *h) { free(h); }

uint64_t bj_est_hive_cpu(const struct bj_est_hive *h)
{
    uint64_t t = 0;
    for (int m = 0; m < h->n_models; m++)
        t += bj_est_model_shared_cpu(&h->models[m]);
    for (int b = 0; b < h->n_brains; b++)
        t += bj_est_brain_host(&h->brains[b]);
    return t;
}

uint64_t bj_est_hive_gpu(const struct bj_est_hive *h)
{
    uint64_t t = 0;
    for (int m = 0; m < h->n_models; m++)
        t += bj_est_model_shared_gpu(&h->models[m]);
    for (int b = 0; b < h->n_brains; b++)
        t += bj_est_brain_gpu(&h->brains[b]);
    return t;
}

