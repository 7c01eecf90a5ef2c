/* config: everything a hive run needs, parsed and checked before anything starts.
 *
 * One plain struct filled from defaults, then a mode preset or a hive file, then flags
 * (cli.c). After bj_config_finish() succeeds the struct is read-only for the whole run and may
 * be read from any thread. */
#ifndef BJ_CONFIG_H
#define BJ_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "peer.h"
#include "spec.h"
#include "term.h"
#include "web.h"

enum bj_mode { BJ_MODE_SINGLE, BJ_MODE_MATRIX, BJ_MODE_HIVE, BJ_MODE_PEER, BJ_MODE_OBSERVER, BJ_MODE_OBSERVED };

struct bj_config {
    enum bj_mode mode;
    char hive_file[PATH_MAX];
    struct bj_hive_spec spec; /* brains, engine, lives, budget: what the hive runs */

    /* web (src/sinks/web.h) */
    char web_host[64];
    int web_port;
    bool no_web;                 /* --no-web */
    char web_allow_origin[256];  /* the one origin CORS allows; empty: none */
    char web_trusted_proxy[64];  /* whose X-Forwarded-For counts; empty: nobody's */
    bool web_auth;               /* --web-auth off: only on loopback */
    char web_host_names[BJ_WEB_HOST_NAMES][256]; /* --web-host-name: more Host values accepted */
    int n_web_host_names;
    bool web_cookie_secure;      /* --web-cookie-secure */
    char web_tls_cert[4096], web_tls_key[4096]; /* --web-tls-cert/--web-tls-key: https of our own */
    bool metrics_public;         /* /metrics without a token (loopback only) */

    /* output and run length */
    enum bj_events_out events;
    bool events_set;        /* --events given: on a terminal it wins over the full-screen view */
    enum { BJ_TUI_AUTO, BJ_TUI_OFF, BJ_TUI_ON } tui; /* --tui: auto is on a usable terminal only */
    char focus[BJ_NAME_MAX];/* text view: whose tokens stream live */
    double duration_s;      /* 0: until signalled */
    int log_level;          /* --log-level (enum bj_log_level), -1: not given */

    struct bj_ops_config ops; /* store, watchdog, systemd (ops.h) */
    /* neural links (peer.h): on in the peer, observer and observed modes, with --peer/--port, or
     * when a hive file has [links] or [peer NAME] sections. bus and hive are set by main. */
    bool links;
    struct bj_peer_params peer;
};

/* Defaults (matrix mode, the original's 8/10/12 GB jars, 127.0.0.1:8095). */
void bj_config_defaults(struct bj_config *c);

/* Fills c->brains for c->mode with the roles and watching of that mode (peer: SUBJECT watches every
 * remote brain; observer: OBSERVER watches them and sends nothing; observed: SUBJECT, alone, whose
 * thoughts go to whoever connects), and turns the links on for the last three. */
void bj_config_apply_mode(struct bj_config *c);

/* Fills c->brains with n brains in the matrix pattern: `gods` GODs watching everyone (deaths
 * too), `observers` OBSERVERs each watching the SUBJECTs in round robin, the rest SUBJECTs
 * (a role alone keeps its bare name: SUBJECT, else SUBJECT-1, SUBJECT-2, ...). gods < 0: 1 from
 * 3 brains on; observers < 0: one per 8 brains (at least 1 from 2 brains on). 0 or -1 with err. */
int bj_config_apply_brains(struct bj_config *c, int n, int gods, int observers, char *err, size_t errlen);

/* Reads a hive file (INI: [hive], [brain NAME], [links] and [peer NAME] sections; docs/PEERS.md).
 * Returns 0 or -1 with err. */
int bj_config_load_hive(struct bj_config *c, const char *path, char *err, size_t errlen);
/* The parser behind it, on text already read: text[len] must be '\0' (the text is cut into
 * lines in place). A UTF-8 BOM is skipped; a NUL byte is an error naming its line; every line
 * (blank and comment lines too) counts in the line numbers of errors. `path` names the file in
 * messages and anchors relative model paths. 0 or -1 with err. */
int bj_config_parse_hive(struct bj_config *c, const char *path, char *text, size_t len, char *err, size_t errlen);

/* Final checks after all sources are applied: names, references, ranges. 0 or -1 with err. */
int bj_config_finish(struct bj_config *c, char *err, size_t errlen);

const char *bj_mode_name(enum bj_mode m);

/* Whether s names a remote brain (BRAIN@NODE) as hive files and watches may. */
bool bj_config_remote_name(const char *s);

#endif
