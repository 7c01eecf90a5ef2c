/* web_cli: the `passwd` and `token` subcommands (users and API tokens of the web server). */
#ifndef BJ_WEB_CLI_H
#define BJ_WEB_CLI_H

/* brainjar passwd USER [--role viewer|operator] [--data-dir DIR]: the password from stdin. */
int bj_passwd_main(int argc, char **argv);
/* brainjar token create --role viewer|operator [--name NAME] [--data-dir DIR]: prints the token once. */
int bj_token_main(int argc, char **argv);

#endif
