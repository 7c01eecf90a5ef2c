/* brainjar: keeps language-model brains alive in memory jars. main() only dispatches. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <llama.h>

#include "budget_cli.h"
#include "cli.h"
#include "embedded.h"
#include "config.h"
#include "devices.h"
#include "history_cli.h"
#include "lab_cli.h"
#include "hive.h"
#include "log.h"
#include "ops.h"
#include "term.h"
#include "top.h"
#include "tui.h"
#include "util.h"
#include "mkmodel.h"
#include "peer.h"
#include "web.h"     /* web */
#include "web_cli.h" /* web */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: brainjar COMMAND [options]\n"
            "  run        run the hive (default: matrix mode on the embedded model)\n"
            "  validate   check the hive's memory budget and exit (0 ok, 1 too big)\n"
            "  estimate   estimate the memory a model needs\n"
            "  mkmodel    write a synthetic GGUF model\n"
            "  runs       list the runs recorded in the data directory\n"
            "  export     write recorded thoughts and deaths (jsonl or csv)\n"
            "  lab        lab report RUN: an experiment's report (HTML + CSV; docs/LAB.md)\n"
            "  passwd     set a web user's password (brainjar passwd USER [--role viewer|operator])\n"
            "  token      create a web API token (brainjar token create --role viewer|operator)\n"
            "  check      check the store's database (full SQLite integrity check)\n"
            "  top        watch a running brainjar full screen (brainjar top [URL] [--token T])\n"
            "  --version  print versions\n"
            "`brainjar COMMAND --help` explains each command.\n");
}

static void print_version(void)
{
    printf("brainjar %s\nllama.cpp %s (ggml %s)\n", BJ_VERSION, llama_version(), ggml_version());
}

/* SIGINT, SIGTERM and SIGHUP, blocked: they wait for the process loop's signalfd. */
static void block_stop_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
}

/* Signals are taken synchronously by the process loop (signalfd); every thread inherits the
 * mask, so none is interrupted. SIGPIPE is ignored: a closed pipe is an EPIPE for that sink only. */
static int signals_fd(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    block_stop_signals(&sigs);
    return signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Whether SIGINT or SIGTERM waits (blocked) to be taken: the operator asked for a stop. */
static bool stop_requested(void)
{
    sigset_t set;
    return sigpending(&set) == 0 && (sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1);
}

/* The process loop: waits for a signal, the hive's own end (--steps) or --duration, and runs the
 * supervisor's round once a second. Returns the exit status. SIGHUP reopens logs and reloads
 * prompts, as a daemon's should, unless the run began on a terminal: there it is the terminal
 * going away (a closed window, a lost SSH session, tmux kill-session), and the run stops cleanly
 * instead of living on headless with the port and the data directory's lock. */
static int process_loop(const struct bj_config *c, struct bj_hive *hive, int sfd, struct bj_ops *ops)
{
    int64_t t0 = bj_now_us();
    bool on_tty = isatty(STDIN_FILENO) || isatty(STDOUT_FILENO);
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = bj_hive_fd(hive), .events = POLLIN}};
        int timeout = 1000;
        if (c->duration_s > 0) {
            int64_t left = t0 + (int64_t)(c->duration_s * 1e6) - bj_now_us();
            if (left <= 0)
                return 0;
            timeout = left / 1000 < timeout ? (int)(left / 1000) + 1 : timeout;
        }
        if (poll(p, 2, timeout) < 0 && errno != EINTR)
            return 1;
        bj_ops_tick(ops); /* ops: STATUS=, WATCHDOG=1 while healthy */
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGHUP && on_tty) {
                    bj_info("SIGHUP on a terminal: the terminal went away, stopping");
                    return 0;
                }
                if (si.ssi_signo == SIGHUP) {
                    bj_info("SIGHUP: reopening log files, reloading prompt files");
                    bj_hive_reopen_logs(hive);
                    char err[512];
                    if (bj_hive_reload_prompts(hive, err, sizeof err) != 0)
                        bj_error("SIGHUP: %s", err);
                    continue;
                }
                bj_info("signal %u: stopping", si.ssi_signo);
                return 0;
            }
        }
        if (bj_hive_done(hive))
            return 0;
        char err[512];
        if (bj_hive_supervise(hive, err, sizeof err) < 0) {
            bj_error("supervisor: %s", err);
            return 1;
        }
    }
}

