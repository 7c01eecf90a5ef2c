/* lab_cli: `brainjar lab report RUN` (docs/LAB.md). */
#ifndef BJ_LAB_CLI_H
#define BJ_LAB_CLI_H

/* argv[0] is "lab". Returns the process exit status. */
int bj_lab_main(int argc, char **argv);

#endif
