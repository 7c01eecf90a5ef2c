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

#endif
