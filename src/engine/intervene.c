/* intervene: see intervene.h. */
#include "intervene.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* what = a JSON object, or {"error": why}. */
static int report(char *what, size_t len, int rc, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(what, len, "%s", s ? s : "{}");
    free(s);
    json_decref(o);
    return rc;
}

static int refuse(char *what, size_t len, int rc, const char *why)
{
    return report(what, len, rc, json_pack("{s:s}", "error", why));
}

int bj_intervene_erase(const struct bj_seq *s, enum bj_lab_span span, long n, char *what, size_t len)
{
    const llama_token *ctx;
    int n_past = bj_brain_ctx(s->brain, &ctx);
    int p0 = bj_brain_opening_len(s->brain), k = 0;
    if (n_past < 0)
        return refuse(what, len, -ENOMEM, "its memory's mirror was lost");
    if (span == BJ_LAB_SPAN_LAST_THOUGHT) {
        if ((k = bj_brain_last_thought(s->brain, &p0)) <= 0)
            return refuse(what, len, -ENOENT, "no finished thought in its memory");
    } else {
        k = p0 + n <= n_past ? (int)n : n_past - p0;
        if (k <= 0)
            return refuse(what, len, -ENOENT, "nothing past its opening to erase");
    }
    llama_memory_t mem = llama_get_memory(s->ctx);
    if (!llama_memory_can_shift(mem))
        return refuse(what, len, -ENOTSUP, "this model's memory cannot be shifted");
    char *gone = malloc((size_t)k * 16 + 16);
    int gl = gone ? llama_detokenize(llama_model_get_vocab(llama_get_model(s->ctx)), ctx + p0, k, gone,
                                     k * 16 + 16, false, true) : -1;
    if (!llama_memory_seq_rm(mem, s->seq, p0, p0 + k)) {
        free(gone);
        return refuse(what, len, -EIO, "llama_memory_seq_rm refused the span");
    }
    llama_memory_seq_add(mem, s->seq, p0 + k, -1, -k);
    int rc = bj_brain_forget(s->brain, p0, k);
    json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:i,s:s%}", "span", span == BJ_LAB_SPAN_LAST_THOUGHT ? "last_thought" : "oldest",
                          "from", p0, "tokens", k, "n_past_before", n_past, "n_past_after", bj_brain_n_past(s->brain),
                          "erased", gone && gl > 0 ? gone : "", (size_t)(gl > 0 ? gl : 0));
    free(gone);
    return report(what, len, rc, o);
}

