/* mkmodel: see mkmodel.h.
 *
 * How a tensor is made: a pool of up to POOL_ROWS random rows is generated and quantized once;
 * the tensor's rows are then drawn from that pool in a seeded order. Small tensors are wholly
 * random; large ones cost one pool's quantization, so a 4 GB model is written at disk speed. */
#include "mkmodel.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ggml.h>
#include <gguf.h>
#include <llama.h>

#include "util.h"

#define POOL_ROWS 1024

static const struct {
    const char *name;
    int ftype;
} k_ftypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},      {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0}, {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
};

int bj_mkmodel_ftype_parse(const char *s)
{
    for (size_t i = 0; i < BJ_ARRAY_LEN(k_ftypes); i++)
        if (strcasecmp(s, k_ftypes[i].name) == 0)
            return k_ftypes[i].ftype;
    return -1;
}

const char *bj_mkmodel_ftype_name(int ftype)
{
    for (size_t i = 0; i < BJ_ARRAY_LEN(k_ftypes); i++)
        if (k_ftypes[i].ftype == ftype)
            return k_ftypes[i].name;
    return "?";
}

int bj_mkmodel_preset(const char *name, struct bj_mkmodel_params *p)
{
    static const struct {
        const char *name;
        uint32_t embd, layer, head, head_kv, ff, ctx;
        float rope;
        bool tie;
    } presets[] = {
        {"tiny", 64, 2, 4, 2, 128, 4096, 10000.0f, true},
        {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 2048, 10000.0f, false},
        {"mistral-7b", 4096, 32, 32, 8, 14336, 32768, 1000000.0f, false},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(presets); i++) {
        if (strcmp(name, presets[i].name) != 0)
            continue;
        snprintf(p->name, sizeof p->name, "brainjar-%s", name);
        p->n_embd = presets[i].embd;
        p->n_layer = presets[i].layer;
        p->n_head = presets[i].head;
        p->n_head_kv = presets[i].head_kv;
        p->n_ff = presets[i].ff;
        p->n_ctx_train = presets[i].ctx;
        p->rope_freq_base = presets[i].rope;
        p->tie_output = presets[i].tie;
        return 0;
    }
    return -1;
}

struct bj_mkmodel_params bj_mkmodel_params_default(void)
{
    struct bj_mkmodel_params p = {0};
    bj_mkmodel_preset("tiny", &p);
    p.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    p.seed = 1;
    p.vocab_path = BJ_VOCAB_FILE;
    return p;
}

/* ---- deterministic randomness ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    return h;
}

/* ---- tensor plan ------------------------------------------------------------------------- */

/* Type of a 2-D weight for the requested ftype, mirroring llama.cpp's choices for the
 * mixtures (output in Q6_K; attn_v and ffn_down in Q6_K on "more bits" layers for _M). */
static enum ggml_type weight_type(int ftype, const char *name, int layer, int n_layer, int64_t row)
{
    bool more_bits = layer >= 0 && (layer < n_layer / 8 || layer >= 7 * n_layer / 8 ||
                                    (layer - n_layer / 8) % 3 == 2);
    bool is_output = strcmp(name, "output.weight") == 0;
    enum ggml_type t;
    switch (ftype) {
    case LLAMA_FTYPE_ALL_F32: t = GGML_TYPE_F32; break;
    case LLAMA_FTYPE_MOSTLY_F16: t = GGML_TYPE_F16; break;
    case LLAMA_FTYPE_MOSTLY_Q8_0: t = GGML_TYPE_Q8_0; break;
    case LLAMA_FTYPE_MOSTLY_Q4_0: t = is_output ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_0; break;
    case LLAMA_FTYPE_MOSTLY_Q6_K: t = GGML_TYPE_Q6_K; break;
    case LLAMA_FTYPE_MOSTLY_Q4_K_S:
        t = is_output ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
        break;
    case LLAMA_FTYPE_MOSTLY_Q4_K_M:
    case LLAMA_FTYPE_MOSTLY_Q5_K_M: {
        enum ggml_type base = ftype == LLAMA_FTYPE_MOSTLY_Q4_K_M ? GGML_TYPE_Q4_K : GGML_TYPE_Q5_K;
        bool vd = strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight");
        t = is_output || (vd && more_bits) ? GGML_TYPE_Q6_K : base;
        break;
    }
    default: t = GGML_TYPE_F16;
    }
    /* Rows that do not fill whole blocks fall back, as llama.cpp's quantizer does. */
    if (row % ggml_blck_size(t) != 0)
        t = row % ggml_blck_size(GGML_TYPE_Q8_0) == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    return t;
}

struct plan {
    struct ggml_context *ctx;
    struct gguf_context *gguf;
};

