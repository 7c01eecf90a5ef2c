/* labrun: an experiment running in one engine: fires its interventions and questions at the
 * moments the experiment file gives (counted in thoughts, lives and engine steps, never in wall
 * time, so that the same file and seed give the same acts), records each act as a BJ_EV_LAB
 * event on the brain's stream, catches the answers to questions (with their 0-100 number), and
 * measures how a clone's logits part from its original's.
 *
 * Threads: everything on the engine's thread, but bj_labrun_cut_blocks (any thread). */
#ifndef BJ_LABRUN_H
#define BJ_LABRUN_H

#include <stdbool.h>

#include "event.h"
#include "intervene.h"
#include "spec.h"

struct bj_labrun;

/* lab must outlive it. NULL when out of memory. */
struct bj_labrun *bj_labrun_new(const struct bj_lab_spec *lab);
void bj_labrun_free(struct bj_labrun *lr);

/* Brain i of the engine (its config must outlive the run). */
void bj_labrun_add(struct bj_labrun *lr, int i, const struct bj_brain_cfg *cfg);

/* Between steps, after the operator requests: the triggers of every brain (seqs: the engine's
 * brains, n of them), applied at once. step: the step about to run. */
void bj_labrun_turn(struct bj_labrun *lr, const struct bj_seq *seqs, int n, long step);

/* Fires intervention `name` on brain i now (an operator, a test). 0, -ENOENT (no such
 * intervention for it), or the intervention's error. */
int bj_labrun_fire(struct bj_labrun *lr, const struct bj_seq *seqs, int n, int i, const char *name, const char *who);

/* The step's events before they are published: answers to questions become BJ_EV_LAB events
 * (cause "answer") appended to out. */
void bj_labrun_answers(struct bj_labrun *lr, struct bj_evbuf *out, const struct bj_seq *seqs, int n);

/* Whether the experiment's `thoughts = N` is reached for this engine: each of its n brains has
 * N complete thoughts this run (all lives counted). False without `thoughts`. */
bool bj_labrun_done(const struct bj_labrun *lr, int n);

/* Clone divergence: the original brain i's twin is measured this step (-1: none). */
int bj_labrun_twin(const struct bj_labrun *lr, int i);
/* The logits gap between twin i and its original this step: recorded (cause "divergence"). */
void bj_labrun_gap(struct bj_labrun *lr, const struct bj_seq *twin, float gap);

/* Whether what brain i watches is cut now (cut/restore); counts the message it drops. */
bool bj_labrun_cut_blocks(struct bj_labrun *lr, int i);

#endif
