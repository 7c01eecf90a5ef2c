/* hive: see hive.h.
 *
 * Set-up happens in bj_hive_new, entirely before anything runs: resolve each brain's model and
 * jar, estimate and check the memory budget (layer 1), open the journal, load each model once
 * (layer 3 right before, layer 2 charges), check every first prompt fits, add the admitted
 * brains to their engines. Afterwards the hive only reacts: engine threads hand it each step's
 * events (on_step_events: journal, routing to watchers), a bus tap keeps the view that answers
 * snapshots, and operator calls are turned into engine requests (hive_ops.c). */
#include "hive.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "budget.h"
#include "engine.h"
#include "estimate.h"
#include "jar.h"
#include "journal.h"
#include "log.h"
#include "modelinfo.h"
#include "prompt.h"
#include "sysmem.h"
#include "util.h"

#include "hive_int.h"


struct bj_hive_params bj_hive_params_default(void)
{
    return (struct bj_hive_params){0};
}

/* The embedded voice is handed over as a memfd path under /proc (app/embedded.c). */
static bool is_embedded(const char *path) { return strncmp(path, "/proc/", 6) == 0; }

static const char *model_label(const char *path) { return is_embedded(path) ? "(embedded model)" : path; }

/* Brain i's pace: as set, or by default the voice's on the embedded model and none elsewhere. */
static double brain_pace(const struct bj_hive *h, int i)
{
    if (h->s->pace != BJ_PACE_DEFAULT)
        return h->s->pace;
    return is_embedded(h->models[h->model_of[i]].path) ? BJ_VOICE_PACE : 0.0;
}

static int model_path(const struct bj_hive *h, const struct bj_brain_cfg *b, char *path, size_t len)
{
    const char *m = bj_spec_brain_model(h->s, b);
    if (!m || !*m)
        m = h->p.default_model;
    if (!m || !*m)
        return -1;
    bj_strlcpy(path, m, len);
    return 0;
}

/* ---- engine threads: a step's events, before they are published ------------------------- */

static void route(struct bj_hive *h, const char *from, bool lifecycle, const char *text)
{
    if (!text)
        return;
    char readers[256] = "";
    size_t len = 0;
    for (int i = 0; i < h->s->n_brains; i++) {
        const struct bj_brain_cfg *w = &h->s->brains[i];
        if (h->engine_ix[i] >= 0 && bj_spec_watches(w, from) && (!lifecycle || w->sees_lifecycle)) {
            bj_engine_deliver(h->models[h->model_of[i]].engine, h->engine_ix[i], from, text);
            if (len < sizeof readers)
                len += (size_t)snprintf(readers + len, sizeof readers - len, "%s%s", len ? ", " : "",
                                        bj_spec_brain_name(w));
        }
    }
    /* A lab brain that knows it is watched hears each time its thought was read (docs/LAB.md). */
    int me = lifecycle || !readers[0] || !h->s->lab.on ? -1 : bj_spec_find_brain(h->s, from);
    if (me >= 0 && h->s->brains[me].knows_watched == 1 && h->engine_ix[me] >= 0) {
        char *note = bj_prompt_watched_receipt(readers);
        if (note)
            bj_engine_deliver(h->models[h->model_of[me]].engine, h->engine_ix[me], "lab", note);
        free(note);
    }
}

static void route_event(struct bj_hive *h, const struct bj_event *ev)
{
    char *msg = NULL;
    bool lifecycle = true;
    int ix = h->s->lab.on ? bj_spec_find_brain(h->s, ev->brain) : -1; /* watchers know a copy by its name */
    const char *name = ix >= 0 ? bj_spec_brain_name(&h->s->brains[ix]) : ev->brain;
    if (ev->type == BJ_EV_THOUGHT && ev->complete && ev->text && *ev->text) {
        msg = bj_prompt_observed_thought(name, ev->text);
        lifecycle = false;
    } else if (ev->type == BJ_EV_DEATH) {
        msg = bj_prompt_observed_death(name, ev->cause, ev->crash_count);
    } else if (ev->type == BJ_EV_RESURRECTION) {
        msg = bj_prompt_observed_resurrection(name, ev->crash_count);
    } else {
        return;
    }
    route(h, ev->brain, lifecycle, msg);
    free(msg);
}

