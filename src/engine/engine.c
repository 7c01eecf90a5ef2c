/* engine: see engine.h. */
#include "engine.h"
#include "engine_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jar.h"
#include "labrun.h"
#include "log.h"
#include "pool.h"
#include "util.h"

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
    if (p->lab && p->lab->on && !(e->lab = bj_labrun_new(p->lab))) {
        snprintf(err, errlen, "out of memory");
        bj_engine_free(e);
        return NULL;
    }

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
    bj_labrun_free(e->lab);
    for (int i = 0; i < e->n_brains; i++) {
        if (e->bctx[i]) {
            llama_free(e->bctx[i]);
            llama_batch_free(e->bbatch[i]);
        }
        bj_brain_free(e->brains[i]);
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
    bj_pool_free(e->pool);
    free(e->works);
    free(e->items);
    free(e->line);
    free(e->latency_us);
    free(e->latency_steps);
    free(e->fills);
    free(e->ub_order);
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

/* Each loop turn of a lab engine counts LAB_TICK_US on the clock pauses run on: a replay of the
 * same file resurrects each brain at the same step, whatever the machine's speed. */
#define LAB_TICK_US 10000
static int64_t step_clock(void *ud) { return (int64_t)((struct bj_engine *)ud)->ticks * LAB_TICK_US; }

/* The clock of lives (pauses): the step clock in a lab run, else the monotonic clock. */
static int64_t life_clock(struct bj_engine *e) { return e->lab ? step_clock(e) : bj_now_us(); }

int bj_engine_add_brain(struct bj_engine *e, const struct bj_brain_params *bp)
{
    if (e->started || e->n_brains >= BJ_MAX_BRAINS)
        return -1;
    struct bj_brain_params p = *bp;
    p.out = &e->out;
    if (e->lab) {
        p.clock = step_clock;
        p.clock_ud = e;
    }
    struct bj_brain *b = bj_brain_new(&p);
    if (!b)
        return -1;
    e->brains[e->n_brains] = b;
    if (e->lab)
        bj_labrun_add(e->lab, e->n_brains, bp->cfg);
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

/* llama.cpp's abort callback, called by the CPU backend between the nodes of a graph: a decode
 * that makes progress, however slowly (a long prompt on a busy machine), is not a stall. */
static bool beat_in_decode(void *ud)
{
    struct bj_engine *e = ud;
    atomic_store(&e->beat, bj_now_us());
    return false; /* never abort */
}

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
                                                                      bj_sampler_chain(bj_brain_sampler(e->brains[i]))};
            cp.samplers = &e->sampler_cfg[first];
            cp.n_samplers = (size_t)n;
        }
        struct llama_context *ctx = llama_init_from_model(e->model, cp);
        if (!ctx) {
            snprintf(err, errlen, "cannot create a context of %u cells for %d brain%s on %s", cp.n_ctx,
                     (int)cp.n_seq_max, cp.n_seq_max == 1 ? "" : "s", e->label);
            return -1;
        }
        llama_set_abort_callback(ctx, beat_in_decode, e);
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
        bj_info("engine %s: batched, %d brains, %u KV cells (%s), %d threads (llama.cpp %d), sampling on the %s, %s",
                e->label, e->n_brains, llama_n_ctx(e->ctx), e->plan.unified ? "one shared pool" : "one stream per brain",
                e->n_threads, e->plan.threads_per_ctx, e->backend_sampling ? "backend" : "CPU",
                e->plan.use_mmap ? "mmap" : "read (no mmap)");
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

/* Brain i's sequence keeps only the first tokens the brain still counts on (bj_brain_kv_kept);
 * where the memory cannot be cut there (recurrent models), it is emptied and the brain told. */
void engine_trim_memory(struct bj_engine *e, int i)
{
    llama_memory_t mem = llama_get_memory(brain_ctx(e, i));
    int keep = bj_brain_kv_kept(e->brains[i]);
    if (keep > 0 && llama_memory_seq_rm(mem, brain_seq(e, i), keep, -1))
        return;
    llama_memory_seq_rm(mem, brain_seq(e, i), -1, -1);
    bj_brain_kv_lost(e->brains[i]);
}

/* ---- one step ---------------------------------------------------------------------------- */

void engine_kill_brain(struct bj_engine *e, int i, const char *cause, const char *detail)
{
    bj_brain_die(e->brains[i], cause, detail);
    engine_trim_memory(e, i);
    e->life_start[i] = 0;
    e->opening[i] = false;
}

