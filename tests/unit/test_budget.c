/* Unit tests for budget: the seed's two examples (both must fail), a passing hive, the 50% rule,
 * the reserve and headroom settings, cgroup limits, GPU and unified memory, the allocation ledger
 * (including many threads at once never over-committing), the pre-load check, and the validate
 * report of a real config on fake /proc files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llama.h>

#include "budget.h"
#include "budget_cli.h"
#include "config.h"
#include "estimate.h"
#include "util.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define G(x) ((uint64_t)((x) * GIB))

/* ---- fakes -------------------------------------------------------------------------------- */

/* The seed's machine: 31.24 GB total, 22.74 GB available. */
static struct bj_sysmem machine(double total_gb, double avail_gb)
{
    struct bj_sysmem sm;
    memset(&sm, 0, sizeof sm);
    sm.mem_total = sm.total = G(total_gb);
    sm.mem_available = sm.available = G(avail_gb);
    return sm;
}

/* A hive by hand: one model whose shared part is `shared_gb`, brains with jars in GB (KV bytes
 * exactly the jar: the model's context is long enough that nothing is clamped). */
static struct bj_est_hive *hive(const char *model, double file_gb, double shared_gb, const double *jars, int n)
{
    static const char *ids[] = {"SUBJECT", "OBSERVER", "GOD", "B4", "B5", "B6"};
    struct bj_est_hive *h = calloc(1, sizeof *h);
    assert_non_null(h);
    bj_est_opts_default(&h->opts);
    h->n_models = 1;
    struct bj_est_model *m = &h->models[0];
    bj_strlcpy(m->path, model, sizeof m->path);
    bj_strlcpy(m->mi.arch, "qwen2", sizeof m->mi.arch);
    m->mi.file_size = G(file_gb);
    m->mi.n_layer = 28;
    m->mi.n_head = 12;
    m->mi.n_head_kv = 2;
    m->mi.head_dim_k = m->mi.head_dim_v = 128;
    m->mi.n_ctx_train = 100000000;
    m->heuristic = bj_est_heuristic(m->mi.file_size);
    m->n_brains = n;
    m->cpu.weights_file = G(shared_gb);
    uint64_t per_token = bj_modelinfo_kv_bytes(&m->mi, GGML_TYPE_F16, GGML_TYPE_F16, 1);
    for (int i = 0; i < n; i++) {
        struct bj_est_brain *b = &h->brains[h->n_brains++];
        bj_strlcpy(b->id, ids[i], sizeof b->id);
        b->model = 0;
        b->jar_gb = jars[i];
        b->jar.kv_bytes = G(jars[i]);
        b->jar.tokens = b->jar.requested_tokens = (long)(b->jar.kv_bytes / per_token);
        m->cpu.kv += b->jar.kv_bytes;
        m->kv_jars += b->jar.kv_bytes;
    }
    return h;
}

static bool has_line(char (*lines)[256], int n, const char *needle)
{
    for (int i = 0; i < n; i++)
        if (strstr(lines[i], needle))
            return true;
    return false;
}

#define assert_issue(v, s) \
    do { if (!has_line((v)->issues, (v)->n_issues, s)) fail_msg("no issue mentions '%s'", s); } while (0)
#define assert_rec(v, s) \
    do { if (!has_line((v)->recs, (v)->n_recs, s)) fail_msg("no recommendation mentions '%s'", s); } while (0)

static char *report(const struct bj_budget_settings *s, const struct bj_sysmem *sm, const struct bj_est_hive *h,
                    const struct bj_budget_verdict *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    bj_budget_print_report(s, sm, NULL, h, "matrix", v, f);
    fclose(f);
    return buf;
}

/* ---- layer 1 ------------------------------------------------------------------------------ */

/* Seed example 1: 3 x 8/10/12 GB on a 31.24 GB machine. The seed printed PASSED, against its own
 * rule: 30 GB of jars alone exceed the 26.55 GB safe threshold. */
