/* estimate_measure: what a model and its brains really take, measured by loading them and
 * decoding until every jar is full (`brainjar estimate --measure`, the accuracy tests), to hold
 * the estimate (estimate.c) to account. */
#include "estimate.h"
#include "estimate_int.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llama.h>

#include "log.h"
#include "sysmem.h"
#include "util.h"

static double now_s(void) { return (double)bj_now_us() / 1e6; }

/* Fills a batch with up to `per_seq` tokens for each of n_seq sequences, each from its position
 * pos[s] up to its target (pos[] advances), logits for each sequence's last token (as the engine
 * asks). Token ids are arbitrary valid ones. */
static void fill_batch(struct llama_batch *b, int n_seq, int per_seq, long *pos, const long *target, int n_vocab)
{
    b->n_tokens = 0;
    for (int s = 0; s < n_seq; s++) {
        long k_max = target[s] - pos[s] < per_seq ? target[s] - pos[s] : per_seq;
        for (long k = 0; k < k_max; k++) {
            int i = b->n_tokens++;
            b->token[i] = (int)((7919u * (unsigned)(i + 1) + 13u * (unsigned)pos[s]) % (unsigned)n_vocab);
            b->pos[i] = (llama_pos)(pos[s] + k);
            b->n_seq_id[i] = 1;
            b->seq_id[i][0] = s;
            b->logits[i] = k == k_max - 1;
        }
        pos[s] += k_max > 0 ? k_max : 0;
    }
}

static int read_rss(const char *model, bool gpu, struct bj_est_rss *r)
{
    struct bj_sysmem_paths sp;
    struct bj_proc_mem pm;
    bj_sysmem_paths_default(&sp);
    if (bj_sysmem_read_proc(&sp, &pm) != 0 || bj_sysmem_file_rss(&sp, model, &r->model_file) != 0)
        return -1;
    r->rss = pm.rss;
    r->anon = pm.rss_anon;
    r->file = pm.rss_file;
    r->gpu_used = 0;
    if (gpu) {
        struct bj_gpu_info g;
        bj_sysmem_read_gpu(&sp, NULL, &g);
        for (int i = 0; i < g.n; i++)
            r->gpu_used += g.dev[i].total - g.dev[i].free;
    }
    return 0;
}

uint64_t bj_est_gpu_growth(const struct bj_est_measured *m, const struct bj_est_rss *after)
{
    return after->gpu_used > m->before.gpu_used ? after->gpu_used - m->before.gpu_used : 0;
}

uint64_t bj_est_rss_growth(const struct bj_est_measured *m, const struct bj_est_rss *after)
{
    int64_t d = (int64_t)after->anon - (int64_t)m->before.anon + (int64_t)after->model_file -
                (int64_t)m->before.model_file;
    return d > 0 ? (uint64_t)d : 0;
}

/* Decodes steps until every brain reaches its target, at most `per_seq` tokens per brain per
 * step, spread so that all brains finish together (the last steps then see nearly full jars
 * with every brain still prefilling: the largest graph a hive runs). Returns the number of
 * tokens decoded, or -1 with err. */
static long decode_until(struct llama_context *ctx, struct llama_batch *b, int n_seq, int per_seq, long *pos,
                         const long *target, int n_vocab, char *err, size_t errlen)
{
    long done = 0, most = 0;
    for (int s = 0; s < n_seq; s++)
        if (target[s] - pos[s] > most)
            most = target[s] - pos[s];
    long steps = (most + per_seq - 1) / per_seq;
    for (long step = 0; step < steps; step++) {
        long step_target[BJ_MAX_BRAINS];
        for (int s = 0; s < n_seq; s++) {
            long left = target[s] - pos[s], steps_left = steps - step;
            step_target[s] = pos[s] + (left + steps_left - 1) / steps_left;
        }
        fill_batch(b, n_seq, per_seq, pos, step_target, n_vocab);
        if (b->n_tokens == 0)
            continue;
        int dr = llama_decode(ctx, *b);
        if (dr != 0) {
            snprintf(err, errlen, "decode of %d tokens failed (%d)", b->n_tokens, dr);
            return -1;
        }
        done += b->n_tokens;
    }
    return done;
}