/* Collects the work of this step; brains whose next chunk overflows their jar die here.
 *
 * Every brain that generates (one token to feed back) is in every step. Prompt work (a new life's
 * system prompt, what a brain observed) shares a budget of prompt tokens per step
 * (e->prompt_budget, about one ubatch), handed out oldest first: to the brains that have waited
 * longest for their prompt work, each up to --prefill-chunk tokens. A new life's opening (the
 * prompt before its first token) counts as if it had waited OPENING_HEAD_START steps longer, so
 * it goes ahead of what watchers have to read and a resurrection speaks in the step it begins
 * in. So a wave of resurrections cannot turn a step into a long prefill that stalls everyone's
 * generation, and no brain waits longer than the prompt work queued ahead of it takes (a bound in
 * steps: (ahead + the openings of the next OPENING_HEAD_START steps) / budget). */
#define OPENING_HEAD_START 8
#define READ_FLOOR 16

static bool resurrect_one(struct bj_engine *e, int i, int64_t now);
static void resurrect_all(struct bj_engine *e, const int *due, int n, int64_t now);
static void prepare_lives(struct bj_engine *e, const int *idx, int n);
static void flush(struct bj_engine *e);

/* The number of the step now being made (steps counts those finished). */
long engine_this_step(struct bj_engine *e) { return atomic_load(&e->steps) + 1; }

/* The place of brain i's prompt work in the line: lower goes first. */
static long line_key(const struct bj_engine *e, int i)
{
    return e->since[i] - (e->opening[i] ? OPENING_HEAD_START : 0);
}

/* Brains whose next input no longer fits in the jar die of it. With no pause the next life begins
 * in this very step (its opening joins the line): those of a wave are resurrected together
 * (resurrect_all), their prompts tokenized on the pool. */
static void end_full_lives(struct bj_engine *e)
{
    int due[BJ_MAX_BRAINS], n = 0;
    for (int i = 0; i < e->n_brains; i++) {
        struct bj_brain *b = e->brains[i];
        const llama_token *tokens;
        bool logits;
        int want = e->donor[i] >= 0 ? 0 : bj_brain_next_chunk(b, e->plan.prefill_chunk, &tokens, &logits);
        if (want == 0 || bj_brain_fits(b, want))
            continue;
        char detail[96];
        snprintf(detail, sizeof detail, "jar full: %d of %ld tokens used, %d more needed", bj_brain_n_past(b),
                 bj_brain_jar(b), want);
        engine_kill_brain(e, i, bj_death_cause_name(BJ_DEATH_JAR_FULL), detail);
        e->since[i] = 0;
        if (bj_brain_due(b, life_clock(e)))
            due[n++] = i;
    }
    resurrect_all(e, due, n, life_clock(e));
}

