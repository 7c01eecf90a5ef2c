/* engine_prof: an engine's profile, reported when it stops (--profile): where a step's time went
 * around llama_decode, the longest wait of a live brain, and the resurrection latency in
 * milliseconds and in steps (engine_int.h). */
#include "engine.h"
#include "engine_int.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* A total over steps, per step; 0 when there were none. */
static double per_step(double v, long steps) { return steps ? v / (double)steps : 0.0; }

static const char *const k_phase_names[PH_COUNT] = {
    "housekeeping (requests, resurrections, status)", "batch assembly", "llama_decode",
    "sampling", "token-to-text and events", "event publishing (hive + bus)",
};

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* p-th percentile (0-100) of the n values kept in ring v; 0 when none. Sorts them. */
static double ring_pct(int32_t *v, long n, double pct)
{
    if (n > LATENCY_RING)
        n = LATENCY_RING;
    if (n == 0 || !v)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_i32);
    long k = (long)(pct / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[k];
}

/* p-th percentile of the resurrection latencies kept, in ms. */
static double latency_pct(struct bj_engine *e, double pct) { return ring_pct(e->latency_us, e->n_latency, pct) / 1000.0; }

/* ... and of the steps they took. */
static double latency_steps_pct(struct bj_engine *e, double pct)
{
    return ring_pct(e->latency_steps, e->n_latency, pct);
}

/* --profile: where the steps' time went, and the fairness figures (engine thread, at its end). */
void engine_report_profile(struct bj_engine *e)
{
    bj_info("profile %s: %d brains, %ld steps with work, %ld of them generation-only", e->label, e->n_brains,
            e->prof[0].steps, e->prof[1].steps);
    bj_info("profile   %-48s %18s %18s", "phase", "all steps us (%)", "generation-only");
    double out_pct[2] = {0, 0};
    for (int ph = 0; ph < PH_COUNT; ph++) {
        char col[2][32];
        for (int g = 0; g < 2; g++) {
            const struct prof *p = &e->prof[g];
            double per = per_step((double)p->us[ph], p->steps);
            double pct = p->total_us ? 100.0 * (double)p->us[ph] / (double)p->total_us : 0.0;
            snprintf(col[g], sizeof col[g], "%.1f (%.2f%%)", per, pct);
        }
        bj_info("profile   %-48s %18s %18s", k_phase_names[ph], col[0], col[1]);
    }
    for (int g = 0; g < 2; g++) {
        const struct prof *p = &e->prof[g];
        out_pct[g] = p->total_us ? 100.0 * (double)(p->total_us - p->us[PH_DECODE]) / (double)p->total_us : 0.0;
    }
    double step_us[2];
    for (int g = 0; g < 2; g++)
        step_us[g] = per_step((double)e->prof[g].total_us, e->prof[g].steps);
    bj_info("profile   %-48s %18.1f %18.1f", "whole step us", step_us[0], step_us[1]);
    double p50 = latency_pct(e, 50), p99 = latency_pct(e, 99), max = latency_pct(e, 100);
    double s50 = latency_steps_pct(e, 50), s99 = latency_steps_pct(e, 99);
    bj_info("profile %s: brainjar outside llama_decode %.2f%% of the step (generation-only steps %.2f%%); "
            "longest wait of a live brain %ld steps; %ld resurrections, first new token after p50 %.1f ms, "
            "p99 %.1f ms, max %.1f ms; in steps p50 %.0f, p99 %.0f, max %ld; %ld opening tokens copied from "
            "another brain's memory", e->label, out_pct[0], out_pct[1], e->max_wait, e->n_latency, p50, p99, max, s50,
            s99, e->max_first_steps, e->shared_tokens);
    /* One line for scripts (bench/scale). */
    bj_info("profile-summary: brains=%d steps=%ld tg_steps=%ld step_us=%.1f tg_step_us=%.1f outside_decode_pct=%.3f "
            "tg_outside_decode_pct=%.3f max_wait_steps=%ld resurrections=%ld first_token_p50_ms=%.2f "
            "first_token_p99_ms=%.2f first_token_max_ms=%.2f first_token_max_steps=%ld "
            "first_token_p50_steps=%.0f first_token_p99_steps=%.0f opening_steps=%ld opening_step_us=%.1f "
            "opening_tokens_per_step=%.1f shared_tokens=%ld ubatches_per_step=%.2f tg_ubatches_per_step=%.2f "
            "opening_ubatches_per_step=%.2f fillers_per_step=%.2f tg_fillers_per_step=%.2f",
            e->n_brains, e->prof[0].steps, e->prof[1].steps,
            step_us[0], step_us[1], out_pct[0], out_pct[1],
            e->max_wait, e->n_latency, p50, p99, max, e->max_first_steps, s50, s99, e->opening_steps,
            per_step((double)e->opening_us, e->opening_steps), per_step((double)e->opening_tokens, e->opening_steps),
            e->shared_tokens, per_step((double)e->ubatches[0], e->prof[0].steps),
            per_step((double)e->ubatches[1], e->prof[1].steps), per_step((double)e->ubatches[2], e->opening_steps),
            per_step((double)e->filled[0], e->prof[0].steps), per_step((double)e->filled[1], e->prof[1].steps));
}