static void test_seed_matrix_fails(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(31.24, 22.74);
    double jars[] = {8, 10, 12};
    struct bj_est_hive *h = hive("models/Qwen2.5-1.5B-Instruct-Q4_0.gguf", 0.98, 1.47, jars, 3);
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_false(v.pass);
    assert_true(v.usable == (uint64_t)(G(31.24) * 0.85));
    assert_true(v.need == G(1.47) + G(8) + G(10) + G(12));
    assert_int_equal(v.n_issues, 2);
    assert_issue(&v, "exceed safe threshold (26.55 GB, 85% of total)");
    assert_issue(&v, "exceed currently available memory (22.74 GB)");
    assert_rec(&v, "brain SUBJECT: jar 8.00 GB -> ");
    assert_rec(&v, "brain GOD: jar 12.00 GB -> ");
    assert_rec(&v, "run single mode");
    assert_rec(&v, "run fewer brains: 2 of 3");
    char *r = report(&s, &sm, h, &v);
    assert_non_null(strstr(r, "VALIDATION FAILED"));
    assert_non_null(strstr(r, "  1. Total requirements (31.47 GB) exceed safe threshold (26.55 GB"));
    assert_non_null(strstr(r, "Total RAM:      31.24 GB"));
    assert_non_null(strstr(r, "Available RAM:  22.74 GB"));
    assert_non_null(strstr(r, "Recommendations:"));
    assert_non_null(strstr(r, "Seed heuristic: 1.47 GB"));
    free(r);
    free(h);
}

/* Seed example 2: a 12B model with 3 x 20 GB jars. */
static void test_seed_60gb_fails(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(31.24, 22.74);
    double jars[] = {20, 20, 20};
    struct bj_est_hive *h = hive("models/gemma-3-12b-it-Q4_K_M.gguf", 7.30, 10.95, jars, 3);
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_int_equal(v.n_issues, 5); /* threshold, available, and each brain over the 50% share */
    assert_issue(&v, "exceed safe threshold");
    assert_issue(&v, "exceed currently available memory (22.74 GB) by 48.21 GB");
    assert_issue(&v, "Brain GOD: jar 20.00 GB exceeds the per-brain share (13.28 GB, 50% of usable)");
    assert_rec(&v, "brain SUBJECT: jar 20.00 GB -> ");
    free(h);
}

static void test_passing_hive(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(31.24, 22.74);
    double jars[] = {2, 3, 4};
    struct bj_est_hive *h = hive("models/small.gguf", 0.98, 1.9, jars, 3);
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0);
    assert_true(v.pass);
    assert_int_equal(v.n_issues, 0);
    char *r = report(&s, &sm, h, &v);
    assert_non_null(strstr(r, "VALIDATION PASSED"));
    assert_non_null(strstr(r, "Safety margin:"));
    assert_null(strstr(r, "Recommendations:"));
    free(r);
    free(h);
}

/* One brain over half of usable fails even though the total fits. */
static void test_brain_share_rule(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(31.24, 30.0);
    double jars[] = {14};
    struct bj_est_hive *h = hive("models/m.gguf", 0.98, 1.47, jars, 1);
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_int_equal(v.n_issues, 1);
    assert_issue(&v, "Brain SUBJECT: jar 14.00 GB exceeds the per-brain share");
    assert_rec(&v, "brain SUBJECT: jar 14.00 GB -> 13.27 GB (the per-brain share)");
    s.brain_share_pct = 60; /* the setting */
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0);
    free(h);
}

static void test_reserve_setting(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(32, 31);
    double jars[] = {7, 7, 7};
    struct bj_est_hive *h = hive("models/m.gguf", 1, 1.5, jars, 3); /* 22.5 GB */
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0); /* 27.2 GB usable */
    s.reserve_pct = 30;                                           /* 22.4 GB usable */
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_issue(&v, "(22.40 GB, 70% of total)");
    s.reserve_pct = 0;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0);
    assert_true(v.usable == G(32));
    free(h);
}

