/* sysmem: see sysmem.h. Plain file readers; the only state is the "NVML absent" said-once flag. */
#include "sysmem.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* cgroup limits at or above this mean "no limit" (v1 writes 2^63 rounded down to a page). */
#define CG_UNLIMITED (UINT64_C(1) << 60)

void bj_sysmem_paths_default(struct bj_sysmem_paths *p)
{
    memset(p, 0, sizeof *p);
    bj_strlcpy(p->meminfo, "/proc/meminfo", sizeof p->meminfo);
    bj_strlcpy(p->self_cgroup, "/proc/self/cgroup", sizeof p->self_cgroup);
    bj_strlcpy(p->cgroup_root, "/sys/fs/cgroup", sizeof p->cgroup_root);
    bj_strlcpy(p->self_status, "/proc/self/status", sizeof p->self_status);
    bj_strlcpy(p->self_smaps, "/proc/self/smaps", sizeof p->self_smaps);
    bj_strlcpy(p->tegra_release, "/etc/nv_tegra_release", sizeof p->tegra_release);
    bj_strlcpy(p->dt_compatible, "/proc/device-tree/compatible", sizeof p->dt_compatible);
    bj_strlcpy(p->nvml_lib, "libnvidia-ml.so.1", sizeof p->nvml_lib);
}

void bj_sysmem_paths_under(struct bj_sysmem_paths *p, const char *root)
{
    struct bj_sysmem_paths d;
    bj_sysmem_paths_default(&d);
    memset(p, 0, sizeof *p);
    snprintf(p->meminfo, sizeof p->meminfo, "%s%s", root, d.meminfo);
    snprintf(p->self_cgroup, sizeof p->self_cgroup, "%s%s", root, d.self_cgroup);
    snprintf(p->cgroup_root, sizeof p->cgroup_root, "%s%s", root, d.cgroup_root);
    snprintf(p->self_status, sizeof p->self_status, "%s%s", root, d.self_status);
    snprintf(p->self_smaps, sizeof p->self_smaps, "%s%s", root, d.self_smaps);
    snprintf(p->tegra_release, sizeof p->tegra_release, "%s%s", root, d.tegra_release);
    snprintf(p->dt_compatible, sizeof p->dt_compatible, "%s%s", root, d.dt_compatible);
}

/* Finds "Key:   N kB" in a /proc-style text; returns 0 and bytes, or -1 when absent. */
static int kb_field(const char *text, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) != 0 || line[klen] != ':')
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(line + klen + 1, &end, 10);
        if (errno || end == line + klen + 1)
            return -1;
        while (*end == ' ' || *end == '\t')
            end++;
        *out = strncmp(end, "kB", 2) == 0 ? (uint64_t)v * 1024 : (uint64_t)v;
        return 0;
    }
    return -1;
}

/* Reads a file holding one number (or "max"). Returns 0, 1 for "max", -1 when unreadable. */
/* Reads a small /proc or /sys file whole (NUL-terminated, *out malloc'ed). Unlike bj_read_file
 * it is not cut short by a pending SIGTERM and retries EINTR: these files are read in a moment,
 * and a stop asked for during start must not turn into "cannot read /proc/meminfo" and a failed
 * budget check. 0 or -errno. */
static int read_sys_file(const char *path, char **out, size_t *len)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (n == cap) {
            char *nb = cap < (4u << 20) ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb) {
                rc = cap < (4u << 20) ? -ENOMEM : -EFBIG;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = -errno;
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

static int read_u64_file(const char *path, uint64_t *out)
{
    char *text;
    size_t len;
    if (read_sys_file(path, &text, &len) != 0)
        return -1;
    int rc = -1;
    if (strncmp(text, "max", 3) == 0) {
        *out = UINT64_MAX;
        rc = 1;
    } else {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (!errno && end != text) {
            *out = (uint64_t)v;
            rc = 0;
        }
    }
    free(text);
    return rc;
}

/* Value of "key N" in a memory.stat file; 0 when absent. */
static uint64_t stat_field(const char *path, const char *key)
{
    char *text;
    size_t len;
    if (read_sys_file(path, &text, &len) != 0)
        return 0;
    uint64_t v = 0;
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            v = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    }
    free(text);
    return v;
}

