/* engine: see engine.h. */
#include "engine.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jar.h"
#include "log.h"
#include "util.h"

enum req_kind { REQ_KILL, REQ_PAUSE, REQ_RESUME, REQ_RESURRECT, REQ_SAY, REQ_PROMPTS };

struct request {
    struct request *next;
    enum req_kind kind;
    int brain;
    char cause[24];
    char from[BJ_NAME_MAX]; /* REQ_SAY */
    char *text;             /* REQ_SAY: owned */
    const struct bj_prompts *prompts; /* REQ_PROMPTS */
};

/* One brain's part of a step. */
struct work {
    struct bj_engine *e;
    int i;                    /* brain index = sequence id */
    const llama_token *tokens;
    int n;
    bool logits;
    int out_idx;              /* batch index of the token whose logits are sampled */
    bool injected;            /* fault injection: decode an invalid token */
    int rc;                   /* parallel schedule: llama_decode's result */
    const float *row;         /* CPU sampling on threads: this brain's logits row */
    llama_token token;        /* ... and the token sampled from it */
    bool sampled;
};

struct bj_engine {
    struct bj_engine_params p;
    struct bj_plan plan;
    char label[256];
    char inject_brain[BJ_NAME_MAX];
    struct llama_model *model;
    const struct llama_vocab *vocab;
    enum bj_schedule sched;   /* plan.schedule */
    int n_threads;            /* plan.n_threads */

    struct bj_brain *brains[BJ_MAX_BRAINS];
    int n_brains;
    long decodes[BJ_MAX_BRAINS];

    /* Samplers run inside the decode graph (on the GPU): only the sampled token comes back
     * instead of every brain's full logits, the per-step cost that otherwise separates us from
     * llama-batched-bench. Kept alive as long as the contexts. */
    struct llama_sampler_seq_config sampler_cfg[BJ_MAX_BRAINS];
    bool backend_sampling;

    struct llama_context *ctx;                 /* batched */
    struct llama_batch batch;
    llama_token_data *cand[BJ_MAX_BRAINS];     /* per-brain candidate arrays for threaded sampling */
    struct llama_context *bctx[BJ_MAX_BRAINS]; /* parallel */
    struct llama_batch bbatch[BJ_MAX_BRAINS];

    pthread_t thread;
    bool started;
    bool owns_model;
    char stall_brain[BJ_NAME_MAX];
    atomic_bool stop;
    atomic_bool abandoned;    /* given up by the supervisor: publishes nothing more */
    atomic_bool finished;     /* the thread has left its loop */
    atomic_long steps;
    atomic_long generated;    /* tokens sampled */
    int64_t t_first, t_last;  /* monotonic: first and last decode step */
    int64_t tg_us;            /* time in steps that only generated (one token per brain) */
    long tg_tokens;
    struct bj_evbuf out;      /* this step's events, published together at its end */
    atomic_int throttle_ms;   /* watchdog: sleep between steps */
    atomic_int_fast64_t beat; /* monotonic time of the loop's last turn (supervision) */
    pthread_mutex_t lock; /* guards the request queue */
    pthread_cond_t cond;
    struct request *req_head, *req_tail;
    int64_t last_status;
};

void bj_engine_params_default(struct bj_engine_params *p)
{
    memset(p, 0, sizeof *p);
}

static bool load_progress(float progress, void *ud)
{
    int *last = ud;
    int pct = (int)(progress * 100.0f);
    if (pct >= *last + 25 || (pct == 100 && *last < 100)) {
        bj_info("loading model: %d%%", pct);
        *last = pct;
    }
    return true;
}

struct bj_engine *bj_engine_new(const struct bj_engine_params *p, char *err, size_t errlen)
{
    struct bj_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->p = *p;
    if (!p->plan) {
        snprintf(err, errlen, "engine %s: no plan", p->model_label ? p->model_label : p->model_path);
        free(e);
        return NULL;
    }
    e->plan = *p->plan;
    e->p.plan = &e->plan;
    e->sched = e->plan.schedule;
    e->n_threads = e->plan.n_threads;
    e->backend_sampling = e->plan.backend_sampling;
    bj_strlcpy(e->label, p->model_label ? p->model_label : p->model_path, sizeof e->label);
    if (p->inject_brain)
        bj_strlcpy(e->inject_brain, p->inject_brain, sizeof e->inject_brain);
    e->p.inject_brain = e->inject_brain;
    e->p.model_label = e->label;
    pthread_mutex_init(&e->lock, NULL);
    bj_cond_init_monotonic(&e->cond);
    atomic_init(&e->throttle_ms, 0);
    atomic_init(&e->beat, 0);

