/* hive: see hive.h. */
#include "hive.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "brain.h"
#include "budget.h"
#include "budget_cli.h"
#include "bus.h"
#include "embedded.h"
#include "engine.h"
#include "estimate.h"
#include "jar.h"
#include "log.h"
#include "modelinfo.h"
#include "prompt.h"
#include "sysmem.h"
#include "term.h"
#include "util.h"

struct model_slot {
    char path[PATH_MAX];
    const char *chat_template; /* the model's own, or "chatml" when it has none */
    struct bj_modelinfo info;
    struct bj_engine *engine;
};

struct hive {
    const struct bj_config *c;
    struct bj_bus *bus;
    struct bj_prompts *prompts;
    struct model_slot models[BJ_MAX_BRAINS];
    int n_models;
    int model_of[BJ_MAX_BRAINS];       /* brain index -> model slot */
    struct bj_jar jars[BJ_MAX_BRAINS];
    struct bj_brain *brains[BJ_MAX_BRAINS]; /* NULL: not started */
    int crash_fd;
    atomic_int engines_done;
    /* memory budget: the estimate (made once), the facts it was checked against, the ledger */
    struct bj_est_hive *est;
    struct bj_sysmem_paths mem_paths;
    struct bj_sysmem sm;
    struct bj_gpu_info gpu;
    struct bj_budget_settings budget_settings;
    struct bj_budget_manager *budget;
    struct bj_term *term;
};

int bj_hive_model_path(const struct bj_config *c, const struct bj_brain_cfg *b, char *path, size_t len)
{
    const char *m = bj_config_brain_model(c, b);
    if (m && *m) {
        bj_strlcpy(path, m, len);
        return 0;
    }
    return bj_embedded_model_path(path, len);
}

static const char *model_label(const char *path)
{
    return strncmp(path, "/proc/", 6) == 0 ? "(embedded tiny model)" : path;
}

/* ---- routing: engine threads call these ---------------------------------------------------- */

static bool watches(const struct bj_brain_cfg *w, const char *id)
{
    if (strcmp(w->id, id) == 0)
        return false;
    if (w->watches_all)
        return true;
    for (int i = 0; i < w->n_watches; i++)
        if (strcmp(w->watches[i], id) == 0)
            return true;
    return false;
}

static void route(struct hive *h, const struct bj_brain *from, bool lifecycle, const char *text)
{
    if (!text)
        return;
    for (int i = 0; i < h->c->n_brains; i++) {
        const struct bj_brain_cfg *w = &h->c->brains[i];
        if (h->brains[i] && watches(w, bj_brain_id(from)) && (!lifecycle || w->sees_lifecycle))
            bj_brain_deliver(h->brains[i], bj_brain_id(from), text);
    }
}

static void on_thought(void *ud, const struct bj_brain *b, const char *text)
{
    if (!*text)
        return;
    char *msg = bj_prompt_observed_thought(bj_brain_id(b), text);
    route(ud, b, false, msg);
    free(msg);
}

/* One line per death, the original's format plus the brain: written and synced before the
 * brain goes on, so a kill -9 of the daemon cannot lose it. */
static void crash_log(struct hive *h, const struct bj_brain *b, const char *cause, const char *detail)
{
    if (h->crash_fd < 0)
        return;
    char ts[40], line[512];
    bj_iso_time(ts, sizeof ts);
    int n = snprintf(line, sizeof line, "%s - CRASH #%u: %s %s (%s)\n", ts, bj_brain_deaths(b), bj_brain_id(b),
                     cause, detail ? detail : "");
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    if (write(h->crash_fd, line, (size_t)n) != n || fdatasync(h->crash_fd) != 0)
        bj_warn("crash_reports.log: write failed: %s", strerror(errno));
}