/* The web server as the configuration asks (bound, not started). NULL with *status and err. */
static struct bj_web *web_new(const struct bj_config *c, struct bj_bus *bus, struct bj_ops *ops, int *status,
                              char *err, size_t errlen)
{
    struct bj_web_params wp = bj_web_params_default();
    wp.host = c->web_host;
    wp.port = c->web_port;
    wp.data_dir = c->spec.data_dir;
    wp.allow_origin = c->web_allow_origin;
    wp.trusted_proxy = c->web_trusted_proxy;
    wp.auth = c->web_auth;
    wp.metrics_public = c->metrics_public;
    const char *names[BJ_WEB_HOST_NAMES];
    for (int i = 0; i < c->n_web_host_names; i++)
        names[i] = c->web_host_names[i];
    wp.host_names = names;
    wp.n_host_names = c->n_web_host_names;
    wp.cookie_secure = c->web_cookie_secure;
    wp.tls_cert = c->web_tls_cert[0] ? c->web_tls_cert : NULL;
    wp.tls_key = c->web_tls_key[0] ? c->web_tls_key : NULL;
    wp.mode = bj_mode_name(c->mode);
    wp.bus = bus;
    if (bj_ops_store(ops)) { /* thought history beyond the web's memory */
        wp.history = bj_web_store_history;
        wp.history_ud = bj_ops_store(ops);
    }
    return bj_web_new(&wp, status, err, errlen);
}

static int run_hive(const struct bj_config *c, int argc, char **argv)
{
    char err[1024] = "";
    int status = 1;
    int sfd = signals_fd();
    char def[4096] = "";
    bj_embedded_model_path(def, sizeof def);
    struct bj_bus *bus = bj_bus_new();
    struct bj_term *term = NULL;
    struct bj_tui *tui = NULL; /* the full-screen view, or term's lines */
    struct bj_hive *hive = NULL;
    struct bj_peer *peer = NULL; /* peer links */
    struct bj_web *web = NULL; /* web */
    /* devices: the rpc-servers join llama.cpp's devices before anything is estimated or loaded; one
     * that cannot be reached stops the run here, before any state is touched */
    struct bj_ops *ops = NULL;
    bool running = false; /* the hive started: from then on an end is a stop, not a refusal */
    bool tui_on = c->tui == BJ_TUI_ON || (c->tui == BJ_TUI_AUTO && !c->events_set && bj_tui_usable());
    if (c->tui == BJ_TUI_ON && !bj_tui_usable()) {
        snprintf(err, sizeof err, "--tui on: stdout and stdin must be a terminal that TERM describes");
        status = 2;
        goto out;
    }
    if (c->spec.rpc[0] && bj_devices_add_rpc(c->spec.rpc, BJ_RPC_TIMEOUT_MS, err, sizeof err) != 0)
        goto out;
    /* ops: lock the data directory, open the store, restore the death counts (ops.h) */
    static uint32_t deaths[BJ_MAX_BRAINS];
    ops = bj_ops_new(c, argc, argv, def, deaths, &status);
    if (!ops)
        goto out;
    status = 1;
    if (sfd < 0 || !bus) {
        snprintf(err, sizeof err, "cannot set up: %s", strerror(errno));
        goto out;
    }
    /* web: bind first, so that a port in use fails before any model loads. */
    if (!c->no_web && !(web = web_new(c, bus, ops, &status, err, sizeof err)))
        goto out;
    const char *focus = c->focus[0] ? c->focus : c->spec.brains[0].id;
    if (tui_on) {
        struct bj_tui_params tp = bj_tui_params_default();
        tp.bus = bus;
        tp.spec = &c->spec;
        tp.focus = focus;
        if (!(tui = bj_tui_new(&tp, err, sizeof err)))
            goto out;
    } else {
        struct bj_term_params tp = bj_term_params_default();
        tp.bus = bus;
        tp.mode = c->events;
        tp.focus = focus;
        term = bj_term_new(&tp, err, sizeof err);
        if (err[0] || (term && bj_term_start(term, err, sizeof err)))
            goto out;
    }
    if (bj_ops_start_store(ops, bus)) /* ops: the store's writer subscribes before anything is published */
        goto out;
    struct bj_hive_params hp = bj_hive_params_default();
    hp.spec = &c->spec;
    hp.bus = bus;
    hp.default_model = def[0] ? def : NULL;
    hp.initial_deaths = deaths; /* ops: counts never go backwards */
    enum bj_hive_refusal why;
    hive = bj_hive_new(&hp, &why, err, sizeof err);
    if (!hive) {
        status = why == BJ_HIVE_BAD_INPUT ? 2 : 1; /* exit codes: README, brainjar(1) */
        goto out;
    }
    status = 1;
    if (tui && bj_tui_start(tui, hive, err, sizeof err)) /* the screen: after the models loaded */
        goto out;
    /* ---- peer links: after the hive exists, before it publishes ---- */
    if (c->links) {
        struct bj_peer_params pp = c->peer;
        pp.bus = bus;
        pp.hive = hive;
        if (!(peer = bj_peer_new(&pp, err, sizeof err)) || bj_peer_start(peer, err, sizeof err))
            goto out;
    }
    /* ---- end peer links ---- */
    if (web && bj_web_start(web, hive, err, sizeof err)) /* web */
        goto out;
    if (bj_hive_start(hive, err, sizeof err) || bj_ops_hive_started(ops, hive, bus)) /* ops: watchdog, READY=1 */
        goto out;
    running = true;
    status = process_loop(c, hive, sfd, ops);
out:
    if (!running && status != 0 && stop_requested()) {
        /* a stop asked for during start: what failed was cut short on purpose */
        bj_info("stopped by a signal during start%s%s", err[0] ? " (" : "", err[0] ? ")" : "");
        bj_ops_refused(ops, "stopped by a signal during start");
        err[0] = '\0';
        status = 0;
    } else if (!running) {
        bj_ops_refused(ops, err[0] ? err : "the start failed");
    }
    if (err[0])
        bj_error("%s", err);
    bj_ops_stopping(ops); /* ops: STOPPING=1, the watchdog stops */
    if (hive)
        bj_hive_stop(hive); /* the publishers first, so that the sinks get everything */
    bj_peer_stop(peer);     /* peer links: the last local events out, goodbyes; before the bus closes */
    bj_ops_stop(ops, status == 0); /* ops: the store writes what is queued */
    if (status == 0)
        status = bj_ops_exit_status(ops); /* 3: the watchdog's last resort */
    if (bus) {
        bj_bus_close(bus);
        bj_term_stop(term); /* what is queued printed, the threads joined */
        bj_tui_stop(tui); /* the terminal restored, what was logged meanwhile written out */
    }
    bj_web_free(web); /* web: stops its thread before the hive goes */
    bj_peer_free(peer); /* peer links: stopped above; before the hive and the bus it points at */
    bj_hive_free(hive);
    bj_ops_free(ops); /* ops: before the bus it subscribed to */
    bj_tui_free(tui, bus);
    bj_term_free(term);
    bj_bus_free(bus);
    if (sfd >= 0)
        close(sfd);
    return status;
}

