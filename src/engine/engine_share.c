/* engine_share.c: brains whose openings begin alike decode the common part once. In a big hive
 * most brains share a role, and a role's system prompt differs between its brains only at the
 * end (the name, the jar, the deaths: prompts/<role>.txt). The first brain of a kind decodes its
 * whole opening and lends the common part; the others copy it into their own sequence
 * (llama_memory_seq_cp: within one KV pool only the cells' owners change, across per-brain
 * streams the stream is copied on the device) and decode only the rest. So the hive's start costs
 * about one prompt per kind of brain, not one per brain.
 *
 * First lives of a batched engine only: a later life keeps its own opening (brain.c's
 * keep_opening). Not in a lab run, whose interventions edit the memory that would be lent, nor
 * where the memory cannot be cut after the common part (recurrent models: the brain then decodes
 * its own). */
#include <string.h>

#include "engine_int.h"
#include "log.h"

/* Shorter common parts are not worth a step's wait. */
#define SHARE_MIN 16

/* How many first tokens a and b have in common. */
static int common_prefix(const llama_token *a, int na, const llama_token *b, int nb)
{
    int n = 0;
    while (n < na && n < nb && a[n] == b[n])
        n++;
    return n;
}

/* Chooses each brain's donor at the start: the earlier brain with the longest common part of at
 * least SHARE_MIN tokens that decodes its own opening (no chains: a donor's part is decoded). */
void engine_share_plan(struct bj_engine *e)
{
    for (int i = 0; i < e->n_brains; i++) {
        e->donor[i] = -1;
        e->share[i] = 0;
    }
    if (e->sched != BJ_SCHED_BATCHED || e->lab || e->plan.settings.own_openings)
        return;
    for (int i = 1; i < e->n_brains; i++) {
        const llama_token *mine;
        int n_mine = bj_brain_opening(e->brains[i], &mine);
        if (bj_brain_state(e->brains[i]) != BJ_BRAIN_THINKING || bj_brain_n_past(e->brains[i]) != 0)
            continue;
        for (int j = 0; j < i; j++) {
            const llama_token *theirs;
            int n_theirs = bj_brain_opening(e->brains[j], &theirs);
            if (e->donor[j] >= 0 || bj_brain_state(e->brains[j]) != BJ_BRAIN_THINKING)
                continue;
            /* its last token is decoded by itself, for its logits */
            int n = common_prefix(mine, n_mine - 1, theirs, n_theirs);
            if (n >= SHARE_MIN && n > e->share[i]) {
                e->donor[i] = j;
                e->share[i] = n;
            }
        }
    }
}

bool engine_share_lend(struct llama_context *ctx, bool unified, llama_seq_id from, llama_seq_id to, int n)
{
    llama_memory_t mem = llama_get_memory(ctx);
    if (unified) {
        llama_memory_seq_cp(mem, from, to, 0, n);
        return true;
    }
    /* across streams llama.cpp copies a whole stream; what lies beyond the common part goes */
    llama_memory_seq_cp(mem, from, to, -1, -1);
    if (llama_memory_seq_rm(mem, to, n, -1))
        return true;
    llama_memory_seq_rm(mem, to, -1, -1);
    return false;
}

/* Brain i has opening work in this step. When its donor's sequence holds the common part, it is
 * copied and counted as decoded; while the donor is still decoding it, brain i waits (returns
 * true). Anything else (the donor died, was paused, lost its memory) and it decodes its own. */
bool engine_share_wait(struct bj_engine *e, int i)
{
    int d = e->donor[i];
    if (d < 0)
        return false;
    struct bj_brain *b = e->brains[i], *db = e->brains[d];
    int n = e->share[i];
    const llama_token *kv, *mine;
    int n_kv = bj_brain_ctx(db, &kv);
    int n_mine = bj_brain_opening(b, &mine);
    if (n_kv >= n && common_prefix(kv, n, mine, n_mine) == n) {
        e->donor[i] = -1;
        if (bj_brain_n_past(b) != 0 || !engine_share_lend(e->ctx, e->plan.unified, d, i, n))
            return false;
        if (bj_brain_adopt(b, n) != 0) { /* not where its life stands: it decodes its own */
            llama_memory_seq_rm(llama_get_memory(e->ctx), i, -1, -1);
            return false;
        }
        e->shared_tokens += n;
        bj_debug("engine %s: brain %s took the first %d tokens of its opening from %s", e->label, bj_brain_id(b),
                 n, bj_brain_id(db));
        return false;
    }
    if (bj_brain_state(db) == BJ_BRAIN_THINKING && e->opening[d] && n_kv >= 0 && n_kv < n)
        return true;
    e->donor[i] = -1;
    return false;
}
