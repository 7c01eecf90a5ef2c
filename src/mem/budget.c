/* budget: see budget.h. Layer 1 and 3 are pure arithmetic on facts passed in; layer 2 is a
 * mutex-protected ledger owned by whoever made it. */
#include "budget.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jar.h"
#include "log.h"
#include "util.h"

#define GB BJ_GB

void bj_budget_settings_default(struct bj_budget_settings *s)
{
    s->reserve_pct = 15.0;
    s->brain_share_pct = 50.0;
    s->headroom_gb = 2.0;
    s->warn_use_pct = 75.0;
}

void bj_budget_settings_from_spec(struct bj_budget_settings *s, const struct bj_hive_spec *c)
{
    bj_budget_settings_default(s);
    if (c->reserve_pct >= 0 && c->reserve_pct < 100)
        s->reserve_pct = c->reserve_pct;
    if (c->brain_share_pct > 0 && c->brain_share_pct <= 100)
        s->brain_share_pct = c->brain_share_pct;
    if (c->headroom_gb >= 0)
        s->headroom_gb = c->headroom_gb;
}

uint64_t bj_budget_usable(const struct bj_budget_settings *s, uint64_t total)
{
    return (uint64_t)((double)total * (1.0 - s->reserve_pct / 100.0));
}

static double gb(uint64_t bytes) { return (double)bytes / GB; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Bytes as "12.34 GB", or "56.7 MB" below 1 GB. */
static const char *fmt(char *buf, size_t len, uint64_t bytes)
{
    if (bytes >= (uint64_t)GB)
        snprintf(buf, len, "%.2f GB", gb(bytes));
    else
        snprintf(buf, len, "%.1f MB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

static void add_line(char (*lines)[256], int *n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void add_line(char (*lines)[256], int *n, const char *f, ...)
{
    if (*n >= BJ_BUDGET_MAX_LINES)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(lines[*n], 256, f, ap);
    va_end(ap);
    for (int i = 0; i < *n; i++)
        if (strcmp(lines[i], lines[*n]) == 0)
            return; /* each recommendation once, however many models or brains call for it */
    (*n)++;
}

/* ---- layer 1 ------------------------------------------------------------------------------ */

static uint64_t gpu_sum(const struct bj_gpu_info *g, bool free_mem)
{
    uint64_t t = 0;
    for (int i = 0; i < g->n; i++)
        t += free_mem ? g->dev[i].free : g->dev[i].total;
    return t;
}

/* What the seed would have required: per brain max(jar as asked, model file x 1.5). */
static uint64_t seed_rule(const struct bj_est_hive *h)
{
    uint64_t t = 0;
    for (int i = 0; i < h->n_brains; i++) {
        const struct bj_est_brain *b = &h->brains[i];
        uint64_t asked = b->jar_gb > 0 ? (uint64_t)(b->jar_gb * GB) : b->jar.kv_bytes;
        uint64_t foot = h->models[b->model].heuristic;
        t += asked > foot ? asked : foot;
    }
    return t;
}

/* Jar as the user gave it: "8.00 GB" or "4096 tokens". */
static const char *jar_asked(char *buf, size_t len, const struct bj_est_brain *b)
{
    if (b->jar_gb > 0)
        snprintf(buf, len, "%.2f GB", b->jar_gb);
    else
        snprintf(buf, len, "%ld tokens", b->jar.requested_tokens);
    return buf;
}

/* "brain X: jar A -> B": the jar shrunk to `bytes` of KV, in the unit the user gave. */
static void rec_jar(struct bj_budget_verdict *v, const struct bj_est_hive *h, const struct bj_est_brain *b,
                    uint64_t bytes, const char *why)
{
    char a[32], to[32];
    const struct bj_modelinfo *mi = &h->models[b->model].mi;
    uint64_t per_token = bj_modelinfo_kv_bytes(mi, h->opts.kv_type, h->opts.kv_type, 1);
    if (b->jar_gb > 0)
        snprintf(to, sizeof to, "%.2f GB", floor(gb(bytes) * 100.0) / 100.0);
    else
        snprintf(to, sizeof to, "%llu tokens", (unsigned long long)(per_token ? bytes / per_token : 0));
    if (b->jar.clamped)
        add_line(v->recs, &v->n_recs, "brain %s: jar %s (%s used: clamped to the model's context) -> %s%s", b->id,
                 jar_asked(a, sizeof a, b), fmt((char[32]){0}, 32, b->jar.kv_bytes), to, why);
    else
        add_line(v->recs, &v->n_recs, "brain %s: jar %s -> %s%s", b->id, jar_asked(a, sizeof a, b), to, why);
}

/* KV bytes the hive's jars would take as q8_0 (jars in GB then hold more tokens, so only
 * clamped or token-sized jars shrink). */
static uint64_t jars_as_q8(const struct bj_est_hive *h)
{
    uint64_t t = 0;
    for (int i = 0; i < h->n_brains; i++) {
        const struct bj_est_brain *b = &h->brains[i];
        struct bj_brain_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        bj_strlcpy(cfg.id, b->id, sizeof cfg.id);
        cfg.jar_gb = b->jar_gb;
        cfg.jar_tokens = b->jar_gb > 0 ? 0 : b->jar.requested_tokens;
        struct bj_jar j;
        char err[256];
        if (bj_jar_resolve(&cfg, &h->models[b->model].mi, GGML_TYPE_Q8_0, &j, err, sizeof err) != 0)
            return UINT64_MAX;
        t += j.kv_bytes;
    }
    return t;
}

static void recommend_host(struct bj_budget_verdict *v, const struct bj_est_hive *h, uint64_t limit)
{
    char a[32], b[32];
    uint64_t excess = v->need > limit ? v->need - limit : 0;
    uint64_t jars = v->need_jars;
    /* shrink jars: to the per-brain share, and together by the excess */
    double factor = excess > 0 && jars > excess ? (double)(jars - excess) / (double)jars : 1.0;
    for (int i = 0; i < h->n_brains; i++) {
        const struct bj_est_brain *br = &h->brains[i];
        uint64_t want = (uint64_t)((double)br->jar.kv_bytes * factor);
        const char *why = "";
        if (want > v->per_brain_max) {
            want = v->per_brain_max;
            why = " (the per-brain share)";
        }
        if (excess > 0 && jars <= excess)
            continue;
        if (want < br->jar.kv_bytes)
            rec_jar(v, h, br, want, why);
    }
    if (excess > 0 && jars <= excess)
        add_line(v->recs, &v->n_recs, "use a smaller model: the models alone need %s of %s",
                 fmt(a, sizeof a, v->need_shared), fmt(b, sizeof b, limit));
    /* KV q8_0 */
    if (h->opts.kv_type == GGML_TYPE_F16 || h->opts.kv_type == GGML_TYPE_F32 || h->opts.kv_type == GGML_TYPE_BF16) {
        uint64_t q8 = jars_as_q8(h);
        if (q8 < jars && jars - q8 >= (uint64_t)(GB / 100))
            add_line(v->recs, &v->n_recs, "KV q8_0 saves %s (--kv-type q8_0)", fmt(a, sizeof a, jars - q8));
    }
    /* fewer brains, single mode */
    if (h->n_brains > 1 && excess > 0) {
        int first = 0;
        for (int i = 0; i < h->n_brains; i++)
            if (strcmp(h->brains[i].id, "SUBJECT") == 0)
                first = i;
        const struct bj_est_brain *s = &h->brains[first];
        uint64_t single = bj_est_model_shared_cpu(&h->models[s->model]) + s->jar.kv_bytes;
        if (single <= limit)
            add_line(v->recs, &v->n_recs, "run single mode (--mode single): one brain needs %s",
                     fmt(a, sizeof a, single));
        int fit = 0;
        uint64_t sum = v->need_shared;
        for (int i = 0; i < h->n_brains && sum + h->brains[i].jar.kv_bytes <= limit; i++, fit++)
            sum += h->brains[i].jar.kv_bytes;
        if (fit > 1 && fit < h->n_brains)
            add_line(v->recs, &v->n_recs, "run fewer brains: %d of %d fit (%s)", fit, h->n_brains,
                     fmt(a, sizeof a, sum));
    }
    if (v->need <= v->usable && v->need > v->available)
        add_line(v->recs, &v->n_recs, "close other applications to free memory (%s available, %s needed)",
                 fmt(a, sizeof a, v->available), fmt(b, sizeof b, v->need));
}

/* The mmap + repack double: loading without mmap keeps one copy of the weights. */
static void recommend_load_mode(struct bj_budget_verdict *v, const struct bj_est_hive *h)
{
    char a[32], b[32];
    for (int m = 0; m < h->n_models; m++) {
        const struct bj_est_model *md = &h->models[m];
        uint64_t now = md->cpu.weights_anon + md->cpu.weights_file;
        if (!md->plan.use_mmap || md->repacked_bytes == 0 || now <= md->cpu_weight_bytes)
            continue;
        uint64_t save = now - md->cpu_weight_bytes;
        if (save >= (uint64_t)(GB / 50))
            add_line(v->recs, &v->n_recs,
                     "load without mmap (--no-mmap) saves %s: llama.cpp repacks %s of weights and the mmap'd "
                     "originals stay resident",
                     fmt(a, sizeof a, save), fmt(b, sizeof b, md->repacked_bytes));
    }
}

static void recommend_gpu(struct bj_budget_verdict *v, const struct bj_est_hive *h, uint64_t limit)
{
    char a[32];
    uint64_t excess = v->gpu_need > limit ? v->gpu_need - limit : 0;
    for (int m = 0; m < h->n_models && excess > 0; m++) {
        const struct bj_est_model *md = &h->models[m];
        int on = md->gpu_layers + (md->output_on_gpu ? 1 : 0);
        if (on == 0)
            continue;
        uint64_t per_layer = (md->gpu.weights_anon + md->gpu.kv) / (uint64_t)on;
        if (per_layer == 0)
            continue;
        int drop = (int)((excess + per_layer - 1) / per_layer);
        int keep = on - drop;
        if (keep <= 0)
            add_line(v->recs, &v->n_recs, "%s: run on the CPU (--gpu-layers 0)", md->path);
        else
            add_line(v->recs, &v->n_recs, "%s: fewer GPU layers: --gpu-layers %d (moves about %s to host memory)",
                     md->path, keep, fmt(a, sizeof a, per_layer * (uint64_t)drop));
        break;
    }
}

/* ---- several devices ---------------------------------------------------------------------- */

/* Per device of every split model (by name: models share devices), what it will hold, and whether
 * that fits what the device reported. On unified memory the local devices are host memory,
 * checked above. */
static void check_devices(const struct bj_budget_settings *s, const struct bj_est_hive *h, bool unified,
                          struct bj_budget_verdict *v)
{
    char a[32], b[32], c[32];
    bool local_all_known = true;
    int n_local = 0;
    for (int m = 0; m < h->n_models; m++) {
        const struct bj_est_model *md = &h->models[m];
        if (!bj_est_model_split(md))
            continue;
        for (int i = 0; i < md->n_devices; i++) {
            const struct bj_est_device *d = &md->dev[i];
            uint64_t need = bj_est_mem_total(&d->mem);
            if (need == 0 || (unified && !d->remote))
                continue;
            int k = 0;
            while (k < v->n_devices && strcmp(v->devices[k].name, d->name) != 0)
                k++;
            if (k == v->n_devices) {
                if (k == BJ_MAX_DEVICES)
                    continue;
                struct bj_budget_device *e = &v->devices[v->n_devices++];
                bj_strlcpy(e->name, d->name, sizeof e->name);
                bj_strlcpy(e->desc, d->desc, sizeof e->desc);
                e->remote = d->remote;
                e->free = d->free;
                e->total = d->total;
                e->free_known = d->free_known;
                e->usable = bj_budget_usable(s, d->total);
                n_local += !d->remote;
                local_all_known = local_all_known && (d->remote || d->free_known);
            }
            v->devices[k].need += need;
        }
    }
    v->devices_cover_gpus = n_local > 0 && local_all_known;
    for (int k = 0; k < v->n_devices; k++) {
        struct bj_budget_device *e = &v->devices[k];
        const char *what = e->remote ? "rpc-server device" : "Device";
        if (e->free_known) {
            e->checked = true;
            if (e->need > e->usable)
                add_line(v->issues, &v->n_issues, "%s %s (%s): its part (%s) exceeds its safe threshold (%s) by %s",
                         what, e->name, e->desc, fmt(a, sizeof a, e->need), fmt(b, sizeof b, e->usable),
                         fmt(c, sizeof c, e->need - e->usable));
            if (e->need > e->free)
                add_line(v->issues, &v->n_issues, "%s %s (%s): its part (%s) exceeds its free memory (%s) by %s",
                         what, e->name, e->desc, fmt(a, sizeof a, e->need), fmt(b, sizeof b, e->free),
                         fmt(c, sizeof c, e->need - e->free));
        } else if (e->total > 0 && e->need > e->total) {
            add_line(v->issues, &v->n_issues, "%s %s (%s): its part (%s) exceeds all of its memory (%s)", what,
                     e->name, e->desc, fmt(a, sizeof a, e->need), fmt(b, sizeof b, e->total));
        }
        if (e->need > (e->free_known ? min_u64(e->usable, e->free) : e->total) && e->total > 0)
            add_line(v->recs, &v->n_recs,
                     "move layers off %s: --tensor-split with a smaller share for it, or fewer --gpu-layers",
                     e->name);
    }
}

static void print_devices(const struct bj_budget_verdict *v, FILE *out)
{
    char a[32], b[32], c[32];
    if (v->n_devices == 0)
        return;
    fprintf(out, "Devices (the model is split):\n");
    for (int k = 0; k < v->n_devices; k++) {
        const struct bj_budget_device *e = &v->devices[k];
        fprintf(out, "  %-8s %s%s: needs %s; ", e->name, e->desc, e->remote ? " (rpc-server)" : "",
                fmt(a, sizeof a, e->need));
        if (e->free_known)
            fprintf(out, "%s free, %s safe threshold of %s: %s\n", fmt(a, sizeof a, e->free),
                    fmt(b, sizeof b, e->usable), fmt(c, sizeof c, e->total),
                    e->need <= min_u64(e->usable, e->free) ? "fits" : "DOES NOT FIT");
        else if (e->total > 0)
            fprintf(out, "free memory not known (%s reports all of its %s as free, as a CPU backend does): "
                         "checked against its total only%s\n",
                    e->remote ? "the rpc-server" : "the device", fmt(b, sizeof b, e->total),
                    e->need > e->total ? ": DOES NOT FIT" : "");
        else
            fprintf(out, "its memory is not known (the device reports none): not checked\n");
    }
    fputc('\n', out);
}

int bj_budget_validate(const struct bj_budget_settings *s, const struct bj_sysmem *sm, const struct bj_gpu_info *gpu,
                       const struct bj_est_hive *h, struct bj_budget_verdict *v)
{
    char a[32], b[32], c[32];
    memset(v, 0, sizeof *v);
    v->total = sm->total;
    v->available = sm->available;
    v->usable = bj_budget_usable(s, sm->total);
    v->per_brain_max = (uint64_t)((double)v->usable * s->brain_share_pct / 100.0);
    for (int m = 0; m < h->n_models; m++)
        v->need_shared += bj_est_model_shared_cpu(&h->models[m]);
    for (int i = 0; i < h->n_brains; i++)
        v->need_jars += bj_est_brain_host(&h->brains[i]);
    v->gpu_need = bj_est_hive_gpu(h);
    v->gpu_needed = v->gpu_need > 0;
    v->need = v->need_shared + v->need_jars;
    bool unified = sm->unified || (gpu && gpu->unified);
    if (unified)
        v->need += v->gpu_need; /* one memory: GPU bytes come out of MemAvailable */
    v->heuristic = seed_rule(h);

    /* host */
    if (v->need > v->usable)
        add_line(v->issues, &v->n_issues, "Total requirements (%s) exceed safe threshold (%s, %.0f%% of total) by %s",
                 fmt(a, sizeof a, v->need), fmt(b, sizeof b, v->usable), 100.0 - s->reserve_pct,
                 fmt(c, sizeof c, v->need - v->usable));
    if (v->need > v->available)
        add_line(v->issues, &v->n_issues, "Total requirements (%s) exceed currently available memory (%s) by %s",
                 fmt(a, sizeof a, v->need), fmt(b, sizeof b, v->available), fmt(c, sizeof c, v->need - v->available));
    for (int i = 0; i < h->n_brains; i++) {
        const struct bj_est_brain *br = &h->brains[i];
        if (br->jar.kv_bytes > v->per_brain_max)
            add_line(v->issues, &v->n_issues, "Brain %s: jar %s exceeds the per-brain share (%s, %.0f%% of usable)",
                     br->id, fmt(a, sizeof a, br->jar.kv_bytes), fmt(b, sizeof b, v->per_brain_max),
                     s->brain_share_pct);
    }
    bool host_fail = v->n_issues > 0;

    /* each device of a split model; then the local GPUs together (NVML) unless covered here */
    check_devices(s, h, unified, v);
    uint64_t gpu_limit = 0;
    if (v->gpu_needed && !unified && gpu && gpu->available) {
        v->gpu_checked = true;
        v->gpu_total = gpu_sum(gpu, false);
        v->gpu_free = gpu_sum(gpu, true);
        v->gpu_usable = bj_budget_usable(s, v->gpu_total);
        gpu_limit = min_u64(v->gpu_usable, v->gpu_free);
        if (v->gpu_need > v->gpu_usable && !v->devices_cover_gpus)
            add_line(v->issues, &v->n_issues, "GPU requirements (%s) exceed the GPU's safe threshold (%s) by %s",
                     fmt(a, sizeof a, v->gpu_need), fmt(b, sizeof b, v->gpu_usable),
                     fmt(c, sizeof c, v->gpu_need - v->gpu_usable));
        if (v->gpu_need > v->gpu_free && !v->devices_cover_gpus)
            add_line(v->issues, &v->n_issues, "GPU requirements (%s) exceed free GPU memory (%s) by %s",
                     fmt(a, sizeof a, v->gpu_need), fmt(b, sizeof b, v->gpu_free),
                     fmt(c, sizeof c, v->gpu_need - v->gpu_free));
    }
    bool gpu_fail = v->gpu_checked && v->gpu_need > gpu_limit;

    if (host_fail)
        recommend_host(v, h, min_u64(v->usable, v->available));
    if (gpu_fail)
        recommend_gpu(v, h, gpu_limit);
    recommend_load_mode(v, h);
    v->pass = v->n_issues == 0;
    return v->pass ? 0 : 1;
}

/* ---- the report --------------------------------------------------------------------------- */

static const char *RULE = "======================================================================";

static void print_system(const struct bj_sysmem *sm, const struct bj_gpu_info *gpu, bool gpu_needed, FILE *out)
{
    char a[32], b[32], c[32];
    uint64_t used = sm->mem_total > sm->mem_available ? sm->mem_total - sm->mem_available : 0;
    fprintf(out, "System Memory Status:\n");
    fprintf(out, "  Total RAM:      %s\n", fmt(a, sizeof a, sm->mem_total));
    fprintf(out, "  Used RAM:       %s (%.1f%%)\n", fmt(a, sizeof a, used),
            sm->mem_total ? 100.0 * (double)used / (double)sm->mem_total : 0.0);
    fprintf(out, "  Available RAM:  %s\n", fmt(a, sizeof a, sm->mem_available));
    if (sm->cg_limited)
        fprintf(out, "  cgroup v%d:      limit %s, usage %s (%s reclaimable): %s available to this cgroup\n",
                sm->cg_version, fmt(a, sizeof a, sm->cg_limit), fmt(b, sizeof b, sm->cg_usage),
                fmt(c, sizeof c, sm->cg_reclaimable), fmt((char[32]){0}, 32, sm->cg_room));
    if (sm->unified)
        fprintf(out, "  Unified memory: yes (Jetson): GPU allocations come out of available RAM\n");
    if (gpu && gpu->available && !gpu->unified)
        for (int i = 0; i < gpu->n; i++)
            fprintf(out, "  GPU %d:          %s: %s total, %s free\n", i, gpu->dev[i].name,
                    fmt(a, sizeof a, gpu->dev[i].total), fmt(b, sizeof b, gpu->dev[i].free));
    else if (gpu_needed && !sm->unified)
        fprintf(out, "  GPU:            no facts (%s): GPU memory not checked\n",
                gpu && gpu->why[0] ? gpu->why : "NVML not queried");
    fputc('\n', out);
}

static void print_models(const struct bj_est_hive *h, FILE *out)
{
    char a[32], b[32], c[32], d[32], e[32], f[1024];
    fprintf(out, "Model Analysis:\n");
    for (int i = 0; i < h->n_models; i++) {
        const struct bj_est_model *m = &h->models[i];
        const struct bj_est_mem *cpu = &m->cpu;
        fprintf(out, "  Model file:     %s\n", m->path);
        fprintf(out, "  File size:      %s (%s, %u layers, %u-token training context)\n",
                fmt(a, sizeof a, m->mi.file_size), m->mi.arch, m->mi.n_layer, m->mi.n_ctx_train);
        fprintf(out, "  Loaded as:      %s, %s, KV %s\n", m->plan.use_mmap ? "mmap" : "read (no mmap)",
                h->opts.repack ? "repack on" : "repack off", ggml_type_name(h->opts.kv_type));
        bool split = bj_est_model_split(m);
        fprintf(out, "  Layers:         %s%s%s%s\n", split ? "split mode " : "", split ? bj_split_name(m->plan.split_mode) : "",
                split ? ": " : "", bj_est_placement(m, f, sizeof f));
        fprintf(out, "  Est. footprint: %s shared by its %d brain%s (weights %s resident + %s repacked/read, "
                     "buffers %s, overhead %s%s)\n",
                fmt(a, sizeof a, bj_est_model_shared_cpu(m)), m->n_brains, m->n_brains == 1 ? "" : "s",
                fmt(b, sizeof b, cpu->weights_file), fmt(c, sizeof c, cpu->weights_anon),
                fmt(d, sizeof d, cpu->compute + cpu->output), fmt(e, sizeof e, cpu->overhead),
                m->compute_from_llama ? "; buffers from a llama.cpp dry run" : "");
        if (bj_est_mem_total(&m->gpu) > 0)
            fprintf(out, "  On the GPU:     %s shared (weights %s, compute %s, runtime %s)\n",
                    fmt(a, sizeof a, bj_est_model_shared_gpu(m)), fmt(b, sizeof b, m->gpu.weights_anon),
                    fmt(c, sizeof c, m->gpu.compute), fmt(d, sizeof d, m->gpu.overhead));
        if (bj_est_mem_total(&m->remote) > 0)
            fprintf(out, "  On rpc-servers: %s (weights %s, KV %s, compute %s): other hosts' memory\n",
                    fmt(a, sizeof a, bj_est_mem_total(&m->remote)), fmt(b, sizeof b, m->remote.weights_anon),
                    fmt(c, sizeof c, m->remote.kv), fmt(d, sizeof d, m->remote.compute));
        for (int k = 0; k < m->n_devices && bj_est_model_split(m); k++) {
            const struct bj_est_device *dv = &m->dev[k];
            if (bj_est_mem_total(&dv->mem) == 0)
                continue;
            fprintf(out, "    %-8s      %s (weights %s, KV %s, compute %s%s%s)\n", dv->name,
                    fmt(a, sizeof a, bj_est_mem_total(&dv->mem)), fmt(b, sizeof b, dv->mem.weights_anon),
                    fmt(c, sizeof c, dv->mem.kv), fmt(d, sizeof d, dv->mem.compute),
                    dv->mem.overhead ? ", runtime " : "", dv->mem.overhead ? fmt(e, sizeof e, dv->mem.overhead) : "");
        }
        fprintf(out, "  Seed heuristic: %s (file size x 1.5)\n", fmt(a, sizeof a, m->heuristic));
        if (m->note[0])
            fprintf(out, "  Note:           %s\n", m->note);
    }
    fputc('\n', out);
}

static void print_brains(const struct bj_est_hive *h, FILE *out)
{
    char a[32], b[32];
    fprintf(out, "Per-Brain Requirements:\n");
    fprintf(out, "  %-12s %-14s %10s %12s  %s\n", "brain", "jar asked", "tokens", "KV (charged)", "model");
    for (int i = 0; i < h->n_brains; i++) {
        const struct bj_est_brain *br = &h->brains[i];
        const char *model = strrchr(h->models[br->model].path, '/');
        model = model ? model + 1 : h->models[br->model].path;
        fprintf(out, "  %-12s %-14s %10ld %12s  %s%s%s\n", br->id, jar_asked(a, sizeof a, br), br->jar.tokens,
                fmt(b, sizeof b, br->jar.kv_bytes), model, br->jar.clamped ? " (clamped to training context)" : "",
                br->kv_on_gpu ? " (on the GPU)" : br->kv_remote ? " (on rpc-servers)" : "");
    }
    fputc('\n', out);
}

static void print_budget(const struct bj_budget_settings *s, const struct bj_budget_verdict *v, FILE *out)
{
    char a[32];
    fprintf(out, "Budget Analysis:\n");
    fprintf(out, "  Shared (models):     %s\n", fmt(a, sizeof a, v->need_shared));
    fprintf(out, "  Jars (brains):       %s\n", fmt(a, sizeof a, v->need_jars));
    fprintf(out, "  Total required:      %s\n", fmt(a, sizeof a, v->need));
    fprintf(out, "  Safe threshold:      %s (%.0f%% of total)\n", fmt(a, sizeof a, v->usable), 100.0 - s->reserve_pct);
    fprintf(out, "  Currently available: %s\n", fmt(a, sizeof a, v->available));
    fprintf(out, "  Per-brain share:     %s (%.0f%% of usable)\n", fmt(a, sizeof a, v->per_brain_max),
            s->brain_share_pct);
    fprintf(out, "  Seed's rule:         %s (max(jar, file x 1.5) per brain; for comparison)\n",
            fmt(a, sizeof a, v->heuristic));
    if (v->gpu_checked) {
        fprintf(out, "  GPU required:        %s (%.0f MiB)\n", fmt(a, sizeof a, v->gpu_need),
                (double)v->gpu_need / (1024.0 * 1024.0));
        fprintf(out, "  GPU safe threshold:  %s\n", fmt(a, sizeof a, v->gpu_usable));
        fprintf(out, "  GPU free:            %s\n", fmt(a, sizeof a, v->gpu_free));
    } else if (v->gpu_needed) {
        fprintf(out, "  GPU required:        %s (%.0f MiB; not checked: no GPU facts)\n", fmt(a, sizeof a, v->gpu_need),
                (double)v->gpu_need / (1024.0 * 1024.0));
    }
    fputc('\n', out);
}

void bj_budget_print_report(const struct bj_budget_settings *s, const struct bj_sysmem *sm,
                            const struct bj_gpu_info *gpu, const struct bj_est_hive *h, const char *mode_name,
                            const struct bj_budget_verdict *v, FILE *out)
{
    char a[32], b[32];
    fprintf(out, "\n%s\nMEMORY BUDGET VALIDATION\n%s\n\n", RULE, RULE);
    print_system(sm, gpu, v->gpu_needed, out);
    print_models(h, out);
    if (mode_name)
        fprintf(out, "Mode: %s\n", mode_name);
    fprintf(out, "Brains: %d\n\n", h->n_brains);
    print_brains(h, out);
    print_budget(s, v, out);
    print_devices(v, out);
    fprintf(out, "%s\nVALIDATION %s\n%s\n", RULE, v->pass ? "PASSED" : "FAILED", RULE);
    if (v->pass) {
        uint64_t limit = min_u64(v->usable, v->available);
        fprintf(out, "Memory budget is safe to proceed\n");
        fprintf(out, "Total required: %s / %s\n", fmt(a, sizeof a, v->need), fmt(b, sizeof b, limit));
        fprintf(out, "Safety margin: %s\n", fmt(a, sizeof a, limit - v->need));
        if (v->n_recs > 0)
            fprintf(out, "\nSuggestions:\n");
    } else {
        fprintf(out, "Memory budget validation failed. Issues:\n");
        for (int i = 0; i < v->n_issues; i++)
            fprintf(out, "  %d. %s\n", i + 1, v->issues[i]);
        fprintf(out, "\nRecommendations:\n");
    }
    for (int i = 0; i < v->n_recs; i++)
        fprintf(out, "  - %s\n", v->recs[i]);
    fprintf(out, "%s\n", RULE);
}

/* ---- layer 2 ------------------------------------------------------------------------------ */

/* Every brain and every model of the largest hive (a model per brain at most), and a few more. */
#define LEDGER_MAX (2 * BJ_MAX_BRAINS + 8)

struct bj_budget_manager {
    pthread_mutex_t lock;
    struct bj_budget_settings settings;
    uint64_t host_limit, gpu_limit, per_brain_max;
    bool unified;
    struct bj_budget_entry entries[LEDGER_MAX];
    int n;
    uint64_t host_allocated, gpu_allocated, host_peak;
    long approved, denied;
};

struct bj_budget_manager *bj_budget_manager_new(const struct bj_budget_settings *s, const struct bj_sysmem *sm,
                                                const struct bj_gpu_info *gpu)
{
    struct bj_budget_manager *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->settings = *s;
    uint64_t usable = bj_budget_usable(s, sm->total);
    m->host_limit = min_u64(usable, sm->available);
    m->per_brain_max = (uint64_t)((double)usable * s->brain_share_pct / 100.0);
    m->unified = sm->unified || (gpu && gpu->unified);
    if (gpu && gpu->available && !m->unified)
        m->gpu_limit = min_u64(bj_budget_usable(s, gpu_sum(gpu, false)), gpu_sum(gpu, true));
    return m;
}

void bj_budget_manager_free(struct bj_budget_manager *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int ledger_find(const struct bj_budget_manager *m, const char *id)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->entries[i].id, id) == 0)
            return i;
    return -1;
}

/* Decides one request; called with the lock held. 0 or -errno, msg filled. */
static int ledger_decide(struct bj_budget_manager *m, const char *id, enum bj_budget_kind kind, uint64_t host,
                         uint64_t gpu, char *msg, size_t msglen)
{
    char a[32], b[32], c[32];
    if (ledger_find(m, id) >= 0) {
        snprintf(msg, msglen, "%s already holds a memory allocation", id);
        return -EEXIST;
    }
    if (m->n >= LEDGER_MAX) {
        snprintf(msg, msglen, "memory ledger full (%d entries)", LEDGER_MAX);
        return -ENOMEM;
    }
    if (m->unified) { /* GPU bytes are host bytes */
        host += gpu;
        gpu = 0;
    }
    if (kind == BJ_BUDGET_BRAIN && host > m->per_brain_max) {
        snprintf(msg, msglen, "DENIED %s: %s exceeds the per-brain share (%s, %.0f%% of usable)", id,
                 fmt(a, sizeof a, host), fmt(b, sizeof b, m->per_brain_max), m->settings.brain_share_pct);
        return -ENOSPC;
    }
    if (m->host_allocated + host > m->host_limit) {
        snprintf(msg, msglen, "DENIED %s: %s more would make %s of %s allowed (%s already allocated)", id,
                 fmt(a, sizeof a, host), fmt(b, sizeof b, m->host_allocated + host), fmt(c, sizeof c, m->host_limit),
                 fmt((char[32]){0}, 32, m->host_allocated));
        return -ENOSPC;
    }
    if (gpu > 0 && m->gpu_limit > 0 && m->gpu_allocated + gpu > m->gpu_limit) {
        snprintf(msg, msglen, "DENIED %s: %s more GPU memory would make %s of %s allowed", id, fmt(a, sizeof a, gpu),
                 fmt(b, sizeof b, m->gpu_allocated + gpu), fmt(c, sizeof c, m->gpu_limit));
        return -ENOSPC;
    }
    struct bj_budget_entry *e = &m->entries[m->n++];
    bj_strlcpy(e->id, id, sizeof e->id);
    e->kind = kind;
    e->host = host;
    e->gpu = gpu;
    m->host_allocated += host;
    m->gpu_allocated += gpu;
    if (m->host_allocated > m->host_peak)
        m->host_peak = m->host_allocated;
    snprintf(msg, msglen, "APPROVED %s: %s (%s of %s allocated)", id, fmt(a, sizeof a, host),
             fmt(b, sizeof b, m->host_allocated), fmt(c, sizeof c, m->host_limit));
    return 0;
}

int bj_budget_manager_alloc(struct bj_budget_manager *m, const char *id, enum bj_budget_kind kind,
                            uint64_t host_bytes, uint64_t gpu_bytes, char *msg, size_t msglen)
{
    char local[256];
    if (!msg) {
        msg = local;
        msglen = sizeof local;
    }
    if (!id || !id[0] || strlen(id) >= sizeof m->entries[0].id) {
        snprintf(msg, msglen, "memory allocation: bad id");
        return -EINVAL;
    }
    pthread_mutex_lock(&m->lock);
    int rc = ledger_decide(m, id, kind, host_bytes, gpu_bytes, msg, msglen);
    if (rc == 0)
        m->approved++;
    else if (rc == -ENOSPC)
        m->denied++;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int bj_budget_manager_release(struct bj_budget_manager *m, const char *id)
{
    if (!id)
        return -ENOENT;
    pthread_mutex_lock(&m->lock);
    int i = ledger_find(m, id);
    if (i >= 0) {
        m->host_allocated -= m->entries[i].host;
        m->gpu_allocated -= m->entries[i].gpu;
        m->entries[i] = m->entries[--m->n];
    }
    pthread_mutex_unlock(&m->lock);
    return i >= 0 ? 0 : -ENOENT;
}

int bj_budget_manager_snapshot(struct bj_budget_manager *m, struct bj_budget_entry *out, int max,
                               struct bj_budget_totals *t)
{
    pthread_mutex_lock(&m->lock);
    int n = m->n < max ? m->n : max;
    if (out && n > 0)
        memcpy(out, m->entries, (size_t)n * sizeof *out);
    if (t) {
        t->host_allocated = m->host_allocated;
        t->host_limit = m->host_limit;
        t->gpu_allocated = m->gpu_allocated;
        t->gpu_limit = m->gpu_limit;
        t->host_peak = m->host_peak;
        t->approved = m->approved;
        t->denied = m->denied;
        t->n_entries = m->n;
    }
    pthread_mutex_unlock(&m->lock);
    return out ? n : 0;
}

void bj_budget_manager_report(struct bj_budget_manager *m, FILE *out)
{
    struct bj_budget_entry e[LEDGER_MAX];
    struct bj_budget_totals t;
    char a[32], b[32], c[32];
    int n = bj_budget_manager_snapshot(m, e, LEDGER_MAX, &t);
    fprintf(out, "\n%s\nMEMORY ALLOCATION REPORT\n%s\n", RULE, RULE);
    fprintf(out, "  Limit:      %s (min of usable and available at start)\n", fmt(a, sizeof a, t.host_limit));
    fprintf(out, "  Allocated:  %s (peak %s), remaining %s\n", fmt(a, sizeof a, t.host_allocated),
            fmt(b, sizeof b, t.host_peak), fmt(c, sizeof c, t.host_limit - t.host_allocated));
    if (t.gpu_limit > 0)
        fprintf(out, "  GPU:        %s of %s\n", fmt(a, sizeof a, t.gpu_allocated), fmt(b, sizeof b, t.gpu_limit));
    fprintf(out, "  Requests:   %ld approved, %ld denied\n", t.approved, t.denied);
    for (int i = 0; i < n; i++)
        fprintf(out, "  %-6s %-24s %12s%s%s\n", e[i].kind == BJ_BUDGET_MODEL ? "model" : "brain", e[i].id,
                fmt(a, sizeof a, e[i].host), e[i].gpu ? "  GPU " : "", e[i].gpu ? fmt(b, sizeof b, e[i].gpu) : "");
    fprintf(out, "%s\n", RULE);
}

/* ---- layer 3 ------------------------------------------------------------------------------ */

int bj_budget_preload_check(const struct bj_budget_settings *s, const struct bj_sysmem *now,
                            const struct bj_gpu_info *gpu, uint64_t need_host, uint64_t need_gpu, char *msg,
                            size_t msglen)
{
    char a[32], b[32], c[32], d[32];
    char local[512];
    if (!msg) {
        msg = local;
        msglen = sizeof local;
    }
    msg[0] = '\0';
    uint64_t headroom = (uint64_t)(s->headroom_gb * GB);
    bool unified = now->unified || (gpu && gpu->unified);
    uint64_t need = need_host + (unified ? need_gpu : 0);
    if (now->available < need + headroom) {
        snprintf(msg, msglen,
                 "refusing to load: it needs %s plus %s headroom, but only %s is available (short by %s); free "
                 "memory, shrink the jars or lower --headroom",
                 fmt(a, sizeof a, need), fmt(b, sizeof b, headroom), fmt(c, sizeof c, now->available),
                 fmt(d, sizeof d, need + headroom - now->available));
        return -ENOMEM;
    }
    if (!unified && need_gpu > 0 && gpu && gpu->available) {
        uint64_t free_gpu = gpu_sum(gpu, true);
        if (free_gpu < need_gpu + headroom) {
            snprintf(msg, msglen,
                     "refusing to load: it needs %s of GPU memory plus %s headroom, but only %s is free (short by "
                     "%s); use fewer GPU layers",
                     fmt(a, sizeof a, need_gpu), fmt(b, sizeof b, headroom), fmt(c, sizeof c, free_gpu),
                     fmt(d, sizeof d, need_gpu + headroom - free_gpu));
            return -ENOMEM;
        }
    }
    double used_after = (double)(now->total > now->available ? now->total - now->available : 0) + (double)need;
    double pct = now->total ? 100.0 * used_after / (double)now->total : 100.0;
    if (pct > s->warn_use_pct) {
        snprintf(msg, msglen, "memory use after this load will be about %.0f%% (above %.0f%%): %s of %s", pct,
                 s->warn_use_pct, fmt(a, sizeof a, (uint64_t)used_after), fmt(b, sizeof b, now->total));
        return 1;
    }
    snprintf(msg, msglen, "pre-load check passed: %s available >= %s needed + %s headroom",
             fmt(a, sizeof a, now->available), fmt(b, sizeof b, need), fmt(c, sizeof c, headroom));
    return 0;
}

int bj_validate_hive(const struct bj_hive_spec *c, const char *label, const struct bj_est_hive *h, const struct bj_sysmem_paths *paths,
                     FILE *out, struct bj_sysmem *sm, struct bj_gpu_info *gpu)
{
    char err[512];
    struct bj_budget_settings s;
    struct bj_budget_verdict *v = malloc(sizeof *v);
    if (!v) {
        fprintf(out, "validate: out of memory\n");
        return 2;
    }
    int rc = 2;
    memset(gpu, 0, sizeof *gpu);
    if (bj_sysmem_read(paths, sm, err, sizeof err) != 0) {
        fprintf(out, "validate: %s\n", err);
        goto out;
    }
    if (bj_est_hive_gpu(h) > 0 || sm->unified)
        bj_sysmem_read_gpu(paths, sm, gpu);
    bj_budget_settings_from_spec(&s, c);
    rc = bj_budget_validate(&s, sm, gpu, h, v);
    bj_budget_print_report(&s, sm, gpu, h, label, v, out);
out:
    free(v);
    return rc;
}