    struct llama_model_params mp = bj_plan_model_params(&e->plan);
    if (p->stall_brain)
        bj_strlcpy(e->stall_brain, p->stall_brain, sizeof e->stall_brain);
    e->p.stall_brain = e->stall_brain;
    if (p->model) { /* shared: loaded once by someone else */
        e->model = p->model;
        e->vocab = llama_model_get_vocab(e->model);
        return e;
    }
    e->owns_model = true;
    int last = 0; /* progress is logged from 25% on: small models load silently */
    mp.progress_callback = load_progress;
    mp.progress_callback_user_data = &last;
    int64_t t0 = bj_now_us();
    e->model = llama_model_load_from_file(p->model_path, mp);
    if (!e->model) {
        snprintf(err, errlen, "cannot load model %s (llama.cpp rejected it; --log-level debug says why)", e->label);
        bj_engine_free(e);
        return NULL;
    }
    e->vocab = llama_model_get_vocab(e->model);
    char desc[128];
    llama_model_desc(e->model, desc, sizeof desc);
    bj_info("model %s loaded in %.2f s: %s, %.0f MB", e->label, (double)(bj_now_us() - t0) / 1e6, desc,
            (double)llama_model_size(e->model) / 1e6);
    return e;
}

void bj_engine_free(struct bj_engine *e)
{
    if (!e)
        return;
    bj_engine_stop(e);
    for (int i = 0; i < e->n_brains; i++) {
        if (e->bctx[i]) {
            llama_free(e->bctx[i]);
            llama_batch_free(e->bbatch[i]);
        }
        bj_brain_free(e->brains[i]);
        free(e->cand[i]);
    }
    if (e->ctx) {
        llama_free(e->ctx);
        llama_batch_free(e->batch);
    }
    for (struct request *r = e->req_head, *n; r; r = n) {
        n = r->next;
        free(r->text);
        free(r);
    }
    bj_evbuf_free(&e->out);
    if (e->model && e->owns_model)
        llama_model_free(e->model);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}

const struct llama_model *bj_engine_model(const struct bj_engine *e) { return e->model; }
const struct llama_vocab *bj_engine_vocab(const struct bj_engine *e) { return e->vocab; }
enum bj_schedule bj_engine_schedule(const struct bj_engine *e) { return e->sched; }
long bj_engine_steps(const struct bj_engine *e) { return atomic_load(&((struct bj_engine *)e)->steps); }

void bj_engine_stats(const struct bj_engine *e, struct bj_engine_stats *st)
{
    st->generated = atomic_load(&((struct bj_engine *)e)->generated);
    st->busy_s = e->t_first ? (double)(e->t_last - e->t_first) / 1e6 : 0.0;
    st->tg_tokens = e->tg_tokens;
    st->tg_s = (double)e->tg_us / 1e6;
}

int bj_engine_add_brain(struct bj_engine *e, const struct bj_brain_params *bp)
{
    if (e->started || e->n_brains >= BJ_MAX_BRAINS)
        return -1;
    struct bj_brain_params p = *bp;
    p.out = &e->out;
    struct bj_brain *b = bj_brain_new(&p);
    if (!b)
        return -1;
    e->brains[e->n_brains] = b;
    return e->n_brains++;
}

int bj_engine_n_brains(const struct bj_engine *e) { return e->n_brains; }

int bj_engine_index(const struct bj_engine *e, const char *brain)
{
    for (int i = 0; i < e->n_brains; i++)
        if (strcmp(bj_brain_id(e->brains[i]), brain) == 0)
            return i;
    return -1;
}

/* ---- contexts ---------------------------------------------------------------------------- */

