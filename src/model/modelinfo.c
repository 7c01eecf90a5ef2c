/* modelinfo: see modelinfo.h. */
#include "modelinfo.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gguf.h>

#include "util.h"

/* Reads an unsigned integer key "<arch>.<suffix>" of any integer type; 0 when absent.
 * Per-layer arrays (head_count_kv may be one) give their first element. */
static uint64_t arch_u(const struct gguf_context *g, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t id = gguf_find_key(g, key);
    if (id < 0)
        return 0;
    enum gguf_type t = gguf_get_kv_type(g, id);
    if (t == GGUF_TYPE_ARRAY) {
        if (gguf_get_arr_n(g, id) == 0)
            return 0;
        t = gguf_get_arr_type(g, id);
        const void *d = gguf_get_arr_data(g, id);
        switch (t) {
        case GGUF_TYPE_UINT32: return ((const uint32_t *)d)[0];
        case GGUF_TYPE_INT32: return (uint64_t)((const int32_t *)d)[0];
        default: return 0;
        }
    }
    switch (t) {
    case GGUF_TYPE_UINT8: return gguf_get_val_u8(g, id);
    case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, id);
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
    case GGUF_TYPE_UINT64: return gguf_get_val_u64(g, id);
    case GGUF_TYPE_INT32: { int32_t v = gguf_get_val_i32(g, id); return v < 0 ? 0 : (uint64_t)v; }
    case GGUF_TYPE_INT64: { int64_t v = gguf_get_val_i64(g, id); return v < 0 ? 0 : (uint64_t)v; }
    default: return 0;
    }
}

static void account_tensor(struct bj_modelinfo *mi, const char *name, uint64_t size, uint64_t nel)
{
    mi->weight_bytes += size;
    mi->n_params += nel;
    unsigned layer;
    if (sscanf(name, "blk.%u.", &layer) == 1 && layer < BJ_MAX_LAYERS) {
        mi->layer_bytes[layer] += size;
        return;
    }
    mi->other_bytes += size;
    if (strcmp(name, "token_embd.weight") == 0)
        mi->tok_embd_bytes = size;
    else if (strcmp(name, "output.weight") == 0)
        mi->output_bytes = size;
}


/* ---- the gate: hyper-parameters and shapes checked before llama.cpp sees the file ----------
 * llama.cpp trusts a GGUF's numbers: a negative or NaN norm epsilon aborts the process inside
 * ggml (GGML_ASSERT), a block_count or head_count_kv that disagrees with the tensors fails the
 * load late or worse. Everything llama.cpp would choke on that the header can show is refused
 * here, with the key named. */

/* No float under "<arch>." may be NaN; epsilons, rope parameters and scales must be finite (an
 * infinite bound is a sentinel llama.cpp itself writes, e.g. kda.gate_lower_bound = -inf); the
 * epsilons must be >= 0, the rope bases > 0. */
static int gate_floats(const struct gguf_context *g, const char *arch, char *why, size_t len)
{
    size_t alen = strlen(arch);
    for (int64_t i = 0; i < gguf_get_n_kv(g); i++) {
        const char *key = gguf_get_key(g, i);
        if (strncmp(key, arch, alen) != 0 || key[alen] != '.')
            continue;
        enum gguf_type t = gguf_get_kv_type(g, i);
        size_t n = 1;
        const void *data = NULL;
        if (t == GGUF_TYPE_ARRAY) {
            t = gguf_get_arr_type(g, i);
            if (t != GGUF_TYPE_FLOAT32 && t != GGUF_TYPE_FLOAT64)
                continue;
            n = gguf_get_arr_n(g, i);
            data = gguf_get_arr_data(g, i);
        } else if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
            data = gguf_get_val_data(g, i);
        } else {
            continue;
        }
        const char *suffix = key + alen + 1;
        bool eps = strstr(suffix, "epsilon") != NULL;
        bool base = strncmp(suffix, "rope.freq_base", 14) == 0;
        bool must_be_finite = eps || strncmp(suffix, "rope.", 5) == 0 || strstr(suffix, "scale") != NULL;
        for (size_t k = 0; k < n; k++) {
            double v = t == GGUF_TYPE_FLOAT32 ? (double)((const float *)data)[k] : ((const double *)data)[k];
            if (isnan(v) || (must_be_finite && !isfinite(v))) {
                snprintf(why, len, "%s is %g (not a finite number)", key, v);
                return -1;
            }
            if (eps && v < 0) {
                snprintf(why, len, "%s is %g (a norm epsilon must be >= 0)", key, v);
                return -1;
            }
            if (base && v <= 0) {
                snprintf(why, len, "%s is %g (must be positive)", key, v);
                return -1;
            }
        }
    }
    return 0;
}