/* Finds the process's memory cgroup directory from /proc/self/cgroup: the v2 path ("0::/path")
 * when cgroup_root is a v2 mount (it has cgroup.controllers), else the v1 "memory" controller's.
 * Returns the version (2 or 1), or 0 when none applies. */
static int find_cgroup(const struct bj_sysmem_paths *p, char *dir, size_t dirlen)
{
    char *text;
    size_t len;
    dir[0] = '\0';
    if (read_sys_file(p->self_cgroup, &text, &len) != 0)
        return 0;
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/cgroup.controllers", p->cgroup_root);
    bool v2_mount = access(probe, F_OK) == 0;
    int version = 0;
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line && !version; line = strtok_r(NULL, "\n", &save_line)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        const char *path = strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1;
        if (c2 == c1 + 1) { /* "0::/path": the v2 hierarchy */
            if (v2_mount) {
                snprintf(dir, dirlen, "%s%s", p->cgroup_root, path);
                version = 2;
            }
            continue;
        }
        *c2 = '\0';
        char *save_ctl = NULL;
        for (char *tok = strtok_r(c1 + 1, ",", &save_ctl); tok; tok = strtok_r(NULL, ",", &save_ctl))
            if (strcmp(tok, "memory") == 0) {
                snprintf(dir, dirlen, "%s/memory%s", p->cgroup_root, path);
                version = 1;
            }
    }
    free(text);
    return version;
}

/* Walks from the process's cgroup up to the hierarchy's root; the level with the least room
 * decides. Fills the cg_* fields of out. */
static void read_cgroup(const struct bj_sysmem_paths *p, struct bj_sysmem *out)
{
    char dir[PATH_MAX];
    out->cg_version = find_cgroup(p, dir, sizeof dir);
    if (out->cg_version == 0)
        return;
    bj_strlcpy(out->cg_path, dir, sizeof out->cg_path);
    char top[PATH_MAX];
    if (out->cg_version == 2)
        bj_strlcpy(top, p->cgroup_root, sizeof top);
    else
        snprintf(top, sizeof top, "%s/memory", p->cgroup_root);
    const char *f_limit = out->cg_version == 2 ? "memory.max" : "memory.limit_in_bytes";
    const char *f_usage = out->cg_version == 2 ? "memory.current" : "memory.usage_in_bytes";
    const char *f_inact = out->cg_version == 2 ? "inactive_file" : "total_inactive_file";
    uint64_t best_room = UINT64_MAX;
    for (;;) {
        char f[PATH_MAX + 32];
        uint64_t limit, usage;
        snprintf(f, sizeof f, "%s/%s", dir, f_limit);
        int lr = read_u64_file(f, &limit);
        snprintf(f, sizeof f, "%s/%s", dir, f_usage);
        if (lr == 0 && limit < CG_UNLIMITED && read_u64_file(f, &usage) == 0) {
            snprintf(f, sizeof f, "%s/memory.stat", dir);
            uint64_t inactive = stat_field(f, f_inact);
            uint64_t used = usage > inactive ? usage - inactive : 0;
            uint64_t room = limit > used ? limit - used : 0;
            if (!out->cg_limited || limit < out->cg_limit)
                out->cg_limit = limit;
            if (room < best_room) {
                best_room = room;
                out->cg_usage = usage;
                out->cg_reclaimable = inactive;
                out->cg_room = room;
            }
            out->cg_limited = true;
        }
        if (strlen(dir) <= strlen(top))
            break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(top))
            break;
        *slash = '\0';
    }
}

