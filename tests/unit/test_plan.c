/* Unit tests for plan: for every schedule x brain count (1, 2, 3, 8, 64) x core count (1, 2, 16)
 * x GPU or not, the plan is consistent (schedule, threads, contexts, cells, batch, load mode,
 * sampling), its llama.cpp parameters say the same, the estimate's plan (bj_estimate_model,
 * dry run off, on the tiny model) is exactly bj_plan_make's for the same inputs, and a context
 * made from bj_plan_context_params is the context the plan describes. The load mode chosen on
 * purpose: no mmap where weights are repacked, mmap where they are used in place. Several
 * devices (made-up ones: the plan only hands their handles on): which layers each takes in
 * every split mode, by free memory and by --tensor-split, what llama.cpp is given, and every
 * setting the devices contradict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ggml-cpu.h>
#include <llama.h>

#include "estimate.h"
#include "jar.h"
#include "log.h"
#include "mkmodel.h"
#include "plan.h"
#include "util.h"

static const enum bj_schedule k_scheds[] = {BJ_SCHED_AUTO, BJ_SCHED_BATCHED, BJ_SCHED_PARALLEL};
static const int k_brains[] = {1, 2, 3, 8, 64};
static const int k_cores[] = {1, 2, 16};

static const char *tiny(void)
{
    const char *p = getenv("BJ_TINY_MODEL");
    assert_non_null(p);
    return p;
}

/* Jars that differ (some equal, some not) so both KV layouts show up. */
static void jars_for(int n, long *jars, bool equal)
{
    for (int i = 0; i < n; i++)
        jars[i] = equal ? 300 : 100 + 97L * (i % 7);
}