static void add_tensor(struct plan *pl, const struct bj_mkmodel_params *p, const char *name,
                       int layer, int64_t ne0, int64_t ne1)
{
    enum ggml_type t = ne1 == 1 ? GGML_TYPE_F32 : weight_type(p->ftype, name, layer, (int)p->n_layer, ne0);
    struct ggml_tensor *tensor = ne1 == 1 ? ggml_new_tensor_1d(pl->ctx, t, ne0)
                                          : ggml_new_tensor_2d(pl->ctx, t, ne0, ne1);
    ggml_set_name(tensor, name);
    gguf_add_tensor(pl->gguf, tensor);
}

static void plan_tensors(struct plan *pl, const struct bj_mkmodel_params *p, int64_t n_vocab)
{
    int64_t e = p->n_embd, hd = p->n_embd / p->n_head, kv = hd * p->n_head_kv;
    add_tensor(pl, p, "token_embd.weight", -1, e, n_vocab);
    add_tensor(pl, p, "output_norm.weight", -1, e, 1);
    if (!p->tie_output)
        add_tensor(pl, p, "output.weight", -1, e, n_vocab);
    for (uint32_t l = 0; l < p->n_layer; l++) {
        static const char *names[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                      "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};
        const int64_t shapes[][2] = {{e, 1}, {e, e}, {e, kv}, {e, kv}, {e, e},
                                     {e, 1}, {e, p->n_ff}, {p->n_ff, e}, {e, p->n_ff}};
        for (size_t i = 0; i < BJ_ARRAY_LEN(names); i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, names[i]);
            add_tensor(pl, p, name, (int)l, shapes[i][0], shapes[i][1]);
        }
    }
}

/* ---- writing ----------------------------------------------------------------------------- */

