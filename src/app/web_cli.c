/* web_cli: `brainjar passwd` and `brainjar token`, the web server's user and token tools. */
#include "web_cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "web.h"

/* Reads one line from stdin into buf, without echo when stdin is a terminal. 0, or -1 at EOF. */
static int read_secret(const char *prompt, char *buf, size_t len)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *r = fgets(buf, (int)len, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!r)
        return -1;
    buf[strcspn(buf, "\r\n")] = 0;
    return 0;
}

static const char *default_data_dir(void)
{
    static struct bj_config c;
    bj_config_defaults(&c);
    return c.spec.data_dir;
}

int bj_passwd_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"role", required_argument, 0, 'r'}, {"data-dir", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *role_s = NULL, *dir = default_data_dir();
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r': role_s = optarg; break;
        case 'd': dir = optarg; break;
        case 'h':
            printf("usage: brainjar passwd USER [--role viewer|operator] [--data-dir DIR]\n"
                   "Sets USER's web password (read from stdin; not echoed on a terminal). A new user is a viewer\n"
                   "unless --role says otherwise; an existing user keeps its role. Ends the user's sessions.\n");
            return 0;
        default: return bj_cli_option_error("passwd", opt, argv);
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: brainjar passwd USER [--role viewer|operator] [--data-dir DIR]\n");
        return 2;
    }
    const char *user = argv[optind];
    enum bj_role role = BJ_ROLE_NONE;
    if (role_s && (role = bj_role_parse(role_s)) == BJ_ROLE_NONE) {
        fprintf(stderr, "brainjar passwd: --role: '%s' is not viewer or operator\n", role_s);
        return 2;
    }
    if (!bj_auth_valid_name(user)) {
        fprintf(stderr, "brainjar passwd: '%s' is not a user name (1-63 of A-Z a-z 0-9 _ - . @)\n", user);
        return 2;
    }
    char err[512];
    struct bj_auth *a = bj_auth_new(dir, err, sizeof err);
    if (!a) {
        fprintf(stderr, "brainjar passwd: %s\n", err);
        return 1;
    }
    if (role == BJ_ROLE_NONE)
        role = bj_auth_user_role(a, user);
    if (role == BJ_ROLE_NONE)
        role = BJ_ROLE_VIEWER;
    char pw[BJ_AUTH_PASSWORD_MAX + 2], again[BJ_AUTH_PASSWORD_MAX + 2];
    int rc = 1;
    if (read_secret("New password: ", pw, sizeof pw)) {
        fprintf(stderr, "brainjar passwd: no password on stdin\n");
        goto out;
    }
    if (isatty(STDIN_FILENO)) {
        if (read_secret("Again: ", again, sizeof again) || strcmp(pw, again) != 0) {
            fprintf(stderr, "brainjar passwd: the passwords differ; nothing changed\n");
            goto out;
        }
    }
    if (bj_auth_set_password(a, user, pw, role, err, sizeof err)) {
        fprintf(stderr, "brainjar passwd: %s\n", err);
        rc = 2;
        goto out;
    }
    fprintf(stderr, "brainjar passwd: %s (%s) set in %s/web-users\n", user, bj_role_name(role), dir);
    rc = 0;
out:
    memset(pw, 0, sizeof pw);
    memset(again, 0, sizeof again);
    bj_auth_free(a);
    return rc;
}

int bj_token_main(int argc, char **argv)
{
    static const struct option opts[] = {{"role", required_argument, 0, 'r'}, {"name", required_argument, 0, 'n'},
                                         {"data-dir", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *role_s = NULL, *name = "", *dir = default_data_dir();
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r': role_s = optarg; break;
        case 'n': name = optarg; break;
        case 'd': dir = optarg; break;
        case 'h':
            printf("usage: brainjar token create --role viewer|operator [--name NAME] [--data-dir DIR]\n"
                   "Prints a new API token once (for `Authorization: Bearer TOKEN`); only its hash is kept.\n");
            return 0;
        default: return bj_cli_option_error("token", opt, argv);
        }
    }
    if (optind != argc - 1 || strcmp(argv[optind], "create") != 0) {
        fprintf(stderr, "usage: brainjar token create --role viewer|operator [--name NAME] [--data-dir DIR]\n");
        return 2;
    }
    enum bj_role role = bj_role_parse(role_s);
    if (role == BJ_ROLE_NONE) {
        fprintf(stderr, "brainjar token: --role viewer or --role operator is required\n");
        return 2;
    }
    char err[512], token[BJ_AUTH_SECRET_LEN + 1];
    struct bj_auth *a = bj_auth_new(dir, err, sizeof err);
    if (!a) {
        fprintf(stderr, "brainjar token: %s\n", err);
        return 1;
    }
    int rc = bj_auth_token_create(a, role, name, token, err, sizeof err);
    bj_auth_free(a);
    if (rc) {
        fprintf(stderr, "brainjar token: %s\n", err);
        return 2;
    }
    printf("%s\n", token);
    fprintf(stderr, "brainjar token: a %s token%s%s; it is shown only now (its hash is in %s/web-tokens)\n",
            bj_role_name(role), name[0] ? " named " : "", name, dir);
    return 0;
}

int bj_web_store_history(void *ud, const char *brain, int64_t before_us, int limit, struct bj_thought_rec *out)
{
    struct bj_stored_thought *t = NULL;
    char err[256];
    int n = bj_store_read_thoughts(ud, brain, 0, before_us, limit, &t, err, sizeof err);
    if (n < 0) {
        bj_warn("web: thought history from the store: %s", err);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < n && k < limit; i++) {
        char *text = strdup(t[i].text ? t[i].text : "");
        if (!text)
            break;
        out[k++] = (struct bj_thought_rec){.time_us = t[i].ended_us, .life = t[i].life, .thought = t[i].thought,
                                           .complete = t[i].complete, .text = text};
    }
    bj_store_free_thoughts(t, n);
    return k;
}