static void test_cgroup_limit(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(64, 60);
    sm.cg_limited = true;
    sm.cg_version = 2;
    sm.cg_limit = sm.total = G(8);
    sm.cg_room = sm.available = G(7);
    double jars[] = {3, 3};
    struct bj_est_hive *h = hive("models/m.gguf", 1, 1.5, jars, 2); /* 7.5 GB: fits 64, not 8 */
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_issue(&v, "(6.80 GB, 85% of total)");
    char *r = report(&s, &sm, h, &v);
    assert_non_null(strstr(r, "cgroup v2:      limit 8.00 GB"));
    free(r);
    free(h);
}

/* Jars given in tokens shrink with q8_0: the report says by how much. */
static void test_kv_q8_recommendation(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(16, 12);
    double jars[] = {6, 6};
    struct bj_est_hive *h = hive("models/m.gguf", 1, 1.5, jars, 2);
    for (int i = 0; i < 2; i++)
        h->brains[i].jar_gb = 0; /* jars given in tokens */
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_rec(&v, "KV q8_0 saves 5.6"); /* q8_0 is 34/64 of f16: 12 GB -> 6.4 GB */
    assert_rec(&v, "tokens ->");
    free(h);
}

static void test_gpu_checks(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(64, 60);
    double jars[] = {1};
    struct bj_est_hive *h = hive("models/m.gguf", 4, 0.2, jars, 1);
    struct bj_est_model *m = &h->models[0];
    m->gpu_backend = true;
    m->gpu_layers = 32;
    m->output_on_gpu = true;
    m->gpu.weights_anon = G(7);
    m->gpu.kv = G(1);
    m->cpu.kv = 0;
    h->brains[0].kv_on_gpu = true;
    struct bj_gpu_info g;
    memset(&g, 0, sizeof g);
    g.available = true;
    g.n = 1;
    bj_strlcpy(g.dev[0].name, "fake GPU", sizeof g.dev[0].name);
    g.dev[0].total = G(8);
    g.dev[0].free = G(7.5);
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, &g, h, &v), 1);
    assert_true(v.gpu_checked);
    assert_true(v.gpu_need == G(8));
    assert_issue(&v, "GPU requirements (8.00 GB) exceed the GPU's safe threshold (6.80 GB)");
    assert_rec(&v, "fewer GPU layers: --gpu-layers");
    g.dev[0].total = G(24);
    g.dev[0].free = G(23);
    assert_int_equal(bj_budget_validate(&s, &sm, &g, h, &v), 0);
    /* no GPU facts: not checked, not failed */
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0);
    assert_false(v.gpu_checked);
    /* unified memory: GPU bytes are host bytes */
    sm = machine(8, 6);
    sm.unified = true;
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_true(v.need >= G(8));
    free(h);
}

/* A model split over a local GPU and two rpc-servers' devices: each device is checked on its own
 * against what it reported; one whose free memory is no measurement (a CPU rpc-server reports all
 * of it as free) against its total only, and the report says so; the jars on remote devices cost
 * the host nothing. */