/* Per-layer head counts (an array) must each be within [0, n_head] and divide n_head. */
static int gate_heads_array(const struct gguf_context *g, const char *arch, const char *suffix, uint32_t n_layer,
                            uint32_t n_head, char *why, size_t len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t id = gguf_find_key(g, key);
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_ARRAY)
        return 0;
    enum gguf_type t = gguf_get_arr_type(g, id);
    if (t != GGUF_TYPE_UINT32 && t != GGUF_TYPE_INT32) {
        snprintf(why, len, "%s is an array of %s (integers expected)", key, gguf_type_name(t));
        return -1;
    }
    size_t n = gguf_get_arr_n(g, id);
    if (n != n_layer) {
        snprintf(why, len, "%s has %zu entries for %u layers", key, n, n_layer);
        return -1;
    }
    const void *d = gguf_get_arr_data(g, id);
    for (size_t k = 0; k < n; k++) {
        int64_t v = t == GGUF_TYPE_UINT32 ? (int64_t)((const uint32_t *)d)[k] : (int64_t)((const int32_t *)d)[k];
        if (v < 0 || v > n_head || (v > 0 && n_head % v != 0)) {
            snprintf(why, len, "%s[%zu] is %lld (must divide head_count %u)", key, k, (long long)v, n_head);
            return -1;
        }
    }
    return 0;
}

/* Expected shape of one named tensor: ne0 x ne1 (0: not checked). */
static int gate_shape(const struct gguf_context *g, const char *name, int64_t ne0, int64_t ne1, char *why,
                      size_t len)
{
    int64_t id = gguf_find_tensor(g, name);
    if (id < 0)
        return 0; /* architectures differ in what they have; what is there must fit */
    const int64_t *ne = gguf_get_tensor_ne(g, id);
    if ((ne0 && ne[0] != ne0) || (ne1 && ne[1] != ne1)) {
        snprintf(why, len, "tensor %s is %lld x %lld, the hyper-parameters say %lld x %lld", name, (long long)ne[0],
                 (long long)ne[1], (long long)(ne0 ? ne0 : ne[0]), (long long)(ne1 ? ne1 : ne[1]));
        return -1;
    }
    return 0;
}

static bool arch_key_is_array(const struct gguf_context *g, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t id = gguf_find_key(g, key);
    return id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_ARRAY;
}

