/* brain: one mind's life as a state machine. It has no thread of its own: its engine drives
 * it (feeds its tokens to llama_decode, hands it sampled tokens, kills and resurrects it).
 *
 * A life: the system prompt (with the death count) is prefilled, then thoughts follow one
 * another in the same context (no re-prefill): THINKING generates a thought; at its end the
 * brain is LISTENING for a moment and takes in what it watches (its inbox), then thinks again.
 * When the next tokens would overflow the jar the brain dies (JAR_FULL); other causes come from
 * the engine (DECODE_ERROR) or an operator (OPERATOR). A dead brain is resurrected after the
 * pause with its memory cleared and its death count written into its new system prompt.
 *
 * Threads: everything but bj_brain_deliver() runs on the owning engine's thread.
 * bj_brain_deliver() may be called from any thread (it only touches the locked inbox). */
#ifndef BJ_BRAIN_H
#define BJ_BRAIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <llama.h>

#include "event.h"
#include "spec.h"
#include "prompt.h"
#include "sampler.h"
#include "util.h"

enum bj_brain_state {
    BJ_BRAIN_LOADING,
    BJ_BRAIN_THINKING,
    BJ_BRAIN_LISTENING,
    BJ_BRAIN_DYING,
    BJ_BRAIN_DEAD,
    BJ_BRAIN_RESURRECTING,
    BJ_BRAIN_PAUSED,
};
const char *bj_brain_state_name(enum bj_brain_state s);

struct bj_brain;

struct bj_brain_params {
    const struct bj_brain_cfg *cfg;
    const struct bj_prompts *prompts;
    const struct llama_vocab *vocab;
    struct bj_evbuf *out;      /* where its events go (the engine's step buffer) */
    long jar_tokens;
    int pause_ms;
    double pace;               /* tokens it thinks per second at most; 0: unpaced */
    const char *dump_dir; /* NULL: no context dumps */
    const char *chat_template; /* NULL: raw completion; else a llama.cpp template (or built-in name) */
    uint32_t initial_deaths;
    bool start_dead;       /* begins DEAD and due: its first life starts with a resurrection */
    /* The clock its pause runs on (microseconds); NULL: the monotonic clock. A lab run's engine
     * gives its step clock, so that a replay resurrects at the same step. */
    int64_t (*clock)(void *ud);
    void *clock_ud;
};

struct bj_brain *bj_brain_new(const struct bj_brain_params *p);
void bj_brain_free(struct bj_brain *b);

const char *bj_brain_id(const struct bj_brain *b);
enum bj_brain_state bj_brain_state(const struct bj_brain *b);
uint32_t bj_brain_deaths(const struct bj_brain *b);
int bj_brain_n_past(const struct bj_brain *b);
long bj_brain_jar(const struct bj_brain *b);

/* Starts a life: system prompt and first thought cue queued for prefill. Returns 0, or -1 when
 * the prompt does not tokenize or does not fit in the jar. */
int bj_brain_begin_life(struct bj_brain *b);
/* Tokenizes the system prompt of the life to begin ahead of bj_brain_begin_life, which takes it
 * when the prompt is still the same text (else it tokenizes again). Touches b, the vocabulary and
 * the prompts only, read-only but for b: brains of one wave prepare on threads of their own at
 * once. Returns 0 or a negative errno (then the life tokenizes at its start). */
int bj_brain_prepare_life(struct bj_brain *b);

/* The next tokens to decode: up to max_n of the queued input. *want_logits is true when the
 * chunk empties the queue and the brain will sample next. Returns the count (0: no work). */
int bj_brain_next_chunk(struct bj_brain *b, int max_n, const llama_token **tokens, bool *want_logits);

/* How many of its first tokens the context must keep: after a death, the part of the life's
 * opening that was decoded (the next life may begin the same way: its system prompt up to the
 * death count); after a new life begins, the part it takes over (its n_past). The engine removes
 * the rest of the brain's sequence. */
int bj_brain_kv_kept(const struct bj_brain *b);

/* The context could not keep them (a model whose memory cannot be cut, a new context): the brain
 * forgets them and decodes its opening from the start. */
void bj_brain_kv_lost(struct bj_brain *b);

/* With a pace: the monotonic time its next generated token is due (INT64_MAX: not waiting for
 * its pace). bj_brain_next_chunk offers no work before then. */
int64_t bj_brain_due_at(const struct bj_brain *b);

/* Whether n more tokens fit in the jar. */
bool bj_brain_fits(const struct bj_brain *b, int n);