/* Everything the plan promises, for any inputs. */
static void check_plan(const struct bj_plan_settings *s, const struct bj_plan_facts *f, const long *jars, int n,
                       const struct bj_plan *p)
{
    char what[160];
    snprintf(what, sizeof what, "schedule %s, %d brains, %d threads, gpu %d, ngl %d", bj_schedule_name(s->schedule),
             n, s->n_threads, f->gpu_offload, s->n_gpu_layers);
#define CHECK(cond)                                        \
    do {                                                   \
        if (!(cond))                                       \
            fail_msg("%s: %s fails", what, #cond);         \
    } while (0)
    CHECK(p->n_brains == n);
    for (int i = 0; i < n; i++)
        CHECK(p->jar[i] == jars[i]);
    CHECK(p->schedule == BJ_SCHED_BATCHED || p->schedule == BJ_SCHED_PARALLEL);
    /* schedule */
    if (n == 1)
        CHECK(p->schedule == BJ_SCHED_BATCHED);
    else if (s->schedule != BJ_SCHED_AUTO)
        CHECK(p->schedule == s->schedule);
    else if (p->gpu)
        CHECK(p->schedule == BJ_SCHED_BATCHED);
    else
        CHECK((p->schedule == BJ_SCHED_PARALLEL) == (p->n_threads >= 4 * n));
    /* threads: the engines split the process's threads, the contexts split the engine's */
    int total = s->n_threads > 0 ? s->n_threads : bj_plan_default_threads(f->online_cores, p->gpu);
    int engines = s->n_engines > 0 ? s->n_engines : 1;
    CHECK(p->n_threads >= 1);
    CHECK(p->n_threads == (total / engines > 0 ? total / engines : 1));
    CHECK(p->threads_per_ctx >= 1);
    if (p->schedule == BJ_SCHED_PARALLEL) {
        CHECK(p->n_contexts == n);
        CHECK(p->threads_per_ctx == (p->n_threads / n > 0 ? p->n_threads / n : 1));
        CHECK(p->threads_per_ctx * n <= p->n_threads || p->threads_per_ctx == 1);
    } else {
        CHECK(p->n_contexts == 1);
        CHECK(p->threads_per_ctx == (p->all_on_gpu && p->n_threads > 2 ? 2 : p->n_threads));
    }
    /* placement */
    CHECK(p->gpu == (f->gpu_offload && s->n_gpu_layers != 0));
    CHECK(p->all_on_gpu == (p->gpu && (s->n_gpu_layers < 0 || s->n_gpu_layers > f->n_layer)));
    CHECK(!p->all_on_gpu || p->gpu);
    CHECK(p->n_gpu_layers == s->n_gpu_layers);
    /* load mode: read where weights are repacked on the CPU, mmap where they are used in place */
    if (s->use_mmap >= 0)
        CHECK(p->use_mmap == (s->use_mmap > 0));
    else
        CHECK(p->use_mmap == (p->all_on_gpu || !s->repack || f->n_repacked == 0));
    CHECK(p->repack == s->repack);
    if (s->backend_sampling >= 0)
        CHECK(p->backend_sampling == (s->backend_sampling > 0));
    else
        CHECK(!p->backend_sampling); /* auto: the CPU sampler */
    /* KV cells: every jar fits its sequence */
    long sum = 0, max = 0;
    for (int i = 0; i < n; i++) {
        sum += jars[i];
        max = jars[i] > max ? jars[i] : max;
    }
    for (int c = 0; c < p->n_contexts; c++) {
        uint32_t cells = bj_plan_cells(p, c);
        CHECK(cells % 256 == 0 || p->schedule == BJ_SCHED_PARALLEL);
        if (p->schedule == BJ_SCHED_PARALLEL) {
            CHECK(cells == (uint32_t)jars[c]);
        } else if (p->unified) {
            CHECK(cells >= (uint32_t)sum);
        } else {
            CHECK(cells / (uint32_t)n >= (uint32_t)max);
            CHECK(cells % (uint32_t)n == 0);
        }
    }
    if (p->schedule == BJ_SCHED_BATCHED) {
        bool unified;
        CHECK(p->cells == bj_jar_kv_cells(jars, n, &unified));
        CHECK(p->unified == unified);
    } else {
        CHECK(!p->unified);
    }
    /* batch: a prefill chunk for every brain of a context fits one decode */
    uint32_t n_seq = p->schedule == BJ_SCHED_BATCHED ? (uint32_t)n : 1u;
    CHECK(p->prefill_chunk == (s->prefill_chunk > 0 ? s->prefill_chunk : 64));
    CHECK(p->n_batch >= n_seq * (uint32_t)p->prefill_chunk);
    CHECK(p->n_batch >= 512);
    CHECK(p->n_ubatch >= 1 && p->n_ubatch <= p->n_batch);
    CHECK(p->kv_type == s->kv_type);
    CHECK(p->flash_attn == s->flash_attn);
    /* llama.cpp's parameters say the same */
    for (int c = 0; c < p->n_contexts; c++) {
        struct llama_context_params cp = bj_plan_context_params(p, c);
        CHECK(cp.n_ctx == bj_plan_cells(p, c));
        CHECK(cp.n_seq_max == n_seq);
        CHECK(cp.kv_unified == (p->schedule == BJ_SCHED_BATCHED && p->unified));
        CHECK(cp.n_batch == p->n_batch);
        CHECK(cp.n_ubatch == p->n_ubatch);
        CHECK(cp.n_threads == p->threads_per_ctx);
        CHECK(cp.n_threads_batch == p->threads_per_ctx);
        CHECK(cp.type_k == s->kv_type && cp.type_v == s->kv_type);
        CHECK(cp.flash_attn_type == (s->flash_attn < 0   ? LLAMA_FLASH_ATTN_TYPE_AUTO
                                     : s->flash_attn > 0 ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                                         : LLAMA_FLASH_ATTN_TYPE_DISABLED));
    }
    struct llama_model_params mp = bj_plan_model_params(p);
    CHECK(mp.n_gpu_layers == s->n_gpu_layers);
    CHECK(mp.load_mode == (p->use_mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE));
    CHECK(mp.use_extra_bufts == s->repack);
    /* devices: the list, NULL-terminated, or none at all (llama.cpp's default, the CPU) */
    if (f->devices.n == 0) {
        CHECK(mp.devices == NULL);
        for (int il = 0; il <= f->n_layer; il++)
            CHECK(bj_plan_layer_device(p, il) == -1);
    } else {
        for (int i = 0; i < f->devices.n; i++)
            CHECK(mp.devices[i] == f->devices.d[i].dev);
        CHECK(mp.devices[f->devices.n] == NULL);
    }
    CHECK((int)mp.split_mode == p->split_mode);
    CHECK(mp.main_gpu == p->main_gpu);
#undef CHECK
}

static void test_every_combination(void **state)
{
    (void)state;
    long jars[64];
    char err[200];
    int n_plans = 0;
    struct bj_plan *p = malloc(sizeof *p);
    for (size_t si = 0; si < BJ_ARRAY_LEN(k_scheds); si++)
        for (size_t bi = 0; bi < BJ_ARRAY_LEN(k_brains); bi++)
            for (size_t ci = 0; ci < BJ_ARRAY_LEN(k_cores); ci++)
                for (int gpu = 0; gpu <= 1; gpu++)
                    for (int eq = 0; eq <= 1; eq++)
                        for (int engines = 1; engines <= 2; engines++) {
                            int n = k_brains[bi];
                            jars_for(n, jars, eq);
                            struct bj_plan_settings s = bj_plan_default_settings();
                            s.schedule = k_scheds[si];
                            s.n_threads = k_cores[ci];
                            s.n_engines = engines;
                            struct bj_plan_facts f = {.gpu_offload = gpu, .n_layer = 22, .n_repacked = 150,
                                                      .online_cores = k_cores[ci]};
                            assert_int_equal(bj_plan_make(&s, &f, jars, n, p, err, sizeof err), 0);
                            check_plan(&s, &f, jars, n, p);
                            /* n_threads 0: the machine's cores (facts) */
                            s.n_threads = 0;
                            assert_int_equal(bj_plan_make(&s, &f, jars, n, p, err, sizeof err), 0);
                            check_plan(&s, &f, jars, n, p);
                            n_plans += 2;
                        }
    assert_int_equal(n_plans, 3 * 5 * 3 * 2 * 2 * 2 * 2);
    free(p);
}

/* Settings beside the combinations: partial offload, overrides, chunks, kv types. */
static void test_settings(void **state)
{
    (void)state;
    long jars[8];
    jars_for(8, jars, false);
    char err[200];
    struct bj_plan *p = malloc(sizeof *p);
    const int ngls[] = {-1, 0, 1, 22, 23, 1000};
    const int mmaps[] = {-1, 0, 1};
    const int bsample[] = {-1, 0, 1};
    const int chunks[] = {0, 1, 64, 300, 8192};
    const int repacked[] = {0, 5};
    for (size_t a = 0; a < BJ_ARRAY_LEN(ngls); a++)
        for (size_t b = 0; b < BJ_ARRAY_LEN(mmaps); b++)
            for (size_t c = 0; c < BJ_ARRAY_LEN(bsample); c++)
                for (size_t d = 0; d < BJ_ARRAY_LEN(chunks); d++)
                    for (size_t e = 0; e < BJ_ARRAY_LEN(repacked); e++)
                        for (int rp = 0; rp <= 1; rp++)
                            for (int gpu = 0; gpu <= 1; gpu++) {
                                struct bj_plan_settings s = bj_plan_default_settings();
                                s.n_gpu_layers = ngls[a];
                                s.use_mmap = mmaps[b];
                                s.backend_sampling = bsample[c];
                                s.prefill_chunk = chunks[d];
                                s.repack = rp;
                                s.kv_type = d % 2 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
                                s.flash_attn = (int)(c % 3) - 1;
                                struct bj_plan_facts f = {.gpu_offload = gpu, .n_layer = 22,
                                                          .n_repacked = repacked[e], .online_cores = 16};
                                assert_int_equal(bj_plan_make(&s, &f, jars, 8, p, err, sizeof err), 0);
                                check_plan(&s, &f, jars, 8, p);
                            }
    /* Bad brain counts. */
    struct bj_plan_settings s = bj_plan_default_settings();
    struct bj_plan_facts f = bj_plan_facts_here(22, 0);
    assert_int_equal(bj_plan_make(&s, &f, jars, 0, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "brains"));
    assert_int_equal(bj_plan_make(&s, &f, jars, BJ_MAX_BRAINS + 1, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "brains"));
    free(p);
}

/* The default threads: every core but one on a CPU, every core with any layer on a GPU; --threads
 * always wins. With every layer on a GPU llama.cpp's context gets at most two of them, the engine
 * (its sampling) all. */
static void test_default_threads(void **state)
{
    (void)state;
    assert_int_equal(bj_plan_default_threads(16, false), 15);
    assert_int_equal(bj_plan_default_threads(16, true), 16);
    assert_int_equal(bj_plan_default_threads(1, false), 1);
    assert_int_equal(bj_plan_default_threads(0, false), 1);
    assert_int_equal(bj_plan_llama_threads(16, true), 2);
    assert_int_equal(bj_plan_llama_threads(1, true), 1);
    assert_int_equal(bj_plan_llama_threads(16, false), 16);
    long jar[1] = {512};
    char err[200];
    struct bj_plan p;
    struct bj_plan_settings s = bj_plan_default_settings();
    struct bj_plan_facts f = {.gpu_offload = true, .n_layer = 32, .online_cores = 16};
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.all_on_gpu);
    assert_int_equal(p.n_threads, 16);
    assert_int_equal(p.threads_per_ctx, 2);
    assert_int_equal(bj_plan_context_params(&p, 0).n_threads, 2);
    s.n_gpu_layers = 10;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, &p, err, sizeof err), 0);
    assert_int_equal(p.n_threads, 16);
    assert_int_equal(p.threads_per_ctx, 16);
    s = bj_plan_default_settings();
    s.n_threads = 8;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, &p, err, sizeof err), 0);
    assert_int_equal(p.n_threads, 8);
    assert_int_equal(p.threads_per_ctx, 2);
    f.gpu_offload = false;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, &p, err, sizeof err), 0);
    assert_int_equal(p.threads_per_ctx, 8);
}

