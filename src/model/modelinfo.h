/* modelinfo: what a GGUF file says about a model, read from its header alone (no weights).
 *
 * Used before anything is loaded: to turn a jar in GB into tokens, to estimate memory, and to
 * reject a bad model file with a clear message. Pure functions; any thread. */
#ifndef BJ_MODELINFO_H
#define BJ_MODELINFO_H

#include <stddef.h>
#include <stdint.h>

#include <ggml.h>

#define BJ_MAX_LAYERS 512

struct bj_modelinfo {
    char arch[32];
    char name[128];
    uint64_t file_size;
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx_train;
    uint32_t head_dim_k, head_dim_v; /* per head */
    uint32_t n_swa;                  /* sliding window (tokens), 0 = none */
    uint64_t n_params;
    uint64_t weight_bytes;           /* all tensors */
    uint64_t layer_bytes[BJ_MAX_LAYERS]; /* tensors of blk.N */
    uint64_t other_bytes;            /* token_embd, output, norms outside the blocks */
    uint64_t tok_embd_bytes;         /* token_embd.weight (stays on the CPU when offloading) */
    uint64_t output_bytes;           /* output.weight (tied to token_embd when absent) */
    int64_t n_tensors;
    int file_type;                   /* general.file_type, -1 if absent */
};

/* Reads the header of `path`. Returns 0, or -1 with a message in err (not a GGUF, truncated,
 * missing keys, unsupported architecture shape). */
int bj_modelinfo_read(const char *path, struct bj_modelinfo *mi, char *err, size_t errlen);

/* KV cache bytes for n_tokens of one sequence with the given cache types (K and V), all layers.
 * Sliding-window layers count in full: llama.cpp's swa_full default (kept by the engine) gives
 * them full-size caches. */
uint64_t bj_modelinfo_kv_bytes(const struct bj_modelinfo *mi, enum ggml_type type_k,
                               enum ggml_type type_v, uint64_t n_tokens);

/* Parses "f16", "q8_0", "q4_0", "f32", "bf16"; returns 0 or -1. */
int bj_kv_type_parse(const char *s, enum ggml_type *out);

#endif