/* One context being measured: its brains' jars, positions and targets. */
struct mctx {
    struct llama_context *ctx;
    int n_seq;
    const long *jars;
    long pos[BJ_MAX_BRAINS], target[BJ_MAX_BRAINS];
};

/* Sets every brain's target: jar - `less` (less < 0: its position + -less). */
static void set_targets(struct mctx *cs, int n_ctx, long less)
{
    for (int c = 0; c < n_ctx; c++)
        for (int s = 0; s < cs[c].n_seq; s++)
            cs[c].target[s] = less < 0 ? cs[c].pos[s] - less : cs[c].jars[s] - less;
}

/* Decodes every context up to its targets. Returns the tokens decoded, or -1 with err. */
static long decode_all(struct mctx *cs, int n_ctx, struct llama_batch *b, int per_seq, int n_vocab, char *err,
                       size_t errlen)
{
    long done = 0;
    for (int c = 0; c < n_ctx; c++) {
        long n = decode_until(cs[c].ctx, b, cs[c].n_seq, per_seq, cs[c].pos, cs[c].target, n_vocab, err, errlen);
        if (n < 0)
            return -1;
        done += n;
    }
    return done;
}

/* The jars, after `first` tokens per brain, leave room for a last chunk and the decode steps? */
static bool room_for_last_chunk(const long *jars, int n, long first, long chunk, int decode_steps)
{
    for (int i = 0; i < n; i++)
        if (jars[i] - decode_steps - first < 2 * chunk)
            return false;
    return true;
}

