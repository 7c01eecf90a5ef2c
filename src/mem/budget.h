/* budget: the three memory checks of seed 000, on brainjar's estimate.
 *
 *   Layer 1, validate (bj_budget_validate): before anything starts, the whole hive against total
 *     and currently available memory (cgroup-aware, see sysmem.h). usable = total x (1 - reserve);
 *     it fails when the hive needs more than usable or available, or one brain's jar is more than
 *     the per-brain share of usable. bj_budget_print_report() prints the seed-style report with
 *     numbered issues and concrete recommendations.
 *   Layer 2, allocation (bj_budget_manager_*): a thread-safe ledger; every model and brain takes
 *     its bytes before it starts and gives them back when it ends or fails. A request is denied
 *     when the ledger would go over usable or over what was available when the ledger was made.
 *   Layer 3, pre-load (bj_budget_preload_check): right before a model loads, available memory
 *     must cover what it needs plus headroom; above 75% use (projected) it warns.
 *
 * The same checks apply to GPU memory when the estimate puts anything on a GPU and NVML answers.
 * On unified memory (Jetson) GPU bytes are host bytes: they are added to the host's need and
 * checked against MemAvailable. When a model is split over several devices or over rpc-servers
 * (devices.h), layer 1 checks every device on its own against the memory ggml's device reported
 * (an rpc-server's device is asked over the network); a device whose free memory is not a
 * measurement (an rpc-server on a CPU reports all its memory as free) is checked against its total
 * only, and the report says so. Layers 2 and 3 see host memory and local GPUs only: what goes to
 * rpc-servers costs this host nothing.
 *
 * All byte counts are bytes; reports print GB as 1024^3 bytes, as the original did. */
#ifndef BJ_BUDGET_H
#define BJ_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spec.h"
#include "estimate.h"
#include "sysmem.h"

struct bj_budget_settings {
    double reserve_pct;     /* kept free for the system: usable = total x (1 - reserve/100). Default 15 */
    double brain_share_pct; /* one brain's jar may take at most this % of usable. Default 50 */
    double headroom_gb;     /* layer 3: free memory beyond the model's need. Default 2 */
    double warn_use_pct;    /* layer 3: warn when use after the load would pass this %. Default 75 */
};

void bj_budget_settings_default(struct bj_budget_settings *s);
/* The defaults, then the config's reserve_pct, brain_share_pct and headroom_gb where set (> 0;
 * a reserve of 0 is taken as given). */
void bj_budget_settings_from_spec(struct bj_budget_settings *s, const struct bj_hive_spec *c);

/* usable = total x (1 - reserve). */
uint64_t bj_budget_usable(const struct bj_budget_settings *s, uint64_t total);

/* ---- layer 1 ------------------------------------------------------------------------------ */

#define BJ_BUDGET_MAX_LINES 24

struct bj_budget_verdict {
    bool pass;
    /* host */
    uint64_t total, available, usable, per_brain_max;
    uint64_t need_shared;    /* models: weights, buffers, overhead, KV padding */
    uint64_t need_jars;      /* brains' jars in host memory */
    uint64_t need;           /* need_shared + need_jars (+ GPU bytes on unified memory) */
    uint64_t heuristic;      /* the seed's rule for the same hive: per model file x 1.5, per brain its jar */
    /* GPU (checked when gpu_checked) */
    bool gpu_needed;         /* the estimate puts something on a GPU */
    bool gpu_checked;        /* ... and there are GPU facts to check it against */
    uint64_t gpu_total, gpu_free, gpu_usable, gpu_need;
    /* each offload device, when a model is split over several or over rpc-servers (what ggml's
     * device reported, not NVML): checked where its free memory was measured, said so where not */
    int n_devices;
    struct bj_budget_device {
        char name[32], desc[128];
        bool remote;
        uint64_t need;        /* what every model puts on it */
        uint64_t free, total, usable;
        bool free_known;
        bool checked;         /* need was checked against free and usable */
    } devices[BJ_MAX_DEVICES];
    bool devices_cover_gpus; /* every local GPU in use was checked here: the NVML sum is not */
    /* what is wrong and what to do */
    int n_issues;
    char issues[BJ_BUDGET_MAX_LINES][256];
    int n_recs;
    char recs[BJ_BUDGET_MAX_LINES][256];
};

/* Checks hive h against the machine. gpu may be NULL (no GPU facts). Returns 0 (pass) or 1
 * (fail) and fills v. Pure: any thread. */
int bj_budget_validate(const struct bj_budget_settings *s, const struct bj_sysmem *sm, const struct bj_gpu_info *gpu,
                       const struct bj_est_hive *h, struct bj_budget_verdict *v);

/* The report: system memory, model analysis, per-brain table, budget analysis, verdict,
 * numbered issues, recommendations. mode_name may be NULL. */