static void on_death(void *ud, const struct bj_brain *b, const char *cause, const char *detail)
{
    struct hive *h = ud;
    crash_log(h, b, cause, detail);
    char *msg = bj_prompt_observed_death(bj_brain_id(b), cause, bj_brain_deaths(b));
    route(h, b, true, msg);
    free(msg);
}

static void on_resurrection(void *ud, const struct bj_brain *b)
{
    char *msg = bj_prompt_observed_resurrection(bj_brain_id(b), bj_brain_deaths(b));
    route(ud, b, true, msg);
    free(msg);
}

static void on_engine_done(void *ud)
{
    struct hive *h = ud;
    atomic_fetch_add(&h->engines_done, 1);
    kill(getpid(), SIGUSR1); /* wakes the main thread's sigtimedwait */
}

/* ---- set-up, all before anything starts -------------------------------------------------- */

static int find_or_add_model(struct hive *h, const char *path, char *err, size_t errlen)
{
    for (int m = 0; m < h->n_models; m++)
        if (strcmp(h->models[m].path, path) == 0)
            return m;
    struct model_slot *s = &h->models[h->n_models];
    bj_strlcpy(s->path, path, sizeof s->path);
    if (bj_modelinfo_read(path, &s->info, err, errlen))
        return -1;
    return h->n_models++;
}

static int resolve(struct hive *h, char *err, size_t errlen)
{
    const struct bj_config *c = h->c;
    for (int i = 0; i < c->n_brains; i++) {
        const struct bj_brain_cfg *b = &c->brains[i];
        char path[PATH_MAX];
        if (bj_hive_model_path(c, b, path, sizeof path)) {
            snprintf(err, errlen, "brain %s has no model: give --model FILE (this binary has no embedded model)", b->id);
            return -1;
        }
        int m = find_or_add_model(h, path, err, errlen);
        if (m < 0)
            return -1;
        h->model_of[i] = m;
        if (bj_jar_resolve(b, &h->models[m].info, c->kv_type, &h->jars[i], err, errlen))
            return -1;
        if (h->jars[i].clamped)
            bj_info("brain %s: jar of %ld tokens clamped to the model's training context, %ld tokens", b->id,
                    h->jars[i].requested_tokens, h->jars[i].tokens);
        if (!bj_prompts_has(h->prompts, b->role)) {
            snprintf(err, errlen, "brain %s: no prompt file for role '%s' (add %s.txt to --prompts DIR)", b->id,
                     b->role, b->role);
            return -1;
        }
    }
    return 0;
}

/* The first life's system prompt must fit in the jar, with room to think. Checked with the
 * model's own tokenizer once it is loaded, before any engine starts. */