static void set_metadata(struct gguf_context *g, const struct gguf_context *vocab,
                         const struct bj_mkmodel_params *p, int64_t n_vocab)
{
    gguf_set_kv(g, vocab);
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.name", p->name);
    gguf_set_val_u32(g, "general.file_type", (uint32_t)p->ftype);
    gguf_set_val_u32(g, "general.quantization_version", GGML_QNT_VERSION);
    gguf_set_val_u32(g, "llama.context_length", p->n_ctx_train);
    gguf_set_val_u32(g, "llama.embedding_length", p->n_embd);
    gguf_set_val_u32(g, "llama.block_count", p->n_layer);
    gguf_set_val_u32(g, "llama.feed_forward_length", p->n_ff);
    gguf_set_val_u32(g, "llama.attention.head_count", p->n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", p->n_head_kv);
    gguf_set_val_u32(g, "llama.rope.dimension_count", p->n_embd / p->n_head);
    gguf_set_val_f32(g, "llama.rope.freq_base", p->rope_freq_base);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_u32(g, "llama.vocab_size", (uint32_t)n_vocab);
    gguf_set_val_str(g, "brainjar.synthetic", "random weights; made by brainjar mkmodel");
    gguf_set_val_u64(g, "brainjar.seed", p->seed);
}

/* Writes one tensor's data (rows drawn from a quantized random pool) and its alignment pad. */
static int write_tensor(FILE *f, const struct gguf_context *g, int64_t id, uint64_t seed, char *err, size_t errlen)
{
    const char *name = gguf_get_tensor_name(g, id);
    const int64_t *ne = gguf_get_tensor_ne(g, id);
    enum ggml_type type = gguf_get_tensor_type(g, id);
    int64_t n_per_row = ne[0], n_rows = ne[1] * ne[2] * ne[3];
    size_t row_bytes = ggml_row_size(type, n_per_row);
    int64_t pool = n_rows < POOL_ROWS ? n_rows : POOL_ROWS;
    uint64_t rng = hash_name(seed, name);
    bool is_norm = n_rows == 1;

    float *src = malloc((size_t)(pool * n_per_row) * sizeof(float));
    char *dst = malloc((size_t)pool * row_bytes);
    int rc = -1;
    if (!src || !dst) {
        snprintf(err, errlen, "out of memory making %s", name);
        goto out;
    }
    /* Small uniform weights keep activations finite through any depth; norms are near 1. */
    float scale = 1.0f / sqrtf((float)n_per_row);
    for (int64_t i = 0; i < pool * n_per_row; i++) {
        double u = (double)(splitmix64(&rng) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
        src[i] = is_norm ? 1.0f + 0.1f * (float)u : (float)u * 1.7f * scale;
    }
    if (type == GGML_TYPE_F32)
        memcpy(dst, src, (size_t)(pool * n_per_row) * sizeof(float));
    else
        ggml_quantize_chunk(type, src, dst, 0, pool, n_per_row, NULL);

    for (int64_t r = 0; r < n_rows; r++) {
        int64_t pr = n_rows == pool ? r : (int64_t)(splitmix64(&rng) % (uint64_t)pool);
        if (fwrite(dst + (size_t)pr * row_bytes, 1, row_bytes, f) != row_bytes) {
            snprintf(err, errlen, "writing %s: %s", name, strerror(errno));
            goto out;
        }
    }
    size_t align = gguf_get_alignment(g), size = (size_t)n_rows * row_bytes;
    static const char zeros[64];
    size_t pad = GGML_PAD(size, align) - size;
    if (pad && fwrite(zeros, 1, pad, f) != pad) {
        snprintf(err, errlen, "writing %s: %s", name, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(src);
    free(dst);
    return rc;
}

static int check_params(const struct bj_mkmodel_params *p, char *err, size_t errlen)
{
    if (!p->out_path || !*p->out_path) {
        snprintf(err, errlen, "no output path (-o FILE)");
        return -1;
    }
    if (p->n_embd == 0 || p->n_layer == 0 || p->n_head == 0 || p->n_head_kv == 0 || p->n_ff == 0 ||
        p->n_ctx_train == 0) {
        snprintf(err, errlen, "dimensions must all be positive");
        return -1;
    }
    if (p->n_embd % p->n_head != 0 || p->n_head % p->n_head_kv != 0 || (p->n_embd / p->n_head) % 2 != 0) {
        snprintf(err, errlen, "impossible shape: embd %u must divide into %u heads of even size, and "
                 "heads %u into kv heads %u", p->n_embd, p->n_head, p->n_head, p->n_head_kv);
        return -1;
    }
    if (p->n_layer > 512 || p->n_embd > 65536 || p->n_ff > 262144 || p->n_ctx_train > (1u << 24)) {
        snprintf(err, errlen, "dimensions too large (layers <= 512, embd <= 65536, ff <= 262144)");
        return -1;
    }
    if (strcmp(bj_mkmodel_ftype_name(p->ftype), "?") == 0) {
        snprintf(err, errlen, "unsupported quantization type %d", p->ftype);
        return -1;
    }
    return 0;
}

int bj_mkmodel_write(const struct bj_mkmodel_params *p, char *err, size_t errlen)
{
    if (check_params(p, err, errlen))
        return -1;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *vocab = p->vocab_path ? gguf_init_from_file(p->vocab_path, gp) : NULL;
    if (!vocab || gguf_find_key(vocab, "tokenizer.ggml.tokens") < 0) {
        snprintf(err, errlen, "vocabulary %s: missing or not a GGUF tokenizer file",
                 p->vocab_path ? p->vocab_path : "(none)");
        if (vocab)
            gguf_free(vocab);
        return -1;
    }
    int64_t n_vocab = (int64_t)gguf_get_arr_n(vocab, gguf_find_key(vocab, "tokenizer.ggml.tokens"));

    struct plan pl = {0};
    size_t n_tensors_max = 3 + 9 * (size_t)p->n_layer;
    struct ggml_init_params ip = {.mem_size = n_tensors_max * ggml_tensor_overhead(), .no_alloc = true};
    pl.ctx = ggml_init(ip);
    pl.gguf = gguf_init_empty();
    set_metadata(pl.gguf, vocab, p, n_vocab);
    gguf_free(vocab);
    plan_tensors(&pl, p, n_vocab);

    char tmp[4096] = "";
    int rc = -1;
    FILE *f = NULL;
    /* Only a regular file (or nothing) is ever replaced: never a device, a FIFO or a symlink
     * (as root, "-o /dev/null" must not replace /dev/null). Checked now and again at the rename. */
    int fd = bj_output_open_tmp(p->out_path, tmp, sizeof tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", p->out_path,
                 fd == -EINVAL || fd == -ELOOP ? bj_file_strerror(fd) : strerror(-fd));
        tmp[0] = '\0'; /* nothing of ours to remove */
        goto out;
    }
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "cannot write %s: %s", p->out_path, strerror(errno));
        goto out;
    }
    if (!gguf_write_to_file_ptr(pl.gguf, f, true)) {
        snprintf(err, errlen, "writing the header of %s failed", p->out_path);
        goto out;
    }
    int64_t n = gguf_get_n_tensors(pl.gguf);
    for (int64_t i = 0; i < n; i++) {
        if (write_tensor(f, pl.gguf, i, p->seed, err, errlen))
            goto out;
        if (!p->quiet)
            fprintf(stderr, "\rmkmodel: %3d%% (%s)%20s", (int)(100 * (i + 1) / n), gguf_get_tensor_name(pl.gguf, i), "");
    }
    if (!p->quiet)
        fprintf(stderr, "\n");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, errlen, "writing %s: %s", p->out_path, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, errlen, "writing %s: %s", p->out_path, strerror(errno));
        goto out;
    }
    f = NULL;
    int crc = bj_output_commit(tmp, p->out_path);
    if (crc) {
        snprintf(err, errlen, "cannot move the model to %s: %s", p->out_path,
                 crc == -EINVAL || crc == -ELOOP ? bj_file_strerror(crc) : strerror(-crc));
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    if (rc && tmp[0])
        unlink(tmp);
    gguf_free(pl.gguf);
    ggml_free(pl.ctx);
    return rc;
}

