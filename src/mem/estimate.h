/* estimate: how much memory a model and its brains will take, before anything is loaded.
 *
 * From the GGUF header alone (tensor types, shapes and file offsets; no weights are read) plus,
 * when asked, a llama.cpp dry run (llama_model_params.no_alloc: llama.cpp lays out the model and
 * context and sizes its compute buffers without allocating them). The estimate mirrors exactly
 * how the engine loads and runs a model (see struct bj_est_opts and estimate.c's opening
 * comment for which memory it predicts). The seed's heuristic (file size x 1.5) is computed
 * beside it for comparison.
 *
 * Shared weights are charged once per model file, jars once per brain.
 *
 * Threads: with opts.dry_run off, any thread. With it on (the default), bj_estimate_model() and
 * bj_estimate_spec() use llama.cpp, as does bj_estimate_measure(): call them on the main
 * thread after llama_backend_init() and before engines start, since the dry run swaps
 * llama.cpp's process-wide log callback for its duration. */
#ifndef BJ_ESTIMATE_H
#define BJ_ESTIMATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ggml.h>

#include "spec.h"
#include "jar.h"
#include "modelinfo.h"
#include "plan.h"

/* How the engine loads and runs a model; what the estimate mirrors. */
struct bj_est_opts {
    int n_gpu_layers;       /* -1: all (llama.cpp's meaning); ignored by builds without a GPU backend */
    int use_mmap;           /* -1 auto (the plan decides), 0 read, 1 mmap */
    bool repack;            /* llama_model_params.use_extra_bufts (llama.cpp default: true) */
    enum ggml_type kv_type; /* K and V cache type */
    int flash_attn;         /* -1 auto, 0 off, 1 on */
    int prefill_chunk;      /* prompt tokens per brain per step (sizes n_batch) */
    int n_threads;          /* for the process; 0: all online cores */
    int n_engines;          /* models loaded at once: they split the threads */
    int backend_sampling;   /* -1 auto, 0 off, 1 on */
    bool profile;           /* carried into the plan (no effect on memory): the engine's --profile */
    bool own_openings;      /* carried into the plan (no effect on memory): --share-openings off */
    enum bj_schedule schedule; /* BATCHED: one context per model; PARALLEL: one per brain; AUTO: as
                                * the engine resolves it (parallel when each brain gets 4+ cores
                                * and no layer is on a GPU) */
    bool dry_run;           /* size compute/output buffers with a llama.cpp no_alloc dry run */
    /* several devices (devices.h; the plan's settings): all as llama.cpp's defaults unless given */
    struct bj_split_settings split;
};

/* The engine's defaults: all GPU layers, mmap, repack, f16 KV, auto flash attention, chunk 64,
 * all cores, batched, dry run on. */
void bj_est_opts_default(struct bj_est_opts *o);
/* The options a config implies (its engine section). */
void bj_est_opts_from_spec(struct bj_est_opts *o, const struct bj_hive_spec *c);

/* Memory on one device, bytes. The sum is what the estimate predicts (see estimate.c). */
struct bj_est_mem {
    uint64_t weights_anon; /* weights in anonymous memory: read without mmap, or repacked copies */
    uint64_t weights_file; /* mmap'd model file pages that stay resident */
    uint64_t kv;           /* KV cache of every brain on the model, padding included */
    uint64_t compute;      /* compute (graph) buffers */
    uint64_t output;       /* logits buffer */
    uint64_t overhead;     /* runtime: vocabulary, graph metadata, CPU work buffer, driver context */
};
uint64_t bj_est_mem_total(const struct bj_est_mem *m);

/* What one offload device (a local GPU or an rpc-server's device) holds of a model. */
struct bj_est_device {
    char name[32];          /* ggml's: CUDA0, RPC0 */
    char desc[128];         /* "NVIDIA H100 80GB HBM3"; an rpc-server's HOST:PORT */
    bool remote;            /* on an rpc-server: memory of another host */
    int layers;             /* repeating layers on it: first_layer .. first_layer + layers - 1 */
    int first_layer;
    bool output;            /* the output layer too */
    struct bj_est_mem mem;  /* what it holds: weights, its layers' KV, its compute buffers, runtime */
    uint64_t free, total;   /* as the device reported them when the plan was made */
    bool free_known;        /* free is a measurement (devices.h) */
};