static void test_split_devices(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(64, 60);
    double jars[] = {1, 1};
    struct bj_est_hive *h = hive("models/m.gguf", 4, 0.2, jars, 2);
    struct bj_est_model *m = &h->models[0];
    m->gpu_backend = true;
    m->n_devices = m->n_devices_used = 3;
    const char *names[] = {"RPC0", "RPC1", "CUDA0"}, *descs[] = {"10.0.0.2:50052", "10.0.0.3:50052", "fake GPU"};
    for (int i = 0; i < 3; i++) {
        struct bj_est_device *d = &m->dev[i];
        bj_strlcpy(d->name, names[i], sizeof d->name);
        bj_strlcpy(d->desc, descs[i], sizeof d->desc);
        d->remote = i < 2;
        d->layers = 10;
        d->first_layer = 10 * i;
        d->mem.weights_anon = G(3);
        d->mem.kv = G(2.0 / 3);
        d->total = G(i == 1 ? 3 : 16);
        d->free = i == 2 ? G(12) : d->total; /* the rpc-servers report all of it as free */
        d->free_known = i == 2;
        struct bj_est_mem *sum = d->remote ? &m->remote : &m->gpu;
        sum->weights_anon += d->mem.weights_anon;
        sum->kv += d->mem.kv;
    }
    m->dev[2].output = true;
    m->gpu_layers = 30;
    m->output_on_gpu = true;
    m->cpu.kv = 0;
    for (int i = 0; i < 2; i++)
        h->brains[i].kv_remote = true;
    assert_true(bj_est_model_split(m));
    assert_true(bj_est_brain_host(&h->brains[0]) == 0 && bj_est_brain_gpu(&h->brains[0]) == 0);
    struct bj_budget_verdict v;
    /* RPC1 holds 3.67 GB of its 3 GB: that fails, for certain */
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_int_equal(v.n_devices, 3);
    assert_true(v.need_jars == 0); /* the jars are on the devices, not in host memory */
    assert_issue(&v, "rpc-server device RPC1 (10.0.0.3:50052): its part (3.67 GB) exceeds all of its memory (3.00 GB)");
    assert_rec(&v, "move layers off RPC1: --tensor-split");
    assert_false(v.devices[0].checked);
    assert_true(v.devices[2].checked);
    m->dev[1].total = m->dev[1].free = G(16);
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 0);
    /* the local GPU over its free memory */
    m->dev[2].free = G(3);
    assert_int_equal(bj_budget_validate(&s, &sm, NULL, h, &v), 1);
    assert_issue(&v, "Device CUDA0 (fake GPU): its part (3.67 GB) exceeds its free memory (3.00 GB) by 682.7 MB");
    /* with NVML facts too, the local GPU is reported once (here), not again as "GPU requirements" */
    struct bj_gpu_info g;
    memset(&g, 0, sizeof g);
    g.available = true;
    g.n = 1;
    g.dev[0].total = G(16);
    g.dev[0].free = G(3);
    assert_int_equal(bj_budget_validate(&s, &sm, &g, h, &v), 1);
    assert_true(v.devices_cover_gpus);
    for (int i = 0; i < v.n_issues; i++)
        assert_null(strstr(v.issues[i], "GPU requirements"));
    /* the report names every device and says which could not be checked */
    char *buf = report(&s, &sm, h, &v);
    assert_non_null(strstr(buf, "Devices (the model is split):"));
    assert_non_null(strstr(buf, "RPC0     10.0.0.2:50052 (rpc-server): needs 3.67 GB; free memory not known"));
    assert_non_null(strstr(buf, "checked against its total only"));
    assert_non_null(strstr(buf, "CUDA0    fake GPU: needs 3.67 GB; 3.00 GB free"));
    assert_non_null(strstr(buf, "DOES NOT FIT"));
    assert_non_null(strstr(buf, "On rpc-servers:"));
    assert_non_null(strstr(buf, "(on rpc-servers)"));
    free(buf);
    free(h);
}

/* ---- layer 2 ------------------------------------------------------------------------------ */

