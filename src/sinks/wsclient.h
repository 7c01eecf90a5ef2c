/* wsclient: a client of a running brainjar's WebSocket API (/ws), for `brainjar top`.
 *
 * It connects with libwebsockets' client API, authenticates with a bearer token (the first
 * message, {"type":"auth"}), decodes the daemon's messages (snapshot, live events, ticks) into
 * bj_events and publishes them on a local bus, so that the terminal view (sinks/tui) is fed the
 * same way as in a local run. Its own link is told on that bus as BJ_EV_LINK events whose brain
 * is empty: state "up" (cause: the role, "viewer" or "operator"; time_us: when the daemon's hive
 * started) before each snapshot's events,
 * "down" (text: what happened; it reconnects with a backoff) and "note" (text: the answer to an
 * operator action). After the first snapshot a lost link is retried forever; before it, the
 * first failure is final (bj_wsclient_outcome). Operator actions are POSTs to /api/brains/ID/ACTION
 * made on the client's thread.
 *
 * Threads: new/start/stop/free, outcome and act from any one thread (main, or the view's for act);
 * the client's own thread does everything else. */
#ifndef BJ_WSCLIENT_H
#define BJ_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "event.h"

struct bj_wsclient;

struct bj_wsclient_params {
    const char *url;     /* http://HOST[:PORT] or https://, ws://, wss:// (the path /ws is implied) */
    const char *token;   /* API token or session id; NULL or "": none (a daemon with --web-auth off) */
    struct bj_bus *bus;  /* required: where the decoded events go */
    int backoff_min_ms, backoff_max_ms; /* reconnection: 250 doubling up to 5000 */
    int connect_timeout_s;              /* one attempt (5) */
    bool tls_insecure;                  /* https: accept a self-signed certificate and another name */
};
struct bj_wsclient_params bj_wsclient_params_default(void);

enum bj_wsclient_outcome {
    BJ_WSC_PENDING,   /* the first snapshot has not come yet */
    BJ_WSC_UP,        /* a snapshot came: the link is (or was, and is being retried) up */
    BJ_WSC_REFUSED,   /* the first connection failed (nothing listens, a bad host, TLS, not a brainjar) */
    BJ_WSC_AUTH,      /* the token was refused (401/403 or "Authentication required") */
};

/* 0 when url is one that bj_wsclient_new takes, else -1 with err saying why. */
int bj_wsclient_check_url(const char *url, char *err, size_t errlen);
/* Checks the URL. NULL with err for a bad one or no memory. */
struct bj_wsclient *bj_wsclient_new(const struct bj_wsclient_params *p, char *err, size_t errlen);
int bj_wsclient_start(struct bj_wsclient *c, char *err, size_t errlen);
/* Readable when the outcome changes (an eventfd; read it to clear). */
int bj_wsclient_fd(const struct bj_wsclient *c);
/* The outcome so far; why: what failed, for the user. */
enum bj_wsclient_outcome bj_wsclient_outcome(struct bj_wsclient *c, char *why, size_t whylen);
/* The daemon's memory (bytes; total <= 0 unknown) and temperature, from its last tick. */
void bj_wsclient_sense(struct bj_wsclient *c, double *mem_used, double *mem_total, bool *temp_ok, double *temp_c);
/* Queues an operator action ("kill", "resurrect", "pause", "resume", "say" with text) on brain;
 * the daemon's answer comes back as a "note" link event. 0, or -1 when the queue is full. */
int bj_wsclient_act(struct bj_wsclient *c, const char *action, const char *brain, const char *text);
void bj_wsclient_stop(struct bj_wsclient *c);
void bj_wsclient_free(struct bj_wsclient *c);

/* What one message of the daemon was, beyond its events. */
struct bj_wsclient_msg {
    bool snapshot;        /* a snapshot: the view starts afresh with these events */
    char role[16];        /* snapshot: "viewer" or "operator" */
    int64_t started_us;   /* snapshot: when the daemon's hive started (0: not said) */
    bool auth_error;      /* {"type":"error","error":"Authentication required"} */
    bool has_memory;      /* a tick's memory and temperature */
    double mem_used, mem_total, temp_c;
    bool temp_ok;
};

/* Decodes one text message (an object or an array of them) into events appended to out, oldest
 * first. Pure: no I/O. 0, or -1 with err when it is not JSON of the API's shape (nothing appended
 * for that message's bad parts; unknown types are skipped). */
int bj_wsclient_decode(const char *text, size_t len, struct bj_evbuf *out, struct bj_wsclient_msg *info,
                       char *err, size_t errlen);

#endif
