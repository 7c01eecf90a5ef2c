/* plan: every decision about how one model and its brains run, made once, in one place.
 *
 * A pure function of the settings (from the spec), the brains' jars and a few facts about the
 * model and the machine. The engine runs exactly the plan; the estimate predicts the memory of
 * exactly the plan; the hive hands the estimate's plan to the engine. So the schedule, the
 * threads, the load mode and the context parameters cannot disagree between them. */
#ifndef BJ_PLAN_H
#define BJ_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <llama.h>

#include "devices.h"
#include "spec.h"

struct bj_plan_settings {
    enum bj_schedule schedule;
    int n_threads;          /* for the whole process; 0: bj_plan_default_threads() */
    int n_engines;          /* engines running at once (models): they split the threads */
    int n_gpu_layers;       /* -1: all */
    int use_mmap;           /* -1 auto, 0 read, 1 mmap */
    bool repack;            /* llama.cpp's extra CPU buffer types (use_extra_bufts) */
    enum ggml_type kv_type;
    int flash_attn;         /* -1 auto, 0 off, 1 on */
    int prefill_chunk;
    bool own_openings;      /* no opening lent between brains (engine_share.c) */
    int backend_sampling;   /* -1 auto, 0 off, 1 on */
    bool profile;           /* the engine reports its per-step profile when it stops */
    struct bj_split_settings split; /* several devices (devices.h) */
};
struct bj_plan_settings bj_plan_default_settings(void);

/* Facts the plan depends on. */
struct bj_plan_facts {
    bool gpu_offload;       /* there is a device to offload to (devices.n > 0) */
    struct bj_devices devices; /* the offload devices, in llama.cpp's order (bj_devices_list) */
    int n_layer;            /* the model's repeating layers */
    int n_repacked;         /* weights llama.cpp would repack into its own layout on the CPU */
    int online_cores;
};
/* The facts of this process for a model (n_layer and n_repacked from the caller); the devices are
 * listed now (bj_devices_list: main thread, after any rpc-servers were added). */
struct bj_plan_facts bj_plan_facts_here(int n_layer, int n_repacked);

struct bj_plan {
    struct bj_plan_settings settings; /* what it was made from, to re-plan for fewer brains */
    struct bj_plan_facts facts;
    enum bj_schedule schedule; /* never AUTO */
    int n_brains;
    long jar[BJ_MAX_BRAINS];   /* tokens per brain */
    int n_threads;             /* this engine's share */
    int threads_per_ctx;       /* llama.cpp's, of each context: parallel: a share of n_threads;
                                * batched: n_threads (at most 2 with every layer on a GPU) */
    int n_gpu_layers;          /* as asked (-1: all) */
    bool gpu;                  /* some layers run on a GPU */
    bool all_on_gpu;
    bool use_mmap;
    bool repack;
    bool backend_sampling;
    int n_contexts;            /* 1 batched, n_brains parallel */
    bool unified;              /* batched: one shared pool of cells instead of a stream per brain */
    uint32_t cells;            /* batched: cells asked for */
    enum ggml_type kv_type;
    int flash_attn;
    int prefill_chunk;
    uint32_t n_batch, n_ubatch;
    /* devices: facts.devices is the list llama.cpp gets (llama_model_params.devices) */
    int split_mode;            /* enum llama_split_mode: none, layer or row (never auto) */
    int main_gpu;              /* split mode none: the index of the one device used */
    int n_used;                /* devices that take layers: all of them, or the main one (none) */
    int used[BJ_MAX_DEVICES];  /* their indices in facts.devices */
    float split_at[BJ_MAX_DEVICES]; /* used[k] takes the offloaded layers up to this share (llama.cpp's
                                     * cumulative, normalised split points) */
    ggml_backend_dev_t dev_list[BJ_MAX_DEVICES + 1]; /* facts.devices' handles, NULL-terminated */
    float tensor_split[BJ_MAX_DEVICES]; /* what llama.cpp gets: the shares given, else (split mode
                                         * layer) the free memory the split points were made from,
                                         * so that llama.cpp splits as planned; row: as given */
};

/* Makes the plan. s and f may point into *out (a re-plan). Returns 0, or -1 with err (no brains,
 * too many, bad jars; device settings this machine's devices contradict: a main GPU or more
 * shares than devices, split mode row on a device that cannot split rows, device settings
 * without any device). */
int bj_plan_make(const struct bj_plan_settings *s, const struct bj_plan_facts *f, const long *jars, int n_brains,
                 struct bj_plan *out, char *err, size_t errlen);

/* Cells asked for by context c (batched: the pool or the streams; parallel: brain c's jar). */
uint32_t bj_plan_cells(const struct bj_plan *p, int c);
/* The parameters of context c and of the model load, exactly as the engine uses them. The model
 * parameters point into *p (its device list and tensor split): p must outlive the load. */
struct llama_context_params bj_plan_context_params(const struct bj_plan *p, int c);
struct llama_model_params bj_plan_model_params(const struct bj_plan *p);

/* Where llama.cpp puts layer il (0 .. n_layer - 1; n_layer: the output layer): the index of its
 * device in facts.devices, or -1 for the CPU. The token embedding is always on the CPU. */
int bj_plan_layer_device(const struct bj_plan *p, int il);

/* Online cores, and the default compute threads of the process: every core but one on a CPU (so
 * another busy process never stalls llama.cpp's spinning workers), every core with any layer on a
 * GPU. Of an engine's threads, llama.cpp's context takes at most two with every layer on a GPU
 * (more slow the GPU's steps down; the engine samples on all of them). */
int bj_plan_online_cores(void);
int bj_plan_default_threads(int cores, bool gpu);
int bj_plan_llama_threads(int threads, bool all_on_gpu);

#endif