static void test_manager_basics(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(31.24, 22.74);
    struct bj_budget_manager *m = bj_budget_manager_new(&s, &sm, NULL);
    assert_non_null(m);
    char msg[256];
    assert_int_equal(bj_budget_manager_alloc(m, "model:qwen", BJ_BUDGET_MODEL, G(1.47), 0, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "APPROVED"));
    assert_int_equal(bj_budget_manager_alloc(m, "SUBJECT", BJ_BUDGET_BRAIN, G(8), 0, msg, sizeof msg), 0);
    assert_int_equal(bj_budget_manager_alloc(m, "OBSERVER", BJ_BUDGET_BRAIN, G(10), 0, msg, sizeof msg), 0);
    /* 19.47 + 12 > 22.74 available at start */
    assert_int_equal(bj_budget_manager_alloc(m, "GOD", BJ_BUDGET_BRAIN, G(12), 0, msg, sizeof msg), -ENOSPC);
    assert_non_null(strstr(msg, "DENIED GOD"));
    assert_int_equal(bj_budget_manager_alloc(m, "SUBJECT", BJ_BUDGET_BRAIN, G(1), 0, msg, sizeof msg), -EEXIST);
    assert_int_equal(bj_budget_manager_alloc(m, "", BJ_BUDGET_BRAIN, 1, 0, NULL, 0), -EINVAL);
    /* the per-brain share (13.27 GB) applies to brains, not models */
    assert_int_equal(bj_budget_manager_release(m, "OBSERVER"), 0);
    assert_int_equal(bj_budget_manager_alloc(m, "BIG", BJ_BUDGET_BRAIN, G(13.5), 0, msg, sizeof msg), -ENOSPC);
    assert_non_null(strstr(msg, "per-brain share"));
    assert_int_equal(bj_budget_manager_alloc(m, "GOD", BJ_BUDGET_BRAIN, G(12), 0, msg, sizeof msg), 0);
    assert_int_equal(bj_budget_manager_release(m, "nobody"), -ENOENT);

    struct bj_budget_entry e[8];
    struct bj_budget_totals t;
    assert_int_equal(bj_budget_manager_snapshot(m, e, 8, &t), 3);
    assert_true(t.host_allocated == G(1.47) + G(8) + G(12));
    assert_true(t.host_limit == G(22.74));
    assert_int_equal(t.approved, 4);
    assert_int_equal(t.denied, 2);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bj_budget_manager_report(m, f);
    fclose(f);
    assert_non_null(strstr(buf, "MEMORY ALLOCATION REPORT"));
    assert_non_null(strstr(buf, "model:qwen"));
    assert_non_null(strstr(buf, "4 approved, 2 denied"));
    free(buf);
    bj_budget_manager_free(m);
}

#define N_THREADS 16
#define N_ROUNDS 3000

struct worker {
    struct bj_budget_manager *m;
    int id;
    atomic_llong *outstanding; /* what the workers hold, by their own count */
    uint64_t limit;
    atomic_int *overcommits;
};

static pthread_barrier_t g_all_asked;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned seed = (unsigned)w->id * 7919u + 1;
    char ids[4][32];
    uint64_t held[4] = {0};
    for (int k = 0; k < 4; k++)
        snprintf(ids[k], sizeof ids[k], "t%d-%d", w->id, k);
    /* Every thread holds (or is refused) 1 GB at once before the rounds: 16 GB against the limit,
     * so some are denied however the threads are scheduled (a busy machine may run them one
     * after another, and then the rounds alone would never be refused). */
    char base[32];
    snprintf(base, sizeof base, "t%d-base", w->id);
    int base_rc = bj_budget_manager_alloc(w->m, base, BJ_BUDGET_MODEL, 1024ull * 1024 * 1024, 0, NULL, 0);
    if (base_rc == 0)
        atomic_fetch_add(w->outstanding, 1024ll * 1024 * 1024);
    else if (base_rc != -ENOSPC)
        atomic_fetch_add(w->overcommits, 1000000);
    pthread_barrier_wait(&g_all_asked);
    if (base_rc == 0) {
        if (bj_budget_manager_release(w->m, base) != 0)
            atomic_fetch_add(w->overcommits, 1000000);
        atomic_fetch_sub(w->outstanding, 1024ll * 1024 * 1024);
    }
    for (int r = 0; r < N_ROUNDS; r++) {
        int k = (int)(rand_r(&seed) % 4);
        if (held[k]) {
            if (bj_budget_manager_release(w->m, ids[k]) != 0) /* no cmocka asserts off the main thread */
                atomic_fetch_add(w->overcommits, 1000000);
            atomic_fetch_sub(w->outstanding, (long long)held[k]);
            held[k] = 0;
            continue;
        }
        uint64_t bytes = (uint64_t)(rand_r(&seed) % 2048 + 1) * 1024 * 1024; /* 1 MiB .. 2 GiB */
        int rc = bj_budget_manager_alloc(w->m, ids[k], BJ_BUDGET_MODEL, bytes, 0, NULL, 0);
        if (rc == 0) {
            held[k] = bytes;
            long long now = atomic_fetch_add(w->outstanding, (long long)bytes) + (long long)bytes;
            (void)now;
            struct bj_budget_totals t;
            bj_budget_manager_snapshot(w->m, NULL, 0, &t);
            if (t.host_allocated > w->limit)
                atomic_fetch_add(w->overcommits, 1);
        } else if (rc != -ENOSPC) {
            atomic_fetch_add(w->overcommits, 1000000);
        }
    }
    for (int k = 0; k < 4; k++)
        if (held[k]) {
            bj_budget_manager_release(w->m, ids[k]);
            atomic_fetch_sub(w->outstanding, (long long)held[k]);
        }
    return NULL;
}

