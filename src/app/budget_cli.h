/* budget_cli: the `brainjar estimate` command and the `validate` report of a parsed config.
 *
 * Both use llama.cpp (the estimate's dry run): call them on the main thread after
 * llama_backend_init() and before any engine starts. */
#ifndef BJ_BUDGET_CLI_H
#define BJ_BUDGET_CLI_H

#include <stdio.h>

#include "config.h"
#include "sysmem.h"

/* `brainjar estimate MODEL [--ctx N] [--brains N] [--kv-type T] [--gpu-layers N|all] [--no-mmap]
 * [--no-repack] [--no-dry-run] [--measure [--no-fill] [--first-batch N] [--decode-steps N]] [--threads N]
 * [--schedule auto|batched|parallel]`; argv[0] is
 * "estimate". Prints the estimate table (and with --measure, what loading the model really
 * took). Returns the exit status: 0 ok, 1 the measurement failed, 2 bad input (flags, or an
 * unreadable, truncated or unsupported model), with the reason on stderr. */
int bj_estimate_main(int argc, char **argv);

/* Layer 1 for a fully parsed config (bj_config_finish done): estimates the hive (brains without
 * a model use default_model_path, the embedded model), reads this machine's memory and prints
 * the report to `out`. Returns 0 (pass) or 1 (fail: the report says why); 2 when the hive cannot
 * be estimated at all (e.g. an unreadable model; the reason is printed to `out`). */
int bj_validate_run(const struct bj_config *c, const char *default_model_path, FILE *out);

/* The same against memory facts read from `paths` (tests feed fake /proc and cgroup files). */
int bj_validate_run_paths(const struct bj_config *c, const char *default_model_path,
                          const struct bj_sysmem_paths *paths, FILE *out);

#endif
