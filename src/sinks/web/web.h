/* web: the hive's face. HTTP (dashboard, REST API, /metrics) and a WebSocket event stream on
 * libwebsockets, all on one event-loop thread of its own (plus hash workers for passwords).
 *
 * The wing src/sinks/web/: server.c (the loop, connections, WebSocket fan-out, hash workers),
 * routes.c (HTTP routes and the snapshots' JSON, on a struct web_ctx), view.c (what the events
 * told: thought rings, deaths, logs, chart series, their JSON), auth.c (users, sessions, tokens).
 * server -> routes -> view; server -> view; nothing calls back up.
 *
 * The web server is a bus subscriber like the terminal: it takes one subscription, whose eventfd
 * is adopted into the libwebsockets loop, so events wake the loop without any other thread
 * touching it. From the events it keeps its own small view (recent thoughts per brain, deaths,
 * log lines, a per-second series for the charts) and fans each event out to the WebSocket
 * clients through bounded per-client queues (server.c says how a slow client is treated). It acts
 * on brains only through the hive API (hive.h): operator calls and snapshots.
 *
 * Life cycle (all on the main thread):
 *   bj_web_new()    binds the port (so a port in use fails before any model loads), opens the
 *                   auth files (first start: makes `admin` and prints its password once), and
 *                   subscribes to the bus.
 *   bj_web_start()  gives it the hive and starts the event-loop thread.
 *   bj_web_stop()   stops the thread (call before bj_hive_free); bj_web_free() releases the rest.
 * Everything the server does after start happens on its thread. */
#ifndef BJ_WEB_H
#define BJ_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "hive.h"

/* One finished thought, as the history returns it (newest first). */
struct bj_thought_rec {
    int64_t time_us;  /* when it ended (wall clock) */
    uint32_t life;    /* 1 + deaths before it */
    uint32_t thought; /* number within the life */
    bool complete;    /* false: cut short by death */
    char *text;       /* malloc'd by whoever fills the record; the web server frees it */
};

/* Thought history beyond the in-memory ring (the store): fills out[0..limit) with `brain`'s
 * thoughts that ended before before_us (0: the newest), newest first. Returns how many, or -1 on
 * error (the web server then answers from its ring). Called on the web thread. */
typedef int (*bj_web_history_fn)(void *ud, const char *brain, int64_t before_us, int limit,
                                 struct bj_thought_rec *out);

struct bj_web_params {
    const char *host;           /* address to bind (default 127.0.0.1) */
    int port;                   /* default 8095; 0: any free port (see bj_web_port) */
    const char *data_dir;       /* auth files live here */
    const char *allow_origin;   /* one origin CORS allows (with credentials); NULL: none */
    const char *trusted_proxy;  /* peer address whose X-Forwarded-For is believed; NULL: none */
    bool auth;                  /* false (--web-auth off) only on a loopback host */
    bool metrics_public;        /* /metrics without a token (only on a loopback host) */
    /* The Host header must name this server: its bind address, localhost, 127.0.0.1 or [::1] (each
     * with the port), or one of these names (with or without the port); anything else gets 421
     * (DNS rebinding). Copied by bj_web_new. */
    const char *const *host_names;
    int n_host_names;           /* at most BJ_WEB_HOST_NAMES */
    bool cookie_secure;         /* the session cookie is always Secure (a site served only over https) */
    const char *tls_cert, *tls_key; /* PEM files: serve https (libwebsockets' TLS); both or neither */
    const char *mode;           /* the hive's mode name for the original's STATE.mode ("matrix") */
    struct bj_bus *bus;         /* required */
    int ring_thoughts;          /* thoughts kept per brain in memory (default 200) */
    int session_ttl_s;          /* default 7 days */
    int login_max_failures;     /* per address per window (default 5) */
    int login_window_s;         /* default 60 */
    size_t client_queue;        /* per WebSocket client: messages queued before tokens coalesce (256) */
    size_t client_max;          /* ... before the client is resynchronised from a snapshot (4096) */
    int hash_threads;           /* password checks (Argon2id) run on these workers (0, the default:
                                 * 2, or 1 on a machine of 2 cores or fewer) ... */
    int hash_queue;             /* ... with this many more waiting (4); past that a login gets 503 */
    bj_web_history_fn history;  /* optional: the store's thought history */
    void *history_ud;
};
struct bj_web_params bj_web_params_default(void);
#define BJ_WEB_HOST_NAMES 16
/* Whether s can be a --web-host-name: 1..253 of [A-Za-z0-9.-], not starting with '-' or '.'. */
bool bj_web_host_name_valid(const char *s);

struct bj_web;

/* Checks the params, binds host:port, opens the auth files and subscribes to the bus. NULL with
 * err on failure; *status is then the exit status it deserves (2: bad flags or port in use,
 * 1: anything else). */
struct bj_web *bj_web_new(const struct bj_web_params *p, int *status, char *err, size_t errlen);
/* The port it listens on (useful with port 0). */
int bj_web_port(const struct bj_web *w);
/* Starts serving, with the hive for snapshots and operator calls. 0 or -1 with err. */
int bj_web_start(struct bj_web *w, struct bj_hive *hive, char *err, size_t errlen);
/* Stops the event-loop thread (idempotent); afterwards the hive is no longer used. */
void bj_web_stop(struct bj_web *w);
/* Stops if needed, unsubscribes and frees. */
void bj_web_free(struct bj_web *w);

#endif