static int gather(struct bj_engine *e, struct work *works)
{
    int n = 0, m = 0;
    long step = engine_this_step(e);
    end_full_lives(e);
    for (int i = 0; i < e->n_brains; i++) {
        struct bj_brain *b = e->brains[i];
        struct work w = {.e = e, .i = i};
        /* A first life whose common start comes from another brain's opening waits for it: not
         * a starved brain (the donor's opening goes first), so not counted as a wait. */
        if (e->donor[i] >= 0 && engine_share_wait(e, i))
            continue;
        w.n = bj_brain_next_chunk(b, e->plan.prefill_chunk, &w.tokens, &w.logits);
        if (w.n == 0) {
            /* A live, unpaused brain always has work (a token to feed back or prompt): count
             * the steps it would go without. */
            enum bj_brain_state s = bj_brain_state(b);
            bool live = (s == BJ_BRAIN_THINKING || s == BJ_BRAIN_LISTENING || s == BJ_BRAIN_RESURRECTING) &&
                        bj_brain_due_at(b) == INT64_MAX; /* one waiting for its pace is not starved */
            e->wait[i] = live ? e->wait[i] + 1 : 0;
            if (e->wait[i] > e->max_wait)
                e->max_wait = e->wait[i];
            e->since[i] = 0;
            continue;
        }
        if (!bj_brain_fits(b, w.n)) /* a new life's opening that does not fit: it died of it */
            continue;
        if (w.n > 1 && e->prompt_budget > 0) { /* prompt work: in line for the budget */
            if (!e->since[i])
                e->since[i] = step;
            e->line[m] = w;
            /* insertion by (key, index): the line is short and mostly in order already */
            int k = m++;
            while (k > 0 && line_key(e, e->line[k - 1].i) > line_key(e, i)) {
                e->line[k] = e->line[k - 1];
                k--;
            }
            e->line[k] = w;
            continue;
        }
        e->since[i] = 0;
        e->wait[i] = 0;
        works[n++] = w;
    }
    /* While brains generate, what watchers read takes at most as many tokens as the step
     * generates (at least a prefill chunk), beyond which each reader still reads READ_FLOOR
     * tokens: a step stays near a generation step's time, and a new life's opening, which counts
     * on the whole budget, does not wait behind long steps. In a step that decodes an opening,
     * a watcher's reading yields to it (a step, never two in a row): each reader would cost the
     * step another ubatch (engine_batch.c) and its tokens, and the new life speaks sooner. */
    int budget = e->prompt_budget, reading = budget;
    if (n > 0)
        reading = n > e->plan.prefill_chunk ? n : e->plan.prefill_chunk;
    bool openings = false;
    for (int k = 0; k < m; k++)
        openings = openings || e->opening[e->line[k].i];
    for (int k = 0; k < m; k++) {
        struct work w = e->line[k];
        int take = w.n;
        if (!e->opening[w.i] && openings && !e->yielded[w.i]) {
            e->yielded[w.i] = true;
            if (++e->wait[w.i] > e->max_wait)
                e->max_wait = e->wait[w.i];
            continue;
        }
        e->yielded[w.i] = false;
        if (!e->opening[w.i] && take > reading)
            take = reading > READ_FLOOR ? reading : READ_FLOOR;
        if (take > budget)
            take = budget;
        if (take <= 0) {
            if (++e->wait[w.i] > e->max_wait)
                e->max_wait = e->wait[w.i];
            continue;
        }
        if (take < w.n) { /* the rest of its chunk next step: no logits before the end */
            w.n = take;
            w.logits = false;
        }
        if (!e->opening[w.i])
            reading = reading > take ? reading - take : 0;
        budget -= take;
        e->wait[w.i] = 0;
        works[n++] = w;
    }
    for (int k = 0; k < n; k++) {
        struct work *w = &works[k];
        e->decodes[w->i]++;
        w->injected = e->inject_brain[0] && e->p.inject_step == e->decodes[w->i] &&
                      strcmp(e->inject_brain, bj_brain_id(e->brains[w->i])) == 0;
    }
    return n;
}

/* After a successful decode of w, its token if it asked for one: already sampled on a thread
 * (w->sampled), or sampled here (from the decode graph's result with backend sampling). */
static void sample_one(struct bj_engine *e, struct work *w, struct llama_context *ctx)
{
    if (!w->logits || w->sampled)
        return;
    struct bj_sampler *smpl = bj_brain_sampler(e->brains[w->i]);
    llama_token t = LLAMA_TOKEN_NULL;
    if (e->backend_sampling) {
        /* One look-up; llama_sampler_sample would make four, each synchronizing the backends. */
        if ((t = llama_get_sampled_token_ith(ctx, w->out_idx)) != LLAMA_TOKEN_NULL)
            bj_sampler_accept(smpl, t);
    }
    if (t == LLAMA_TOKEN_NULL) {
        const float *row = llama_get_logits_ith(ctx, w->out_idx);
        t = row ? bj_sampler_sample(smpl, row) : LLAMA_TOKEN_NULL;
    }
    w->token = t;
    w->sampled = true;
}

/* Then the brain moves on and takes its token (text, events, end of thought). now_us: when the
 * step's tokens were sampled, for the resurrection latency. */
static void accept_one(struct bj_engine *e, struct work *w, int64_t now_us)
{
    struct bj_brain *b = e->brains[w->i];
    bj_brain_consumed(b, w->n);
    if (!w->logits)
        return;
    atomic_fetch_add(&e->generated, 1);
    e->opening[w->i] = false;
    if (e->life_start[w->i]) {
        int64_t d = now_us - e->life_start[w->i];
        long took = engine_this_step(e) - e->life_step[w->i] + 1;
        if (e->latency_us) {
            e->latency_us[e->n_latency % LATENCY_RING] = (int32_t)(d < INT32_MAX ? d : INT32_MAX);
            e->latency_steps[e->n_latency % LATENCY_RING] = (int32_t)(took < INT32_MAX ? took : INT32_MAX);
        }
        e->n_latency++;
        e->life_start[w->i] = 0;
        if (took > e->max_first_steps)
            e->max_first_steps = took;
        bj_debug("engine %s: brain %s spoke %.1f ms after its resurrection was due (step %ld)", e->label,
                 bj_brain_id(b), (double)d / 1000.0, atomic_load(&e->steps));
    }
    if (w->token == LLAMA_TOKEN_NULL) {
        engine_kill_brain(e, w->i, "INTERNAL_ERROR", "no token sampled (out of memory, or no logits)");
        return;
    }
    int rc = bj_brain_accept(b, w->token);
    if (rc != 0)
        engine_kill_brain(e, w->i, "INTERNAL_ERROR", strerror(-rc));
}