/* Words of text: start offsets and lengths (split at spaces and newlines). */
static int split_words(const char *t, int *start, int *wlen, int max)
{
    int n = 0;
    for (int i = 0; t[i] && n < max;) {
        while (t[i] == ' ' || t[i] == '\n')
            i++;
        if (!t[i])
            break;
        start[n] = i;
        while (t[i] && t[i] != ' ' && t[i] != '\n')
            i++;
        wlen[n] = i - start[n];
        n++;
    }
    return n;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The span's text with a share of its words altered (seeded): "swap" with the next word, or
 * "replace" by a word from elsewhere in the span. Caller frees; *changed counts words. */
static char *alter_words(const char *text, double share, uint64_t seed, int *changed)
{
    enum { MAXW = 4096 };
    int *start = malloc(MAXW * sizeof *start), *wl = malloc(MAXW * sizeof *wl), *order = malloc(MAXW * sizeof *order);
    size_t tl = strlen(text);
    char *out = malloc(tl * 2 + 16);
    if (!start || !wl || !order || !out) {
        free(start), free(wl), free(order), free(out);
        return NULL;
    }
    int n = split_words(text, start, wl, MAXW);
    for (int i = 0; i < n; i++)
        order[i] = i;
    *changed = 0;
    uint64_t r = seed;
    for (int i = 0; i < n; i++) {
        if ((double)(next_rand(&r) >> 11) / 9007199254740992.0 >= share)
            continue;
        int j = (int)(next_rand(&r) % (uint64_t)n);
        if ((next_rand(&r) & 1) && i + 1 < n)
            j = i + 1; /* swap with the neighbour */
        if (j == i || (wl[order[i]] == wl[order[j]] && memcmp(text + start[order[i]], text + start[order[j]],
                                                               (size_t)wl[order[i]]) == 0))
            continue;
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
        *changed += 2;
    }
    /* same layout (the spaces and newlines between words), words in their new order */
    size_t o = 0;
    int w = 0;
    for (size_t i = 0; i < tl;) {
        if (text[i] == ' ' || text[i] == '\n') {
            out[o++] = text[i++];
            continue;
        }
        if (w < n) {
            memcpy(out + o, text + start[order[w]], (size_t)wl[order[w]]);
            o += (size_t)wl[order[w]];
            i += (size_t)wl[w];
            w++;
        } else {
            out[o++] = text[i++];
        }
    }
    out[o] = '\0';
    free(start), free(wl), free(order);
    return out;
}

int bj_intervene_corrupt(const struct bj_seq *s, long n, double share, uint64_t seed, char *what, size_t len)
{
    const llama_token *ctx;
    int n_past = bj_brain_ctx(s->brain, &ctx);
    int p0 = bj_brain_opening_len(s->brain);
    if (n_past < 0)
        return refuse(what, len, -ENOMEM, "its memory's mirror was lost");
    int k = p0 + n <= n_past ? (int)n : n_past - p0;
    if (k <= 0)
        return refuse(what, len, -ENOENT, "nothing past its opening to corrupt");
    const struct llama_vocab *vocab = llama_model_get_vocab(llama_get_model(s->ctx));
    int cap = (n_past - p0) * 16 + 16;
    char *span = malloc((size_t)cap), *rest = malloc((size_t)cap);
    int sl = span ? llama_detokenize(vocab, ctx + p0, k, span, cap, false, true) : -1;
    int rl = rest ? llama_detokenize(vocab, ctx + p0 + k, n_past - p0 - k, rest, cap, false, true) : -1;
    if (sl < 0 || rl < 0) {
        free(span), free(rest);
        return refuse(what, len, -ENOMEM, "cannot read its memory back as text");
    }
    span[sl] = rest[rl] = '\0';
    int changed = 0;
    char *altered = alter_words(span, share, seed, &changed);
    size_t al = altered ? strlen(altered) : 0;
    char *all = altered ? malloc(al + (size_t)rl + 1) : NULL;
    llama_token *toks = all ? malloc(((size_t)cap + 16) * sizeof *toks) : NULL;
    int nt = -1;
    if (toks) {
        memcpy(all, altered, al);
        memcpy(all + al, rest, (size_t)rl + 1);
        nt = llama_tokenize(vocab, all, (int)(al + (size_t)rl), toks, cap + 16, false, true);
    }
    int rc = nt < 0 ? -ENOMEM : 0;
    llama_memory_t mem = llama_get_memory(s->ctx);
    if (rc == 0 && !llama_memory_seq_rm(mem, s->seq, p0, -1))
        rc = -EIO;
    if (rc == 0)
        rc = bj_brain_rewrite(s->brain, p0, toks, nt);
    json_t *o = rc ? json_pack("{s:s}", "error", "cannot rewrite its past")
                   : json_pack("{s:i,s:i,s:i,s:f,s:s,s:s,s:i}", "from", p0, "tokens", k, "words_changed", changed,
                               "share", share, "before", span, "after", altered, "redecode", nt);
    free(span), free(rest), free(altered), free(all), free(toks);
    return report(what, len, rc, o);
}

int bj_intervene_jar(const struct bj_seq *s, long tokens, char *what, size_t len)
{
    long before = bj_brain_jar(s->brain);
    long most = (long)llama_n_ctx_seq(s->ctx);
    long now = tokens < most ? tokens : most;
    bj_brain_set_jar(s->brain, now);
    return report(what, len, 0, json_pack("{s:i,s:i,s:i,s:i,s:b}", "before", (json_int_t)before, "asked",
                                          (json_int_t)tokens, "after", (json_int_t)now, "n_past",
                                          bj_brain_n_past(s->brain), "overfull", now < bj_brain_n_past(s->brain)));
}

int bj_intervene_clone(const struct bj_seq *src, const struct bj_seq *dst, char *what, size_t len)
{
    if (src->ctx != dst->ctx)
        return refuse(what, len, -ENOTSUP, "clone needs both brains in one context (the batched schedule)");
    enum bj_brain_state st = bj_brain_state(src->brain);
    if (st != BJ_BRAIN_THINKING && st != BJ_BRAIN_PAUSED)
        return refuse(what, len, -EAGAIN, "the original is not alive");
    llama_memory_t mem = llama_get_memory(src->ctx);
    llama_memory_seq_rm(mem, dst->seq, -1, -1);
    llama_memory_seq_cp(mem, src->seq, dst->seq, -1, -1);
    int rc = bj_brain_take_mind(dst->brain, src->brain);
    if (rc) {
        llama_memory_seq_rm(mem, dst->seq, -1, -1);
        bj_brain_kv_lost(dst->brain);
        return refuse(what, len, rc, "the twin could not take the mind");
    }
    return report(what, len, 0, json_pack("{s:s,s:s,s:i,s:i}", "original", bj_brain_id(src->brain), "twin",
                                          bj_brain_id(dst->brain), "n_past", bj_brain_n_past(src->brain),
                                          "thought", (int)bj_brain_thought(src->brain)));
}

float bj_intervene_logits_gap(const float *a, const float *b, int n_vocab)
{
    float gap = 0;
    for (int i = 0; i < n_vocab; i++) {
        float d = fabsf(a[i] - b[i]);
        gap = d > gap ? d : gap;
    }
    return gap;
}