/* The engine decoded the first n tokens of the chunk. */
void bj_brain_consumed(struct bj_brain *b, int n);

/* A token was sampled for this brain: streams it, and ends the thought when due. Returns 0, or
 * a negative errno when the brain cannot go on (out of memory, its next cue does not tokenize):
 * the engine then kills it. */
int bj_brain_accept(struct bj_brain *b, llama_token t);

/* Ends the life (cause JAR_FULL, DECODE_ERROR, OPERATOR, ...): deaths+1, events, hooks. The
 * engine clears the brain's KV memory itself. */
void bj_brain_die(struct bj_brain *b, const char *cause, const char *detail);

/* For DEAD brains: whether the pause is over at now_us (monotonic). */
bool bj_brain_due(const struct bj_brain *b, int64_t now_us);
/* Monotonic time the pause ends. */
int64_t bj_brain_resurrect_at(const struct bj_brain *b);

/* Brings a DEAD brain back: event, hook, new life. Returns bj_brain_begin_life's result. */
int bj_brain_resurrect(struct bj_brain *b);

/* Prompt files used from the next life on. */
void bj_brain_set_prompts(struct bj_brain *b, const struct bj_prompts *prompts);

/* Operator pause/resume: a paused brain keeps its memory and gets no decode. */
void bj_brain_set_paused(struct bj_brain *b, bool paused);

/* Queues text the brain will take in at its next thought boundary. Any thread. */
void bj_brain_deliver(struct bj_brain *b, const char *from, const char *text);

/* Publishes a status event (state, jar fill, tokens/s). */
void bj_brain_publish_status(struct bj_brain *b, int64_t now_us);

/* Writes the current life's context text to the dump directory, if one is set. */
void bj_brain_dump_context(const struct bj_brain *b);

/* ---- the lab's interventions (engine thread, between steps; engine/intervene.c) ----------- */
/* The tokens its KV sequence holds (positions 0..n-1): n, or -1 when the mirror was lost. */
int bj_brain_ctx(const struct bj_brain *b, const llama_token **tokens);
/* Tokens of this life's opening (system prompt and first cue). */
int bj_brain_opening_len(const struct bj_brain *b);
/* This life's opening itself: its length, *tokens pointing at it (owned by the brain). */
int bj_brain_opening(const struct bj_brain *b, const llama_token **tokens);
/* The first n tokens of its opening are in its KV sequence already (copied there from another
 * brain's, engine_share.c): counted as decoded. Only before anything of this life is decoded,
 * and never the last token, whose logits it needs; -EINVAL otherwise. */
int bj_brain_adopt(struct bj_brain *b, int n);
uint32_t bj_brain_thought(const struct bj_brain *b);
/* The last finished thought's span in its memory: its length (0: none whole) and *p0. */
int bj_brain_last_thought(const struct bj_brain *b, int *p0);
/* The KV lost positions [p0, p0+n) and the later ones moved down by n: the brain follows (its
 * position count drops by n, its context text loses the span). 0 or -errno. */
int bj_brain_forget(struct bj_brain *b, int p0, int n);
/* The KV was cut at p0: n tokens (a new past) and then what it had yet to read are decoded again
 * from there. 0 or -errno. */
int bj_brain_rewrite(struct bj_brain *b, int p0, const llama_token *tokens, int n);
/* A false memory it takes in as a thought of its own at its next thought boundary (the one
 * that just passed, when nothing after it is decoded yet). 1: placed at the boundary that just
 * passed, 0: at the next one, or -errno. */
int bj_brain_inject(struct bj_brain *b, const char *text);
/* A question it reads just before its next thought (the same boundary rule): that thought is
 * the answer. As bj_brain_inject. */
int bj_brain_ask(struct bj_brain *b, const char *text);
/* A new jar size (the engine checks what its context can hold). */
void bj_brain_set_jar(struct bj_brain *b, long tokens);
/* dst becomes src's twin: the same memory (the engine copied the sequence), the same place in
 * the same thought; its own sampler and name. 0, -EINVAL (src not alive, chat format), -ENOMEM. */
int bj_brain_take_mind(struct bj_brain *dst, const struct bj_brain *src);
/* Sends ev (type, cause, from, text set by the caller) as this brain's event this step. */
void bj_brain_emit(struct bj_brain *b, struct bj_event *ev);

/* The brain's sampler: the engine samples its token with it (or, with sampling in the decode
 * graph, hands its chain to the context). */
struct bj_sampler *bj_brain_sampler(struct bj_brain *b);

#endif
