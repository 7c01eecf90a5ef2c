/* engine_batch.c: a batched step's tokens, laid out for the way llama.cpp cuts a batch.
 *
 * Each ubatch llama.cpp makes of a batch is one pass over the weights: on a GPU that pass, not the
 * number of tokens in it, is most of a generation step's time. With one KV pool (unified) a batch
 * is cut only by size. With a stream per brain it is cut into ubatches of *consecutive* sequence
 * ids that take the same number of tokens each (llama_kv_cache::init_batch, split_equal with
 * sequential = true). Two things would break a step into many:
 *  - a brain's longer work (an opening, what a watcher reads) before or among the others' single
 *    tokens: so every brain's first token goes first, in sequence order (one ubatch for the whole
 *    step's single-token part), and the rest of each longer work after, in sequence order;
 *  - a brain with nothing to decode (dead in its pause, paused, waiting) between brains that have:
 *    the run of sequence ids breaks there. It gets one filler token at its next position, removed
 *    again right after the decode: a token of compute instead of another pass over the weights.
 * So a step costs one ubatch plus one for each brain with more than one token (one for a run of
 * neighbours with equal counts). A decode of openings alone (engine.c's step_batched) gets no
 * fillers: a filler's one token would end the first ubatch after one round, where neighbouring
 * openings of equal length otherwise share one whole.
 * A wave of openings is decoded run by run (engine_batch_runs): each run of neighbouring openings
 * is a ubatch of its own anyway, so the wave makes the same passes, and each run's new lives speak
 * after their own run's pass instead of after the wave's last. */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

static void put(struct llama_batch *b, llama_token t, llama_pos pos, llama_seq_id seq, bool logits)
{
    int j = b->n_tokens++;
    b->token[j] = t;
    b->pos[j] = pos;
    b->n_seq_id[j] = 1;
    b->seq_id[j][0] = seq;
    b->logits[j] = logits;
}

void engine_batch_put(struct llama_batch *b, struct work *w, int from, int to, llama_pos n_past, llama_seq_id seq,
                      int n_vocab)
{
    for (int k = from; k < to; k++) {
        bool last = k == w->n - 1;
        put(b, w->injected && k == 0 ? n_vocab + 1000 : w->tokens[k], n_past + k, seq, w->logits && last);
        if (last)
            w->out_idx = b->n_tokens - 1;
    }
}

/* Brain i has no work in this step but lies between brains that have: a filler token at the next
 * position of its sequence keeps the run of sequence ids whole. Not where its stream is full, nor
 * where the memory cannot be cut again (recurrent models), nor where the batch is. */
static void fill(struct bj_engine *e, int i, llama_memory_t mem, llama_pos cells)
{
    struct llama_batch *b = &e->batch;
    if (b->n_tokens >= (int)e->plan.n_batch)
        return;
    llama_pos pos = llama_memory_seq_pos_max(mem, (llama_seq_id)i) + 1;
    if (pos + 1 >= cells)
        return;
    put(b, e->filler, pos, (llama_seq_id)i, false);
    e->fills[e->n_fills++] = (struct fill){(llama_seq_id)i, pos};
}

void engine_batch_build(struct bj_engine *e, struct work *works, int n, bool fill_gaps)
{
    struct llama_batch *b = &e->batch;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    int slot[BJ_MAX_BRAINS];
    int lo = e->n_brains, hi = -1;
    for (int i = 0; i < e->n_brains; i++)
        slot[i] = -1;
    for (int k = 0; k < n; k++) {
        int i = works[k].i;
        slot[i] = k;
        lo = i < lo ? i : lo;
        hi = i > hi ? i : hi;
    }
    b->n_tokens = 0;
    e->n_fills = 0;
    llama_memory_t mem = llama_get_memory(e->ctx);
    llama_pos cells = (llama_pos)llama_n_ctx_seq(e->ctx);
    for (int i = lo; i <= hi; i++) { /* every brain's first token, in sequence order */
        if (slot[i] >= 0)
            engine_batch_put(b, &works[slot[i]], 0, 1, bj_brain_n_past(e->brains[i]), (llama_seq_id)i, n_vocab);
        else if (fill_gaps && e->can_fill)
            fill(e, i, mem, cells);
    }
    for (int i = lo; i <= hi; i++) /* then the rest of the longer works, in sequence order */
        if (slot[i] >= 0 && works[slot[i]].n > 1)
            engine_batch_put(b, &works[slot[i]], 1, works[slot[i]].n, bj_brain_n_past(e->brains[i]), (llama_seq_id)i,
                             n_vocab);
}