static int run(int argc, char **argv)
{
    static struct bj_config c; /* large (brains, paths): not on the stack */
    char **replayed = NULL;
    int rc = bj_replay_args(argc, argv, &argc, &replayed); /* ops: --replay R runs run R's recorded arguments */
    if (rc == 2)
        return 2;
    if (replayed)
        argv = replayed;
    rc = bj_cli_parse_run("run", argc, argv, &c);
    if (rc)
        rc = rc == 1 ? 0 : rc;
    else {
        if (c.log_level >= 0)
            bj_log_set_level((enum bj_log_level)c.log_level);
        rc = run_hive(&c, argc, argv);
    }
    bj_replay_args_free(replayed);
    return rc;
}

static int validate(int argc, char **argv)
{
    static struct bj_config c;
    int rc = bj_cli_parse_run("validate", argc, argv, &c);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (c.log_level >= 0)
        bj_log_set_level((enum bj_log_level)c.log_level);
    char def[4096] = "";
    bj_embedded_model_path(def, sizeof def);
    return bj_validate_run(&c, def, stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) {
        sigset_t stop;
        block_stop_signals(&stop); /* from here a SIGTERM waits for the process loop: a stop, never a crash */
    }
    bj_log_attach_llama();
    llama_backend_init();
    int rc;
    if (strcmp(cmd, "run") == 0) {
        rc = run(argc - 1, argv + 1);
    } else if (strcmp(cmd, "validate") == 0) {
        rc = validate(argc - 1, argv + 1);
    } else if (strcmp(cmd, "estimate") == 0) {
        rc = bj_estimate_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "mkmodel") == 0) {
        rc = bj_mkmodel_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "runs") == 0) {
        rc = bj_runs_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "export") == 0) {
        rc = bj_export_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "lab") == 0) {
        rc = bj_lab_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "check") == 0) {
        rc = bj_check_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "top") == 0) {
        rc = bj_top_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "passwd") == 0) { /* web */
        rc = bj_passwd_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "token") == 0) { /* web */
        rc = bj_token_main(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "brainjar: unknown command '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    llama_backend_free();
    return rc;
}