/* Returns 0, or -1 with the reason in why. */
static int gate(const struct gguf_context *g, const struct bj_modelinfo *mi, char *why, size_t len)
{
    const char *a = mi->arch;
    if (gate_floats(g, a, why, len))
        return -1;
    if (mi->n_head_kv > mi->n_head || mi->n_head % mi->n_head_kv != 0) {
        snprintf(why, len, "%s.attention.head_count_kv is %u, which does not divide head_count %u", a, mi->n_head_kv,
                 mi->n_head);
        return -1;
    }
    if (gate_heads_array(g, a, "attention.head_count_kv", mi->n_layer, mi->n_head, why, len))
        return -1;
    if (mi->head_dim_k == 0 || mi->head_dim_v == 0) {
        snprintf(why, len, "%s.embedding_length %u is smaller than head_count %u", a, mi->n_embd, mi->n_head);
        return -1;
    }
    /* The blocks present must be exactly 0 .. block_count-1. */
    uint64_t highest = 0;
    bool any = false;
    for (int64_t t = 0; t < mi->n_tensors; t++) {
        unsigned layer;
        if (sscanf(gguf_get_tensor_name(g, t), "blk.%u.", &layer) == 1) {
            any = true;
            if ((uint64_t)layer + 1 > highest)
                highest = (uint64_t)layer + 1;
        }
    }
    if (any && highest != mi->n_layer) {
        snprintf(why, len, "%s.block_count is %u but the file has tensors for %llu blocks", a, mi->n_layer,
                 (unsigned long long)highest);
        return -1;
    }
    for (uint32_t l = 0; any && l < mi->n_layer; l++)
        if (mi->layer_bytes[l] == 0) {
            snprintf(why, len, "block %u has no tensors (%s.block_count is %u)", l, a, mi->n_layer);
            return -1;
        }
    /* Shapes of the usual tensors (llama-like names) against the hyper-parameters. */
    int64_t e = mi->n_embd, q = (int64_t)mi->n_head * mi->head_dim_k, k = (int64_t)mi->n_head_kv * mi->head_dim_k,
            v = (int64_t)mi->n_head_kv * mi->head_dim_v, o = (int64_t)mi->n_head * mi->head_dim_v;
    if (gate_shape(g, "token_embd.weight", e, mi->n_vocab, why, len) ||
        gate_shape(g, "output.weight", e, mi->n_vocab, why, len) ||
        gate_shape(g, "output_norm.weight", e, 0, why, len))
        return -1;
    bool per_layer_heads = arch_key_is_array(g, a, "attention.head_count_kv") ||
                           arch_key_is_array(g, a, "attention.head_count");
    bool per_layer_ff = arch_key_is_array(g, a, "feed_forward_length");
    for (uint32_t l = 0; l < mi->n_layer; l++) {
        char n[64];
#define SHAPE(suffix, ne0, ne1)                                                                                      \
    do {                                                                                                             \
        snprintf(n, sizeof n, "blk.%u." suffix, l);                                                                  \
        if (gate_shape(g, n, ne0, ne1, why, len))                                                                    \
            return -1;                                                                                               \
    } while (0)
        SHAPE("attn_norm.weight", e, 0);
        if (!per_layer_heads) {
            SHAPE("attn_q.weight", e, q);
            SHAPE("attn_k.weight", e, k);
            SHAPE("attn_v.weight", e, v);
            SHAPE("attn_output.weight", o, e);
        }
        if (!per_layer_ff && mi->n_ff > 0) {
            SHAPE("ffn_up.weight", e, mi->n_ff);
            SHAPE("ffn_gate.weight", e, mi->n_ff);
            SHAPE("ffn_down.weight", mi->n_ff, e);
        }
#undef SHAPE
    }
    return 0;
}

