/* board: see board.h. */
#include "board.h"

#include <string.h>

/* Peak bandwidths from the makers' specifications: the Pi 5's LPDDR4X-4267 on a 32-bit bus; the
 * Orins' LPDDR5 on 64-bit (Nano), 128-bit (NX) and 256-bit (AGX) buses. */
static const struct bj_board k_boards[] = {
    {"pi5", "Raspberry Pi 5 (LPDDR4X-4267, 32-bit)", 17.1, 8.0},
    {"orin-nano", "Jetson Orin Nano 8GB (LPDDR5, 128-bit)", 68.0, 8.0},
    {"orin-nx", "Jetson Orin NX 16GB (LPDDR5, 128-bit)", 102.4, 16.0},
    {"orin-agx", "Jetson AGX Orin 64GB (LPDDR5, 256-bit)", 204.8, 64.0},
};

const struct bj_board *bj_board_find(const char *name)
{
    for (size_t i = 0; i < sizeof k_boards / sizeof k_boards[0]; i++)
        if (strcmp(k_boards[i].name, name) == 0)
            return &k_boards[i];
    return NULL;
}

const char *bj_board_names(void) { return "pi5, orin-nano, orin-nx, orin-agx"; }

struct bj_decode_bound bj_decode_bound(const struct bj_modelinfo *mi, enum ggml_type kv_type, long jar_tokens,
                                       int n_brains, double bandwidth_gbs)
{
    struct bj_decode_bound b = {0};
    /* The token embedding is read a row per token; an output layer tied to it reads it whole. */
    b.weight_read = mi->weight_bytes - mi->tok_embd_bytes + (mi->output_bytes == 0 ? mi->tok_embd_bytes : 0);
    b.kv_read_half = (uint64_t)n_brains * bj_modelinfo_kv_bytes(mi, kv_type, kv_type, (uint64_t)(jar_tokens / 2));
    double bw = bandwidth_gbs * 1e9;
    if (bw <= 0 || n_brains <= 0)
        return b;
    double step = (double)(b.weight_read + b.kv_read_half) / bw;
    b.brain_tok_s = 1.0 / step;
    b.total_tok_s = n_brains / step;
    b.brain_tok_s_empty = bw / (double)b.weight_read;
    return b;
}
