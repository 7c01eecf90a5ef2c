/* intervene: the lab's acts on a brain's real memory (docs/LAB.md), done with llama.cpp's memory
 * API on the brain's own sequence, and the brain told what changed.
 *
 * Each function runs on the owning engine's thread between steps (the engine calls them from
 * its request queue and its lab triggers: one llama object, one thread) and writes into `what`
 * a small JSON object saying what it changed, for the BJ_EV_LAB event the engine records.
 * Each returns 0, or -errno with the reason in `what` (the brain is then left as it was). */
#ifndef BJ_INTERVENE_H
#define BJ_INTERVENE_H

#include <stddef.h>
#include <stdint.h>

#include <llama.h>

#include "brain.h"
#include "lab.h"

/* One brain's sequence in a context. */
struct bj_seq {
    struct llama_context *ctx;
    llama_seq_id seq;
    struct bj_brain *brain;
};

/* erase: removes its oldest n tokens after its life's opening (the system prompt stays), or its
 * last finished thought, from the KV cache, and shifts what follows down: its position count
 * drops by the span. */
int bj_intervene_erase(const struct bj_seq *s, enum bj_lab_span span, long n, char *what, size_t len);

/* corrupt: alters a share of the words of its oldest n tokens after the opening (seeded: each
 * chosen word swapped with its neighbour, or replaced by a word from elsewhere in the span),
 * cuts the KV there and has the brain decode the altered span and everything after it again. */
int bj_intervene_corrupt(const struct bj_seq *s, long n, double share, uint64_t seed, char *what, size_t len);

/* jar: a new jar size, clamped to what its context holds per sequence. Shrunk below its fill, it
 * dies of JAR_FULL at its next token. */
int bj_intervene_jar(const struct bj_seq *s, long tokens, char *what, size_t len);

/* clone: the twin (dst) gets a copy of src's whole sequence (llama_memory_seq_cp, nothing
 * decoded again) and its place in its thought; then each goes on with its own sampler. Both
 * must be in one context (the batched schedule). */
int bj_intervene_clone(const struct bj_seq *src, const struct bj_seq *dst, char *what, size_t len);

/* The largest absolute difference between two logits rows of n_vocab. */
float bj_intervene_logits_gap(const float *a, const float *b, int n_vocab);

#endif