/* The load mode chosen on purpose (docs/MEMORY.md). */
static void test_load_mode(void **state)
{
    (void)state;
    long jar[] = {1024};
    char err[200];
    struct bj_plan p;
    struct bj_plan_settings s = bj_plan_default_settings();
    struct bj_plan_facts cpu_repacked = {.gpu_offload = false, .n_layer = 22, .n_repacked = 155, .online_cores = 2};
    assert_int_equal(bj_plan_make(&s, &cpu_repacked, jar, 1, &p, err, sizeof err), 0);
    assert_false(p.use_mmap); /* repacked on the CPU: read the file, don't map it */
    struct bj_plan_facts cpu_in_place = cpu_repacked;
    cpu_in_place.n_repacked = 0;
    assert_int_equal(bj_plan_make(&s, &cpu_in_place, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.use_mmap);
    struct bj_plan_facts gpu = cpu_repacked;
    gpu.gpu_offload = true;
    assert_int_equal(bj_plan_make(&s, &gpu, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.all_on_gpu);
    assert_true(p.use_mmap); /* all on the GPU: mmap */
    s.n_gpu_layers = 10;     /* partly offloaded: the rest is repacked */
    assert_int_equal(bj_plan_make(&s, &gpu, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.gpu);
    assert_false(p.all_on_gpu);
    assert_false(p.use_mmap);
    s = bj_plan_default_settings();
    s.repack = false; /* nothing repacked when repacking is off */
    assert_int_equal(bj_plan_make(&s, &cpu_repacked, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.use_mmap);
    s = bj_plan_default_settings();
    s.use_mmap = 1; /* --mmap */
    assert_int_equal(bj_plan_make(&s, &cpu_repacked, jar, 1, &p, err, sizeof err), 0);
    assert_true(p.use_mmap);
    s.use_mmap = 0; /* --no-mmap */
    assert_int_equal(bj_plan_make(&s, &gpu, jar, 1, &p, err, sizeof err), 0);
    assert_false(p.use_mmap);
}

static bool plans_equal(const struct bj_plan *a, const struct bj_plan *b, char *why, size_t len)
{
#define SAME(f)                                                    \
    if (a->f != b->f) {                                            \
        snprintf(why, len, "%s differs", #f);                      \
        return false;                                              \
    }
    SAME(settings.schedule) SAME(settings.n_threads) SAME(settings.n_engines) SAME(settings.n_gpu_layers)
    SAME(settings.use_mmap) SAME(settings.repack) SAME(settings.kv_type) SAME(settings.flash_attn)
    SAME(settings.prefill_chunk) SAME(settings.backend_sampling)
    SAME(facts.gpu_offload) SAME(facts.n_layer) SAME(facts.n_repacked) SAME(facts.online_cores)
    SAME(facts.devices.n) SAME(settings.split.mode) SAME(settings.split.main_gpu) SAME(settings.split.n_tensor_split)
    SAME(split_mode) SAME(main_gpu) SAME(n_used)
    SAME(schedule) SAME(n_brains) SAME(n_threads) SAME(threads_per_ctx) SAME(n_gpu_layers) SAME(gpu)
    SAME(all_on_gpu) SAME(use_mmap) SAME(repack) SAME(backend_sampling) SAME(n_contexts) SAME(unified)
    SAME(cells) SAME(kv_type) SAME(flash_attn) SAME(prefill_chunk) SAME(n_batch) SAME(n_ubatch)
    for (int i = 0; i < a->n_brains; i++)
        SAME(jar[i])
#undef SAME
    return true;
}

/* What the estimate plans is what the engine is given: bj_plan_make of the same inputs. */
static void estimate_matches(const char *path, int expect_repacked)
{
    struct bj_est_model *m = malloc(sizeof *m);
    struct bj_plan *p = malloc(sizeof *p);
    long jars[64];
    char err[300], why[100];
    for (size_t si = 0; si < BJ_ARRAY_LEN(k_scheds); si++)
        for (size_t bi = 0; bi < BJ_ARRAY_LEN(k_brains); bi++)
            for (size_t ci = 0; ci < BJ_ARRAY_LEN(k_cores); ci++)
                for (int gpu = 0; gpu <= 1; gpu++) {
                    int n = k_brains[bi];
                    jars_for(n, jars, bi % 2);
                    struct bj_est_opts o;
                    bj_est_opts_default(&o);
                    o.dry_run = false;
                    o.schedule = k_scheds[si];
                    o.n_threads = k_cores[ci];
                    o.n_gpu_layers = gpu ? -1 : 0;
                    if (bj_estimate_model(path, &o, jars, n, m, err, sizeof err) != 0)
                        fail_msg("estimate: %s", err);
                    /* The same inputs, given to the plan directly. */
                    struct bj_plan_settings s = bj_plan_default_settings();
                    s.schedule = o.schedule;
                    s.n_threads = o.n_threads;
                    s.n_engines = o.n_engines;
                    s.n_gpu_layers = o.n_gpu_layers;
                    s.use_mmap = o.use_mmap;
                    s.repack = o.repack;
                    s.kv_type = o.kv_type;
                    s.flash_attn = o.flash_attn;
                    s.prefill_chunk = o.prefill_chunk;
                    s.backend_sampling = o.backend_sampling;
                    struct bj_plan_facts f = bj_plan_facts_here((int)m->mi.n_layer, m->n_repacked);
                    assert_int_equal(bj_plan_make(&s, &f, jars, n, p, err, sizeof err), 0);
                    if (!plans_equal(&m->plan, p, why, sizeof why))
                        fail_msg("%s: %s, %d brains, %d threads, ngl %d: the estimate's plan: %s", path,
                                 bj_schedule_name(o.schedule), n, o.n_threads, o.n_gpu_layers, why);
                    check_plan(&s, &f, jars, n, &m->plan);
                    /* The estimate's layout is the plan's. */
                    assert_int_equal(m->n_contexts, m->plan.n_contexts);
                    /* llama.cpp clamps a causal context's batch to the cells asked for */
                    uint32_t asked = bj_plan_cells(&m->plan, 0);
                    uint32_t n_batch = m->plan.n_batch < asked ? m->plan.n_batch : asked;
                    assert_int_equal(m->n_ctx, (asked + 255) / 256 * 256);
                    assert_int_equal(m->n_batch, n_batch);
                    assert_int_equal(m->n_ubatch, m->plan.n_ubatch < n_batch ? m->plan.n_ubatch : n_batch);
                    if (expect_repacked >= 0)
                        assert_int_equal(m->n_repacked > 0, expect_repacked);
                    /* The memory follows the load mode. */
                    if (!m->plan.use_mmap)
                        assert_true(m->cpu.weights_file == 0);
                    else if (!m->plan.all_on_gpu)
                        assert_true(m->cpu.weights_file > 0);
                }
    free(p);
    free(m);
}

static void test_estimate_plan(void **state)
{
    (void)state;
    /* Q8_0 at n_embd 64: used in place (mmap) on x86; repacked (q8_0_4x4/4x8, read) where the CPU
     * has NEON with dotprod, as the arm64 boards' Cortex-A76/A78AE (ggml-cpu/repack.cpp). */
    estimate_matches(tiny(), ggml_cpu_has_neon() && ggml_cpu_has_dotprod());
}

/* A Q4_0 tiny model: llama.cpp repacks its matrices on x86 and ARM, so the plan reads it. */
static void test_estimate_plan_repacked(void **state)
{
    (void)state;
    char path[400];
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(path, sizeof path, "%s/bj-plan-q4-%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    struct bj_mkmodel_params mp = bj_mkmodel_params_default();
    assert_int_equal(bj_mkmodel_preset("tiny", &mp), 0);
    mp.ftype = bj_mkmodel_ftype_parse("Q4_0");
    mp.out_path = path;
    mp.quiet = true;
    char err[300];
    if (bj_mkmodel_write(&mp, err, sizeof err) != 0)
        fail_msg("mkmodel: %s", err);
    estimate_matches(path, -1);
    struct bj_est_opts o;
    bj_est_opts_default(&o);
    o.dry_run = false;
    long jar[] = {512};
    struct bj_est_model *m = malloc(sizeof *m);
    assert_int_equal(bj_estimate_model(path, &o, jar, 1, m, err, sizeof err), 0);
    if (m->n_repacked > 0 && !m->plan.gpu) {
        assert_false(m->plan.use_mmap);
        assert_true(m->cpu.weights_file == 0);
    } else {
        print_message("no repacking on this CPU/build: the read-not-map case is covered by test_load_mode\n");
    }
    free(m);
    unlink(path);
}

/* A context made from bj_plan_context_params, as the engine makes it, is the plan's context:
 * its cells, sequences, batch sizes and threads. */
static void test_context_is_the_plan(void **state)
{
    (void)state;
    struct llama_model_params mdp = llama_model_default_params();
    mdp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(tiny(), mdp);
    assert_non_null(model);
    long jars[64];
    char err[200];
    struct bj_plan *p = malloc(sizeof *p);
    const int brains[] = {1, 3, 8};
    for (size_t si = 0; si < BJ_ARRAY_LEN(k_scheds); si++)
        for (size_t bi = 0; bi < BJ_ARRAY_LEN(brains); bi++)
            for (size_t ci = 0; ci < 2; ci++)
                for (int eq = 0; eq <= 1; eq++) {
                    int n = brains[bi];
                    jars_for(n, jars, eq);
                    struct bj_plan_settings s = bj_plan_default_settings();
                    s.schedule = k_scheds[si];
                    s.n_threads = k_cores[ci];
                    s.n_gpu_layers = 0;
                    struct bj_plan_facts f = bj_plan_facts_here((int)llama_model_n_layer(model), 0);
                    assert_int_equal(bj_plan_make(&s, &f, jars, n, p, err, sizeof err), 0);
                    for (int c = 0; c < p->n_contexts; c++) {
                        struct llama_context_params cp = bj_plan_context_params(p, c);
                        struct llama_context *ctx = llama_init_from_model(model, cp);
                        assert_non_null(ctx);
                        /* the cells asked for, padded to 256 as llama.cpp does */
                        uint32_t asked = bj_plan_cells(p, c);
                        assert_int_equal(llama_n_ctx(ctx), (asked + 255) / 256 * 256);
                        assert_int_equal(llama_n_seq_max(ctx), p->schedule == BJ_SCHED_BATCHED ? n : 1);
                        /* llama.cpp clamps a causal context's batch to the cells asked for:
                         * still room for every step, whose tokens never exceed the jars */
                        uint32_t n_batch = p->n_batch < asked ? p->n_batch : asked;
                        assert_int_equal(llama_n_batch(ctx), n_batch);
                        assert_int_equal(llama_n_ubatch(ctx), p->n_ubatch < n_batch ? p->n_ubatch : n_batch);
                        assert_int_equal(llama_n_threads(ctx), p->threads_per_ctx);
                        /* Every brain's jar fits the cells its sequence got (the engine's check). */
                        uint32_t per_seq = p->unified ? llama_n_ctx(ctx) : llama_n_ctx_seq(ctx);
                        if (p->schedule == BJ_SCHED_BATCHED)
                            for (int i = 0; i < n; i++)
                                assert_true(jars[i] <= (long)per_seq);
                        else
                            assert_true(jars[c] <= (long)per_seq);
                        llama_free(ctx);
                    }
                }
    free(p);
    llama_model_free(model);
}

/* Made-up devices: the plan only hands their handles to llama.cpp and reads what they reported. */
static struct bj_plan_facts fake_devices(int n, const double *free_gb, bool rows)
{
    struct bj_plan_facts f = {.gpu_offload = n > 0, .n_layer = 22, .n_repacked = 0, .online_cores = 16};
    f.devices.n = n;
    for (int i = 0; i < n; i++) {
        struct bj_device *d = &f.devices.d[i];
        d->dev = (ggml_backend_dev_t)(uintptr_t)(0x1000 + 16 * i);
        snprintf(d->name, sizeof d->name, "GPU%d", i);
        d->total = d->free = d->split_weight = (uint64_t)(free_gb[i] * 1073741824.0);
        d->free_known = true;
        d->splits_rows = rows;
    }
    return f;
}

/* Layers per device, and that each device's layers are one run (llama.cpp's layer split). */
static void count_layers(const struct bj_plan *p, int *per_dev, int *cpu)
{
    memset(per_dev, 0, sizeof(int) * BJ_MAX_DEVICES);
    *cpu = 0;
    int last = -2;
    for (int il = 0; il <= p->facts.n_layer; il++) {
        int d = bj_plan_layer_device(p, il);
        if (d < 0) {
            assert_int_equal(last, -2); /* the CPU's layers come first */
            (*cpu)++;
            continue;
        }
        assert_true(d >= last); /* devices in order, each a run */
        last = d;
        per_dev[d]++;
    }
}

static void test_devices(void **state)
{
    (void)state;
    long jar[] = {512};
    char err[300];
    struct bj_plan *p = malloc(sizeof *p);
    int per[BJ_MAX_DEVICES], cpu;
    const double gb[] = {8, 24, 8, 8};
    /* llama.cpp reads llama_max_devices() shares of a tensor split: the plan's array holds as many */
    assert_int_equal(llama_max_devices(), BJ_MAX_DEVICES);
    /* default: layer split in proportion to free memory (1:3 of 23 = 22 layers + output) */
    struct bj_plan_settings s = bj_plan_default_settings();
    struct bj_plan_facts f = fake_devices(2, gb, false);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &f, jar, 1, p);
    assert_int_equal(p->split_mode, LLAMA_SPLIT_MODE_LAYER);
    assert_int_equal(p->n_used, 2);
    count_layers(p, per, &cpu);
    assert_int_equal(cpu, 0);
    assert_int_equal(per[0], 6); /* layers 0-5: 6/23 < 0.25 <= 7/23 */
    assert_int_equal(per[1], 17);
    struct llama_model_params mp = bj_plan_model_params(p);
    assert_non_null(mp.tensor_split); /* the free memory it was planned with, so llama.cpp splits the same */
    assert_true(mp.tensor_split[1] == 3 * mp.tensor_split[0]);
    /* a tensor split given wins; a device with share 0 takes nothing */
    s.split.n_tensor_split = 3;
    s.split.tensor_split[0] = 1, s.split.tensor_split[1] = 0, s.split.tensor_split[2] = 1;
    f = fake_devices(3, gb, false);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &f, jar, 1, p);
    count_layers(p, per, &cpu);
    assert_int_equal(per[0], 12); /* 0..11: 11/23 < 0.5 <= 12/23 */
    assert_int_equal(per[1], 0);
    assert_int_equal(per[2], 11);
    mp = bj_plan_model_params(p);
    assert_true(mp.tensor_split[0] == 1 && mp.tensor_split[1] == 0 && mp.tensor_split[2] == 1);
    /* fewer shares than devices: the rest take nothing */
    s.split.n_tensor_split = 1;
    s.split.tensor_split[1] = s.split.tensor_split[2] = 0;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    count_layers(p, per, &cpu);
    assert_int_equal(per[0], 23);
    /* partial offload: the first layers stay on the CPU, the offloaded ones are split */
    s = bj_plan_default_settings();
    s.n_gpu_layers = 8; /* 7 layers + output */
    f = fake_devices(2, gb, false);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &f, jar, 1, p);
    count_layers(p, per, &cpu);
    assert_int_equal(cpu, 15);
    assert_int_equal(per[0] + per[1], 8);
    assert_int_equal(per[0], 2); /* 0/8, 1/8 < 0.25 */
    assert_int_equal(bj_plan_layer_device(p, 22), 1); /* the output layer on the last */
    /* split mode none: everything on the main GPU */
    s = bj_plan_default_settings();
    s.split.mode = BJ_SPLIT_NONE;
    s.split.main_gpu = 2;
    f = fake_devices(4, gb, false);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &f, jar, 1, p);
    assert_int_equal(p->n_used, 1);
    count_layers(p, per, &cpu);
    assert_int_equal(per[2], 23);
    mp = bj_plan_model_params(p);
    assert_int_equal(mp.split_mode, LLAMA_SPLIT_MODE_NONE);
    assert_int_equal(mp.main_gpu, 2);
    assert_null(mp.tensor_split);
    s.split.main_gpu = -1; /* none without a main GPU: the first device */
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    assert_int_equal(bj_plan_layer_device(p, 0), 0);
    /* row, on devices that split rows */
    s = bj_plan_default_settings();
    s.split.mode = BJ_SPLIT_ROW;
    f = fake_devices(2, gb, true);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &f, jar, 1, p);
    assert_null(bj_plan_model_params(p).tensor_split); /* llama.cpp's own default for rows */
    /* ---- what the devices contradict ---- */
    f = fake_devices(2, gb, false);
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), -1); /* row without row splitting */
    assert_non_null(strstr(err, "--split-mode row: device GPU0"));
    s = bj_plan_default_settings();
    s.split.mode = BJ_SPLIT_NONE;
    s.split.main_gpu = 2;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "--main-gpu 2: there are 2 devices"));
    s = bj_plan_default_settings();
    s.split.n_tensor_split = 3;
    s.split.tensor_split[0] = 1;
    assert_int_equal(bj_plan_make(&s, &f, jar, 1, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "--tensor-split gives 3 shares for 2 devices"));
    struct bj_plan_facts none = fake_devices(0, gb, false);
    s = bj_plan_default_settings();
    s.split.mode = BJ_SPLIT_LAYER;
    assert_int_equal(bj_plan_make(&s, &none, jar, 1, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "need a GPU or an rpc-server"));
    s = bj_plan_default_settings(); /* nothing asked, nothing there: the CPU, no error */
    assert_int_equal(bj_plan_make(&s, &none, jar, 1, p, err, sizeof err), 0);
    check_plan(&s, &none, jar, 1, p);
    /* a re-plan hands the plan its own settings and facts (the engine does, for fewer brains) */
    s.split.n_tensor_split = 2;
    s.split.tensor_split[0] = 1, s.split.tensor_split[1] = 3;
    f = fake_devices(2, gb, false);
    long jars2[] = {512, 256};
    assert_int_equal(bj_plan_make(&s, &f, jars2, 2, p, err, sizeof err), 0);
    assert_int_equal(bj_plan_make(&p->settings, &p->facts, jar, 1, p, err, sizeof err), 0);
    assert_int_equal(p->n_brains, 1);
    assert_int_equal(p->facts.devices.n, 2);
    assert_int_equal(p->settings.split.n_tensor_split, 2);
    count_layers(p, per, &cpu);
    assert_int_equal(per[0], 6);
    free(p);
}

static int setup(void **state)
{
    (void)state;
    bj_log_attach_llama();
    llama_backend_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llama_backend_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_combination),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_default_threads),
        cmocka_unit_test(test_load_mode),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_estimate_plan),
        cmocka_unit_test(test_estimate_plan_repacked),
        cmocka_unit_test(test_context_is_the_plan),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
