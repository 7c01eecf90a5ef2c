/* plan: see plan.h. */
#include "plan.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "jar.h"

#define PLAN_MIN_BATCH 512u
#define PLAN_UBATCH 512u

struct bj_plan_settings bj_plan_default_settings(void)
{
    return (struct bj_plan_settings){
        .schedule = BJ_SCHED_AUTO, .n_threads = 0, .n_engines = 1, .n_gpu_layers = -1, .use_mmap = -1,
        .repack = true, .kv_type = GGML_TYPE_F16, .flash_attn = -1, .prefill_chunk = 64, .backend_sampling = -1,
        .split = bj_split_default(),
    };
}

int bj_plan_online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* On the CPU, every core but one: llama.cpp's workers meet at a spinning barrier after every
 * operation, so when another busy process takes a core, a worker that is not running stalls all
 * the others. Measured on this project's 2-core machine under load (docs/BENCHMARKS.md): 2 threads
 * 1.5 tok/s, 1 thread 34.6 tok/s. A core left free keeps the hive running whatever else the
 * machine does. With any layer on a GPU, every core (the layers left on the CPU need them; with
 * every layer there, the sampling of many brains does: bj_plan_llama_threads). */
int bj_plan_default_threads(int cores, bool gpu)
{
    if (cores < 1)
        cores = 1;
    return gpu || cores == 1 ? cores : cores - 1;
}

/* With every layer on a GPU, llama.cpp's CPU share of a step is the input embeddings' lookup, and
 * more of its threads (spinning between operations) made each step slower on one H100 host
 * (64 brains, 7B: llama_decode 13.44 ms with 2 threads against 14.35 with 16), while the engine's
 * own threads sample every brain at once, and there fewer made the step slower on another (64 /
 * 128 brains: 0.944 / 0.933x llama-batched-bench with 2 threads for both, 0.962 / 0.965 with 2
 * for llama.cpp and 16 for the sampling; docs/BENCHMARKS.md). So llama.cpp gets at most two of
 * the engine's threads there, and the sampling all of them. */
#define GPU_LLAMA_THREADS 2

int bj_plan_llama_threads(int threads, bool all_on_gpu)
{
    return all_on_gpu && threads > GPU_LLAMA_THREADS ? GPU_LLAMA_THREADS : threads;
}

/* Offloading is there when a device is: not llama_supports_gpu_offload(), which is true for every
 * build with the RPC backend, rpc-servers or not. */
struct bj_plan_facts bj_plan_facts_here(int n_layer, int n_repacked)
{
    struct bj_plan_facts f = {.n_layer = n_layer, .n_repacked = n_repacked, .online_cores = bj_plan_online_cores()};
    bj_devices_list(&f.devices);
    f.gpu_offload = f.devices.n > 0;
    return f;
}

/* auto: batched wherever layers are offloaded to a GPU (one pass over the weights serves every
 * brain) and on CPUs without several cores per brain; parallel contexts only when each brain
 * can have 4+ cores of its own (docs/BENCHMARKS.md). One brain is always batched. */
static enum bj_schedule choose_schedule(const struct bj_plan_settings *s, bool gpu, int threads, int n_brains)
{
    if (n_brains <= 1)
        return BJ_SCHED_BATCHED;
    if (s->schedule != BJ_SCHED_AUTO)
        return s->schedule;
    if (gpu)
        return BJ_SCHED_BATCHED;
    return threads >= 4 * n_brains ? BJ_SCHED_PARALLEL : BJ_SCHED_BATCHED;
}

/* The devices' part of the plan: the list llama.cpp gets, which devices take layers and where
 * each one's share ends, as llama_model's load_tensors computes them (in float, as it does, so
 * that every layer lands where llama.cpp puts it). 0, or -1 with err. */