static int create_contexts(struct bj_engine *e, char *err, size_t errlen)
{
    if (e->plan.n_brains != e->n_brains) { /* some brains were not admitted: plan for those that were */
        long jars[BJ_MAX_BRAINS];
        for (int i = 0; i < e->n_brains; i++)
            jars[i] = bj_brain_jar(e->brains[i]);
        if (bj_plan_make(&e->plan.settings, &e->plan.facts, jars, e->n_brains, &e->plan, err, errlen) != 0)
            return -1;
        e->sched = e->plan.schedule;
        e->n_threads = e->plan.n_threads;
        e->backend_sampling = e->plan.backend_sampling;
    }
    for (int c = 0; c < e->plan.n_contexts; c++) {
        struct llama_context_params cp = bj_plan_context_params(&e->plan, c);
        bool batched = e->sched == BJ_SCHED_BATCHED;
        if (e->backend_sampling) {
            int first = batched ? 0 : c, n = batched ? e->n_brains : 1;
            for (int i = first; i < first + n; i++)
                e->sampler_cfg[i] = (struct llama_sampler_seq_config){batched ? (llama_seq_id)i : 0,
                                                                      bj_brain_sampler(e->brains[i])};
            cp.samplers = &e->sampler_cfg[first];
            cp.n_samplers = (size_t)n;
        }
        struct llama_context *ctx = llama_init_from_model(e->model, cp);
        if (!ctx) {
            snprintf(err, errlen, "cannot create a context of %u cells for %d brain%s on %s", cp.n_ctx,
                     (int)cp.n_seq_max, cp.n_seq_max == 1 ? "" : "s", e->label);
            return -1;
        }
        if (batched) {
            e->ctx = ctx;
            e->batch = llama_batch_init((int32_t)cp.n_batch, 0, 1);
            uint32_t per_seq = e->plan.unified ? llama_n_ctx(ctx) : llama_n_ctx_seq(ctx);
            for (int i = 0; i < e->n_brains; i++)
                if (e->plan.jar[i] > (long)per_seq) {
                    snprintf(err, errlen, "brain %s: jar %ld exceeds the %u cells its sequence got",
                             bj_brain_id(e->brains[i]), e->plan.jar[i], per_seq);
                    return -1;
                }
        } else {
            e->bctx[c] = ctx;
            e->bbatch[c] = llama_batch_init((int32_t)cp.n_batch, 0, 1);
        }
    }
    if (e->sched == BJ_SCHED_BATCHED)
        bj_info("engine %s: batched, %d brains, %u KV cells (%s), %d threads, sampling on the %s, %s", e->label,
                e->n_brains, llama_n_ctx(e->ctx), e->plan.unified ? "one shared pool" : "one stream per brain",
                e->n_threads, e->backend_sampling ? "backend" : "CPU", e->plan.use_mmap ? "mmap" : "read (no mmap)");
    else
        bj_info("engine %s: parallel, %d brains, one context each, %d threads each, %s", e->label, e->n_brains,
                e->plan.threads_per_ctx, e->plan.use_mmap ? "mmap" : "read (no mmap)");
    return 0;
}

static struct llama_context *brain_ctx(struct bj_engine *e, int i)
{
    return e->sched == BJ_SCHED_BATCHED ? e->ctx : e->bctx[i];
}

static llama_seq_id brain_seq(const struct bj_engine *e, int i)
{
    return e->sched == BJ_SCHED_BATCHED ? (llama_seq_id)i : 0;
}

/* Forgets everything brain i had in its KV cache. */
static void clear_memory(struct bj_engine *e, int i)
{
    llama_memory_seq_rm(llama_get_memory(brain_ctx(e, i)), brain_seq(e, i), -1, -1);
}

/* ---- one step ---------------------------------------------------------------------------- */

static void kill_brain(struct bj_engine *e, int i, const char *cause, const char *detail)
{
    bj_brain_die(e->brains[i], cause, detail);
    clear_memory(e, i);
}

static void batch_put(struct llama_batch *b, const struct work *w, int n_past, llama_seq_id seq, int n_vocab)
{
    for (int k = 0; k < w->n; k++) {
        int j = b->n_tokens++;
        b->token[j] = w->injected && k == 0 ? n_vocab + 1000 : w->tokens[k];
        b->pos[j] = n_past + k;
        b->n_seq_id[j] = 1;
        b->seq_id[j][0] = seq;
        b->logits[j] = w->logits && k == w->n - 1;
    }
}

