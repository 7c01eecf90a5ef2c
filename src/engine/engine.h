/* engine: one loaded model and the brains that think on it.
 *
 * The model is loaded once (mmap by default) however many brains use it. Each scheduling step
 * gathers every brain with work (a chunk of prompt to prefill, or the one token it just
 * sampled), decodes them together and samples each brain, so N brains cost one model plus N
 * jars and share every pass over the weights. Batched, the brains that generate are in every
 * step and prompt work shares about one ubatch of tokens per step, oldest first. Two schedules:
 *   batched   one llama_context, one sequence per brain, one llama_decode per step;
 *   parallel  one llama_context per brain, decoded at once in threads (threads split the cores).
 * A failed batched decode is retried brain by brain, so a fault kills only the brain it
 * belongs to.
 *
 * Every event of a step (tokens, thoughts, deaths, ...) is collected while the step runs, handed
 * to on_events (the hive makes the deaths durable and routes thoughts to watchers) and then
 * published in one bus operation. Brains are addressed by their index in this engine; no
 * caller outside the engine ever holds a brain.
 *
 * Threads: new/add_brain/start/stop/free on the main thread; the engine runs its own thread
 * between start and stop; the operator calls, deliver, throttle and beat from any thread. */
#ifndef BJ_ENGINE_H
#define BJ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "brain.h"
#include "bus.h"
#include "plan.h"
#include "spec.h"

struct bj_engine;

struct bj_engine_params {
    const char *model_path;
    const char *model_label;  /* for messages (the embedded model has a /proc path) */
    const struct bj_plan *plan; /* how it runs (copied): schedule, threads, load mode, contexts */
    struct llama_model *model;  /* already loaded (shared, not owned; model_path is then a label), or NULL */
    const char *stall_brain;    /* fault injection: the engine sleeps stall_ms at its stall_step-th step */
    long stall_step;
    int stall_ms;
    long max_steps;           /* 0: unlimited */
    struct bj_bus *bus;
    const char *inject_brain; /* fault injection: brain whose Nth decode gets an invalid token */
    long inject_step;
    void (*on_done)(void *ud);/* called on the engine thread when it stops by itself (max_steps) */
    void *on_done_ud;
    /* Called on the engine thread with each step's events before they are published. */
    void (*on_events)(void *ud, const struct bj_event *evs, size_t n);
    void *on_events_ud;
    /* An experiment (lab.h) whose interventions and questions this engine fires on its brains
     * (engine/labrun.c); NULL or lab->on false: none. Must outlive the engine. */
    const struct bj_lab_spec *lab;
};

void bj_engine_params_default(struct bj_engine_params *p);

/* Loads the model (progress is logged). NULL with err on failure. */
struct bj_engine *bj_engine_new(const struct bj_engine_params *p, char *err, size_t errlen);
void bj_engine_free(struct bj_engine *e);

const struct llama_model *bj_engine_model(const struct bj_engine *e);
const struct llama_vocab *bj_engine_vocab(const struct bj_engine *e);

/* Adds a brain (before start; bp->out is set by the engine). The engine owns it. Returns its
 * index in this engine, or -1 when out of memory or full. */
int bj_engine_add_brain(struct bj_engine *e, const struct bj_brain_params *bp);
/* Index of brain `id` in this engine, or -1. */
int bj_engine_index(const struct bj_engine *e, const char *id);

/* Brains added so far. */
int bj_engine_n_brains(const struct bj_engine *e);

/* Creates the contexts and starts the engine thread. Returns 0 or -1 with err. */
int bj_engine_start(struct bj_engine *e, char *err, size_t errlen);

/* Asks the engine to stop after its current step and joins its thread. Idempotent. */
void bj_engine_stop(struct bj_engine *e);

/* Gives up a stalled engine without waiting for it: it publishes nothing more, and its thread
 * ends by itself whenever it comes back. Main thread. */
void bj_engine_abandon(struct bj_engine *e);
/* For an abandoned engine: whether its thread has ended (then bj_engine_free is safe). */
bool bj_engine_finished(struct bj_engine *e);

/* Hands over the loaded model: the engine no longer frees it (the caller must outlive the
 * engine's contexts with it). */
struct llama_model *bj_engine_take_model(struct bj_engine *e);

/* The schedule the plan chose. */
enum bj_schedule bj_engine_schedule(const struct bj_engine *e);

/* Operator actions by brain index, from any thread; applied at the engine's next step. Return
 * 0, -ENOENT (no such brain) or -ENOMEM. */
int bj_engine_kill(struct bj_engine *e, int brain, const char *cause);
int bj_engine_pause(struct bj_engine *e, int brain, bool paused);
int bj_engine_resurrect(struct bj_engine *e, int brain); /* a dead brain now, skipping its pause */
int bj_engine_say(struct bj_engine *e, int brain, const char *from, const char *text);
/* Fires the experiment's intervention `name` on the brain at the next step (an operator). 0,
 * -ENOENT (no such brain, or no experiment), -ENOMEM; an intervention the brain has not is
 * dropped at the step (logged). */
int bj_engine_intervene(struct bj_engine *e, int brain, const char *name, const char *who);
/* New prompt files for every brain, from their next life on (SIGHUP); `prompts` must outlive the
 * engine. Any thread. */
int bj_engine_set_prompts(struct bj_engine *e, const struct bj_prompts *prompts);
/* Queues text for the brain's next thought boundary at once (its inbox is locked). */
int bj_engine_deliver(struct bj_engine *e, int brain, const char *from, const char *text);

/* Sleep between steps (the watchdog's "slow down"); 0: none. Any thread. */
void bj_engine_throttle(struct bj_engine *e, int ms);
/* Monotonic time of the engine loop's last turn (0 before start): the supervisor's heartbeat. */
int64_t bj_engine_beat(const struct bj_engine *e);

/* Decode steps done so far (approximate when read from another thread). */
long bj_engine_steps(const struct bj_engine *e);

struct bj_engine_stats {
    long generated;  /* tokens sampled */
    double busy_s;   /* from the first to the last decode step */
    long tg_tokens;  /* tokens of steps in which every brain generated one token (no prefill) */
    double tg_s;     /* time of those steps (whole loop turns, brainjar's own work included): pure
                      * generation speed, as llama-batched-bench's S_TG */
};
/* Read after bj_engine_stop (the engine thread writes them). */
void bj_engine_stats(const struct bj_engine *e, struct bj_engine_stats *st);

#endif