int bj_sysmem_read(const struct bj_sysmem_paths *p, struct bj_sysmem *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    int rc = read_sys_file(p->meminfo, &text, &len);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read %s: %s", p->meminfo, strerror(-rc));
        return -1;
    }
    if (kb_field(text, "MemTotal", &out->mem_total) || kb_field(text, "MemAvailable", &out->mem_available) ||
        out->mem_total == 0) {
        snprintf(err, errlen, "%s: no MemTotal/MemAvailable (kernel older than 3.14?)", p->meminfo);
        free(text);
        return -1;
    }
    free(text);
    read_cgroup(p, out);
    out->total = out->mem_total;
    out->available = out->mem_available;
    if (out->cg_limited) {
        if (out->cg_limit < out->total)
            out->total = out->cg_limit;
        if (out->cg_room < out->available)
            out->available = out->cg_room;
    }
    out->unified = bj_sysmem_is_unified(p);
    return 0;
}

bool bj_sysmem_is_unified(const struct bj_sysmem_paths *p)
{
    if (access(p->tegra_release, F_OK) == 0)
        return true;
    char *text;
    size_t len;
    if (read_sys_file(p->dt_compatible, &text, &len) != 0)
        return false;
    /* a list of NUL-separated strings */
    bool tegra = false;
    for (size_t i = 0; i < len && !tegra; i += strlen(text + i) + 1)
        tegra = strstr(text + i, "nvidia,tegra") != NULL;
    free(text);
    return tegra;
}

int bj_sysmem_read_proc(const struct bj_sysmem_paths *p, struct bj_proc_mem *out)
{
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    if (read_sys_file(p->self_status, &text, &len) != 0)
        return -1;
    int rc = kb_field(text, "VmRSS", &out->rss);
    kb_field(text, "RssAnon", &out->rss_anon);
    kb_field(text, "RssFile", &out->rss_file);
    kb_field(text, "RssShmem", &out->rss_shmem);
    free(text);
    return rc;
}

int bj_sysmem_file_rss(const struct bj_sysmem_paths *p, const char *file, uint64_t *out)
{
    *out = 0;
    char real[PATH_MAX];
    if (!realpath(file, real))
        return -1;
    FILE *f = fopen(p->self_smaps, "r");
    if (!f)
        return -1;
    char line[PATH_MAX + 256];
    bool in_file = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
            if (in_file)
                *out += (uint64_t)kb * 1024;
            continue;
        }
        /* a mapping header: "start-end perms offset dev inode [path]" */
        char range[64], perms[8];
        int path_at = 0;
        if (sscanf(line, "%63s %7s %*s %*s %*s %n", range, perms, &path_at) >= 2 && strchr(range, '-') &&
            path_at > 0) {
            line[strcspn(line, "\n")] = '\0';
            in_file = strcmp(line + path_at, real) == 0;
        }
    }
    fclose(f);
    return 0;
}

/* NVML, declared by hand (nvml.h is not needed to build). */
typedef int nvml_ret;
typedef struct nvml_device *nvml_device;
struct nvml_memory { unsigned long long total, free, used; };
struct nvml_api {
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    nvml_ret (*count)(unsigned *);
    nvml_ret (*handle)(unsigned, nvml_device *);
    nvml_ret (*meminfo)(nvml_device, struct nvml_memory *);
    nvml_ret (*name)(nvml_device, char *, unsigned);
};

static void say_no_gpu_once(const char *why)
{
    static atomic_flag said = ATOMIC_FLAG_INIT; /* the one piece of process state: "said once" */
    if (!atomic_flag_test_and_set(&said))
        bj_info("no GPU memory checks: %s", why);
}

static int nvml_bind(void *lib, struct nvml_api *api)
{
    *(void **)&api->init = dlsym(lib, "nvmlInit_v2");
    *(void **)&api->shutdown = dlsym(lib, "nvmlShutdown");
    *(void **)&api->count = dlsym(lib, "nvmlDeviceGetCount_v2");
    *(void **)&api->handle = dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&api->meminfo = dlsym(lib, "nvmlDeviceGetMemoryInfo");
    *(void **)&api->name = dlsym(lib, "nvmlDeviceGetName");
    return api->init && api->shutdown && api->count && api->handle && api->meminfo ? 0 : -1;
}

