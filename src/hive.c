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
#include "bus.h"
#include "embedded.h"
#include "engine.h"
#include "jar.h"
#include "log.h"
#include "modelinfo.h"
#include "prompt.h"
#include "term.h"
#include "util.h"

struct model_slot {
    char path[PATH_MAX];
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
        ep.max_steps = c->max_steps;
        ep.bus = h->bus;
        ep.inject_brain = c->inject_brain;
        ep.inject_step = c->inject_step;
        ep.on_done = on_engine_done;
        ep.on_done_ud = h;
        h->models[m].engine = bj_engine_new(&ep, err, errlen);
        if (!h->models[m].engine)
            return -1;
    }
    return 0;
}

static int add_brains(struct hive *h)
{
    const struct bj_config *c = h->c;
    int started = 0;
    for (int i = 0; i < c->n_brains; i++) {
        struct bj_brain_params bp = {
            .cfg = &c->brains[i],
            .prompts = h->prompts,
            .vocab = bj_engine_vocab(h->models[h->model_of[i]].engine),
            .bus = h->bus,
            .hooks = {.ud = h, .on_thought = on_thought, .on_death = on_death, .on_resurrection = on_resurrection},
            .jar_tokens = h->jars[i].tokens,
            .pause_ms = c->pause_ms,
            .dump_dir = c->dump_context[0] ? c->dump_context : NULL,
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

static void teardown(struct hive *h)
{
    for (int m = 0; m < h->n_models; m++)
        if (h->models[m].engine)
            bj_engine_stop(h->models[m].engine);
    for (int m = 0; m < h->n_models; m++)
        bj_engine_free(h->models[m].engine);
    if (h->crash_fd >= 0)
        close(h->crash_fd);
    bj_prompts_free(h->prompts);
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
    if (open_data_dir(&h, err, sizeof err) || load_engines(&h, err, sizeof err))
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
    struct bj_term *term = bj_term_start(h.bus, c->events, focus, stdout);
    if (add_brains(&h) == 0) {
        snprintf(err, sizeof err, "no brain could be started");
        bj_bus_close(h.bus);
        bj_term_finish(term, h.bus);
        goto fail;
    }
    for (int m = 0; m < h.n_models; m++)
        if (bj_engine_start(h.models[m].engine, err, sizeof err)) {
            bj_bus_close(h.bus);
            teardown(&h);
            bj_term_finish(term, h.bus);
            bj_bus_free(h.bus);
            bj_error("%s", err);
            return 1;
        }
    bj_info("hive running: %d brain%s on %d model%s, %s mode; Ctrl-C stops", c->n_brains, c->n_brains == 1 ? "" : "s",
            h.n_models, h.n_models == 1 ? "" : "s", bj_mode_name(c->mode));

    wait_for_end(&h, &sigs);
    for (int m = 0; m < h.n_models; m++)
        bj_engine_stop(h.models[m].engine);
    summary(&h);
    teardown(&h);
    bj_bus_close(h.bus);
    bj_term_finish(term, h.bus);
    bj_bus_free(h.bus);
    return 0;

fail:
    bj_error("%s", err);
    teardown(&h);
    return status;
}