static void finish(struct bj_engine *e, struct work *w, struct llama_context *ctx)
{
    sample_one(e, w, ctx);
    accept_one(e, w, bj_now_us());
}

/* On a pool thread: touches only its own brain's sampler and logits row, never the context. */
static void sample_row(void *arg)
{
    struct work *w = arg;
    w->token = bj_sampler_sample(bj_brain_sampler(w->e->brains[w->i]), w->row);
    w->sampled = true;
}

/* Samples every brain of the step at once on the pool (up to the engine's threads): with
 * sampling on the CPU, each brain's pass over the vocabulary otherwise runs one after another
 * while the GPU (or the other cores) wait. Brains it does not sample, finish() does. */
static void sample_on_threads(struct bj_engine *e, struct work *works, int n, struct llama_context *ctx)
{
    int want = 0;
    for (int k = 0; k < n; k++)
        want += works[k].logits;
    if (e->backend_sampling || want < 2 || e->n_threads < 2)
        return;
    int m = 0;
    for (int k = 0; k < n; k++) { /* on this thread: the context is read by its owner only */
        struct work *w = &works[k];
        if (w->logits && (w->row = llama_get_logits_ith(ctx, w->out_idx)))
            e->items[m++] = w;
    }
    bj_pool_run(e->pool, sample_row, e->items, m, e->n_threads);
}

static void decode_failed(struct bj_engine *e, struct work *w, int rc)
{
    char detail[96];
    snprintf(detail, sizeof detail, "llama_decode returned %d%s", rc, w->injected ? " (injected fault)" : "");
    bj_warn("brain %s: %s", bj_brain_id(e->brains[w->i]), detail);
    engine_kill_brain(e, w->i, bj_death_cause_name(BJ_DEATH_DECODE_ERROR), detail);
}

/* A clone and its original decoded in the same step: how far apart their logits are. */
static void measure_twins(struct bj_engine *e, struct work *works, int n)
{
    for (int k = 0; k < n; k++) {
        int orig = works[k].logits ? bj_labrun_twin(e->lab, works[k].i) : -1;
        for (int m = 0; orig >= 0 && m < n; m++)
            if (works[m].i == orig && works[m].logits) {
                const float *a = llama_get_logits_ith(e->ctx, works[k].out_idx);
                const float *b = llama_get_logits_ith(e->ctx, works[m].out_idx);
                if (a && b)
                    bj_labrun_gap(e->lab, &e->seqs[works[k].i],
                                  bj_intervene_logits_gap(a, b, llama_vocab_n_tokens(e->vocab)));
            }
    }
}

/* One llama_decode of these works, then their sampling and acceptance. */
static void decode_batched(struct bj_engine *e, struct work *works, int n, bool fill_gaps)
{
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    int64_t t0 = bj_now_us();
    engine_batch_build(e, works, n, fill_gaps);
    int64_t t1 = bj_now_us();
    int rc = llama_decode(e->ctx, e->batch);
    if (rc == 0) /* decoding is asynchronous on a GPU: its time is until the results are there */
        llama_synchronize(e->ctx);
    engine_batch_unfill(e);
    int64_t t2 = bj_now_us();
    e->ph[PH_BATCH] += t1 - t0;
    e->ph[PH_DECODE] += t2 - t1;
    if (e->ub_order) { /* --profile: the ubatches llama.cpp cut this batch into */
        e->step_ubatches += engine_batch_ubatches(&e->batch, !e->plan.unified, (int)e->plan.n_ubatch, e->ub_order);
        e->step_fills += e->n_fills;
    }
    if (rc == 0) {
        if (e->lab)
            measure_twins(e, works, n);
        sample_on_threads(e, works, n, e->ctx);
        for (int k = 0; k < n; k++)
            sample_one(e, &works[k], e->ctx);
        int64_t t3 = bj_now_us();
        for (int k = 0; k < n; k++)
            accept_one(e, &works[k], t3);
        e->ph[PH_SAMPLE] += t3 - t2;
        e->ph[PH_ACCEPT] += bj_now_us() - t3;
        return;
    }
    /* Find whose tokens failed: decode each brain alone (a failed decode leaves the memory as
     * it was); the healthy ones go on, the failing one dies. */
    bj_debug("engine %s: batched decode failed (%d); retrying brain by brain", e->label, rc);
    for (int k = 0; k < n; k++) {
        e->batch.n_tokens = 0;
        engine_batch_put(&e->batch, &works[k], 0, works[k].n, bj_brain_n_past(e->brains[works[k].i]),
                         (llama_seq_id)works[k].i, n_vocab);
        int r = llama_decode(e->ctx, e->batch);
        if (r == 0)
            finish(e, &works[k], e->ctx);
        else
            decode_failed(e, &works[k], r);
    }
}

