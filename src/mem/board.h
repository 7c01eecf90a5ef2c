/* board: what a small board can do before anyone buys it. The boards brainjar is meant for
 * (a Raspberry Pi 5, the Jetson Orins) decode at a speed set by their memory bandwidth: each step
 * reads every weight once, whatever the number of brains, and each brain's KV cache. From the
 * model's facts and the board's bandwidth this gives the bound that decoding cannot beat.
 * Pure functions; any thread. */
#ifndef BJ_BOARD_H
#define BJ_BOARD_H

#include <stdint.h>

#include "modelinfo.h"

struct bj_board {
    const char *name;      /* as --board takes it */
    const char *what;      /* the board, its memory */
    double bandwidth_gbs;  /* peak memory bandwidth, GB/s (1e9 bytes) */
    double memory_gb;      /* memory of the model named (the largest common one), GB (1e9) */
};

/* The board called name, or NULL. */
const struct bj_board *bj_board_find(const char *name);
/* Its names, for messages: "pi5, orin-nano, orin-nx, orin-agx". */
const char *bj_board_names(void);

struct bj_decode_bound {
    uint64_t weight_read;   /* bytes of weights one step reads (the token embedding only by row) */
    uint64_t kv_read_half;  /* bytes of KV cache one step reads, every jar half full (a life's average) */
    double brain_tok_s;     /* tokens/s each brain can make at most, jars half full */
    double total_tok_s;     /* ... all brains together */
    double brain_tok_s_empty; /* with empty jars: the weights alone */
};

/* The bound for n_brains brains with jars of jar_tokens on a memory of bandwidth_gbs. */
struct bj_decode_bound bj_decode_bound(const struct bj_modelinfo *mi, enum ggml_type kv_type, long jar_tokens,
                                       int n_brains, double bandwidth_gbs);

#endif