static void test_manager_concurrency(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(16, 10); /* limit 10 GB: 16 threads x up to 4 x 2 GB want far more */
    struct bj_budget_manager *m = bj_budget_manager_new(&s, &sm, NULL);
    atomic_llong outstanding = 0;
    atomic_int overcommits = 0;
    pthread_t th[N_THREADS];
    struct worker w[N_THREADS];
    pthread_barrier_init(&g_all_asked, NULL, N_THREADS);
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){m, i, &outstanding, G(10), &overcommits};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&g_all_asked);
    struct bj_budget_totals t;
    bj_budget_manager_snapshot(m, NULL, 0, &t);
    assert_int_equal(atomic_load(&overcommits), 0);
    assert_true(t.host_peak <= G(10));
    assert_true(t.host_peak > G(8)); /* it did fill up */
    assert_true(t.host_allocated == 0);
    assert_int_equal(t.n_entries, 0);
    assert_true(atomic_load(&outstanding) == 0);
    assert_true(t.denied > 0 && t.approved > 0);
    bj_budget_manager_free(m);
}

/* ---- layer 3 ------------------------------------------------------------------------------ */

static void test_preload_headroom(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    s.warn_use_pct = 100; /* this test is about headroom only */
    struct bj_sysmem sm = machine(64, 10);
    char msg[512];
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(7), 0, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "passed"));
    s.headroom_gb = 4; /* 7 + 4 > 10 */
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(7), 0, msg, sizeof msg), -ENOMEM);
    assert_non_null(strstr(msg, "refusing to load"));
    assert_non_null(strstr(msg, "short by 1.00 GB"));
    s.headroom_gb = 0;
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(10), 0, msg, sizeof msg), 0);
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(10.5), 0, NULL, 0), -ENOMEM);
}

static void test_preload_warn(void **state)
{
    (void)state;
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    struct bj_sysmem sm = machine(16, 8); /* 8 used; + 3 = 69%: fine; + 5 = 81%: warn */
    char msg[512];
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(3), 0, msg, sizeof msg), 0);
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(5), 0, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "81%"));
    /* GPU: device memory needs the headroom too */
    struct bj_gpu_info g;
    memset(&g, 0, sizeof g);
    g.available = true;
    g.n = 1;
    g.dev[0].total = G(24);
    g.dev[0].free = G(6);
    sm = machine(64, 60);
    assert_int_equal(bj_budget_preload_check(&s, &sm, &g, G(1), G(3), msg, sizeof msg), 0);
    assert_int_equal(bj_budget_preload_check(&s, &sm, &g, G(1), G(5), msg, sizeof msg), -ENOMEM);
    assert_non_null(strstr(msg, "GPU"));
    /* unified: GPU bytes come out of MemAvailable */
    sm = machine(8, 6);
    sm.unified = true;
    assert_int_equal(bj_budget_preload_check(&s, &sm, NULL, G(1), G(4), msg, sizeof msg), -ENOMEM);
}