/* Deaths first: written and synced once for the whole step (group commit), so that the step's
 * death events are durable before anyone can see them; then the watchers are told. */
static void on_step_events(void *ud, const struct bj_event *evs, size_t n)
{
    struct bj_hive *h = ud;
    size_t deaths = 0;
    for (size_t i = 0; i < n; i++)
        if (evs[i].type == BJ_EV_DEATH) {
            bj_journal_death(h->journal, &evs[i]);
            deaths++;
        }
    if (deaths)
        bj_journal_commit(h->journal);
    for (size_t i = 0; i < n; i++)
        route_event(h, &evs[i]);
}

static void on_engine_done(void *ud)
{
    struct bj_hive *h = ud;
    atomic_fetch_add(&h->engines_done, 1);
    uint64_t one = 1;
    if (write(h->done_fd, &one, sizeof one) != sizeof one)
        bj_debug("hive: cannot signal an engine's end");
}

/* ---- the view (a bus tap: publisher threads, under view_lock) ---------------------------- */

static int view_index(const struct bj_hive *h, const char *id)
{
    return bj_spec_find_brain(h->s, id);
}

/* Appends text, keeping the tail when it would overflow (a thought in progress). */
static void view_append(char *dst, const char *text)
{
    size_t a = strlen(dst), b = strlen(text);
    if (b >= BJ_VIEW_TEXT - 1) {
        text += b - (BJ_VIEW_TEXT / 2);
        b = strlen(text);
        a = 0;
    } else if (a + b >= BJ_VIEW_TEXT) {
        size_t keep = BJ_VIEW_TEXT / 2;
        memmove(dst, dst + a - keep, keep);
        a = keep;
    }
    memcpy(dst + a, text, b + 1);
    bj_utf8_repair_start(dst);
}

static void view_tap(void *ud, const struct bj_event *ev)
{
    struct bj_hive *h = ud;
    if (ev->node[0])
        return; /* remote brains are the peer links' to show */
    int i = view_index(h, ev->brain);
    if (i < 0)
        return;
    pthread_mutex_lock(&h->view_lock);
    struct bj_brain_view *v = &h->views[i];
    v->updated_us = ev->time_us;
    switch (ev->type) {
    case BJ_EV_TOKEN:
        if (v->thought != ev->thought)
            v->current[0] = '\0';
        v->thought = ev->thought;
        if (ev->text)
            view_append(v->current, ev->text);
        v->tokens++;
        h->tokens++;
        break;
    case BJ_EV_THOUGHT:
        bj_strlcpy(v->last, ev->text ? ev->text : "", sizeof v->last);
        v->current[0] = '\0';
        break;
    case BJ_EV_DEATH:
        v->deaths = ev->crash_count;
        v->deaths_by_cause[bj_death_cause_of(ev->cause)]++;
        v->last_death_us = ev->time_us;
        v->current[0] = '\0';
        bj_strlcpy(v->state, "dead", sizeof v->state);
        h->deaths++;
        break;
    case BJ_EV_RESURRECTION:
        v->deaths = ev->crash_count;
        v->life = ev->crash_count + 1;
        v->thought = 0;
        break;
    case BJ_EV_STATUS:
        bj_strlcpy(v->state, ev->state, sizeof v->state);
        v->jar_used = ev->jar_used;
        v->jar_tokens = ev->jar_tokens;
        v->tok_s = ev->tok_s;
        v->deaths = ev->crash_count;
        v->life = ev->crash_count + 1;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&h->view_lock);
}

