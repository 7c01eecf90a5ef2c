/* mkmodel: writes synthetic GGUF models of the llama architecture.
 *
 * Deterministic pseudo-random weights (a seed) and a real tokenizer copied from llama.cpp's
 * ggml-vocab-llama-spm.gguf. Tensors are generated, quantized and written one at a time, so a
 * 7B-shaped model needs a few hundred MB of RAM, not 28 GB. Speed and memory of inference do
 * not depend on what the weights say, which is what makes these models good for tests and
 * benchmarks. Any thread; no global state. */
#ifndef BJ_MKMODEL_H
#define BJ_MKMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bj_mkmodel_params {
    char name[64];
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train;
    float rope_freq_base;
    int ftype;              /* enum llama_ftype: F32, F16, Q8_0, Q4_0, Q4_K_M, ... */
    bool tie_output;        /* no output.weight: the token embedding doubles as output */
    uint64_t seed;
    const char *vocab_path; /* GGUF with tokenizer.* keys */
    const char *out_path;
    bool quiet;             /* no progress on stderr */
};

/* Defaults: the tiny preset, Q8_0, seed 1, the vocab the build was configured with. */
struct bj_mkmodel_params bj_mkmodel_params_default(void);

/* Fills the shape of a preset ("tiny", "tinyllama-1.1b", "mistral-7b"). Returns 0 or -1. */
int bj_mkmodel_preset(const char *name, struct bj_mkmodel_params *p);

/* Parses a quantization type name ("F16", "Q8_0", "Q4_0", "Q4_K_M", ...). Returns ftype or -1. */
int bj_mkmodel_ftype_parse(const char *s);
const char *bj_mkmodel_ftype_name(int ftype);

/* Writes the model atomically (temp file + rename): on any error nothing is left at out_path
 * and err says why. Returns 0 or -1. */
int bj_mkmodel_write(const struct bj_mkmodel_params *p, char *err, size_t errlen);

/* `brainjar mkmodel ...`: returns the process exit status (0, 1 on failure, 2 on bad usage). */
int bj_mkmodel_main(int argc, char **argv);

#endif