/* ---- validate on a real config ------------------------------------------------------------ */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The default matrix hive (8/10/12 GB jars) on the tiny model: the jars are clamped to its 4096
 * token context, so it passes on the seed's machine, and fails on a 0.5 GB one. */
static void test_validate_config(void **state)
{
    (void)state;
    const char *tiny = getenv("BJ_TINY_MODEL");
    assert_non_null(tiny);
    const char *tmp = getenv("BJ_TEST_TMP");
    char root[512], path[600];
    snprintf(root, sizeof root, "%s/bj-budget-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(path, sizeof path, "%s/proc", root);
    assert_int_equal(bj_mkdirs(path), 0);
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    write_text(path, "MemTotal:       32757515 kB\nMemAvailable:   23845536 kB\n");
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);

    struct bj_config c;
    bj_config_defaults(&c);
    char err[256];
    assert_int_equal(bj_config_finish(&c, err, sizeof err), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(bj_validate_run_paths(&c, tiny, &p, f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "VALIDATION PASSED"));
    assert_non_null(strstr(buf, "clamped to training context"));
    assert_non_null(strstr(buf, "Mode: matrix"));
    free(buf);

    write_text(path, "MemTotal:       524288 kB\nMemAvailable:    8000 kB\n");
    f = open_memstream(&buf, &len);
    assert_int_equal(bj_validate_run_paths(&c, tiny, &p, f), 1);
    fclose(f);
    assert_non_null(strstr(buf, "VALIDATION FAILED"));
    assert_non_null(strstr(buf, "exceed currently available memory"));
    free(buf);

    /* an unreadable model: 2, with the reason */
    f = open_memstream(&buf, &len);
    assert_int_equal(bj_validate_run_paths(&c, "/nonexistent/model.gguf", &p, f), 2);
    fclose(f);
    assert_non_null(strstr(buf, "cannot open"));
    free(buf);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    llama_backend_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llama_backend_free();
    return 0;
}

/* ---- a simulated Jetson ------------------------------------------------------------------- */

static void put_file(const char *root, const char *rel, const char *text, size_t len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char dir[700];
    bj_strlcpy(dir, path, sizeof dir);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(bj_mkdirs(dir), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, len, f);
    fclose(f);
}

/* An Orin Nano 8GB as the kernel shows it (fixture files under a scratch root: meminfo, the
 * device tree, the service's cgroup): MemFree 0.8 GiB, which is what CUDA's free-memory call
 * reports there, MemAvailable 5.5 GiB, and a cgroup limit of 5 GiB with 1 GiB in use. The GPU's
 * share is the host's: the budget's numbers come from MemAvailable and the cgroup's room (4 GiB),
 * never from the device's 0.8 GiB, and the report says why in words. */
static void test_tegra_board(void **state)
{
    (void)state;
    char root[] = "/tmp/bj-tegra-XXXXXX", err[256];
    assert_non_null(mkdtemp(root));
    const char meminfo[] = "MemTotal:        7620000 kB\nMemFree:          838861 kB\n"
                           "MemAvailable:    5767168 kB\nCached:          4500000 kB\n";
    put_file(root, "proc/meminfo", meminfo, sizeof meminfo - 1);
    put_file(root, "proc/device-tree/compatible", "nvidia,p3768-0003\0nvidia,p3767-0003\0nvidia,tegra234\0", 52);
    const char cg[] = "0::/system.slice/brainjar.service\n";
    put_file(root, "proc/self/cgroup", cg, sizeof cg - 1);
    put_file(root, "sys/fs/cgroup/cgroup.controllers", "memory\n", 7);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)G(5));
    put_file(root, "sys/fs/cgroup/system.slice/brainjar.service/memory.max", buf, (size_t)n);
    n = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)G(1));
    put_file(root, "sys/fs/cgroup/system.slice/brainjar.service/memory.current", buf, (size_t)n);
    put_file(root, "sys/fs/cgroup/system.slice/brainjar.service/memory.stat", "inactive_file 0\n", 16);

    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_true(sm.unified);
    assert_true(sm.available == G(4)); /* the cgroup's room, under MemAvailable's 5.5 GiB */
    struct bj_gpu_info g;
    bj_sysmem_read_gpu(&p, &sm, &g);
    assert_true(g.unified);
    assert_true(g.dev[0].free == G(4)); /* not MemFree, not NVML (which has no memory on Tegra) */

    /* a model on the GPU: 2.5 GiB of weights, a 0.5 GiB jar; the device itself reports MemFree */
    struct bj_budget_settings s;
    bj_budget_settings_default(&s);
    double jars[] = {0.5};
    struct bj_est_hive *h = hive("models/m.gguf", 2.5, 0.1, jars, 1);
    struct bj_est_model *m = &h->models[0];
    m->gpu_backend = true;
    m->gpu_layers = 28;
    m->output_on_gpu = true;
    m->gpu.weights_anon = G(2.5);
    m->gpu.kv = G(0.5);
    m->cpu.kv = 0;
    h->brains[0].kv_on_gpu = true;
    m->n_devices = m->n_devices_used = 1;
    bj_strlcpy(m->dev[0].name, "CUDA0", sizeof m->dev[0].name);
    bj_strlcpy(m->dev[0].desc, "Orin", sizeof m->dev[0].desc);
    m->dev[0].layers = 28;
    m->dev[0].mem.weights_anon = G(2.5);
    m->dev[0].mem.kv = G(0.5);
    m->dev[0].free = G(0.8);
    m->dev[0].total = G(7.3);
    m->dev[0].free_known = true;
    struct bj_budget_verdict v;
    assert_int_equal(bj_budget_validate(&s, &sm, &g, h, &v), 0);
    assert_true(v.pass);
    assert_true(v.need >= G(3));        /* GPU bytes counted as host bytes, once */
    assert_true(v.need < G(3.5));
    assert_true(v.available == G(4));
    for (int i = 0; i < v.n_devices; i++)
        assert_false(v.devices[i].checked); /* the device's 0.8 GiB is not a fact here */
    char *r = NULL;
    size_t rlen = 0;
    FILE *f = open_memstream(&r, &rlen);
    bj_budget_print_report(&s, &sm, &g, h, "matrix", &v, f);
    fclose(f);
    assert_non_null(strstr(r, "Unified memory: yes (Jetson): GPU allocations come out of available RAM"));
    assert_non_null(strstr(r, "cgroup v2:      limit 5.00 GB, usage 1.00 GB"));
    assert_null(strstr(r, "CUDA0: 7.30 GB total"));
    free(r);

    /* twice the weights: more than the cgroup's room, though less than MemAvailable */
    m->gpu.weights_anon = m->dev[0].mem.weights_anon = G(4);
    assert_int_equal(bj_budget_validate(&s, &sm, &g, h, &v), 1);
    assert_false(v.pass);
    assert_true(v.need > v.available);
    free(h);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_matrix_fails),
        cmocka_unit_test(test_seed_60gb_fails),
        cmocka_unit_test(test_passing_hive),
        cmocka_unit_test(test_brain_share_rule),
        cmocka_unit_test(test_reserve_setting),
        cmocka_unit_test(test_cgroup_limit),
        cmocka_unit_test(test_kv_q8_recommendation),
        cmocka_unit_test(test_gpu_checks),
        cmocka_unit_test(test_split_devices),
        cmocka_unit_test(test_manager_basics),
        cmocka_unit_test(test_manager_concurrency),
        cmocka_unit_test(test_preload_headroom),
        cmocka_unit_test(test_preload_warn),
        cmocka_unit_test(test_validate_config),
        cmocka_unit_test(test_tegra_board),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