static void view_init(struct bj_hive *h)
{
    for (int i = 0; i < h->s->n_brains; i++) {
        const struct bj_brain_cfg *b = &h->s->brains[i];
        struct bj_brain_view *v = &h->views[i];
        bj_strlcpy(v->id, b->id, sizeof v->id);
        bj_strlcpy(v->role, b->role, sizeof v->role);
        const char *path = h->models[h->model_of[i]].path;
        const char *base = strrchr(path, '/');
        bj_strlcpy(v->model, is_embedded(path) ? "embedded" : base ? base + 1 : path, sizeof v->model);
        v->started = h->engine_ix[i] >= 0;
        bj_strlcpy(v->state, v->started ? "loading" : "not started", sizeof v->state);
        v->deaths = h->initial_deaths[i];
        v->life = v->deaths + 1;
        v->jar_tokens = (int32_t)h->jars[i].tokens;
        memcpy(v->watches, b->watches, sizeof v->watches);
        v->n_watches = b->n_watches;
        v->watches_all = b->watches_all;
        v->sees_lifecycle = b->sees_lifecycle;
    }
}

/* ---- set-up, all before anything starts -------------------------------------------------- */

static int find_or_add_model(struct bj_hive *h, const char *path, char *err, size_t errlen)
{
    for (int m = 0; m < h->n_models; m++)
        if (strcmp(h->models[m].path, path) == 0)
            return m;
    struct model_slot *s = &h->models[h->n_models];
    bj_strlcpy(s->path, path, sizeof s->path);
    if (bj_modelinfo_read(path, &s->info, err, errlen))
        return -1;
    if (is_embedded(path))
        bj_jar_cap_context(&s->info, BJ_VOICE_JAR_TOKENS);
    return h->n_models++;
}

/* Clamped GB jars of brains sharing a model keep their proportions (jar.h), as the estimate's. */
static void keep_proportions(struct bj_hive *h)
{
    for (int m = 0; m < h->n_models; m++) {
        struct bj_jar *mine[BJ_MAX_BRAINS];
        int n = 0;
        for (int i = 0; i < h->s->n_brains; i++)
            if (h->model_of[i] == m)
                mine[n++] = &h->jars[i];
        bj_jar_keep_proportions(mine, n, &h->models[m].info, h->s->kv_type);
    }
    for (int i = 0; i < h->s->n_brains; i++)
        if (h->jars[i].clamped)
            bj_info("brain %s: jar of %ld tokens clamped to the model's training context: %ld tokens",
                    h->s->brains[i].id, h->jars[i].requested_tokens, h->jars[i].tokens);
}

static int resolve(struct bj_hive *h, char *err, size_t errlen)
{
    const struct bj_hive_spec *s = h->s;
    for (int i = 0; i < s->n_brains; i++) {
        const struct bj_brain_cfg *b = &s->brains[i];
        char path[PATH_MAX];
        if (model_path(h, b, path, sizeof path)) {
            snprintf(err, errlen, "brain %s has no model: give --model FILE (this binary has no embedded model)", b->id);
            return -1;
        }
        int m = find_or_add_model(h, path, err, errlen);
        if (m < 0)
            return -1;
        h->model_of[i] = m;
        if (bj_jar_resolve(b, &h->models[m].info, s->kv_type, &h->jars[i], err, errlen))
            return -1;
        if (!bj_prompts_has(h->prompts, b->role)) {
            snprintf(err, errlen, "brain %s: no prompt file for role '%s' (add %s.txt to --prompts DIR)", b->id,
                     b->role, b->role);
            return -1;
        }
    }
    keep_proportions(h);
    return 0;
}

/* The first life's system prompt must fit in the jar, with room to think. Checked with the
 * model's own tokenizer once it is loaded, before any engine starts. */
static int check_prompt_fits(struct bj_hive *h, int i, char *err, size_t errlen)
{
    const struct bj_brain_cfg *b = &h->s->brains[i];
    const struct model_slot *ms = &h->models[h->model_of[i]];
    return bj_prompt_check_fits(h->prompts, bj_engine_vocab(ms->engine), b->role, b->id, h->jars[i].tokens,
                                (long)ms->info.n_ctx_train, err, errlen);
}

/* Layer 1: the whole hive against this machine's memory, before anything is loaded. The report is
 * kept (for the API) and printed when the check fails; force starts anyway, with a warning.
 * Returns 0 to go on, -1 with err when refused or the hive cannot be estimated. */