void engine_batch_warm_up(struct bj_engine *e, int n)
{
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    for (int k = 0; k < n; k++)
        put(b, e->filler, k, 0, k == n - 1);
}

void engine_batch_unfill(struct bj_engine *e)
{
    llama_memory_t mem = llama_get_memory(e->ctx);
    for (int k = 0; k < e->n_fills; k++)
        llama_memory_seq_rm(mem, e->fills[k].seq, e->fills[k].pos, -1);
}

int engine_batch_ubatches(const struct llama_batch *b, bool streams, int n_ubatch, int *order)
{
    int n = b->n_tokens;
    if (n == 0 || n_ubatch < 1)
        return 0;
    if (!streams)
        return (n + n_ubatch - 1) / n_ubatch;
    /* each sequence's tokens in batch order: order[start[s] .. start[s] + cnt[s]), cur[s] taken */
    int start[BJ_MAX_BRAINS] = {0}, cnt[BJ_MAX_BRAINS] = {0}, cur[BJ_MAX_BRAINS] = {0};
    for (int i = 0; i < n; i++)
        cnt[b->seq_id[i][0]]++;
    for (int s = 1; s < BJ_MAX_BRAINS; s++)
        start[s] = start[s - 1] + cnt[s - 1];
    for (int i = 0; i < n; i++) {
        llama_seq_id s = b->seq_id[i][0];
        order[start[s] + cur[s]++] = i;
    }
    memset(cur, 0, sizeof cur);
    int n_used = 0, count = 0;
    llama_seq_id set[BJ_MAX_BRAINS];
    while (n_used < n) {
        /* the sequences of this ubatch: consecutive ids, in the order their next tokens come
         * (a sequence's tokens are taken in batch order, so its next one is order[start + cur]) */
        int ns = 0;
        for (int i = 0; i < n && ns < BJ_MAX_BRAINS; i++) {
            llama_seq_id s = b->seq_id[i][0];
            if (cur[s] >= cnt[s] || order[start[s] + cur[s]] != i || (ns > 0 && s != set[ns - 1] + 1))
                continue;
            set[ns++] = s;
            if (ns > n_ubatch)
                break;
        }
        /* as many tokens of each as all of them still have, within n_ubatch */
        for (int round = 1;; round++) {
            for (int k = 0; k < ns; k++)
                cur[set[k]]++;
            n_used += ns;
            bool all = true;
            for (int k = 0; k < ns && all; k++)
                all = cur[set[k]] < cnt[set[k]];
            if (!all || (round + 1) * ns > n_ubatch)
                break;
        }
        count++;
    }
    return count;
}

static void swap_works(struct work *a, struct work *b)
{
    struct work t = *a;
    *a = *b;
    *b = t;
}

/* A run of openings in consecutive sequences: works[from .. to), tokens in all. */
struct run {
    int from, to;
    long tokens;
};

/* Whether run a goes before run b: the one with less work per brain it serves, a pass over the
 * weights counted as pass_tokens tokens (the order that makes the mean wait shortest). */
static bool run_first(const struct run *a, const struct run *b, int pass_tokens)
{
    return (pass_tokens + a->tokens) * (b->to - b->from) < (pass_tokens + b->tokens) * (a->to - a->from);
}

int engine_batch_runs(struct work *works, int n, int pass_tokens, int *ends)
{
    if (n <= 0)
        return 0;
    for (int k = 1; k < n; k++) /* by sequence id (a step's openings are few) */
        for (int m = k; m > 0 && works[m - 1].i > works[m].i; m--)
            swap_works(&works[m - 1], &works[m]);
    struct run run[BJ_MAX_BRAINS];
    int runs = 0;
    for (int k = 0; k < n; k++) {
        if (k == 0 || works[k].i != works[k - 1].i + 1)
            run[runs++] = (struct run){k, k, 0};
        run[runs - 1].to = k + 1;
        run[runs - 1].tokens += works[k].n;
    }
    for (int r = 1; r < runs; r++) /* stable: equal runs keep sequence order */
        for (int q = r; q > 0 && run_first(&run[q], &run[q - 1], pass_tokens); q--) {
            struct run t = run[q - 1];
            run[q - 1] = run[q];
            run[q] = t;
        }
    struct work sorted[BJ_MAX_BRAINS];
    int m = 0;
    for (int r = 0; r < runs; r++) {
        for (int k = run[r].from; k < run[r].to; k++)
            sorted[m++] = works[k];
        ends[r] = m;
    }
    memcpy(works, sorted, (size_t)n * sizeof *works);
    return runs;
}
