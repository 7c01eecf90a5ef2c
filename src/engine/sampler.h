/* sampler: picks a brain's next token from its logits, in time linear in the vocabulary.
 *
 * A brain's sampling settings (struct bj_sampling) become two things here: llama.cpp's sampler
 * chain (what the decode graph runs when sampling happens on the backend, and the fallback for
 * settings the fast path does not cover) and a fast CPU path for the chains brainjar uses
 * (greedy; or min-p, top-k, temperature and a random draw, in any combination). llama.cpp's
 * CPU chain copies the whole vocabulary into a candidate array per call and grows vectors;
 * at 64 brains x 32000 tokens that cost ~7 ms a step on a GPU host, more than the GPU's own
 * time saved by not sampling in the graph. The fast path reads the logits row in place, runs
 * one branch-free loop the compiler vectorizes (a polynomial exp, relative error < 2e-7) and
 * finds the drawn token through block sums: tens of microseconds per brain.
 *
 * Same distribution as llama.cpp's chain (top-k, then min-p relative to the best token, then
 * temperature, then a draw in proportion to exp(logit / temp)); a different random stream
 * (splitmix64 from the brain's seed and the life's number: every life draws a new stream, and the
 * same seed gives the same run). Of tokens
 * tied with the k-th best, top-k keeps the first in the vocabulary (llama.cpp's partial sort
 * leaves that order unspecified); greedy picks the first of equal maxima, as llama.cpp's does.
 * top-p needs the candidates sorted: with top-p < 1 every call goes to llama.cpp's chain.
 *
 * Threads: a sampler belongs to one brain; calls on one sampler come from one thread at a
 * time (the engine's, or the pool thread sampling that brain this step). */
#ifndef BJ_SAMPLER_H
#define BJ_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include <llama.h>

#include "spec.h"

struct bj_sampler;

/* NULL when out of memory. n_vocab: the model's vocabulary size (rows are this long). */
struct bj_sampler *bj_sampler_new(const struct bj_sampling *s, int n_vocab);
void bj_sampler_free(struct bj_sampler *s);

/* Whether these settings take the fast path (false: llama.cpp's chain on the CPU). */
bool bj_sampler_fast(const struct bj_sampling *s);

/* llama.cpp's chain for these settings: what the decode graph runs with backend sampling. */
struct llama_sampler *bj_sampler_chain(struct bj_sampler *s);

/* The next token from a logits row of n_vocab floats (the row is only read). Returns
 * LLAMA_TOKEN_NULL when out of memory on the fallback path. */
llama_token bj_sampler_sample(struct bj_sampler *s, const float *logits);

/* A token chosen elsewhere (in the decode graph) is taken into the chain's state. */
void bj_sampler_accept(struct bj_sampler *s, llama_token t);

/* Life number `life` begins: the fast path's random stream starts from a mix of the seed and
 * the life, so each life draws differently and a run with the same seed repeats exactly.
 * llama.cpp's chain cannot be reseeded in place (the decode graph may hold it), so its stream
 * simply goes on across lives: also new each life, also reproducible. */
void bj_sampler_begin_life(struct bj_sampler *s, uint64_t life);

#endif
