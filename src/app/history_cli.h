/* history_cli: `brainjar runs` (the runs recorded in a data directory) and `brainjar export`
 * (transcripts and deaths as JSON lines or CSV, for analysis). Both read the store through its
 * read-only connection: they work while a daemon runs. Main thread. */
#ifndef BJ_HISTORY_CLI_H
#define BJ_HISTORY_CLI_H

/* argv[0] is the command name. Exit status: 0, 1 (the store cannot be read), 2 (bad input). */
int bj_runs_main(int argc, char **argv);
int bj_export_main(int argc, char **argv);

#endif