/* One model file and the brains that use it. */
struct bj_est_model {
    char path[PATH_MAX];
    struct bj_modelinfo mi;
    struct bj_plan plan;          /* how the engine will run it: what this estimate predicts */
    int n_brains;
    /* context layout, as llama.cpp will make it (per context; n_contexts of them) */
    int n_contexts;               /* 1 batched, n_brains parallel */
    uint32_t n_ctx;               /* cells of one context after llama.cpp's padding */
    uint32_t n_stream;            /* KV streams (one per brain unless unified) */
    bool unified;                 /* one shared cell pool (jars differ a lot) */
    uint32_t n_batch, n_ubatch;
    /* placement */
    bool gpu_backend;             /* there is a device to offload to (a GPU, or an rpc-server's) */
    int gpu_layers;               /* repeating layers on devices, local or remote (0 on the CPU) */
    bool output_on_gpu;           /* the output layer on a device */
    uint64_t n_merges;            /* BPE merges of the tokenizer (they cost memory too) */
    uint64_t cpu_weight_bytes;    /* every weight kept on the CPU (what loading without mmap costs) */
    uint64_t repacked_bytes;      /* weights llama.cpp repacks (CPU_REPACK buffer) */
    int n_repacked;
    /* memory */
    struct bj_est_mem cpu, gpu;   /* the whole model with all its brains: host memory, local GPUs */
    struct bj_est_mem remote;     /* ... and the devices of rpc-servers (other hosts' memory) */
    int n_devices;                /* plan.facts.devices.n: dev[i] is the plan's device i */
    struct bj_est_device dev[BJ_MAX_DEVICES];
    int n_devices_used;           /* devices that hold a layer */
    uint64_t kv_jars;             /* sum of the brains' jars (kv - kv_jars: padding, charged here) */
    bool compute_from_llama;      /* compute/output sizes came from the dry run */
    char note[160];               /* why the dry run was not used, when it was not */
    bool dry_run_failed;          /* llama.cpp could not lay the model out: `run` cannot load it */
    char dry_run_error[160];      /* its first error, one line */
    uint64_t heuristic;           /* the seed's file size x 1.5 */
};

/* What the model costs without the jars of its brains: the part shared by all of them. */
uint64_t bj_est_model_shared_cpu(const struct bj_est_model *m);
uint64_t bj_est_model_shared_gpu(const struct bj_est_model *m);

/* Whether the model is split: its layers on more than one device, or on an rpc-server. */
bool bj_est_model_split(const struct bj_est_model *m);

/* Where the model's layers go, one line: "CPU only", "22 of 22 layers + output on CUDA0",
 * "RPC0 (127.0.0.1:50052): layers 0-10; RPC1 (...): layers 11-21 + output". */
const char *bj_est_placement(const struct bj_est_model *m, char *buf, size_t len);

struct bj_est_brain {
    char id[BJ_NAME_MAX];
    int model;            /* index into bj_est_hive.models */
    double jar_gb;        /* as configured (0 when given in tokens) */
    struct bj_jar jar;    /* tokens and KV bytes (jar.kv_bytes: what the brain is charged) */
    bool kv_on_gpu;       /* its jar lives on local GPUs (all layers offloaded there) */
    bool kv_remote;       /* its jar lives on rpc-servers (and maybe local GPUs), not in host memory */
};

/* What brain b's jar is charged to host memory and to local GPUs (the budget's ledger): a jar on
 * rpc-servers' devices costs this host nothing; its local GPU part is then the model's. */
uint64_t bj_est_brain_host(const struct bj_est_brain *b);
uint64_t bj_est_brain_gpu(const struct bj_est_brain *b);