/* Collects the work of this step; brains whose next chunk overflows their jar die here. */
static int gather(struct bj_engine *e, struct work *works)
{
    int n = 0;
    for (int i = 0; i < e->n_brains; i++) {
        struct bj_brain *b = e->brains[i];
        struct work w = {.e = e, .i = i};
        w.n = bj_brain_next_chunk(b, e->plan.prefill_chunk, &w.tokens, &w.logits);
        if (w.n == 0)
            continue;
        if (!bj_brain_fits(b, w.n)) {
            char detail[96];
            snprintf(detail, sizeof detail, "jar full: %d of %ld tokens used, %d more needed", bj_brain_n_past(b),
                     bj_brain_jar(b), w.n);
            kill_brain(e, i, "JAR_FULL", detail);
            continue;
        }
        e->decodes[i]++;
        w.injected = e->inject_brain[0] && e->p.inject_step == e->decodes[i] &&
                     strcmp(e->inject_brain, bj_brain_id(b)) == 0;
        works[n++] = w;
    }
    return n;
}

/* After a successful decode of w: the brain moves on and, if it asked to, takes its token: the
 * one already sampled on a thread (w->sampled), or sampled here. */
static void finish(struct bj_engine *e, struct work *w, struct llama_context *ctx)
{
    struct bj_brain *b = e->brains[w->i];
    bj_brain_consumed(b, w->n);
    if (!w->logits)
        return;
    atomic_fetch_add(&e->generated, 1);
    llama_token t = w->sampled ? w->token : llama_sampler_sample(bj_brain_sampler(b), ctx, w->out_idx);
    int rc = bj_brain_accept(b, t);
    if (rc != 0)
        kill_brain(e, w->i, "INTERNAL_ERROR", strerror(-rc));
}

/* Runs fn on every item, at most `width` at once: the first of each wave on the calling
 * thread, the rest on threads of their own (or here too, when a thread cannot be made). */
static void run_in_waves(void *(*fn)(void *), struct work **items, int n, int width)
{
    if (width < 1)
        width = 1;
    for (int first = 0; first < n; first += width) {
        int last = first + width < n ? first + width : n;
        pthread_t th[BJ_MAX_BRAINS];
        bool spawned[BJ_MAX_BRAINS] = {0};
        for (int k = first + 1; k < last; k++)
            spawned[k] = pthread_create(&th[k], NULL, fn, items[k]) == 0;
        fn(items[first]);
        for (int k = first + 1; k < last; k++) {
            if (spawned[k])
                pthread_join(th[k], NULL);
            else
                fn(items[k]);
        }
    }
}

/* What llama_sampler_sample does, from a logits row instead of the context: a sampler thread
 * then touches only its own brain's chain and candidate array, never the llama_context. */
static void *sample_row(void *arg)
{
    struct work *w = arg;
    struct bj_engine *e = w->e;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    llama_token_data *cand = e->cand[w->i];
    for (int t = 0; t < n_vocab; t++)
        cand[t] = (llama_token_data){t, w->row[t], 0.0f};
    llama_token_data_array cur = {cand, (size_t)n_vocab, -1, false};
    struct llama_sampler *smpl = bj_brain_sampler(e->brains[w->i]);
    llama_sampler_apply(smpl, &cur);
    w->token = cur.data[cur.selected].id;
    llama_sampler_accept(smpl, w->token);
    w->sampled = true;
    return NULL;
}

/* Samples every brain of the step at once, one thread per brain (up to the engine's threads):
 * with sampling on the CPU, each brain's sort of the whole vocabulary otherwise runs one after
 * another while the GPU (or the other cores) wait. Brains it does not sample, finish() does. */
static void sample_on_threads(struct bj_engine *e, struct work *works, int n, struct llama_context *ctx)
{
    int want = 0;
    for (int k = 0; k < n; k++)
        want += works[k].logits;
    if (e->backend_sampling || want < 2 || e->n_threads < 2)
        return;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    struct work *todo[BJ_MAX_BRAINS];
    int m = 0;
    for (int k = 0; k < n; k++) {
        if (!works[k].logits)
            continue;
        if (!e->cand[works[k].i] && !(e->cand[works[k].i] = malloc((size_t)n_vocab * sizeof(llama_token_data))))
            return; /* out of memory: finish() samples them one by one */
        todo[m++] = &works[k];
    }
    for (int k = 0; k < m; k++) /* on this thread: the context is read by its owner only */
        todo[k]->row = llama_get_logits_ith(ctx, todo[k]->out_idx);
    run_in_waves(sample_row, todo, m, e->n_threads);
}