static int check_budget(struct bj_hive *h, char *err, size_t errlen)
{
    h->est = bj_estimate_spec(h->s, h->p.default_model ? h->p.default_model : "", err, errlen);
    if (!h->est)
        return -1;
    bj_sysmem_paths_default(&h->mem_paths);
    size_t len = 0;
    FILE *out = open_memstream(&h->budget_report, &len);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int verdict = bj_validate_hive(h->s, "hive", h->est, &h->mem_paths, out, &h->sm, &h->gpu);
    fclose(out);
    if (verdict == 0) {
        bj_debug("memory budget:\n%s", h->budget_report);
    } else {
        fputs(h->budget_report, stderr);
        if (!h->s->force) {
            snprintf(err, errlen, "the memory budget check failed (report above); adjust the hive or use --force");
            return -1;
        }
        bj_warn("--force: starting although the memory budget check failed");
    }
    bj_budget_settings_from_spec(&h->budget_settings, h->s);
    h->budget = bj_budget_manager_new(&h->budget_settings, &h->sm, &h->gpu);
    if (!h->budget) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The estimate groups brains by model in the same order as the hive (first use in the spec). */
static const struct bj_est_model *est_model(const struct bj_hive *h, int m)
{
    assert(m < h->est->n_models && strcmp(h->est->models[m].path, h->models[m].path) == 0);
    return &h->est->models[m];
}

/* Layers 3 and 2 for a model: right before it loads, available memory must cover it (with its
 * brains) plus headroom; then its shared part is charged to the ledger. */
static int admit_model(struct bj_hive *h, int m, char *err, size_t errlen)
{
    const struct bj_est_model *em = est_model(h, m);
    struct bj_sysmem now;
    struct bj_gpu_info gpu = h->gpu;
    char msg[512];
    if (bj_sysmem_read(&h->mem_paths, &now, msg, sizeof msg) != 0) {
        bj_warn("pre-load check skipped: %s", msg);
    } else {
        int rc = bj_budget_preload_check(&h->budget_settings, &now, &gpu, bj_est_mem_total(&em->cpu),
                                         bj_est_mem_total(&em->gpu), msg, sizeof msg);
        if (rc < 0 && !h->s->force) {
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
        if (!h->s->force) {
            snprintf(err, errlen, "model %s: %s", model_label(em->path), msg);
            return -1;
        }
        bj_warn("model %s: %s", model_label(em->path), msg);
    }
    return 0;
}

/* Layer 2 for a brain: its jar is charged before it starts; a denied brain does not start, the
 * others do. Returns true when admitted. */
static bool admit_brain(struct bj_hive *h, int i)
{
    const struct bj_est_brain *eb = &h->est->brains[i]; /* the estimate keeps the spec's order */
    char msg[512];
    if (bj_budget_manager_alloc(h->budget, eb->id, BJ_BUDGET_BRAIN, bj_est_brain_host(eb), bj_est_brain_gpu(eb),
                                msg, sizeof msg) == 0)
        return true;
    if (h->s->force) {
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

/* The settings every engine of model m gets, at the start and when a stalled one is rebuilt. */
static struct bj_engine_params engine_params(struct bj_hive *h, int m)
{
    struct bj_engine_params ep;
    bj_engine_params_default(&ep);
    ep.model_path = h->models[m].path;
    ep.model_label = model_label(h->models[m].path);
    ep.plan = &est_model(h, m)->plan;
    ep.max_steps = h->s->max_steps;
    ep.bus = h->bus;
    ep.on_done = on_engine_done;
    ep.on_done_ud = h;
    ep.on_events = on_step_events;
    ep.on_events_ud = h;
    ep.lab = &h->s->lab;
    return ep;
}

static int load_engines(struct bj_hive *h, char *err, size_t errlen)
{
    const struct bj_hive_spec *s = h->s;
    for (int m = 0; m < h->n_models; m++) {
        struct bj_engine_params ep = engine_params(h, m);
        ep.inject_brain = s->inject_brain;
        ep.inject_step = s->inject_step;
        if (admit_model(h, m, err, errlen))
            return -1;
        ep.stall_brain = s->stall_brain;
        ep.stall_step = s->stall_step;
        ep.stall_ms = s->stall_ms;
        struct bj_engine *e = bj_engine_new(&ep, err, errlen);
        if (!e)
            return -1;
        h->models[m].engine = e;
        h->models[m].model = bj_engine_take_model(e);
        const char *tmpl = llama_model_chat_template(bj_engine_model(h->models[m].engine), NULL);
        h->models[m].chat_template = tmpl ? tmpl : "chatml";
    }
    return 0;
}

static int add_brains(struct bj_hive *h)
{
    const struct bj_hive_spec *s = h->s;
    int started = 0;
    for (int i = 0; i < s->n_brains; i++) {
        h->engine_ix[i] = -1;
        if (!admit_brain(h, i))
            continue;
        struct model_slot *ms = &h->models[h->model_of[i]];
        struct bj_brain_params bp = {
            .cfg = &s->brains[i],
            .prompts = h->prompts,
            .vocab = bj_engine_vocab(ms->engine),
            .jar_tokens = h->jars[i].tokens,
            .pause_ms = s->pause_ms,
            .pace = brain_pace(h, i),
            .dump_dir = s->dump_context[0] ? s->dump_context : NULL,
            .chat_template = s->chat_template ? ms->chat_template : NULL,
            .initial_deaths = h->initial_deaths[i],
        };
        h->engine_ix[i] = bj_engine_add_brain(ms->engine, &bp);
        if (h->engine_ix[i] >= 0)
            started++;
    }
    return started;
}

static int alloc_tables(struct bj_hive *h, int n)
{
    h->models = calloc((size_t)n, sizeof *h->models);
    h->model_of = calloc((size_t)n, sizeof *h->model_of);
    h->engine_ix = calloc((size_t)n, sizeof *h->engine_ix);
    h->jars = calloc((size_t)n, sizeof *h->jars);
    h->initial_deaths = calloc((size_t)n, sizeof *h->initial_deaths);
    h->views = calloc((size_t)n, sizeof *h->views);
    if (!h->models || !h->model_of || !h->engine_ix || !h->jars || !h->initial_deaths || !h->views)
        return -1;
    for (int i = 0; i < n; i++)
        h->engine_ix[i] = -1;
    return 0;
}

struct bj_hive *bj_hive_new(const struct bj_hive_params *p, enum bj_hive_refusal *why, char *err, size_t errlen)
{
    *why = BJ_HIVE_BAD_INPUT;
    struct bj_hive *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->p = *p;
    h->s = p->spec;
    h->bus = p->bus;
    h->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&h->view_lock, NULL);
    int n = h->s->n_brains;
    if (n < 1 || h->done_fd < 0 || alloc_tables(h, n)) {
        snprintf(err, errlen, n < 1 ? "the hive has no brains" : "out of memory");
        goto fail;
    }
    if (p->initial_deaths)
        memcpy(h->initial_deaths, p->initial_deaths, (size_t)n * sizeof *h->initial_deaths);

    h->prompts = bj_prompts_load(h->s->prompts_dir, err, errlen);
    if (!h->prompts || resolve(h, err, errlen))
        goto fail;
    *why = BJ_HIVE_CANNOT_RUN;
    if (check_budget(h, err, errlen))
        goto fail;
    int rc = bj_mkdirs(h->s->data_dir);
    if (rc) {
        snprintf(err, errlen, "data directory %s: %s", h->s->data_dir, strerror(-rc));
        goto fail;
    }
    if (!(h->journal = bj_journal_open(h->s->data_dir, err, errlen)) || load_engines(h, err, errlen))
        goto fail;
    *why = BJ_HIVE_BAD_INPUT;
    for (int i = 0; i < n; i++)
        if (check_prompt_fits(h, i, err, errlen))
            goto fail;
    *why = BJ_HIVE_CANNOT_RUN;
    if (add_brains(h) == 0) {
        snprintf(err, errlen, "no brain could be started");
        goto fail;
    }
    view_init(h);
    if (bj_bus_tap(h->bus, BJ_EV_ALL, view_tap, h)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return h;
fail:
    bj_hive_free(h);
    return NULL;
}

int bj_hive_start(struct bj_hive *h, char *err, size_t errlen)
{
    h->started_us = bj_event_now();
    for (int m = 0; m < h->n_models; m++) {
        if (bj_engine_n_brains(h->models[m].engine) == 0)
            atomic_fetch_add(&h->engines_done, 1); /* every brain of this model was denied */
        else if (bj_engine_start(h->models[m].engine, err, errlen))
            return -1;
    }
    h->running = true;
    bj_info("hive running: %d brain%s on %d model%s; Ctrl-C stops", h->s->n_brains, h->s->n_brains == 1 ? "" : "s",
            h->n_models, h->n_models == 1 ? "" : "s");
    return 0;
}

int bj_hive_fd(const struct bj_hive *h) { return h->done_fd; }

bool bj_hive_done(const struct bj_hive *h)
{
    return atomic_load(&((struct bj_hive *)h)->engines_done) >= h->n_models;
}

void bj_hive_reopen_logs(struct bj_hive *h)
{
    if (h->journal)
        bj_journal_reopen(h->journal);
}

int bj_hive_reload_prompts(struct bj_hive *h, char *err, size_t errlen)
{
    if (h->n_old_prompts == (int)(sizeof h->old_prompts / sizeof h->old_prompts[0])) {
        snprintf(err, errlen, "prompts reloaded too often in this run; restart to reload again");
        return -1;
    }
    struct bj_prompts *p = bj_prompts_load(h->s->prompts_dir, err, errlen);
    if (!p)
        return -1;
    for (int i = 0; i < h->s->n_brains; i++)
        if (!bj_prompts_has(p, h->s->brains[i].role)) {
            snprintf(err, errlen, "no prompt for role '%s' any more; keeping the old prompts", h->s->brains[i].role);
            bj_prompts_free(p);
            return -1;
        }
    for (int m = 0; m < h->n_models; m++)
        bj_engine_set_prompts(h->models[m].engine, p);
    h->old_prompts[h->n_old_prompts++] = h->prompts;
    h->prompts = p;
    return 0;
}

/* One line for people and benchmarks: aggregate generation speed and peak memory. */
static void summary(const struct bj_hive *h)
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
    for (int i = 0; i < h->s->n_brains; i++)
        jars += h->jars[i].kv_bytes;
    bj_info("summary: %ld tokens generated in %.2f s = %.2f tok/s aggregate (generation-only steps: %.2f tok/s); "
            "peak RSS %.1f MB; jars %.1f MB", all.generated, all.busy_s,
            all.busy_s > 0 ? (double)all.generated / all.busy_s : 0.0,
            all.tg_s > 0 ? (double)all.tg_tokens / all.tg_s : 0.0, (double)ru.ru_maxrss / 1024.0, (double)jars / 1e6);
}

void bj_hive_stop(struct bj_hive *h)
{
    if (!h->running)
        return;
    for (int m = 0; m < h->n_models; m++)
        bj_engine_stop(h->models[m].engine);
    h->running = false;
    summary(h);
    if (bj_log_get_level() <= BJ_LOG_INFO && h->budget)
        bj_budget_manager_report(h->budget, stderr);
}

void bj_hive_free(struct bj_hive *h)
{
    if (!h)
        return;
    bj_hive_stop(h);
    for (int m = 0; m < h->n_models; m++)
        bj_engine_free(h->models[m].engine);
    for (struct grave *g = h->graveyard, *next; g; g = next) {
        next = g->next;
        if (bj_engine_finished(g->engine)) {
            bj_engine_free(g->engine);
        } else { /* still stuck: its contexts use the model, so both stay */
            bj_warn("hive: an abandoned engine never came back; leaving it and its model to the exit");
            h->models[g->model].model = NULL;
        }
        free(g);
    }
    for (int m = 0; m < h->n_models; m++)
        if (h->models[m].model)
            llama_model_free(h->models[m].model);
    bj_journal_close(h->journal);
    bj_prompts_free(h->prompts);
    for (int i = 0; i < h->n_old_prompts; i++)
        bj_prompts_free(h->old_prompts[i]);
    if (h->budget) {
        for (int i = 0; i < h->s->n_brains; i++)
            bj_budget_manager_release(h->budget, h->s->brains[i].id);
        bj_budget_manager_free(h->budget);
    }
    bj_est_hive_free(h->est);
    free(h->budget_report);
    if (h->done_fd >= 0)
        close(h->done_fd);
    pthread_mutex_destroy(&h->view_lock);
    free(h->models);
    free(h->model_of);
    free(h->engine_ix);
    free(h->jars);
    free(h->initial_deaths);
    free(h->views);
    free(h);
}

void bj_hive_observe_remote(struct bj_hive *h, const char *from, const char *text, bool lifecycle)
{
    char *msg = lifecycle ? strdup(text) : bj_prompt_remote_thought(from, text);
    route(h, from, lifecycle, msg);
    free(msg);
}

void bj_hive_throttle(struct bj_hive *h, int level)
{
    for (int m = 0; m < h->n_models; m++)
        bj_engine_throttle(h->models[m].engine, level > 0 ? level * 10 : 0);
}

int bj_hive_stalled(struct bj_hive *h, int stall_ms)
{
    int64_t now = bj_now_us();
    int stalled = 0;
    for (int m = 0; m < h->n_models; m++) {
        int64_t beat = bj_engine_beat(h->models[m].engine);
        if (beat && now - beat > (int64_t)stall_ms * 1000)
            stalled++;
    }
    return stalled;
}

/* ---- supervision (main thread) ------------------------------------------------------------ */

static void publish_watchdog(struct bj_hive *h, const char *stage, const char *text)
{
    struct bj_event ev = {.type = BJ_EV_WATCHDOG};
    bj_strlcpy(ev.cause, stage, sizeof ev.cause);
    ev.text = (char *)text;
    bj_bus_publish(h->bus, &ev);
}

/* The stalled engine of model m is given up; its brains die (WATCHDOG), durable and routed like
 * any death; a new engine on the same loaded model brings them back with a resurrection. */
static int rebuild(struct bj_hive *h, int m, int64_t silent_ms, char *err, size_t errlen)
{
    struct model_slot *ms = &h->models[m];
    struct bj_engine *old = ms->engine;
    bj_engine_abandon(old);
    struct grave *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *g = (struct grave){.next = h->graveyard, .engine = old, .model = m};
    h->graveyard = g;

    struct bj_engine_params ep = engine_params(h, m);
    ep.model = ms->model; /* the loaded model goes on; only the engine is new */
    struct bj_engine *e = bj_engine_new(&ep, err, errlen);
    if (!e)
        return -1;
    struct bj_evbuf deaths = {0};
    char detail[128];
    snprintf(detail, sizeof detail, "its engine stalled for %lld ms and was rebuilt", (long long)silent_ms);
    for (int i = 0; i < h->s->n_brains; i++) {
        if (h->model_of[i] != m || h->engine_ix[i] < 0)
            continue;
        pthread_mutex_lock(&h->view_lock);
        uint32_t n = h->views[i].deaths + 1;
        int32_t used = h->views[i].jar_used;
        pthread_mutex_unlock(&h->view_lock);
        struct bj_event d = {.type = BJ_EV_DEATH, .crash_count = n, .jar_used = used,
                             .jar_tokens = (int32_t)h->jars[i].tokens, .text = detail};
        bj_strlcpy(d.brain, h->s->brains[i].id, sizeof d.brain);
        bj_strlcpy(d.cause, bj_death_cause_name(BJ_DEATH_WATCHDOG), sizeof d.cause);
        d.time_us = bj_event_now();
        bj_evbuf_push(&deaths, &d);
        struct bj_brain_params bp = {
            .cfg = &h->s->brains[i],
            .prompts = h->prompts,
            .vocab = bj_engine_vocab(e),
            .jar_tokens = h->jars[i].tokens,
            .pause_ms = h->s->pause_ms,
            .pace = brain_pace(h, i),
            .dump_dir = h->s->dump_context[0] ? h->s->dump_context : NULL,
            .chat_template = h->s->chat_template ? ms->chat_template : NULL,
            .initial_deaths = n,
            .start_dead = true,
        };
        int ix = bj_engine_add_brain(e, &bp);
        assert(ix == h->engine_ix[i]); /* the same brains in the same order */
        (void)ix;
    }
    on_step_events(h, deaths.v, deaths.n);
    bj_bus_publish_many(h->bus, deaths.v, deaths.n);
    bj_evbuf_free(&deaths);
    if (bj_engine_start(e, err, errlen)) {
        bj_engine_free(e);
        return -1;
    }
    ms->engine = e;
    return 0;
}

int bj_hive_supervise(struct bj_hive *h, char *err, size_t errlen)
{
    int stall_ms = h->s->stall_timeout_ms > 0 ? h->s->stall_timeout_ms : 60000;
    int64_t now = bj_now_us();
    int restarted = 0;
    for (int m = 0; m < h->n_models && h->running; m++) {
        int64_t beat = bj_engine_beat(h->models[m].engine);
        if (!beat || now - beat <= (int64_t)stall_ms * 1000)
            continue;
        int64_t silent_ms = (now - beat) / 1000;
        char text[256];
        /* At most 5 restarts in 60 s: beyond that, rebuilding is not helping. */
        if (h->n_restarts == 5 && now - h->restarts[0] < 60 * 1000000LL) {
            snprintf(err, errlen, "engine %s stalled again (%lld ms): 5 restarts in under 60 s, giving up",
                     model_label(h->models[m].path), (long long)silent_ms);
            publish_watchdog(h, "supervisor_gave_up", err);
            return -1;
        }
        if (h->n_restarts == 5)
            memmove(h->restarts, h->restarts + 1, 4 * sizeof *h->restarts);
        else
            h->n_restarts++;
        h->restarts[h->n_restarts - 1] = now;
        snprintf(text, sizeof text, "engine %s stalled: no step for %lld ms; rebuilding it on the same model",
                 model_label(h->models[m].path), (long long)silent_ms);
        bj_error("%s", text);
        publish_watchdog(h, "engine_restart", text);
        if (rebuild(h, m, silent_ms, err, errlen) != 0)
            return -1;
        bj_info("engine %s rebuilt in %.1f ms", model_label(h->models[m].path), (double)(bj_now_us() - now) / 1000.0);
        restarted++;
    }
    for (struct grave **p = &h->graveyard; *p;) { /* free the abandoned engines that came back */
        struct grave *g = *p;
        if (bj_engine_finished(g->engine)) {
            bj_engine_free(g->engine);
            *p = g->next;
            free(g);
        } else {
            p = &g->next;
        }
    }
    return restarted;
}

/* ---- snapshots --------------------------------------------------------------------------- */

int bj_hive_snapshot(struct bj_hive *h, struct bj_hive_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->brains = malloc((size_t)h->s->n_brains * sizeof *out->brains);
    if (!out->brains)
        return -1;
    pthread_mutex_lock(&h->view_lock);
    memcpy(out->brains, h->views, (size_t)h->s->n_brains * sizeof *out->brains);
    out->n_brains = h->s->n_brains;
    out->started_us = h->started_us;
    out->deaths = h->deaths;
    out->tokens = h->tokens;
    pthread_mutex_unlock(&h->view_lock);
    for (int i = 0; i < out->n_brains; i++)
        out->tok_s += out->brains[i].tok_s;
    return 0;
}

void bj_hive_snapshot_free(struct bj_hive_snapshot *s)
{
    free(s->brains);
    s->brains = NULL;
    s->n_brains = 0;
}

int bj_hive_brain(struct bj_hive *h, const char *brain, struct bj_brain_view *out)
{
    int i = brain ? bj_spec_find_brain(h->s, brain) : -1;
    if (i < 0)
        return -ENOENT;
    pthread_mutex_lock(&h->view_lock);
    *out = h->views[i];
    pthread_mutex_unlock(&h->view_lock);
    return 0;
}

const struct bj_hive_spec *bj_hive_spec_of(const struct bj_hive *h) { return h->s; }

char *bj_hive_budget_report(struct bj_hive *h)
{
    char *ledger = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&ledger, &len);
    if (!f)
        return NULL;
    fputs(h->budget_report ? h->budget_report : "", f);
    if (h->budget)
        bj_budget_manager_report(h->budget, f);
    fclose(f);
    return ledger;
}
