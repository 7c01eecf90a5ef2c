/* top: see top.h. */
#include "top.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bus.h"
#include "cli.h"
#include "log.h"
#include "tui.h"
#include "util.h"
#include "wsclient.h"

#define TOP_DEFAULT_URL "http://127.0.0.1:8095"
#define TOP_FIRST_WAIT_MS 10000 /* the first snapshot must come within this */

static void top_usage(FILE *to)
{
    fprintf(to,
            "usage: brainjar top [URL] [--token TOKEN | --token-file FILE] [--insecure]\n"
            "  Shows a running brainjar's hive full screen (as `brainjar run` on a terminal), over its\n"
            "  WebSocket API. URL: http://HOST[:PORT] (default " TOP_DEFAULT_URL "; https for TLS).\n"
            "  The token (`brainjar token create --role viewer|operator`): --token, else --token-file,\n"
            "  else $BRAINJAR_TOKEN, else $XDG_CONFIG_HOME/brainjar/token (~/.config/brainjar/token).\n"
            "  A viewer token is read-only; an operator token also kills, resurrects, pauses, resumes\n"
            "  and speaks (k r p u s). Keys: arrows/Tab focus, Enter zoom, ? help, q quit.\n"
            "  --insecure: https with a self-signed certificate (no check of who answers).\n"
            "  Exit status: 0 quit, 1 cannot reach the daemon, 2 bad usage, 3 token refused.\n");
}

/* The first line of path, without its newline: 1 read, 0 no such file, -1 with err. */
static int read_token_file(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    char *text;
    int rc = bj_read_file_max(path, 4096, NULL, &text, NULL);
    if (rc == -ENOENT)
        return 0;
    if (rc) {
        snprintf(err, errlen, "cannot read the token file %s: %s", path, bj_file_strerror(rc));
        return -1;
    }
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(out, outlen, "%s", text);
    free(text);
    if (!out[0]) {
        snprintf(err, errlen, "the token file %s is empty", path);
        return -1;
    }
    return 1;
}

/* The token as top.h says. 0 (token may be ""), or -1 with err. */
static int find_token(const char *opt_token, const char *opt_file, char *tok, size_t toklen, char *err, size_t errlen)
{
    tok[0] = '\0';
    if (opt_token) {
        snprintf(tok, toklen, "%s", opt_token);
        return 0;
    }
    if (opt_file) {
        int rc = read_token_file(opt_file, tok, toklen, err, errlen);
        if (rc == 0)
            snprintf(err, errlen, "the token file %s does not exist", opt_file);
        return rc == 1 ? 0 : -1;
    }
    const char *env = getenv("BRAINJAR_TOKEN");
    if (env && env[0]) {
        snprintf(tok, toklen, "%s", env);
        return 0;
    }
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        snprintf(path, sizeof path, "%s/brainjar/token", xdg);
    else if (home && home[0])
        snprintf(path, sizeof path, "%s/.config/brainjar/token", home);
    else
        return 0;
    return read_token_file(path, tok, toklen, err, errlen) < 0 ? -1 : 0;
}

static int act_fn(void *ud, const char *action, const char *brain, const char *text)
{
    return bj_wsclient_act(ud, action, brain, text);
}

static void sense_fn(void *ud, double *mem_used, double *mem_total, bool *temp_ok, double *temp_c)
{
    bj_wsclient_sense(ud, mem_used, mem_total, temp_ok, temp_c);
}

/* Waits for the first snapshot (or a failure, or a stop signal). Returns the outcome. */
static enum bj_wsclient_outcome wait_first(struct bj_wsclient *c, int sfd, char *why, size_t whylen, bool *stopped)
{
    int64_t until = bj_now_us() + (int64_t)TOP_FIRST_WAIT_MS * 1000;
    for (;;) {
        enum bj_wsclient_outcome o = bj_wsclient_outcome(c, why, whylen);
        if (o != BJ_WSC_PENDING)
            return o;
        int64_t left = until - bj_now_us();
        if (left <= 0) {
            snprintf(why, whylen, "no snapshot within %d s (is it a brainjar?)", TOP_FIRST_WAIT_MS / 1000);
            return BJ_WSC_REFUSED;
        }
        struct pollfd p[2] = {{.fd = bj_wsclient_fd(c), .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        poll(p, 2, (int)(left / 1000) + 1);
        if (p[1].revents & POLLIN) {
            *stopped = true;
            return BJ_WSC_PENDING;
        }
    }
}

/* Shows the view until a stop signal or a refused token. Returns the exit status. */
static int watch(struct bj_wsclient *c, int sfd, const char *url)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = bj_wsclient_fd(c), .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return 1;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si)
                ;
            return 0;
        }
        char why[256];
        if (bj_wsclient_outcome(c, why, sizeof why) == BJ_WSC_AUTH) {
            bj_error("top: %s: %s", url, why);
            return 3;
        }
    }
}