static void decode_failed(struct bj_engine *e, struct work *w, int rc)
{
    char detail[96];
    snprintf(detail, sizeof detail, "llama_decode returned %d%s", rc, w->injected ? " (injected fault)" : "");
    bj_warn("brain %s: %s", bj_brain_id(e->brains[w->i]), detail);
    kill_brain(e, w->i, "DECODE_ERROR", detail);
}

static void step_batched(struct bj_engine *e, struct work *works, int n)
{
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    e->batch.n_tokens = 0;
    for (int k = 0; k < n; k++) {
        batch_put(&e->batch, &works[k], bj_brain_n_past(e->brains[works[k].i]), (llama_seq_id)works[k].i, n_vocab);
        works[k].out_idx = e->batch.n_tokens - 1;
    }
    int rc = llama_decode(e->ctx, e->batch);
    if (rc == 0) {
        sample_on_threads(e, works, n, e->ctx);
        for (int k = 0; k < n; k++)
            finish(e, &works[k], e->ctx);
        return;
    }
    /* Find whose tokens failed: decode each brain alone (a failed decode leaves the memory as
     * it was); the healthy ones go on, the failing one dies. */
    bj_debug("engine %s: batched decode failed (%d); retrying brain by brain", e->label, rc);
    for (int k = 0; k < n; k++) {
        e->batch.n_tokens = 0;
        batch_put(&e->batch, &works[k], bj_brain_n_past(e->brains[works[k].i]), (llama_seq_id)works[k].i, n_vocab);
        works[k].out_idx = e->batch.n_tokens - 1;
        int r = llama_decode(e->ctx, e->batch);
        if (r == 0)
            finish(e, &works[k], e->ctx);
        else
            decode_failed(e, &works[k], r);
    }
}

static void *parallel_decode(void *arg)
{
    struct work *w = arg;
    struct bj_engine *e = w->e;
    struct llama_batch *b = &e->bbatch[w->i];
    b->n_tokens = 0;
    batch_put(b, w, bj_brain_n_past(e->brains[w->i]), 0, llama_vocab_n_tokens(e->vocab));
    w->out_idx = b->n_tokens - 1;
    w->rc = llama_decode(e->bctx[w->i], *b);
    return NULL;
}

/* Each brain's context is decoded on a thread of its own; a llama_context is only ever used by
 * the one thread that decodes it, and sampling happens back on the engine thread. At most
 * `n_threads` decodes run at once (each context has n_threads / brains threads, at least one),
 * so the step never runs more compute threads than the engine's share of cores: spinning
 * threads on oversubscribed cores are many times slower. */
static void step_parallel(struct bj_engine *e, struct work *works, int n)
{
    int per = e->plan.threads_per_ctx;
    struct work *items[BJ_MAX_BRAINS];
    for (int k = 0; k < n; k++)
        items[k] = &works[k];
    run_in_waves(parallel_decode, items, n, e->n_threads / per);
    for (int k = 0; k < n; k++) {
        if (works[k].rc == 0)
            finish(e, &works[k], e->bctx[works[k].i]);
        else
            decode_failed(e, &works[k], works[k].rc);
    }
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void apply_requests(struct bj_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct request *r = e->req_head;
    e->req_head = e->req_tail = NULL;
    pthread_mutex_unlock(&e->lock);
    while (r) {
        struct request *next = r->next;
        struct bj_brain *b = e->brains[r->brain];
        enum bj_brain_state s = bj_brain_state(b);
        switch (r->kind) {
        case REQ_KILL:
            if (s != BJ_BRAIN_DEAD && s != BJ_BRAIN_LOADING)
                kill_brain(e, r->brain, r->cause,
                           strcmp(r->cause, "OPERATOR") == 0 ? "killed by an operator" : "killed by the watchdog");
            break;
        case REQ_RESURRECT:
            if (s == BJ_BRAIN_DEAD && bj_brain_resurrect(b) != 0)
                kill_brain(e, r->brain, "PROMPT_ERROR", "its new system prompt does not fit in its jar");
            break;
        case REQ_SAY:
            bj_brain_deliver(b, r->from, r->text);
            break;
        case REQ_PROMPTS:
            bj_brain_set_prompts(b, r->prompts);
            break;
        case REQ_PAUSE:
        case REQ_RESUME:
            bj_brain_set_paused(b, r->kind == REQ_PAUSE);
            break;
        }
        free(r->text);
        free(r);
        r = next;
    }
}

/* Resurrects brains whose pause is over; returns the earliest pending resurrection time. */
static int64_t resurrect_due(struct bj_engine *e, int64_t now)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < e->n_brains; i++) {
        struct bj_brain *b = e->brains[i];
        if (bj_brain_due(b, now)) {
            if (bj_brain_resurrect(b) != 0)
                kill_brain(e, i, "PROMPT_ERROR", "its new system prompt does not fit in its jar");
        }
        if (bj_brain_state(b) == BJ_BRAIN_DEAD && bj_brain_resurrect_at(b) < next)
            next = bj_brain_resurrect_at(b);
    }
    return next;
}