void bj_budget_print_report(const struct bj_budget_settings *s, const struct bj_sysmem *sm,
                            const struct bj_gpu_info *gpu, const struct bj_est_hive *h, const char *mode_name,
                            const struct bj_budget_verdict *v, FILE *out);

/* ---- layer 2 ------------------------------------------------------------------------------ */

enum bj_budget_kind {
    BJ_BUDGET_MODEL, /* a model's shared part: weights, buffers, overhead */
    BJ_BUDGET_BRAIN, /* a brain's jar: also limited to the per-brain share */
};

/* The ledger. How a hive uses it, with the hive's estimate (estimate.h):
 *   model m, before loading it:  alloc("model:<label>", BJ_BUDGET_MODEL,
 *                                      bj_est_model_shared_cpu(m), bj_est_model_shared_gpu(m))
 *   brain b, before starting it: alloc(b->id, BJ_BUDGET_BRAIN, bj_est_brain_host(b), bj_est_brain_gpu(b))
 *   on exit or any failure:      release(id)
 * It is a budget, not an allocator: nothing is reserved in the system (a batched engine allocates
 * all its brains' KV cache at once when its context is made).
 * Threads: new and free on one thread (main), after or before every other call; alloc, release,
 * snapshot and report from any thread (one mutex). */
struct bj_budget_manager;

/* A ledger against the memory facts in sm (and gpu, may be NULL), read by the caller right before
 * (nothing of the hive loaded yet). The limits are fixed here: host min(usable, available),
 * GPU min(usable, free) summed over devices (on unified memory GPU bytes count as host bytes).
 * NULL when out of memory. */
struct bj_budget_manager *bj_budget_manager_new(const struct bj_budget_settings *s, const struct bj_sysmem *sm,
                                                const struct bj_gpu_info *gpu);
/* Frees the ledger (outstanding allocations are dropped). */
void bj_budget_manager_free(struct bj_budget_manager *m);

/* Takes host_bytes (and gpu_bytes) for `id` (a brain id or a model label; at most 63 bytes).
 * Any thread. Returns 0 when approved; -ENOSPC when denied (over the limits, or a brain's host
 * bytes over the per-brain share: msg says which and by how much); -EEXIST when id already holds an allocation;
 * -EINVAL for an empty or too long id; -ENOMEM when the ledger is full (2 x BJ_MAX_BRAINS + 8 entries). msg (may be
 * NULL) gets a one-line explanation either way. */
int bj_budget_manager_alloc(struct bj_budget_manager *m, const char *id, enum bj_budget_kind kind,
                            uint64_t host_bytes, uint64_t gpu_bytes, char *msg, size_t msglen);

/* Gives back id's allocation. Any thread. 0, or -ENOENT when id holds none. */
int bj_budget_manager_release(struct bj_budget_manager *m, const char *id);

struct bj_budget_entry {
    char id[64];
    enum bj_budget_kind kind;
    uint64_t host, gpu;
};
struct bj_budget_totals {
    uint64_t host_allocated, host_limit, gpu_allocated, gpu_limit;
    uint64_t host_peak;      /* highest host_allocated seen */
    long approved, denied;   /* requests so far */
    int n_entries;
};

/* A consistent copy of the ledger (for the API): up to max entries into out; totals filled.
 * Returns the number of entries copied. Any thread. */
int bj_budget_manager_snapshot(struct bj_budget_manager *m, struct bj_budget_entry *out, int max,
                               struct bj_budget_totals *totals);

/* The allocation report (shutdown and on demand). Any thread. */
void bj_budget_manager_report(struct bj_budget_manager *m, FILE *out);

/* ---- layer 3 ------------------------------------------------------------------------------ */

/* Right before a model loads: `now` (and gpu, may be NULL) freshly read; need_host/need_gpu the
 * model's estimate (bj_est_mem_total of its cpu and gpu parts: the model with all its brains).
 * Returns 0 (go), 1 (go, but msg warns: use after the load would pass warn_use_pct), or -ENOMEM
 * (refuse: available < need + headroom; msg says by how much and what to do). msg may be NULL.
 * Pure: any thread. */
int bj_budget_preload_check(const struct bj_budget_settings *s, const struct bj_sysmem *now,
                            const struct bj_gpu_info *gpu, uint64_t need_host, uint64_t need_gpu, char *msg,
                            size_t msglen);

/* Layer 1 for an estimate already made (the hive estimates once and keeps the estimate for
 * layers 2 and 3): reads memory facts from `paths` into *sm and *gpu (kept for the allocation
 * manager) and prints the report (titled with `label`, e.g. the mode) to `out`. Returns 0 pass,
 * 1 fail, 2 memory facts unreadable. */
int bj_validate_hive(const struct bj_hive_spec *s, const char *label, const struct bj_est_hive *h,
                     const struct bj_sysmem_paths *paths, FILE *out, struct bj_sysmem *sm, struct bj_gpu_info *gpu);

#endif
