/* jar: a brain's private memory, converted between GB and tokens.
 *
 * A jar given in GB holds as many tokens as fit at the model's KV bytes per token; it is then
 * clamped to the model's training context (a brain cannot usefully remember more); jars in GB of
 * brains sharing a model keep their proportions when the largest is clamped (the original's
 * 8:10:12 stays 8:10:12, so brains do not all die in step). The KV cache
 * layout policy that engines use for several brains lives here too, so the memory estimate and
 * the engine always agree. Pure functions; any thread. */
#ifndef BJ_JAR_H
#define BJ_JAR_H

#include <stdbool.h>
#include <stdint.h>

#include "spec.h"
#include "modelinfo.h"

#define BJ_GB (1024.0 * 1024.0 * 1024.0) /* the original's "GB" was 1024**3 bytes */

struct bj_jar {
    long tokens;           /* what the brain may hold */
    long requested_tokens; /* before clamping */
    bool clamped;          /* requested more than the training context, or shrunk with such a jar */
    bool in_gb;            /* given in GB (keeps its proportion to its model's other GB jars) */
    uint64_t kv_bytes;     /* KV cache bytes of `tokens` */
};

/* Resolves b's jar against model mi. Returns 0, or -1 with err when the jar holds no token. */
int bj_jar_resolve(const struct bj_brain_cfg *b, const struct bj_modelinfo *mi, enum ggml_type kv_type,
                   struct bj_jar *out, char *err, size_t errlen);

/* The jars of the brains on one model (mi), each already resolved: when the largest GB request
 * exceeds the training context, every GB jar becomes n_ctx_train * requested / largest tokens
 * (at least 1), so their proportions hold. Jars given in tokens are left as resolved. */
void bj_jar_keep_proportions(struct bj_jar *const *jars, int n, const struct bj_modelinfo *mi,
                             enum ggml_type kv_type);

/* Lowers mi's context to cap when it is longer (or unknown): jars of that model are then clamped
 * to cap instead of the training context. */
void bj_jar_cap_context(struct bj_modelinfo *mi, uint32_t cap);

/* KV cells one batched context allocates for brains with these jars. Sets *unified: true means
 * one shared cell pool of sum(jars) (jars differ a lot), false means one stream per brain of
 * max(jar) cells each (faster attention; equal jars cost the same). Rounded up to 256 cells per
 * stream, as llama.cpp does, so this is what is really allocated. */
uint32_t bj_jar_kv_cells(const long *jar_tokens, int n, bool *unified);

#endif