static void idle_wait(struct bj_engine *e, int64_t until_us)
{
    int64_t now = bj_now_us();
    int64_t wait = until_us - now;
    if (wait < 0)
        wait = 0;
    if (wait > 100000) /* wake at least every 100 ms: status, requests */
        wait = 100000;
    struct timespec ts = bj_deadline_after(wait);
    pthread_mutex_lock(&e->lock);
    if (!e->req_head && !atomic_load(&e->stop))
        pthread_cond_timedwait(&e->cond, &e->lock, &ts);
    pthread_mutex_unlock(&e->lock);
}

/* Hands the step's events to the hive (which makes the deaths durable), then publishes them in
 * one bus operation. */
static void flush(struct bj_engine *e)
{
    if (e->out.n == 0)
        return;
    if (atomic_load(&e->abandoned)) { /* the supervisor has replaced this engine */
        bj_evbuf_reset(&e->out);
        return;
    }
    if (e->p.on_events)
        e->p.on_events(e->p.on_events_ud, e->out.v, e->out.n);
    bj_bus_publish_many(e->p.bus, e->out.v, e->out.n);
    bj_evbuf_reset(&e->out);
}

static void throttle(struct bj_engine *e)
{
    int ms = atomic_load(&e->throttle_ms);
    if (ms <= 0)
        return;
    struct timespec ts = bj_deadline_after((int64_t)ms * 1000);
    pthread_mutex_lock(&e->lock);
    if (!atomic_load(&e->stop))
        pthread_cond_timedwait(&e->cond, &e->lock, &ts);
    pthread_mutex_unlock(&e->lock);
}

static void *engine_main(void *arg)
{
    struct bj_engine *e = arg;
    struct work *works = calloc(BJ_MAX_BRAINS, sizeof *works);
    if (!works) {
        bj_error("engine %s: out of memory", e->label);
        return NULL;
    }
    for (int i = 0; i < e->n_brains; i++) /* brains that start dead begin with a resurrection */
        if (bj_brain_state(e->brains[i]) == BJ_BRAIN_LOADING && bj_brain_begin_life(e->brains[i]) != 0)
            kill_brain(e, i, "PROMPT_ERROR", "its system prompt does not fit in its jar");
    flush(e);
    int stall_ix = e->stall_brain[0] ? bj_engine_index(e, e->stall_brain) : -1;
    while (!atomic_load(&e->stop)) {
        atomic_store(&e->beat, bj_now_us());
        throttle(e);
        apply_requests(e);
        int64_t now = bj_now_us();
        int64_t next_wake = resurrect_due(e, now);
        if (now - e->last_status >= 1000000) {
            for (int i = 0; i < e->n_brains; i++)
                bj_brain_publish_status(e->brains[i], now);
            e->last_status = now;
        }
        int n = gather(e, works);
        if (n == 0) {
            flush(e);
            idle_wait(e, next_wake);
            continue;
        }
        int64_t t0 = bj_now_us();
        if (!e->t_first)
            e->t_first = t0;
        bool generation_only = true;
        for (int k = 0; k < n; k++)
            generation_only = generation_only && works[k].n == 1 && works[k].logits;
        if (stall_ix >= 0 && atomic_load(&e->steps) + 1 == e->p.stall_step) {
            bj_warn("engine %s: stalling %d ms (--inject-stall)", e->label, e->p.stall_ms);
            usleep((useconds_t)e->p.stall_ms * 1000);
        }
        if (e->sched == BJ_SCHED_BATCHED)
            step_batched(e, works, n);
        else
            step_parallel(e, works, n);
        e->t_last = bj_now_us();
        if (generation_only) {
            e->tg_us += e->t_last - t0;
            e->tg_tokens += n;
        }
        flush(e);
        long steps = atomic_fetch_add(&e->steps, 1) + 1;
        if (e->p.max_steps > 0 && steps >= e->p.max_steps)
            break;
    }
    flush(e);
    free(works);
    for (int i = 0; i < e->n_brains; i++)
        bj_brain_dump_context(e->brains[i]);
    if (!atomic_load(&e->stop) && e->p.on_done)
        e->p.on_done(e->p.on_done_ud);
    atomic_store(&e->finished, true);
    return NULL;
}

