/* engine: one loaded model and the brains that think on it.
 *
 * The model is loaded once (mmap by default) however many brains use it. Each scheduling step
 * gathers every brain with work (a chunk of prompt to prefill, or the one token it just
 * sampled), decodes them together and samples each brain, so N brains cost one model plus N
 * jars and share every pass over the weights. Two schedules:
 *   batched   one llama_context, one sequence per brain, one llama_decode per step;
 *   parallel  one llama_context per brain, decoded at once in threads (threads split the cores).
 * A failed batched decode is retried brain by brain, so a fault kills only the brain it
 * belongs to.
 *
 * Threads: new/add_brain/start/stop/free on the main thread; the engine runs its own thread
 * between start and stop; deliver/kill/pause may be called from any thread. */
#ifndef BJ_ENGINE_H
#define BJ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "brain.h"
#include "bus.h"
#include "spec.h"

struct bj_engine;

struct bj_engine_params {
    const char *model_path;
    const char *model_label;  /* for messages (the embedded model has a /proc path) */
    enum bj_schedule schedule;
    int n_threads;            /* for this engine; 0: all online cores */
    int n_gpu_layers;
    enum ggml_type kv_type;
    int flash_attn;           /* -1 auto, 0 off, 1 on */
    int prefill_chunk;
    bool use_mmap;
    int backend_sampling;     /* -1 auto (on when layers are on a GPU), 0 off, 1 on */
    long max_steps;           /* 0: unlimited */
    struct bj_bus *bus;
    const char *inject_brain; /* fault injection: brain whose Nth decode gets an invalid token */
    long inject_step;
    void (*on_done)(void *ud);/* called on the engine thread when it stops by itself (max_steps) */
    void *on_done_ud;
};

void bj_engine_params_default(struct bj_engine_params *p);

/* Loads the model (progress is logged). NULL with err on failure. */
struct bj_engine *bj_engine_new(const struct bj_engine_params *p, char *err, size_t errlen);
void bj_engine_free(struct bj_engine *e);

const struct llama_model *bj_engine_model(const struct bj_engine *e);
const struct llama_vocab *bj_engine_vocab(const struct bj_engine *e);

/* Adds a brain (before start). The engine owns it. Returns it, or NULL when out of memory. */
struct bj_brain *bj_engine_add_brain(struct bj_engine *e, const struct bj_brain_params *bp);

/* Brains added so far. */
int bj_engine_n_brains(const struct bj_engine *e);

/* Creates the contexts and starts the engine thread. Returns 0 or -1 with err. */
int bj_engine_start(struct bj_engine *e, char *err, size_t errlen);

/* Asks the engine to stop after its current step and joins its thread. Idempotent. */
void bj_engine_stop(struct bj_engine *e);

/* The schedule actually used (auto resolved). */
enum bj_schedule bj_engine_schedule(const struct bj_engine *e);

/* Operator actions, from any thread; applied at the next step. Return 0, or -1 if no brain. */
int bj_engine_kill(struct bj_engine *e, const char *brain, const char *cause);
int bj_engine_pause(struct bj_engine *e, const char *brain, bool paused);

/* Finds a brain of this engine by id (any thread; brains are fixed after start). */
struct bj_brain *bj_engine_find(struct bj_engine *e, const char *brain);

/* Decode steps done so far (approximate when read from another thread). */
long bj_engine_steps(const struct bj_engine *e);

struct bj_engine_stats {
    long generated;  /* tokens sampled */
    double busy_s;   /* from the first to the last decode step */
    long tg_tokens;  /* tokens of steps in which every brain generated one token (no prefill) */
    double tg_s;     /* time of those steps: pure generation speed, as llama-batched-bench's S_TG */
};
/* Read after bj_engine_stop (the engine thread writes them). */
void bj_engine_stats(const struct bj_engine *e, struct bj_engine_stats *st);

#endif