int bj_estimate_measure(const char *path, const struct bj_est_opts *o, const long *jar_tokens, int n_brains,
                        int first_batch, bool fill, int decode_steps, struct bj_est_measured *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (est_check_jars(jar_tokens, n_brains, err, errlen) != 0)
        return -1;
    struct bj_est_model *em = malloc(sizeof *em);
    if (!em) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct bj_est_opts quick = *o;
    quick.dry_run = false;
    int erc = bj_estimate_model(path, &quick, jar_tokens, n_brains, em, err, errlen);
    struct bj_plan plan_copy = em->plan;
    free(em);
    if (erc != 0)
        return -1;
    const struct bj_plan *plan = &plan_copy;
    bool parallel = plan->schedule == BJ_SCHED_PARALLEL;
    bool gpu = false; /* a local GPU takes layers: then its memory is measured too (NVML) */
    for (int i = 0; i < plan->facts.devices.n; i++)
        for (int il = 0; il <= (int)plan->facts.n_layer && !gpu; il++)
            gpu = !plan->facts.devices.d[i].remote && bj_plan_layer_device(plan, il) == i;
    int n_ctx = parallel ? n_brains : 1;
    struct mctx cs[BJ_MAX_BRAINS];
    struct ctx_layout l[BJ_MAX_BRAINS];
    uint32_t cells[BJ_MAX_BRAINS];
    memset(cs, 0, sizeof cs);
    for (int c = 0; c < n_ctx; c++) {
        cs[c].n_seq = parallel ? 1 : n_brains;
        cs[c].jars = parallel ? &jar_tokens[c] : jar_tokens;
        cells[c] = bj_plan_cells(plan, c);
        est_layout_one(cells[c], cs[c].n_seq, plan->unified, plan->prefill_chunk, &l[c]);
    }
    long min_jar = jar_tokens[0];
    for (int i = 1; i < n_brains; i++)
        if (jar_tokens[i] < min_jar)
            min_jar = jar_tokens[i];
    int per_seq = first_batch > 0 ? first_batch / cs[0].n_seq : o->prefill_chunk;
    if ((uint32_t)per_seq * (uint32_t)cs[0].n_seq > l[0].n_batch)
        per_seq = (int)(l[0].n_batch / (uint32_t)cs[0].n_seq); /* llama.cpp takes at most n_batch at once */
    if (per_seq > min_jar - decode_steps)
        per_seq = (int)(min_jar - decode_steps);
    if (per_seq < 1) {
        snprintf(err, errlen, "jars of %ld tokens are too small to measure %d decode steps", min_jar, decode_steps);
        return -1;
    }

    malloc_trim(0); /* a clean baseline: free heap pages from earlier work go back to the system */
    if (read_rss(path, gpu, &out->before) != 0) {
        snprintf(err, errlen, "cannot read /proc/self/status or smaps");
        return -1;
    }
    /* As in a hive, which validates (a dry run) before it loads. What the dry run leaves in the
     * heap is reused by the load, so the growth from this baseline is the model's whole cost. */
    struct dry_capture warm;
    est_dry_run(path, o, plan, 0, &l[0], true, &warm);

    int rc = -1;
    struct llama_batch batch = {0};
    double t0 = now_s();
    struct llama_model *model = llama_model_load_from_file(path, bj_plan_model_params(plan));
    if (!model) {
        snprintf(err, errlen, "model file %s: llama.cpp could not load it", path);
        goto out;
    }
    for (int c = 0; c < n_ctx; c++) {
        struct llama_context_params cp = bj_plan_context_params(plan, c);
        if (!(cs[c].ctx = llama_init_from_model(model, cp))) {
            snprintf(err, errlen, "model file %s: llama.cpp could not create a context of %u cells", path, cells[c]);
            goto out;
        }
    }
    out->load_s = now_s() - t0;
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    int chunk = per_seq > o->prefill_chunk ? per_seq : o->prefill_chunk;
    batch = llama_batch_init(chunk * cs[0].n_seq, 0, 1);
    /* first decode: per_seq tokens per brain */
    double t1 = now_s();
    set_targets(cs, n_ctx, -per_seq);
    long n1 = decode_all(cs, n_ctx, &batch, per_seq, n_vocab, err, errlen);
    if (n1 < 0)
        goto out;
    out->first_batch = (int)n1;
    if (read_rss(path, gpu, &out->first) != 0) {
        snprintf(err, errlen, "cannot read /proc/self/status or smaps");
        goto out;
    }
    long n2 = 0;
    if (fill) {
        /* fill all but a last chunk per brain, then prefill that chunk in one step for every
         * brain at once: the largest graph, with the jars (nearly) full */
        long last = room_for_last_chunk(jar_tokens, n_brains, per_seq, o->prefill_chunk, decode_steps)
                        ? o->prefill_chunk : 0;
        set_targets(cs, n_ctx, decode_steps + last);
        long n = decode_all(cs, n_ctx, &batch, o->prefill_chunk, n_vocab, err, errlen);
        if (n < 0)
            goto out;
        n2 += n;
        set_targets(cs, n_ctx, decode_steps);
        if ((n = decode_all(cs, n_ctx, &batch, o->prefill_chunk, n_vocab, err, errlen)) < 0)
            goto out;
        n2 += n;
    }
    out->prefill_tok_s = (double)(n1 + n2) / (now_s() - t1);
    double t2 = now_s();
    set_targets(cs, n_ctx, -decode_steps);
    long n3 = decode_all(cs, n_ctx, &batch, 1, n_vocab, err, errlen);
    if (n3 < 0)
        goto out;
    if (n3 > 0)
        out->decode_tok_s = (double)n3 / (now_s() - t2);
    out->tokens = n1 + n2 + n3;
    if (read_rss(path, gpu, &out->full) != 0) {
        snprintf(err, errlen, "cannot read /proc/self/status or smaps");
        goto out;
    }
    out->filled = fill;
    rc = 0;
out:
    if (batch.token)
        llama_batch_free(batch);
    for (int c = 0; c < n_ctx; c++)
        if (cs[c].ctx)
            llama_free(cs[c].ctx);
    if (model)
        llama_model_free(model);
    return rc;
}