int bj_engine_start(struct bj_engine *e, char *err, size_t errlen)
{
    if (e->n_brains == 0) {
        snprintf(err, errlen, "engine %s has no brains", e->label);
        return -1;
    }
    if (create_contexts(e, err, errlen))
        return -1;
    atomic_store(&e->beat, bj_now_us());
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        snprintf(err, errlen, "cannot start the engine thread: %s", strerror(errno));
        return -1;
    }
    e->started = true;
    return 0;
}

void bj_engine_abandon(struct bj_engine *e)
{
    atomic_store(&e->abandoned, true);
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->stop, true);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

bool bj_engine_finished(struct bj_engine *e)
{
    return !e->started || atomic_load(&e->finished);
}

struct llama_model *bj_engine_take_model(struct bj_engine *e)
{
    e->owns_model = false;
    return e->model;
}

void bj_engine_stop(struct bj_engine *e)
{
    if (!e->started)
        return;
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->stop, true);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    e->started = false;
}

static void enqueue(struct bj_engine *e, struct request *r)
{
    pthread_mutex_lock(&e->lock);
    if (e->req_tail)
        e->req_tail->next = r;
    else
        e->req_head = r;
    e->req_tail = r;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static int post(struct bj_engine *e, int idx, enum req_kind kind, const char *cause, const char *from,
                const char *text)
{
    if (idx < 0 || idx >= e->n_brains)
        return -ENOENT;
    struct request *r = calloc(1, sizeof *r);
    if (!r || (text && !(r->text = strdup(text)))) {
        free(r);
        return -ENOMEM;
    }
    r->kind = kind;
    r->brain = idx;
    bj_strlcpy(r->cause, cause ? cause : "OPERATOR", sizeof r->cause);
    if (from)
        bj_strlcpy(r->from, from, sizeof r->from);
    enqueue(e, r);
    return 0;
}

int bj_engine_kill(struct bj_engine *e, int brain, const char *cause)
{
    return post(e, brain, REQ_KILL, cause, NULL, NULL);
}

int bj_engine_pause(struct bj_engine *e, int brain, bool paused)
{
    return post(e, brain, paused ? REQ_PAUSE : REQ_RESUME, NULL, NULL, NULL);
}

int bj_engine_resurrect(struct bj_engine *e, int brain)
{
    return post(e, brain, REQ_RESURRECT, NULL, NULL, NULL);
}

int bj_engine_say(struct bj_engine *e, int brain, const char *from, const char *text)
{
    return post(e, brain, REQ_SAY, NULL, from, text);
}

int bj_engine_set_prompts(struct bj_engine *e, const struct bj_prompts *prompts)
{
    for (int i = 0; i < e->n_brains; i++) {
        struct request *r = calloc(1, sizeof *r);
        if (!r)
            return -ENOMEM;
        *r = (struct request){.kind = REQ_PROMPTS, .brain = i, .prompts = prompts};
        enqueue(e, r);
    }
    return 0;
}

int bj_engine_deliver(struct bj_engine *e, int brain, const char *from, const char *text)
{
    if (brain < 0 || brain >= e->n_brains)
        return -ENOENT;
    bj_brain_deliver(e->brains[brain], from, text); /* the inbox has its own lock */
    return 0;
}

void bj_engine_throttle(struct bj_engine *e, int ms)
{
    atomic_store(&e->throttle_ms, ms);
}

int64_t bj_engine_beat(const struct bj_engine *e)
{
    return e->started ? atomic_load(&((struct bj_engine *)e)->beat) : 0;
}
