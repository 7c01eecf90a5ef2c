/* hive: all brains of one process, their engines, and who watches whom.
 *
 * bj_hive_run() is `brainjar run`: it checks everything (models, jars, prompts, the memory
 * budget) before anything starts, loads each model once, starts one engine per model, routes
 * each brain's thoughts, deaths and resurrections to the brains that watch it, writes every
 * death to crash_reports.log, and stops cleanly on SIGINT/SIGTERM, after --duration or --steps.
 * Main thread only. */
#ifndef BJ_HIVE_H
#define BJ_HIVE_H

#include "config.h"

/* Runs the hive. Returns the process exit status: 0 after a clean stop, 1 when the memory
 * budget or a runtime step fails, 2 for bad input (nothing started). */
int bj_hive_run(const struct bj_config *c);

/* Fills path with the model a brain runs: its own, the hive's, or the embedded default.
 * Returns 0, or -1 when none is available. */
int bj_hive_model_path(const struct bj_config *c, const struct bj_brain_cfg *b, char *path, size_t len);

#endif