static int plan_devices(const struct bj_split_settings *s, const struct bj_plan_facts *f, struct bj_plan *out,
                        char *err, size_t errlen)
{
    const struct bj_devices *d = &f->devices;
    out->split_mode = s->mode == BJ_SPLIT_AUTO ? LLAMA_SPLIT_MODE_LAYER : s->mode;
    out->main_gpu = s->main_gpu >= 0 ? s->main_gpu : 0;
    memcpy(out->tensor_split, s->tensor_split, sizeof out->tensor_split);
    for (int i = 0; i < d->n; i++)
        out->dev_list[i] = d->d[i].dev;
    out->dev_list[d->n] = NULL;
    if (d->n == 0) {
        if (bj_split_given(s)) {
            snprintf(err, errlen, "--split-mode, --main-gpu and --tensor-split need a GPU or an rpc-server to split "
                                  "the model over, and this process has none (--rpc HOST:PORT adds remote hosts)");
            return -1;
        }
        return 0;
    }
    if (s->main_gpu >= d->n) {
        snprintf(err, errlen, "--main-gpu %d: there %s %d device%s (0 to %d; the first is %s, %s)", s->main_gpu,
                 d->n == 1 ? "is" : "are", d->n, d->n == 1 ? "" : "s", d->n - 1, d->d[0].name, d->d[0].desc);
        return -1;
    }
    if (s->n_tensor_split > d->n) {
        snprintf(err, errlen, "--tensor-split gives %d shares for %d device%s", s->n_tensor_split, d->n,
                 d->n == 1 ? "" : "s");
        return -1;
    }
    if (out->split_mode == LLAMA_SPLIT_MODE_ROW)
        for (int i = 0; i < d->n; i++)
            if (!d->d[i].splits_rows) {
                snprintf(err, errlen, "--split-mode row: device %s (%s) cannot split matrices by rows (CUDA GPUs "
                                      "can); use --split-mode layer", d->d[i].name, d->d[i].desc);
                return -1;
            }
    if (out->split_mode == LLAMA_SPLIT_MODE_NONE) {
        out->n_used = 1;
        out->used[0] = out->main_gpu;
        out->split_at[0] = 1.0f;
        return 0;
    }
    bool all_zero = true, none_free = true;
    for (int i = 0; i < d->n; i++) {
        all_zero = all_zero && s->tensor_split[i] == 0.0f;
        none_free = none_free && d->d[i].split_weight == 0;
    }
    float sum = 0.0f;
    for (int i = 0; i < d->n; i++) {
        out->used[i] = i;
        /* no device (nor the host, which stands in for one that reports nothing) has memory to
         * weigh by: equal shares rather than llama.cpp's 0/0 */
        float w = !all_zero ? s->tensor_split[i] : none_free ? 1.0f : (float)d->d[i].split_weight;
        if (all_zero && out->split_mode == LLAMA_SPLIT_MODE_LAYER)
            out->tensor_split[i] = w; /* llama.cpp splits by these, not by the free memory at load */
        sum += w;
        out->split_at[i] = sum;
    }
    for (int i = 0; i < d->n; i++)
        out->split_at[i] /= sum;
    out->n_used = d->n;
    return 0;
}