/* A whole hive. Owned by the caller: bj_estimate_spec() allocates, bj_est_hive_free() frees. */
struct bj_est_hive {
    struct bj_est_opts opts;
    int n_models;
    struct bj_est_model models[BJ_MAX_BRAINS];
    int n_brains;
    struct bj_est_brain brains[BJ_MAX_BRAINS];
};

/* The seed's heuristic: file size x 1.5. */
uint64_t bj_est_heuristic(uint64_t file_size);

/* Estimates model `path` used by n_brains brains whose jars hold jar_tokens[i] tokens.
 * Returns 0, or -1 with err (unreadable, truncated or unsupported GGUF; bad jars; a failed
 * dry run only sets out->note and falls back to formulas). */
int bj_estimate_model(const char *path, const struct bj_est_opts *o, const long *jar_tokens, int n_brains,
                      struct bj_est_model *out, char *err, size_t errlen);

/* Estimates a fully parsed config: brains grouped by model (c->model, or default_model_path when
 * that is empty), jars resolved with bj_jar_resolve. Returns a new hive or NULL with err. */
struct bj_est_hive *bj_estimate_spec(const struct bj_hive_spec *c, const char *default_model_path, char *err,
                                       size_t errlen);
void bj_est_hive_free(struct bj_est_hive *h);

/* Hive totals, bytes: every model's shared part once plus every brain's jar (host memory; local
 * GPUs; rpc-servers are not in either). */
uint64_t bj_est_hive_cpu(const struct bj_est_hive *h);
uint64_t bj_est_hive_gpu(const struct bj_est_hive *h);

/* What was measured by loading a model the way the engine does, bytes: /proc/self/status and
 * the model file's mappings in /proc/self/smaps. */
struct bj_est_rss {
    uint64_t rss, anon, file; /* VmRSS, RssAnon, RssFile (file includes the program's code pages) */
    uint64_t model_file;      /* resident pages of the mmap'd model file */
    uint64_t gpu_used;        /* device memory in use, all GPUs (NVML: total - free; 0 without it) */
};
struct bj_est_measured {
    struct bj_est_rss before; /* before the load */
    struct bj_est_rss first;  /* after load + first decode */
    struct bj_est_rss full;   /* after the jars were filled and decode steps ran (when filled) */
    bool filled;
    int first_batch;          /* tokens in the first decode */
    long tokens;              /* tokens decoded in all */
    double load_s;            /* model load + context creation */
    double prefill_tok_s;     /* prompt-sized steps (a chunk per brain) */
    double decode_tok_s;      /* single-token steps (all brains at once) */
};

/* Loads `path` as the engine would for brains with these jars and decodes a first batch of
 * `first_batch` tokens spread over the brains (0: a prefill chunk per brain, the engine's first
 * and largest step). With `fill`, it then prefills in the engine's steps until every jar is
 * full but `decode_steps` tokens, and runs `decode_steps` single-token steps: the steady state
 * of a hive whose jars are full, which is what the estimate predicts (the first decode attends
 * to few cells and touches less of the compute buffer). Slow: it loads the weights and decodes
 * every jar's worth of tokens. Returns 0 or -1 with err. */
int bj_estimate_measure(const char *path, const struct bj_est_opts *o, const long *jar_tokens, int n_brains,
                        int first_batch, bool fill, int decode_steps, struct bj_est_measured *out, char *err,
                        size_t errlen);

/* Device memory the model cost, bytes (NVML; other processes' use counts too). */
uint64_t bj_est_gpu_growth(const struct bj_est_measured *m, const struct bj_est_rss *after);

/* What the model cost, bytes: growth of anonymous memory plus the model file's resident pages,
 * from m->before to `after` (the program's own code pages, paged in on first use whatever the
 * model, are left out). This is what the estimate predicts. */
uint64_t bj_est_rss_growth(const struct bj_est_measured *m, const struct bj_est_rss *after);

#endif