/* ---- CLI --------------------------------------------------------------------------------- */

static void mkmodel_usage(FILE *to)
{
    fprintf(to,
            "usage: brainjar mkmodel [--preset NAME] [options] -o FILE.gguf\n"
            "  --preset NAME     tiny (default), tinyllama-1.1b, mistral-7b\n"
            "  --type T          F32, F16, Q8_0 (default), Q4_0, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K\n"
            "  --seed N          weights seed (default 1)\n"
            "  --embd N --layers N --heads N --kv-heads N --ff N --ctx N   explicit dimensions\n"
            "  --vocab FILE      tokenizer GGUF (default: the build's ggml-vocab-llama-spm.gguf)\n"
            "  --quiet           no progress\n");
}

static int dim_opt(const char *arg, const char *flag, uint32_t *out)
{
    long v;
    if (bj_parse_long(arg, 1, 1L << 24, &v)) {
        fprintf(stderr, "brainjar mkmodel: %s wants a positive integer, got '%s'\n", flag, arg);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int bj_mkmodel_main(int argc, char **argv)
{
    enum { O_PRESET = 256, O_TYPE, O_SEED, O_EMBD, O_LAYERS, O_HEADS, O_KVH, O_FF, O_CTX, O_VOCAB, O_QUIET };
    static const struct option opts[] = {
        {"preset", required_argument, 0, O_PRESET}, {"type", required_argument, 0, O_TYPE},
        {"seed", required_argument, 0, O_SEED},     {"embd", required_argument, 0, O_EMBD},
        {"layers", required_argument, 0, O_LAYERS}, {"heads", required_argument, 0, O_HEADS},
        {"kv-heads", required_argument, 0, O_KVH},  {"ff", required_argument, 0, O_FF},
        {"ctx", required_argument, 0, O_CTX},       {"vocab", required_argument, 0, O_VOCAB},
        {"quiet", no_argument, 0, O_QUIET},         {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    struct bj_mkmodel_params p = bj_mkmodel_params_default();
    long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_PRESET:
            if (bj_mkmodel_preset(optarg, &p)) {
                fprintf(stderr, "brainjar mkmodel: unknown preset '%s' (tiny, tinyllama-1.1b, mistral-7b)\n", optarg);
                return 2;
            }
            break;
        case O_TYPE:
            if ((p.ftype = bj_mkmodel_ftype_parse(optarg)) < 0) {
                fprintf(stderr, "brainjar mkmodel: unknown type '%s'\n", optarg);
                mkmodel_usage(stderr);
                return 2;
            }
            break;
        case O_SEED:
            if (bj_parse_long(optarg, 0, 0x7fffffffffffffffL, &v)) {
                fprintf(stderr, "brainjar mkmodel: --seed wants a non-negative integer, got '%s'\n", optarg);
                return 2;
            }
            p.seed = (uint64_t)v;
            break;
        case O_EMBD: if (dim_opt(optarg, "--embd", &p.n_embd)) return 2; break;
        case O_LAYERS: if (dim_opt(optarg, "--layers", &p.n_layer)) return 2; break;
        case O_HEADS: if (dim_opt(optarg, "--heads", &p.n_head)) return 2; break;
        case O_KVH: if (dim_opt(optarg, "--kv-heads", &p.n_head_kv)) return 2; break;
        case O_FF: if (dim_opt(optarg, "--ff", &p.n_ff)) return 2; break;
        case O_CTX: if (dim_opt(optarg, "--ctx", &p.n_ctx_train)) return 2; break;
        case O_VOCAB: p.vocab_path = optarg; break;
        case O_QUIET: p.quiet = true; break;
        case 'o': p.out_path = optarg; break;
        case 'h': mkmodel_usage(stdout); return 0;
        default: mkmodel_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "brainjar mkmodel: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char err[512];
    int64_t t0 = bj_now_us();
    if (bj_mkmodel_write(&p, err, sizeof err)) {
        fprintf(stderr, "brainjar mkmodel: %s\n", err);
        return 1;
    }
    if (!p.quiet)
        fprintf(stderr, "mkmodel: wrote %s (%s, %s) in %.1f s\n", p.out_path, p.name,
                bj_mkmodel_ftype_name(p.ftype), (double)(bj_now_us() - t0) / 1e6);
    return 0;
}
