/* web_cli: the `passwd` and `token` subcommands (users and API tokens of the web server). */
#ifndef BJ_WEB_CLI_H
#define BJ_WEB_CLI_H

/* brainjar passwd USER [--role viewer|operator] [--data-dir DIR]: the password from stdin. */
int bj_passwd_main(int argc, char **argv);
/* brainjar token create --role viewer|operator [--name NAME] [--data-dir DIR]: prints the token once. */
int bj_token_main(int argc, char **argv);

/* The web server's thought history (bj_web_history_fn) read from the store: ud is the struct
 * bj_store. Called on the web thread (the store's read API takes any thread). */
#include <stdint.h>
struct bj_thought_rec;
int bj_web_store_history(void *ud, const char *brain, int64_t before_us, int limit, struct bj_thought_rec *out);

#endif