static int top_run(const char *url, const char *token, bool insecure)
{
    char err[512], why[256];
    if (bj_wsclient_check_url(url, err, sizeof err) != 0) { /* said before anything else */
        fprintf(stderr, "brainjar top: %s\n", err);
        return 2;
    }
    if (!bj_tui_usable()) {
        fprintf(stderr, "brainjar top: needs a terminal (stdin and stdout a TTY, TERM set)\n");
        return 2;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* before any thread: they all inherit it */
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    struct bj_bus *bus = bj_bus_new();
    struct bj_wsclient_params wp = bj_wsclient_params_default();
    wp.url = url;
    wp.token = token;
    wp.tls_insecure = insecure;
    wp.bus = bus;
    struct bj_wsclient *c = bus && sfd >= 0 ? bj_wsclient_new(&wp, err, sizeof err) : NULL;
    int rc = 0;
    struct bj_tui *tui = NULL;
    if (!c) {
        fprintf(stderr, "brainjar top: %s\n", bus && sfd >= 0 ? err : "out of resources");
        rc = 2;
        goto out;
    }
    struct bj_tui_params tp = bj_tui_params_default();
    tp.bus = bus;
    tp.source = url;
    tp.remote_ud = c;
    tp.remote_act = act_fn;
    tp.remote_sense = sense_fn;
    if (!(tui = bj_tui_new(&tp, err, sizeof err)) || bj_wsclient_start(c, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar top: %s\n", err);
        rc = 1;
        goto out;
    }
    bool stopped = false;
    enum bj_wsclient_outcome o = wait_first(c, sfd, why, sizeof why, &stopped);
    if (stopped) {
        rc = 0;
    } else if (o == BJ_WSC_REFUSED) {
        fprintf(stderr, "brainjar top: cannot attach to %s: %s\n", url, why);
        rc = 1;
    } else if (o == BJ_WSC_AUTH) {
        fprintf(stderr, "brainjar top: %s refused the token: %s\n", url,
                token[0] ? why : "it needs one (--token, --token-file or BRAINJAR_TOKEN)");
        rc = 3;
    } else if (bj_tui_start(tui, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar top: %s\n", err);
        rc = 2;
    } else {
        rc = watch(c, sfd, url);
    }
    bj_wsclient_stop(c);
    bj_bus_close(bus);
    bj_tui_stop(tui);
out:
    bj_tui_free(tui, bus);
    bj_wsclient_free(c);
    bj_bus_free(bus);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

int bj_top_main(int argc, char **argv)
{
    static const struct option opts[] = {{"token", required_argument, 0, 't'},
                                         {"token-file", required_argument, 0, 'f'},
                                         {"insecure", no_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *opt_token = NULL, *opt_file = NULL;
    bool insecure = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 't': opt_token = optarg; break;
        case 'f': opt_file = optarg; break;
        case 'k': insecure = true; break;
        case 'h': top_usage(stdout); return 0;
        default: return bj_cli_option_error("top", opt, argv);
        }
    }
    const char *url = TOP_DEFAULT_URL;
    if (optind < argc)
        url = argv[optind++];
    if (bj_cli_no_more_args("top", optind, argc, argv))
        return 2;
    char token[512], err[512];
    if (find_token(opt_token, opt_file, token, sizeof token, err, sizeof err) != 0) {
        fprintf(stderr, "brainjar top: %s\n", err);
        return 2;
    }
    return top_run(url, token, insecure);
}