/* A pass over the weights, in tokens of an opening it is worth (the order of a wave's runs): on the
 * H100 hosts measured, a pass costs 4-9 ms beyond its tokens and an opening's token ~0.1 ms. */
#define OPENING_PASS_TOKENS 40

/* --log-level debug: where a run's time went, in ms since the phases were `before`: its decode
 * (the batch included), its sampling and acceptance, its publication. */
static size_t describe_run(const struct bj_engine *e, const int64_t *before, int brains, char *buf, size_t len,
                           bool first)
{
#define SINCE(p) ((double)(e->ph[p] - before[p]) / 1000.0)
    int n = snprintf(buf, len, "%s%d: %.1f+%.1f+%.1f", first ? "" : ", ", brains,
                     SINCE(PH_BATCH) + SINCE(PH_DECODE), SINCE(PH_SAMPLE) + SINCE(PH_ACCEPT), SINCE(PH_PUBLISH));
#undef SINCE
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len;
}

/* A wave of openings, run by run (engine_batch_runs): each run of neighbouring sequences is
 * decoded, sampled and published on its own, the run with the least work per brain first. The
 * wave makes the passes it would make in one decode, and most new lives speak after their own
 * run's pass instead of after the last. */
static void decode_openings(struct bj_engine *e, struct work *works, int n)
{
    int ends[BJ_MAX_BRAINS];
    int runs = engine_batch_runs(works, n, OPENING_PASS_TOKENS, ends);
    bool debug = bj_log_get_level() <= BJ_LOG_DEBUG;
    char each[512] = "";
    size_t len = 0;
    long ub = e->step_ubatches;
    int64_t t0 = bj_now_us();
    for (int r = 0, from = 0; r < runs; from = ends[r++]) {
        int64_t before[PH_COUNT];
        memcpy(before, e->ph, sizeof before);
        decode_batched(e, works + from, ends[r] - from, false);
        int64_t t = bj_now_us();
        flush(e);
        e->ph[PH_PUBLISH] += bj_now_us() - t;
        if (debug)
            len += describe_run(e, before, ends[r] - from, each + len, sizeof each - len, r == 0);
    }
    if (debug) { /* what a wave of resurrections costs (ubatches: --profile) */
        int tokens = 0;
        for (int k = 0; k < n; k++)
            tokens += works[k].n;
        bj_debug("engine %s: the openings' decode: %d openings, %d tokens, %d runs, %ld ubatches, %.1f ms (each "
                 "run's brains: decode+sampling+publication ms: %s)", e->label, n, tokens, runs,
                 e->step_ubatches - ub, (double)(bj_now_us() - t0) / 1000.0, each);
    }
}

/* A new life's opening that ends in this step goes first, in decodes of its own (a run each),
 * sampled and published before the others' tokens are decoded: with a stream per brain llama.cpp
 * cuts an opening of more than one token and the single tokens into ubatches of their own anyway
 * (engine_batch.c), so the step makes the same passes over the weights, and a wave of
 * resurrections speaks after its openings' passes instead of after the whole step. Not with one
 * shared pool (there they share one ubatch), nor in the lab (a clone's logits are compared with
 * its original's of the same decode). Openings get no fillers (engine_batch.c says why). */
static void step_batched(struct bj_engine *e, struct work *works, int n)
{
    int first = 0;
    if (!e->plan.unified && !e->lab)
        for (int k = 0; k < n; k++)
            if (e->opening[works[k].i] && works[k].logits && works[k].n > 1) {
                struct work w = works[k];
                works[k] = works[first];
                works[first++] = w;
            }
    if (first > 0)
        decode_openings(e, works, first);
    if (first < n)
        decode_batched(e, works + first, n - first, true);
}