static void nvml_query(const struct bj_sysmem_paths *p, struct bj_gpu_info *out)
{
    if (!p->nvml_lib[0]) {
        snprintf(out->why, sizeof out->why, "NVML disabled");
        return;
    }
    void *lib = dlopen(p->nvml_lib, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(out->why, sizeof out->why, "%s not found (no NVIDIA driver)", p->nvml_lib);
        return;
    }
    struct nvml_api api;
    unsigned n = 0;
    if (nvml_bind(lib, &api) != 0) {
        snprintf(out->why, sizeof out->why, "%s lacks the NVML functions brainjar uses", p->nvml_lib);
        goto out;
    }
    nvml_ret r = api.init();
    if (r != 0) {
        snprintf(out->why, sizeof out->why, "nvmlInit failed (error %d)", r);
        goto out;
    }
    if (api.count(&n) != 0 || n == 0) {
        snprintf(out->why, sizeof out->why, "NVML reports no GPU");
        goto shutdown;
    }
    for (unsigned i = 0; i < n && out->n < BJ_SYSMEM_MAX_GPUS; i++) {
        nvml_device d;
        struct nvml_memory m;
        if (api.handle(i, &d) != 0 || api.meminfo(d, &m) != 0)
            continue;
        struct bj_gpu_dev *g = &out->dev[out->n++];
        g->total = m.total;
        g->free = m.free;
        if (!api.name || api.name(d, g->name, sizeof g->name) != 0)
            snprintf(g->name, sizeof g->name, "GPU %u", i);
    }
    out->available = out->n > 0;
    if (!out->available)
        snprintf(out->why, sizeof out->why, "NVML could not read any GPU's memory");
shutdown:
    api.shutdown();
out:
    dlclose(lib);
}

void bj_sysmem_read_gpu(const struct bj_sysmem_paths *p, const struct bj_sysmem *host, struct bj_gpu_info *out)
{
    memset(out, 0, sizeof *out);
    if (host && host->unified) {
        out->available = true;
        out->unified = true;
        out->n = 1;
        bj_strlcpy(out->dev[0].name, "unified memory (Jetson)", sizeof out->dev[0].name);
        out->dev[0].total = host->total;
        out->dev[0].free = host->available;
        return;
    }
    nvml_query(p, out);
    if (!out->available)
        say_no_gpu_once(out->why);
}

/* ---- in use, and the heat ------------------------------------------------------------------------ */

int bj_sysmem_pct_of(const struct bj_sysmem *m)
{
    if (!m || m->total == 0)
        return -1;
    uint64_t used = m->total > m->available ? m->total - m->available : 0;
    return (int)(used * 100 / m->total);
}

int bj_sysmem_used_pct(const struct bj_sysmem_paths *p)
{
    struct bj_sysmem m;
    char err[64];
    return bj_sysmem_read(p, &m, err, sizeof err) ? -1 : bj_sysmem_pct_of(&m);
}

static bool type_watched(const char *types, const char *type)
{
    if (!*types)
        return true;
    size_t n = strlen(type);
    for (const char *p = types; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, type, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

int bj_sysmem_hottest_zone(const char *root, const char *types, double *temp_c, char *zone, size_t zlen)
{
    DIR *d = opendir(root);
    if (!d)
        return -1;
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "thermal_zone", 12) != 0)
            continue;
        char path[PATH_MAX + 300], *type = NULL, *temp = NULL;
        size_t len;
        snprintf(path, sizeof path, "%s/%s/type", root, e->d_name);
        if (bj_read_file(path, &type, &len) == 0) {
            type[strcspn(type, "\n")] = '\0';
            snprintf(path, sizeof path, "%s/%s/temp", root, e->d_name);
            long milli;
            if (type_watched(types, type) && bj_read_file(path, &temp, &len) == 0) {
                temp[strcspn(temp, "\n")] = '\0';
                /* Some drivers answer with an error or nonsense while a sensor sleeps: skip those. */
                if (bj_parse_long(temp, -50000, 200000, &milli) == 0 && (found < 0 || milli / 1000.0 > *temp_c)) {
                    *temp_c = (double)milli / 1000.0;
                    bj_strlcpy(zone, type, zlen);
                    found = 0;
                }
            }
        }
        free(type);
        free(temp);
    }
    closedir(d);
    return found;
}

