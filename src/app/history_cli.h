/* history_cli: `brainjar runs` (the runs recorded in a data directory) and `brainjar export`
 * (transcripts and deaths as JSON lines or CSV, for analysis). Both read the store through its
 * read-only connection: they work while a daemon runs. Main thread. */
#ifndef BJ_HISTORY_CLI_H
#define BJ_HISTORY_CLI_H

/* argv[0] is the command name. Exit status: 0, 1 (the store cannot be read), 2 (bad input). */
int bj_runs_main(int argc, char **argv);
int bj_export_main(int argc, char **argv);
/* `brainjar check`: the full integrity check; 0 sound, 1 damaged or unreadable, 2 bad input. */
int bj_check_main(int argc, char **argv);

/* `run` arguments with `--replay R [--replay-from DIR]`: returns 1 and *out_argv = run R's recorded
 * arguments, then the ones given now (later flags win: give a fresh --data-dir, --steps, ...),
 * then --replay-run R --replay-from DIR (DIR defaults to the default data directory); 0 when there
 * is no --replay (nothing changed); 2 after printing why run R cannot be replayed. argv[0] is the
 * command name; *out_argv is NULL-terminated and the caller's: bj_replay_args_free. */
int bj_replay_args(int argc, char **argv, int *out_argc, char ***out_argv);
void bj_replay_args_free(char **v);

#endif
