/* modelinfo: see modelinfo.h. */
#include "modelinfo.h"

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

int bj_modelinfo_read(const char *path, struct bj_modelinfo *mi, char *err, size_t errlen)
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