static int check_prompt_fits(struct hive *h, int i, char *err, size_t errlen)
{
    const struct bj_brain_cfg *b = &h->c->brains[i];
    const struct llama_vocab *v = bj_engine_vocab(h->models[h->model_of[i]].engine);
    char *sys = bj_prompt_system(h->prompts, b->role, b->id, 999999, h->jars[i].tokens);
    if (!sys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int n = -llama_tokenize(v, sys, (int)strlen(sys), NULL, 0, true, false);
    free(sys);
    int need = n + 16;
    if (need > h->jars[i].tokens) {
        snprintf(err, errlen, "brain %s: its jar (%ld tokens) is too small for its system prompt (%d tokens) and a "
                 "first thought; give it at least %d tokens", b->id, h->jars[i].tokens, n, need + 64);
        return -1;
    }
    return 0;
}

/* Layer 1: the whole hive against this machine's memory, before anything is loaded. The report is
 * printed when the check fails (debug log otherwise); --force starts anyway, with a warning.
 * Returns 0 to go on, -1 with err when refused or the hive cannot be estimated. */
static int check_budget(struct hive *h, char *err, size_t errlen)
{
    const struct bj_config *c = h->c;
    char def[PATH_MAX] = "";
    bj_embedded_model_path(def, sizeof def);
    h->est = bj_estimate_spec(c, def, err, errlen);
    if (!h->est)
        return -1;
    bj_sysmem_paths_default(&h->mem_paths);
    char *report = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&report, &len);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int verdict = bj_validate_hive(c, h->est, &h->mem_paths, out, &h->sm, &h->gpu);
    fclose(out);
    int rc = 0;
    if (verdict == 0) {
        bj_debug("memory budget:\n%s", report);
    } else {
        fputs(report, stderr);
        if (c->force) {
            bj_warn("--force: starting although the memory budget check failed");
        } else {
            snprintf(err, errlen, "the memory budget check failed (report above); adjust the hive or use --force");
            rc = -1;
        }
    }
    free(report);
    if (rc == 0) {
        bj_budget_settings_from_spec(&h->budget_settings, c);
        h->budget = bj_budget_manager_new(&h->budget_settings, &h->sm, &h->gpu);
        if (!h->budget) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    return rc;
}

static const struct bj_est_model *est_model(const struct hive *h, int m)
{
    for (int i = 0; i < h->est->n_models; i++)
        if (strcmp(h->est->models[i].path, h->models[m].path) == 0)
            return &h->est->models[i];
    return NULL;
}

/* Layers 3 and 2 for a model: right before it loads, available memory must cover it (with its
 * brains) plus headroom; then its shared part is charged to the ledger. */
static int admit_model(struct hive *h, int m, char *err, size_t errlen)
{
    const struct bj_est_model *em = est_model(h, m);
    if (!em)
        return 0;
    struct bj_sysmem now;
    struct bj_gpu_info gpu = h->gpu;
    char msg[512];
    if (bj_sysmem_read(&h->mem_paths, &now, msg, sizeof msg) != 0) {
        bj_warn("pre-load check skipped: %s", msg);
    } else {
        int rc = bj_budget_preload_check(&h->budget_settings, &now, &gpu, bj_est_mem_total(&em->cpu),
                                         bj_est_mem_total(&em->gpu), msg, sizeof msg);
        if (rc < 0 && !h->c->force) {
            snprintf(err, errlen, "model %s: %s", model_label(em->path), msg);
            return -1;
        }
        if (rc != 0)
            bj_warn("model %s: %s", model_label(em->path), msg);
    }
    char id[64];
    snprintf(id, sizeof id, "model:%d", m);
    if (bj_budget_manager_alloc(h->budget, id, BJ_BUDGET_MODEL, bj_est_model_shared_cpu(em),
                                bj_est_model_shared_gpu(em), msg, sizeof msg) != 0) {
        if (!h->c->force) {
            snprintf(err, errlen, "model %s: %s", model_label(em->path), msg);
            return -1;
        }
        bj_warn("model %s: %s", model_label(em->path), msg);
    }
    return 0;
}

/* Layer 2 for a brain: its jar is charged before it starts; a denied brain does not start, the
 * others do. Returns true when admitted. */
static bool admit_brain(struct hive *h, int i)
{
    const struct bj_est_brain *eb = NULL;
    for (int k = 0; k < h->est->n_brains; k++)
        if (strcmp(h->est->brains[k].id, h->c->brains[i].id) == 0)
            eb = &h->est->brains[k];
    if (!eb)
        return true;
    char msg[512];
    uint64_t kv = eb->jar.kv_bytes;
    if (bj_budget_manager_alloc(h->budget, eb->id, BJ_BUDGET_BRAIN, eb->kv_on_gpu ? 0 : kv, eb->kv_on_gpu ? kv : 0,
                                msg, sizeof msg) == 0)
        return true;
    if (h->c->force) {
        bj_warn("brain %s: %s (--force: starting it anyway)", eb->id, msg);
        return true;
    }
    bj_error("brain %s not started: %s", eb->id, msg);
    struct bj_event ev = {.type = BJ_EV_ERROR};
    bj_strlcpy(ev.brain, eb->id, sizeof ev.brain);
    char text[600];
    snprintf(text, sizeof text, "brain %s not started: %s", eb->id, msg);
    ev.text = text;
    bj_bus_publish(h->bus, &ev);
    return false;
}

static int open_data_dir(struct hive *h, char *err, size_t errlen)
{
    int rc = bj_mkdirs(h->c->data_dir);
    if (rc) {
        snprintf(err, errlen, "data directory %s: %s", h->c->data_dir, strerror(-rc));
        return -1;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/crash_reports.log", h->c->data_dir);
    h->crash_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (h->crash_fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int load_engines(struct hive *h, char *err, size_t errlen)
{
    const struct bj_config *c = h->c;
    int threads = c->n_threads > 0 ? c->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int m = 0; m < h->n_models; m++) {
        struct bj_engine_params ep;
        bj_engine_params_default(&ep);
        ep.model_path = h->models[m].path;
        ep.model_label = model_label(h->models[m].path);
        ep.schedule = c->schedule;
        /* Engines run at once: they split the cores rather than oversubscribe them. */
        ep.n_threads = threads / h->n_models > 0 ? threads / h->n_models : 1;
        ep.n_gpu_layers = c->n_gpu_layers;
        ep.kv_type = c->kv_type;
        ep.flash_attn = c->flash_attn;
        ep.prefill_chunk = c->prefill_chunk;
        ep.use_mmap = c->use_mmap;
        ep.backend_sampling = c->backend_sampling;
        ep.max_steps = c->max_steps;
        ep.bus = h->bus;
        ep.inject_brain = c->inject_brain;
        ep.inject_step = c->inject_step;
        ep.on_done = on_engine_done;
        ep.on_done_ud = h;
        if (admit_model(h, m, err, errlen))
            return -1;
        h->models[m].engine = bj_engine_new(&ep, err, errlen);
        if (!h->models[m].engine)
            return -1;
        const char *tmpl = llama_model_chat_template(bj_engine_model(h->models[m].engine), NULL);
        h->models[m].chat_template = tmpl ? tmpl : "chatml";
    }
    return 0;
}

static int add_brains(struct hive *h)
{
    const struct bj_config *c = h->c;
    int started = 0;
    for (int i = 0; i < c->n_brains; i++) {
        if (!admit_brain(h, i))
            continue;
        struct bj_brain_params bp = {
            .cfg = &c->brains[i],
            .prompts = h->prompts,
            .vocab = bj_engine_vocab(h->models[h->model_of[i]].engine),
            .bus = h->bus,
            .hooks = {.ud = h, .on_thought = on_thought, .on_death = on_death, .on_resurrection = on_resurrection},
            .jar_tokens = h->jars[i].tokens,
            .pause_ms = c->pause_ms,
            .dump_dir = c->dump_context[0] ? c->dump_context : NULL,
            .chat_template = c->chat_template ? h->models[h->model_of[i]].chat_template : NULL,
        };
        h->brains[i] = bj_engine_add_brain(h->models[h->model_of[i]].engine, &bp);
        if (h->brains[i])
            started++;
    }
    return started;
}

/* ---- running ------------------------------------------------------------------------------ */

static void wait_for_end(struct hive *h, const sigset_t *sigs)
{
    int64_t t0 = bj_now_us();
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            bj_info("signal %d: stopping", sig);
            return;
        }
        if (atomic_load(&h->engines_done) >= h->n_models)
            return;
        if (h->c->duration_s > 0 && (double)(bj_now_us() - t0) / 1e6 >= h->c->duration_s)
            return;
    }
}

/* One line for people and benchmarks: aggregate generation speed and peak memory. */
static void summary(const struct hive *h)
{
    struct bj_engine_stats all = {0};
    for (int m = 0; m < h->n_models; m++) {
        struct bj_engine_stats st;
        bj_engine_stats(h->models[m].engine, &st);
        all.generated += st.generated;
        all.tg_tokens += st.tg_tokens;
        all.busy_s = st.busy_s > all.busy_s ? st.busy_s : all.busy_s;
        all.tg_s = st.tg_s > all.tg_s ? st.tg_s : all.tg_s;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t jars = 0;
    for (int i = 0; i < h->c->n_brains; i++)
        jars += h->jars[i].kv_bytes;
    bj_info("summary: %ld tokens generated in %.2f s = %.2f tok/s aggregate (generation-only steps: %.2f tok/s); "
            "peak RSS %.1f MB; jars %.1f MB", all.generated, all.busy_s,
            all.busy_s > 0 ? (double)all.generated / all.busy_s : 0.0,
            all.tg_s > 0 ? (double)all.tg_tokens / all.tg_s : 0.0, (double)ru.ru_maxrss / 1024.0, (double)jars / 1e6);
}

/* Stops and frees everything that was started, in the order that loses nothing: engines (the
 * publishers) first, then the bus is closed and the terminal prints what is still queued. */
static void teardown(struct hive *h)
{
    for (int m = 0; m < h->n_models; m++)
        if (h->models[m].engine)
            bj_engine_stop(h->models[m].engine);
    for (int m = 0; m < h->n_models; m++)
        bj_engine_free(h->models[m].engine);
    if (h->bus) {
        bj_bus_close(h->bus);
        bj_term_finish(h->term, h->bus);
        bj_bus_free(h->bus);
    }
    if (h->crash_fd >= 0)
        close(h->crash_fd);
    bj_prompts_free(h->prompts);
    if (h->budget) {
        for (int i = 0; i < h->c->n_brains; i++)
            bj_budget_manager_release(h->budget, h->c->brains[i].id);
        bj_budget_manager_free(h->budget);
    }
    bj_est_hive_free(h->est);
}

int bj_hive_run(const struct bj_config *c)
{
    struct hive h = {.c = c, .crash_fd = -1};
    char err[1024];
    int status = 2;

    /* Signals are taken synchronously by the main thread; every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    h.prompts = bj_prompts_load(c->prompts_dir, err, sizeof err);
    if (!h.prompts || resolve(&h, err, sizeof err))
        goto fail;

    status = 1;
    if (check_budget(&h, err, sizeof err) || open_data_dir(&h, err, sizeof err) || load_engines(&h, err, sizeof err))
        goto fail;
    status = 2;
    for (int i = 0; i < c->n_brains; i++)
        if (check_prompt_fits(&h, i, err, sizeof err))
            goto fail;

    status = 1;
    h.bus = bj_bus_new();
    if (!h.bus) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    const char *focus = c->focus[0] ? c->focus : c->brains[0].id;
    h.term = bj_term_start(h.bus, c->events, focus, stdout);
    if (add_brains(&h) == 0) {
        snprintf(err, sizeof err, "no brain could be started");
        goto fail;
    }
    for (int m = 0; m < h.n_models; m++) {
        if (bj_engine_n_brains(h.models[m].engine) == 0)
            atomic_fetch_add(&h.engines_done, 1); /* every brain of this model was denied */
        else if (bj_engine_start(h.models[m].engine, err, sizeof err))
            goto fail;
    }
    bj_info("hive running: %d brain%s on %d model%s, %s mode; Ctrl-C stops", c->n_brains, c->n_brains == 1 ? "" : "s",
            h.n_models, h.n_models == 1 ? "" : "s", bj_mode_name(c->mode));

    wait_for_end(&h, &sigs);
    for (int m = 0; m < h.n_models; m++)
        bj_engine_stop(h.models[m].engine);
    summary(&h);
    if (bj_log_get_level() <= BJ_LOG_INFO)
        bj_budget_manager_report(h.budget, stderr);
    teardown(&h);
    return 0;

fail:
    bj_error("%s", err);
    teardown(&h);
    return status;
}