static int read_info(const char *path, struct bj_modelinfo *mi, char *err, size_t errlen)
{
    memset(mi, 0, sizeof *mi);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "model file %s: cannot open it (does it exist?)", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "model file %s: not a regular file", path);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "GGUF", 4) != 0) {
        if (f)
            fclose(f);
        snprintf(err, errlen, "model file %s: not a GGUF file (wrong magic)", path);
        return -1;
    }
    fclose(f);

    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        snprintf(err, errlen, "model file %s: corrupt or truncated GGUF header", path);
        return -1;
    }
    int rc = -1;
    mi->file_size = (uint64_t)st.st_size;
    int64_t id = gguf_find_key(g, "general.architecture");
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) {
        snprintf(err, errlen, "model file %s: no general.architecture (a vocabulary-only file?)", path);
        goto out;
    }
    bj_strlcpy(mi->arch, gguf_get_val_str(g, id), sizeof mi->arch);
    id = gguf_find_key(g, "general.name");
    if (id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_STRING)
        bj_strlcpy(mi->name, gguf_get_val_str(g, id), sizeof mi->name);
    id = gguf_find_key(g, "general.file_type");
    mi->file_type = id >= 0 ? (int)arch_u(g, "general", "file_type") : -1;

    const char *a = mi->arch;
    mi->n_layer = (uint32_t)arch_u(g, a, "block_count");
    mi->n_embd = (uint32_t)arch_u(g, a, "embedding_length");
    mi->n_head = (uint32_t)arch_u(g, a, "attention.head_count");
    mi->n_head_kv = (uint32_t)arch_u(g, a, "attention.head_count_kv");
    mi->n_ff = (uint32_t)arch_u(g, a, "feed_forward_length");
    mi->n_ctx_train = (uint32_t)arch_u(g, a, "context_length");
    mi->n_swa = (uint32_t)arch_u(g, a, "attention.sliding_window");
    mi->head_dim_k = (uint32_t)arch_u(g, a, "attention.key_length");
    mi->head_dim_v = (uint32_t)arch_u(g, a, "attention.value_length");
    if (mi->n_head_kv == 0)
        mi->n_head_kv = mi->n_head;
    if (mi->n_layer == 0 || mi->n_embd == 0 || mi->n_head == 0) {
        snprintf(err, errlen, "model file %s: missing %s.block_count/embedding_length/attention.head_count", path, a);
        goto out;
    }
    if (mi->n_layer > BJ_MAX_LAYERS) {
        snprintf(err, errlen, "model file %s: %u layers (brainjar supports up to %d)", path, mi->n_layer, BJ_MAX_LAYERS);
        goto out;
    }
    if (mi->head_dim_k == 0)
        mi->head_dim_k = mi->n_embd / mi->n_head;
    if (mi->head_dim_v == 0)
        mi->head_dim_v = mi->n_embd / mi->n_head;
    id = gguf_find_key(g, "tokenizer.ggml.tokens");
    mi->n_vocab = id >= 0 ? (uint32_t)gguf_get_arr_n(g, id) : 0;

    mi->n_tensors = gguf_get_n_tensors(g);
    uint64_t data_end = 0;
    for (int64_t t = 0; t < mi->n_tensors; t++) {
        const int64_t *ne = gguf_get_tensor_ne(g, t);
        uint64_t nel = 1;
        for (int d = 0; d < GGML_MAX_DIMS; d++)
            nel *= (uint64_t)ne[d];
        uint64_t size = gguf_get_tensor_size(g, t);
        uint64_t end = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, t) + size;
        if (end > data_end)
            data_end = end;
        account_tensor(mi, gguf_get_tensor_name(g, t), size, nel);
    }
    if (mi->n_tensors == 0) {
        snprintf(err, errlen, "model file %s: has no tensors (a vocabulary-only file?)", path);
        goto out;
    }
    if (data_end > mi->file_size) {
        snprintf(err, errlen, "model file %s: truncated (%llu bytes, tensors need %llu)", path,
                 (unsigned long long)mi->file_size, (unsigned long long)data_end);
        goto out;
    }
    char why[256];
    if (gate(g, mi, why, sizeof why)) {
        snprintf(err, errlen, "model file %s: %s; llama.cpp cannot run it", path, why);
        goto out;
    }
    rc = 0;
out:
    gguf_free(g);
    return rc;
}

uint64_t bj_modelinfo_kv_bytes(const struct bj_modelinfo *mi, enum ggml_type type_k,
                               enum ggml_type type_v, uint64_t n_tokens)
{
    /* Sliding-window layers are not capped: llama.cpp's default (swa_full, which brainjar's
     * engine keeps) gives them full-size caches, and the llama architecture has none. */
    uint64_t cells = n_tokens;
    uint64_t k = ggml_row_size(type_k, (int64_t)mi->n_head_kv * mi->head_dim_k);
    uint64_t v = ggml_row_size(type_v, (int64_t)mi->n_head_kv * mi->head_dim_v);
    return (uint64_t)mi->n_layer * cells * (k + v);
}

int bj_kv_type_parse(const char *s, enum ggml_type *out)
{
    static const struct { const char *name; enum ggml_type type; } types[] = {
        {"f16", GGML_TYPE_F16}, {"f32", GGML_TYPE_F32}, {"bf16", GGML_TYPE_BF16},
        {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1},
        {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(types); i++)
        if (strcmp(s, types[i].name) == 0) {
            *out = types[i].type;
            return 0;
        }
    return -1;
}

int bj_modelinfo_read(const char *path, struct bj_modelinfo *mi, char *err, size_t errlen)
{
    int rc = read_info(path, mi, err, errlen);
    /* Messages quote names from the file (keys, the architecture): one line, no control bytes. */
    if (rc != 0 && errlen > 0)
        for (char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    return rc;
}
