/* engine_int.h: what the engine's rooms share: engine.c (lifecycle, contexts, the step and the
 * loop), engine_req.c (the request queue), engine_prof.c (the profile). Not for use elsewhere;
 * everything here runs on the engine's thread unless it says otherwise. */
#ifndef BJ_ENGINE_INT_H
#define BJ_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <llama.h>

#include "brain.h"
#include "engine.h"
#include "event.h"
#include "intervene.h"
#include "pool.h"
#include "plan.h"

/* Where a step's time goes (the profile): brainjar's own work around llama_decode. */
enum phase { PH_HOUSE, PH_BATCH, PH_DECODE, PH_SAMPLE, PH_ACCEPT, PH_PUBLISH, PH_COUNT };

struct prof {
    int64_t us[PH_COUNT];
    int64_t total_us;  /* whole loop turns that decoded something */
    long steps;
};

/* A filler token put into an idle brain's sequence for one decode (engine_batch.c). */
struct fill {
    llama_seq_id seq;
    llama_pos pos;
};

/* Resurrection latencies kept for the percentiles (the last ones when there are more). */
#define LATENCY_RING 65536

enum req_kind { REQ_KILL, REQ_PAUSE, REQ_RESUME, REQ_RESURRECT, REQ_SAY, REQ_PROMPTS, REQ_LAB };

struct request {
    struct request *next;
    enum req_kind kind;
    int brain;
    char cause[24];
    char from[BJ_NAME_MAX]; /* REQ_SAY; REQ_LAB: who */
    char *text;             /* REQ_SAY: owned; REQ_LAB: the intervention's name */
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
    struct llama_context *bctx[BJ_MAX_BRAINS]; /* parallel */
    struct llama_batch bbatch[BJ_MAX_BRAINS];

    /* Owned by the engine, made at start, reused by every step (no allocation nor thread
     * creation in the loop): the step's work, pointers into it for the pool, the pool. */
    struct work *works;
    void **items;
    struct bj_pool *pool;

    /* Profile and fairness (engine thread; read after stop). */
    int64_t ph[PH_COUNT];      /* this step */
    struct prof prof[2];       /* [0] every step with work, [1] generation-only steps */
    long wait[BJ_MAX_BRAINS];  /* steps a live brain went without work, in a row */
    long since[BJ_MAX_BRAINS]; /* step from which its current prompt work waits (0: none) */
    bool yielded[BJ_MAX_BRAINS]; /* its reading yielded the last step to a new life's opening */
    struct work *line;         /* this step's prompt work, oldest first */
    int prompt_budget;         /* batched: prompt tokens per step (0: no limit) */
    long max_wait;
    int64_t life_start[BJ_MAX_BRAINS]; /* monotonic: when its resurrection was due; 0 once it spoke */
    long life_step[BJ_MAX_BRAINS];     /* the step its new life began in */
    bool opening[BJ_MAX_BRAINS];       /* its life's opening is not decoded yet (first lives too) */
    long max_first_steps;      /* most steps a new life took to its first token (1: the same step) */
    int64_t opening_us;        /* time in steps that decoded some life's opening (the latency's steps) */
    long opening_steps, opening_tokens;
    int32_t *latency_us;       /* ring of resurrection -> first new token latencies */
    int32_t *latency_steps;    /* ... and the steps each took (1: the step its life began in) */
    long n_latency;
    /* First lives whose openings begin alike (engine_share.c): brain i copies its first share[i]
     * tokens from donor[i]'s sequence (-1: decodes its own). */
    int donor[BJ_MAX_BRAINS];
    int share[BJ_MAX_BRAINS];
    long shared_tokens;        /* opening tokens copied instead of decoded */
    /* The batch's layout (engine_batch.c): fillers keep the run of sequence ids whole. */
    bool can_fill;             /* a stream per brain, and memory that can be cut again */
    llama_token filler;
    struct fill *fills;        /* this step's, removed after its decode */
    int n_fills;
    int *ub_order;             /* --profile: scratch of engine_batch_ubatches */
    long step_ubatches;        /* --profile: this step's ubatches (its decodes') and fillers */
    long step_fills;
    long ubatches[3];          /* --profile: ubatches of all steps, generation-only ones, opening ones */
    long filled[2];            /* --profile: fillers of all steps, generation-only ones */

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
    struct bj_labrun *lab;    /* an experiment's triggers and records (NULL: none) */
    long ticks;               /* with a lab: loop turns, the step clock pauses run on */
    struct bj_seq seqs[BJ_MAX_BRAINS]; /* each brain's context and sequence, for the lab */
};

/* engine.c */
void engine_kill_brain(struct bj_engine *e, int i, const char *cause, const char *detail);
void engine_trim_memory(struct bj_engine *e, int i);
/* The number of the step being made (1 + the steps done). */
long engine_this_step(struct bj_engine *e);
/* engine_req.c: takes the queue under the lock and applies each request. */
void engine_apply_requests(struct bj_engine *e);
/* engine_prof.c: logs where the steps' time went and the resurrection latency. */
void engine_report_profile(struct bj_engine *e);

/* engine_batch.c: puts tokens [from, to) of w at positions n_past + k into sequence seq of b; the
 * work's last token asks for logits if w does (its batch index: w->out_idx). An injected fault
 * makes the first token invalid. */
void engine_batch_put(struct llama_batch *b, struct work *w, int from, int to, llama_pos n_past, llama_seq_id seq,
                      int n_vocab);
/* Puts the step's works into e->batch (each work's out_idx set), every brain's
 * first token in sequence order, then the rest; with fill_gaps, idle brains between busy ones get
 * fillers. */
void engine_batch_build(struct bj_engine *e, struct work *works, int n, bool fill_gaps);
/* Puts n filler tokens at positions 0 .. n - 1 of sequence 0 into e->batch, the last asking for
 * logits: the GPU's warm-up decode (engine.c). */
void engine_batch_warm_up(struct bj_engine *e, int n);
/* Removes this step's fillers from the memory (after the decode, whatever it returned); e->n_fills
 * still counts them until the next build. */
void engine_batch_unfill(struct bj_engine *e);
/* How many ubatches llama.cpp cuts b into (llama_kv_cache::init_batch): with one pool, by size;
 * with streams, runs of consecutive sequence ids taking equal tokens each. order: scratch of
 * b->n_tokens ints. */
int engine_batch_ubatches(const struct llama_batch *b, bool streams, int n_ubatch, int *order);
/* Orders a wave of openings for decoding run by run, with a stream per brain: works sorted into
 * runs of consecutive sequence ids (one ubatch each, or more where a run exceeds n_ubatch), the
 * run with the least work per brain first, a pass over the weights counted as pass_tokens tokens.
 * Run r is works[ends[r - 1] .. ends[r]) (from 0); returns the number of runs. */
int engine_batch_runs(struct work *works, int n, int pass_tokens, int *ends);

/* engine_share.c */
void engine_share_plan(struct bj_engine *e);
bool engine_share_wait(struct bj_engine *e, int i);
/* Copies the first n positions of sequence from into the empty sequence to of one context
 * (unified: one pool of cells; otherwise a stream per sequence). False when the memory cannot
 * be cut after n (recurrent models): to is left empty. */
bool engine_share_lend(struct llama_context *ctx, bool unified, llama_seq_id from, llama_seq_id to, int n);

#endif
