/* estimate_int.h: what estimate.c shares with estimate_measure.c. Not for use elsewhere. */
#ifndef BJ_ESTIMATE_INT_H
#define BJ_ESTIMATE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <ggml.h>

#include "estimate.h"
#include "plan.h"

/* One context as llama.cpp sizes it from the engine's parameters (llama_context's constructor:
 * n_batch capped by n_ctx, n_ctx padded to 256, per-stream cells padded to 256). */
struct ctx_layout {
    uint32_t n_ctx, n_ctx_seq, n_stream, n_seq, n_batch, n_ubatch;
    bool unified;
};
/* The layout of a context of cells_req cells for n_seq sequences. */
void est_layout_one(uint32_t cells_req, int n_seq, bool unified, int prefill_chunk, struct ctx_layout *l);

#define DRY_MAX_BUFS (BJ_MAX_DEVICES + 4)

struct dry_capture {
    ggml_log_callback prev;
    void *prev_ud;
    uint64_t host_compute, dev_compute, output;
    struct {
        char name[128];
        uint64_t bytes;
    } dev_bufs[DRY_MAX_BUFS]; /* device compute buffers by buffer type (CUDA0, RPC0[host:port]) */
    int n_dev_bufs;
    int n_compute;
    char last_error[160];
    bool load_failed;   /* llama.cpp refused the model or the context (run would fail too) */
};

/* Jars must hold at least a token and fit llama.cpp's 32-bit cell counts with room to spare.
 * 0, or -1 with err. */
int est_check_jars(const long *jar_tokens, int n_brains, char *err, size_t errlen);
/* llama.cpp's own no_alloc dry run of context ctx_index of the plan, its buffer sizes captured
 * from the log into *c. 0, or -1 when llama.cpp refused (c->load_failed, c->last_error). */
int est_dry_run(const char *path, const struct bj_est_opts *o, const struct bj_plan *plan, int ctx_index,
                const struct ctx_layout *l, bool touched, struct dry_capture *c);

#endif
