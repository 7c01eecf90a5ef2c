/* jar: see jar.h. */
#include "jar.h"

#include <stdio.h>

#define BJ_PAD256(x) (((x) + 255) / 256 * 256)

int bj_jar_resolve(const struct bj_brain_cfg *b, const struct bj_modelinfo *mi, enum ggml_type kv_type,
                   struct bj_jar *out, char *err, size_t errlen)
{
    uint64_t per_token = bj_modelinfo_kv_bytes(mi, kv_type, kv_type, 1);
    long req = b->jar_tokens > 0 ? b->jar_tokens : (long)(b->jar_gb * BJ_GB / (double)per_token);
    out->requested_tokens = req;
    out->in_gb = b->jar_tokens <= 0;
    out->clamped = mi->n_ctx_train > 0 && req > (long)mi->n_ctx_train;
    out->tokens = out->clamped ? (long)mi->n_ctx_train : req;
    out->kv_bytes = bj_modelinfo_kv_bytes(mi, kv_type, kv_type, (uint64_t)out->tokens);
    if (out->tokens < 1) {
        snprintf(err, errlen, "brain %s: a jar of %.6g GB holds no token of this model (%llu bytes per token)",
                 b->id, b->jar_gb, (unsigned long long)per_token);
        return -1;
    }
    return 0;
}

void bj_jar_keep_proportions(struct bj_jar *const *jars, int n, const struct bj_modelinfo *mi,
                             enum ggml_type kv_type)
{
    long largest = 0;
    for (int i = 0; i < n; i++)
        if (jars[i]->in_gb && jars[i]->requested_tokens > largest)
            largest = jars[i]->requested_tokens;
    if (mi->n_ctx_train == 0 || largest <= (long)mi->n_ctx_train)
        return;
    for (int i = 0; i < n; i++) {
        struct bj_jar *j = jars[i];
        if (!j->in_gb)
            continue;
        long t = (long)((double)mi->n_ctx_train * (double)j->requested_tokens / (double)largest);
        j->tokens = t > 0 ? t : 1;
        j->clamped = true;
        j->kv_bytes = bj_modelinfo_kv_bytes(mi, kv_type, kv_type, (uint64_t)j->tokens);
    }
}

void bj_jar_cap_context(struct bj_modelinfo *mi, uint32_t cap)
{
    if (mi->n_ctx_train == 0 || mi->n_ctx_train > cap)
        mi->n_ctx_train = cap;
}

uint32_t bj_jar_kv_cells(const long *jar_tokens, int n, bool *unified)
{
    long sum = 0, max = 0;
    for (int i = 0; i < n; i++) {
        sum += jar_tokens[i];
        if (jar_tokens[i] > max)
            max = jar_tokens[i];
    }
    /* Per-brain streams cost n * max cells; worth it unless that wastes over 10%. */
    *unified = n > 1 && (double)n * (double)max > 1.10 * (double)sum;
    /* llama.cpp rounds contexts up to 256 cells, per stream: ask for what it will allocate. */
    long cells = *unified || n <= 1 ? BJ_PAD256(sum) : (long)n * BJ_PAD256(max);
    return (uint32_t)cells;
}