static void parallel_decode(void *arg)
{
    struct work *w = arg;
    struct bj_engine *e = w->e;
    struct llama_batch *b = &e->bbatch[w->i];
    b->n_tokens = 0;
    engine_batch_put(b, w, 0, w->n, bj_brain_n_past(e->brains[w->i]), 0, llama_vocab_n_tokens(e->vocab));
    w->rc = llama_decode(e->bctx[w->i], *b);
}

/* Each brain's context is decoded on a thread of its own; a llama_context is only ever used by
 * the one thread that decodes it, and sampling happens back on the engine thread. At most
 * `n_threads` decodes run at once (each context has n_threads / brains threads, at least one),
 * so the step never runs more compute threads than the engine's share of cores: spinning
 * threads on oversubscribed cores are many times slower. */
static void step_parallel(struct bj_engine *e, struct work *works, int n)
{
    int per = e->plan.threads_per_ctx;
    for (int k = 0; k < n; k++)
        e->items[k] = &works[k];
    int64_t t0 = bj_now_us();
    bj_pool_run(e->pool, parallel_decode, e->items, n, e->n_threads / per);
    int64_t t1 = bj_now_us();
    for (int k = 0; k < n; k++)
        if (works[k].rc == 0)
            sample_one(e, &works[k], e->bctx[works[k].i]);
    int64_t t2 = bj_now_us();
    for (int k = 0; k < n; k++) {
        if (works[k].rc == 0)
            accept_one(e, &works[k], t2);
        else
            decode_failed(e, &works[k], works[k].rc);
    }
    e->ph[PH_DECODE] += t1 - t0; /* each thread's batch assembly included: it is tiny */
    e->ph[PH_SAMPLE] += t2 - t1;
    e->ph[PH_ACCEPT] += bj_now_us() - t2;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Brain i's pause is over: its next life begins (the latency counts from the end of the pause).
 * Returns whether it lives. */
static bool resurrect_one(struct bj_engine *e, int i, int64_t now)
{
    struct bj_brain *b = e->brains[i];
    int64_t due = bj_brain_resurrect_at(b);
    if (bj_brain_resurrect(b) != 0) {
        engine_kill_brain(e, i, "PROMPT_ERROR", "its new system prompt does not fit in its jar");
        return false;
    }
    engine_trim_memory(e, i);
    e->life_start[i] = e->lab ? bj_now_us() : due > 0 ? due : now; /* the latency is wall time */
    e->life_step[i] = engine_this_step(e);
    e->opening[i] = true;
    e->donor[i] = -1;
    bj_debug("engine %s: brain %s resurrected at step %ld, %.1f ms after due", e->label, bj_brain_id(b),
             atomic_load(&e->steps), (double)(now - due) / 1000.0);
    return true;
}

/* On a pool thread: touches only its brain (and reads the vocabulary and the prompts). */
static void prepare_life(void *arg) { bj_brain_prepare_life(arg); }

/* Brains idx[0 .. n) are about to begin lives: a wave of them tokenizes its system prompts on the
 * pool first. One after another on the engine thread that is ~0.15 ms each (llama.cpp's
 * SentencePiece tokenizer, a ~100-token prompt), all of it before the wave's first new token. */
static void prepare_lives(struct bj_engine *e, const int *idx, int n)
{
    if (n < 2 || !e->pool)
        return;
    for (int k = 0; k < n; k++)
        e->items[k] = e->brains[idx[k]];
    bj_pool_run(e->pool, prepare_life, e->items, n, e->n_threads);
}

/* Brains due[0 .. n) begin their next lives. */
static void resurrect_all(struct bj_engine *e, const int *due, int n, int64_t now)
{
    prepare_lives(e, due, n);
    for (int k = 0; k < n; k++)
        resurrect_one(e, due[k], now);
}

/* Resurrects brains whose pause is over; returns the earliest pending resurrection time. */
static int64_t resurrect_due(struct bj_engine *e, int64_t now)
{
    int due[BJ_MAX_BRAINS], n = 0;
    for (int i = 0; i < e->n_brains; i++)
        if (bj_brain_due(e->brains[i], now))
            due[n++] = i;
    resurrect_all(e, due, n, now);
    int64_t next = INT64_MAX;
    for (int i = 0; i < e->n_brains; i++) {
        struct bj_brain *b = e->brains[i];
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
    if (e->lab)
        bj_labrun_answers(e->lab, &e->out, e->seqs, e->n_brains);
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

/* On a GPU a graph's first decode pays for loading its kernels and setting up the libraries they
 * call (tens of ms): a decode of a few filler tokens, forgotten at once, pays for it before the
 * first life begins instead of in its opening (as llama.cpp's own tools do before they measure). */
#define WARM_UP_TOKENS 16

static void warm_up(struct bj_engine *e)
{
    if (e->sched != BJ_SCHED_BATCHED || !e->plan.gpu)
        return;
    int n = WARM_UP_TOKENS < (int)e->plan.n_batch ? WARM_UP_TOKENS : 1;
    engine_batch_warm_up(e, n);
    int64_t t0 = bj_now_us();
    int rc = llama_decode(e->ctx, e->batch);
    if (rc == 0)
        llama_synchronize(e->ctx);
    llama_memory_clear(llama_get_memory(e->ctx), true);
    e->batch.n_tokens = 0;
    bj_debug("engine %s: warm-up decode of %d tokens: %.1f ms (rc %d)", e->label, n,
             (double)(bj_now_us() - t0) / 1000.0, rc);
}

static void *engine_main(void *arg)
{
    struct bj_engine *e = arg;
    struct work *works = e->works;
    warm_up(e);
    int first[BJ_MAX_BRAINS], n_first = 0; /* brains that start dead begin with a resurrection */
    for (int i = 0; i < e->n_brains; i++)
        if (bj_brain_state(e->brains[i]) == BJ_BRAIN_LOADING)
            first[n_first++] = i;
    prepare_lives(e, first, n_first);
    for (int k = 0; k < n_first; k++) {
        e->opening[first[k]] = true;
        if (bj_brain_begin_life(e->brains[first[k]]) != 0)
            engine_kill_brain(e, first[k], "PROMPT_ERROR", "its system prompt does not fit in its jar");
    }
    engine_share_plan(e);
    flush(e);
    int stall_ix = e->stall_brain[0] ? bj_engine_index(e, e->stall_brain) : -1;
    while (!atomic_load(&e->stop)) {
        atomic_store(&e->beat, bj_now_us());
        throttle(e);
        /* A turn that decodes is a step; its time, from here to its events' publication, is
         * what the profile and the generation-only speed count: brainjar's own work included. */
        int64_t t_turn = bj_now_us();
        memset(e->ph, 0, sizeof e->ph);
        engine_apply_requests(e);
        if (e->lab)
            e->ticks++;
        int64_t next_wake = resurrect_due(e, life_clock(e));
        int64_t now = bj_now_us();
        if (e->lab)
            bj_labrun_turn(e->lab, e->seqs, e->n_brains, engine_this_step(e));
        if (now - e->last_status >= 1000000) {
            for (int i = 0; i < e->n_brains; i++)
                bj_brain_publish_status(e->brains[i], now);
            e->last_status = now;
        }
        int64_t t_gather = bj_now_us();
        int n = gather(e, works);
        if (n == 0) {
            flush(e);
            if (e->lab && next_wake != INT64_MAX)
                continue; /* a pause on the step clock: the next turn brings it closer */
            for (int i = 0; i < e->n_brains; i++) { /* brains thinking at a pace wake us too */
                int64_t due = bj_brain_due_at(e->brains[i]);
                next_wake = due < next_wake ? due : next_wake;
            }
            idle_wait(e, next_wake);
            continue;
        }
        int64_t t0 = bj_now_us();
        e->ph[PH_HOUSE] += t_gather - t_turn;
        e->ph[PH_BATCH] += t0 - t_gather;
        if (!e->t_first)
            e->t_first = t0;
        bool generation_only = true;
        int opening_tokens = 0;
        for (int k = 0; k < n; k++) {
            generation_only = generation_only && works[k].n == 1 && works[k].logits;
            opening_tokens += e->opening[works[k].i] ? works[k].n : 0;
        }
        if (stall_ix >= 0 && engine_this_step(e) == e->p.stall_step) {
            bj_warn("engine %s: stalling %d ms (--inject-stall)", e->label, e->p.stall_ms);
            usleep((useconds_t)e->p.stall_ms * 1000);
        }
        if (e->sched == BJ_SCHED_BATCHED)
            step_batched(e, works, n);
        else
            step_parallel(e, works, n);
        e->t_last = bj_now_us();
        flush(e);
        int64_t t_end = bj_now_us();
        e->ph[PH_PUBLISH] += t_end - e->t_last;
        for (int g = 0; g < (generation_only ? 2 : 1); g++) {
            struct prof *p = &e->prof[g];
            for (int ph = 0; ph < PH_COUNT; ph++)
                p->us[ph] += e->ph[ph];
            p->total_us += t_end - t_turn;
            p->steps++;
        }
        if (generation_only) {
            e->tg_us += t_end - t_turn;
            e->tg_tokens += n;
        }
        if (e->ub_order) { /* batched with --profile */
            long ub = e->step_ubatches;
            e->ubatches[0] += ub;
            e->ubatches[1] += generation_only ? ub : 0;
            e->ubatches[2] += opening_tokens > 0 ? ub : 0;
            e->filled[0] += e->step_fills;
            e->filled[1] += generation_only ? e->step_fills : 0;
            e->step_ubatches = e->step_fills = 0;
        }
        if (opening_tokens > 0) {
            e->opening_us += t_end - t_turn;
            e->opening_steps++;
            e->opening_tokens += opening_tokens;
        }
        long steps = atomic_fetch_add(&e->steps, 1) + 1;
        if (e->p.max_steps > 0 && steps >= e->p.max_steps)
            break;
        if (e->lab && bj_labrun_done(e->lab, e->n_brains))
            break; /* the experiment's thoughts = N (docs/LAB.md) */
    }
    flush(e);
    if (e->plan.settings.profile)
        engine_report_profile(e);
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
    for (int i = 0; i < e->n_brains; i++)
        e->seqs[i] = (struct bj_seq){brain_ctx(e, i), brain_seq(e, i), e->brains[i]};
    /* What every step reuses. The pool serves the parallel schedule's decodes and, batched, the
     * CPU sampling of every brain at once, and a wave of new lives' tokenizing (prepare_lives);
     * with sampling in the graph it is not made. */
    if (!e->works && (!(e->works = calloc(BJ_MAX_BRAINS, sizeof *e->works)) ||
                      !(e->items = calloc(BJ_MAX_BRAINS, sizeof *e->items)) ||
                      !(e->line = calloc(BJ_MAX_BRAINS, sizeof *e->line)) ||
                      !(e->latency_us = calloc(LATENCY_RING, sizeof *e->latency_us)) ||
                      !(e->latency_steps = calloc(LATENCY_RING, sizeof *e->latency_steps)))) {
        snprintf(err, errlen, "engine %s: out of memory", e->label);
        return -1;
    }
    /* About one ubatch of prompt per step, and never more than the batch holds beside one
     * token of every brain. The parallel schedule decodes each brain alone: no shared budget. */
    if (e->sched == BJ_SCHED_BATCHED) {
        int want = (int)e->plan.n_ubatch > e->plan.prefill_chunk ? (int)e->plan.n_ubatch : e->plan.prefill_chunk;
        int room = (int)e->plan.n_batch - e->n_brains;
        e->prompt_budget = want < room ? want : room;
        if (e->prompt_budget < 1)
            e->prompt_budget = 1;
        e->can_fill = !e->plan.unified && !llama_model_is_recurrent(e->model) && !llama_model_is_hybrid(e->model);
        llama_token bos = llama_vocab_bos(e->vocab);
        e->filler = bos >= 0 && bos < llama_vocab_n_tokens(e->vocab) ? bos : 0;
        if ((!e->fills && !(e->fills = calloc(BJ_MAX_BRAINS, sizeof *e->fills))) ||
            (e->plan.settings.profile && !e->ub_order && !(e->ub_order = calloc(e->plan.n_batch, sizeof *e->ub_order)))) {
            snprintf(err, errlen, "engine %s: out of memory", e->label);
            return -1;
        }
    }
    int width = e->sched == BJ_SCHED_PARALLEL ? e->n_threads / (e->plan.threads_per_ctx > 0 ? e->plan.threads_per_ctx : 1)
                : e->backend_sampling          ? 1
                                               : e->n_threads;
    if (width > e->n_brains)
        width = e->n_brains;
    if (!e->pool && width > 1 && !(e->pool = bj_pool_new(width - 1))) {
        snprintf(err, errlen, "engine %s: out of memory", e->label);
        return -1;
    }
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

int64_t bj_engine_beat(const struct bj_engine *e)
{
    return e->started ? atomic_load(&((struct bj_engine *)e)->beat) : 0;
}
