/* sysmem: facts about the memory of this machine and process, read fresh on every call.
 *
 * Host memory from /proc/meminfo (MemTotal, MemAvailable), capped by the memory cgroup the
 * process lives in (v2: memory.max/memory.current, v1: memory.limit_in_bytes/usage_in_bytes,
 * found through /proc/self/cgroup; every ancestor's limit counts). Process RSS from
 * /proc/self/status. NVIDIA GPU memory through NVML, loaded at run time with dlopen (no build
 * dependency; when it is absent there are no GPU facts, and that is logged once). Jetson-style
 * unified memory (the GPU uses host RAM) is detected from /etc/nv_tegra_release or the device
 * tree; there the GPU's free memory is the host's MemAvailable, since CUDA's free-memory call
 * ignores reclaimable page cache.
 *
 * Every reader takes its paths from a struct bj_sysmem_paths so tests can feed fake files.
 * Readers keep no state; any thread may call them. */
#ifndef BJ_SYSMEM_H
#define BJ_SYSMEM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BJ_SYSMEM_MAX_GPUS 16

/* Where the facts come from. bj_sysmem_paths_default() gives the real ones. */
struct bj_sysmem_paths {
    char meminfo[PATH_MAX];       /* /proc/meminfo */
    char self_cgroup[PATH_MAX];   /* /proc/self/cgroup */
    char cgroup_root[PATH_MAX];   /* /sys/fs/cgroup (v2 unified mount; v1 controllers below it) */
    char self_status[PATH_MAX];   /* /proc/self/status */
    char self_smaps[PATH_MAX];    /* /proc/self/smaps */
    char tegra_release[PATH_MAX]; /* /etc/nv_tegra_release */
    char dt_compatible[PATH_MAX]; /* /proc/device-tree/compatible */
    char nvml_lib[PATH_MAX];      /* libnvidia-ml.so.1; empty: no GPU queries */
};

void bj_sysmem_paths_default(struct bj_sysmem_paths *p);
/* The default paths with `root` prefixed to each file (the NVML library is left empty), for tests:
 * root/proc/meminfo, root/sys/fs/cgroup, ... */
void bj_sysmem_paths_under(struct bj_sysmem_paths *p, const char *root);

/* Host memory, in bytes. */
struct bj_sysmem {
    uint64_t mem_total;      /* MemTotal */
    uint64_t mem_available;  /* MemAvailable */
    bool cg_limited;         /* some cgroup on the way up sets a memory limit */
    int cg_version;          /* 2, 1, or 0 when no memory cgroup was found */
    uint64_t cg_limit;       /* the tightest limit (valid when cg_limited) */
    uint64_t cg_usage;       /* usage of the cgroup with the least room */
    uint64_t cg_reclaimable; /* its inactive file cache (memory.stat), which the kernel reclaims first */
    uint64_t cg_room;        /* limit - usage + reclaimable of that cgroup, clamped at 0 */
    char cg_path[PATH_MAX];  /* the process's cgroup directory ("" when none) */
    /* What the budget uses: */
    uint64_t total;          /* min(MemTotal, cgroup limit) */
    uint64_t available;      /* min(MemAvailable, cgroup room) */
    bool unified;            /* Jetson-style unified memory: GPU allocations come from here */
};

/* Reads meminfo and the cgroup. Returns 0, or -1 with err when meminfo is unreadable or lacks
 * MemTotal/MemAvailable (cgroup files are optional: missing ones mean "no limit"). */
int bj_sysmem_read(const struct bj_sysmem_paths *p, struct bj_sysmem *out, char *err, size_t errlen);

/* True on Jetson-style unified memory (nv_tegra_release exists, or the device tree is
 * compatible with "nvidia,tegra"). */
bool bj_sysmem_is_unified(const struct bj_sysmem_paths *p);

/* This process's resident memory, bytes (from /proc/self/status). */
struct bj_proc_mem {
    uint64_t rss;       /* VmRSS */
    uint64_t rss_anon;  /* RssAnon: heap, anonymous maps (not reclaimable without swap) */
    uint64_t rss_file;  /* RssFile: mapped file pages (e.g. an mmap'd model) */
    uint64_t rss_shmem; /* RssShmem */
};

/* Returns 0, or -1 when the file is unreadable or has no VmRSS. */
int bj_sysmem_read_proc(const struct bj_sysmem_paths *p, struct bj_proc_mem *out);

/* Resident bytes of this process's mappings of `file` (compared by real path), from smaps: how
 * much of an mmap'd model is in memory. 0 with *out = 0 when it is not mapped; -1 when smaps
 * or the file cannot be read. */
int bj_sysmem_file_rss(const struct bj_sysmem_paths *p, const char *file, uint64_t *out);

/* GPU memory, bytes, per device. */
struct bj_gpu_dev {
    char name[96];
    uint64_t total, free;
};
struct bj_gpu_info {
    bool available;     /* NVML answered (false: no GPU checks) */
    bool unified;       /* the "GPU" is host memory (Jetson); dev[] then mirrors MemAvailable */
    int n;
    struct bj_gpu_dev dev[BJ_SYSMEM_MAX_GPUS];
    char why[160];      /* why there are no GPU facts, when !available */
};

/* Queries NVML (dlopen of p->nvml_lib, init, per-device memory info, shutdown). On unified
 * memory, reports one device whose total/free are MemTotal/MemAvailable (from `host`, which
 * must then be non-NULL). Never fails: when NVML is absent, out->available is false and the
 * reason is logged once per process. */
void bj_sysmem_read_gpu(const struct bj_sysmem_paths *p, const struct bj_sysmem *host,
                        struct bj_gpu_info *out);

/* Memory in use, 0-100, as the budget sees it: (total - available) / total of bj_sysmem_read, so
 * a cgroup limit counts. -1 when meminfo cannot be read. */
int bj_sysmem_used_pct(const struct bj_sysmem_paths *p);
/* The same from a reading already made (NULL or no total: -1). */
int bj_sysmem_pct_of(const struct bj_sysmem *m);

/* The hottest thermal zone under `root` (/sys/class/thermal) whose type is one of `types`
 * (comma-separated; empty: every zone), in degrees C, and its type in zone[zlen]. Sensors that
 * answer nonsense (outside -50..200 C) are skipped. Returns 0, or -1 when no zone could be read. */
int bj_sysmem_hottest_zone(const char *root, const char *types, double *temp_c, char *zone, size_t zlen);

#endif