int bj_plan_make(const struct bj_plan_settings *s_in, const struct bj_plan_facts *f_in, const long *jars,
                 int n_brains, struct bj_plan *out, char *err, size_t errlen)
{
    /* copies first: a re-plan passes its own settings and facts */
    struct bj_plan_settings settings = *s_in;
    struct bj_plan_facts facts = *f_in;
    const struct bj_plan_settings *s = &settings;
    const struct bj_plan_facts *f = &facts;
    memset(out, 0, sizeof *out);
    if (n_brains < 1 || n_brains > BJ_MAX_BRAINS) {
        snprintf(err, errlen, "%d brains on one model (1 to %d)", n_brains, BJ_MAX_BRAINS);
        return -1;
    }
    out->settings = *s;
    out->facts = *f;
    if (plan_devices(&s->split, f, out, err, errlen) != 0)
        return -1;
    out->n_brains = n_brains;
    for (int i = 0; i < n_brains; i++)
        out->jar[i] = jars[i];
    out->gpu = f->gpu_offload && s->n_gpu_layers != 0;
    out->all_on_gpu = out->gpu && (s->n_gpu_layers < 0 || s->n_gpu_layers > f->n_layer);
    out->n_gpu_layers = s->n_gpu_layers;
    int total = s->n_threads > 0 ? s->n_threads : bj_plan_default_threads(f->online_cores, out->gpu);
    int engines = s->n_engines > 0 ? s->n_engines : 1;
    /* Engines run at once: they split the cores rather than oversubscribe them. */
    out->n_threads = total / engines > 0 ? total / engines : 1;
    out->schedule = choose_schedule(s, out->gpu, out->n_threads, n_brains);
    out->n_contexts = out->schedule == BJ_SCHED_PARALLEL ? n_brains : 1;
    out->threads_per_ctx = out->schedule == BJ_SCHED_PARALLEL
                               ? (out->n_threads / n_brains > 0 ? out->n_threads / n_brains : 1)
                               : bj_plan_llama_threads(out->n_threads, out->all_on_gpu);
    out->repack = s->repack;
    /* Where llama.cpp repacks weights into its own layout, mmap keeps the file's pages resident
     * beside the repacked copy: read the file instead (docs/MEMORY.md). Where the weights are used
     * in place (all on a GPU, or nothing repacked), mmap costs nothing extra and loads faster. */
    out->use_mmap = s->use_mmap >= 0 ? s->use_mmap > 0 : (out->all_on_gpu || !s->repack || f->n_repacked == 0);
    /* Sampling on the CPU unless asked: brainjar's linear sampler on the engine's threads costs
     * less than llama.cpp's per-sequence sampler graphs from 8 brains up and the same below
     * (docs/BENCHMARKS.md, bench/scale on an H100). */
    out->backend_sampling = s->backend_sampling > 0;
    out->kv_type = s->kv_type;
    out->flash_attn = s->flash_attn;
    out->prefill_chunk = s->prefill_chunk > 0 ? s->prefill_chunk : 64;
    if (out->schedule == BJ_SCHED_BATCHED)
        out->cells = bj_jar_kv_cells(jars, n_brains, &out->unified);
    uint32_t n_seq = out->schedule == BJ_SCHED_BATCHED ? (uint32_t)n_brains : 1u;
    uint32_t want = n_seq * (uint32_t)out->prefill_chunk;
    out->n_batch = want > PLAN_MIN_BATCH ? want : PLAN_MIN_BATCH;
    out->n_ubatch = PLAN_UBATCH;
    return 0;
}

uint32_t bj_plan_cells(const struct bj_plan *p, int c)
{
    return p->schedule == BJ_SCHED_BATCHED ? p->cells : (uint32_t)p->jar[c];
}

struct llama_context_params bj_plan_context_params(const struct bj_plan *p, int c)
{
    struct llama_context_params cp = llama_context_default_params();
    bool batched = p->schedule == BJ_SCHED_BATCHED;
    cp.n_ctx = bj_plan_cells(p, c);
    cp.n_seq_max = batched ? (uint32_t)p->n_brains : 1u;
    cp.kv_unified = batched && p->unified;
    cp.n_batch = p->n_batch;
    cp.n_ubatch = p->n_ubatch;
    cp.n_threads = cp.n_threads_batch = p->threads_per_ctx;
    cp.type_k = cp.type_v = p->kv_type;
    cp.flash_attn_type = p->flash_attn < 0   ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : p->flash_attn > 0 ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                             : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    return cp;
}

struct llama_model_params bj_plan_model_params(const struct bj_plan *p)
{
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p->n_gpu_layers;
    mp.load_mode = p->use_mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    mp.use_extra_bufts = p->repack;
    if (p->facts.devices.n > 0)
        mp.devices = (ggml_backend_dev_t *)p->dev_list;
    mp.split_mode = (enum llama_split_mode)p->split_mode;
    mp.main_gpu = p->main_gpu;
    if (p->facts.devices.n > 0 && (p->settings.split.n_tensor_split > 0 || p->split_mode == LLAMA_SPLIT_MODE_LAYER))
        mp.tensor_split = p->tensor_split;
    return mp;
}

int bj_plan_layer_device(const struct bj_plan *p, int il)
{
    int n_layer = p->facts.n_layer;
    int ngl = p->n_gpu_layers >= 0 ? p->n_gpu_layers : n_layer + 1; /* + 1: the output layer */
    int start = n_layer + 1 - ngl > 0 ? n_layer + 1 - ngl : 0;
    int act = p->n_used == 0 ? 0 : (ngl < n_layer + 1 ? ngl : n_layer + 1);
    if (!p->gpu || il < start || il - start >= act)
        return -1;
    float at = (float)(il - start) / (float)act;
    int k = 0;
    while (k < p->n_used - 1 && !(p->split_at[k] > at)) /* the first split point past `at` */
        k++;
    return p->used[k];
}
