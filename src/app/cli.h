/* cli: the options of `brainjar run` and `brainjar validate`, turned into a bj_config.
 *
 * The original's flags keep working (--mode, --model, --model-subject/-observer/-god,
 * --ram-limit-subject/-observer/-god, --web-host, --web-port). Everything is parsed and
 * checked before anything starts. Main thread. */
#ifndef BJ_CLI_H
#define BJ_CLI_H

#include <stdio.h>

#include "config.h"

/* Fills c (defaults first). Returns 0 to go on, 1 when --help was printed (exit 0), or 2 after
 * printing what is wrong to stderr (bad or contradictory input: exit status 2). */
int bj_cli_parse_run(const char *cmd, int argc, char **argv, struct bj_config *c);

void bj_cli_usage_run(const char *cmd, FILE *to);

/* For the small subcommands' getopt_long loops (optstring starting with ':'), after it returned
 * ':' or '?' for "brainjar CMD": says which option lacks its value or is unknown; returns 2. */
int bj_cli_option_error(const char *cmd, int opt, char **argv);

/* After the options: 2 after saying that argv[first] is unexpected, 0 when first >= argc. */
int bj_cli_no_more_args(const char *cmd, int first, int argc, char **argv);

#endif
