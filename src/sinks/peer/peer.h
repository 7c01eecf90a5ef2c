/* peer: neural links between brainjar processes on different machines, and with the original
 * Python nodes (wire.h has the format).
 *
 * One event-loop thread (epoll, non-blocking sockets) listens for peers, dials the configured
 * ones and redials them with exponential backoff and jitter, and carries messages both ways:
 *  - local THOUGHT, DEATH and RESURRECTION events (one bus subscription) go to every link that
 *    is up, unless exports are off (observer mode: the watched node is not told anything);
 *  - what peers send enters the local bus as events with `node` set (a remote brain is never a
 *    local one: its deaths never touch a local count), link changes as BJ_EV_LINK, and local
 *    brains that watch a remote brain get its words through bj_hive_observe_remote().
 * A remote brain is named BRAIN@NODE: BRAIN is the sender's `brain` field (an original node,
 * which has one mind and no such field: PEER), NODE the peer's name in the hive file, else its
 * sender_id (sanitized, cut to 20 characters).
 *
 * brainjar nodes recognise each other by the `agent` field of the handshake; between them only:
 * keepalives (STATUS) and a dead-link timeout, several objects per write, and optionally an
 * HMAC-SHA256 on every message (libsodium; key from a file; per-link nonces and increasing
 * sequences against replay). An original node gets exactly one object per write, spaced a little
 * so that its 4096-byte recv() rarely sees two, and no keepalives.
 * Every link has a bounded send queue (thoughts beyond it are dropped and counted), a message
 * rate limit (reading pauses when it is spent) and a misbehaviour score (garbage, bad fields,
 * oversized objects): a peer over the score is disconnected. Nothing a peer sends can crash the
 * process or block the hive.
 *
 * Threads: new/start/stop/free from one thread (main); bj_peer_port and bj_peer_get_stats from any. */
#ifndef BJ_PEER_H
#define BJ_PEER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"

struct bj_hive;

#define BJ_PEER_MAX_DIAL 16
#define BJ_PEER_NAME_MAX 16 /* a peer's name in a hive file: at most 15 characters */

struct bj_peer_dial {
    char name[BJ_PEER_NAME_MAX]; /* empty: unnamed (the link is named by the peer's sender_id) */
    char host[256];
    int port;
};

struct bj_peer_params {
    struct bj_bus *bus;         /* required: local events in, remote events out; outlives the links */
    struct bj_hive *hive;       /* remote words for local watchers; NULL: none (tests, benchmarks) */
    char node_id[48];           /* our sender_id; empty: BJ_<host>_<pid> */
    bool listen;
    char listen_host[64];       /* default 127.0.0.1 */
    int port;                   /* listening port; 0: any free port (see bj_peer_port) */
    struct bj_peer_dial dial[BJ_PEER_MAX_DIAL];
    int n_dial;
    bool exports;               /* send local thoughts/deaths/resurrections to peers (default true) */
    int max_links;              /* links at once, dialed and accepted (default 256) */
    size_t queue_bytes;         /* per-link send queue (default 64 KiB; lifecycle events twice that) */
    size_t queue_total;         /* all links' send queues together (default 4 MiB) */
    int max_silent;             /* accepted links not yet past their first message (default 32) */
    size_t max_object;          /* largest incoming object (default 64 KiB) */
    int rate_msgs;              /* incoming messages per second per link (default 2000; burst x2) */
    int keepalive_ms;           /* brainjar links: STATUS when idle this long (default 2000) */
    int dead_ms;                /* brainjar links: closed after this long without data (default 10000) */
    int backoff_min_ms, backoff_max_ms; /* redial delays (defaults 250, 30000), +-25% jitter */
    int legacy_gap_ms;          /* at least this between two writes to an original node (default 20) */
    size_t observe_max;         /* bytes of one remote message a watching brain takes in (default 1000) */
    char key_file[PATH_MAX];    /* HMAC key (>= 16 bytes); empty: no authentication */
    bool allow_legacy;          /* with a key: still accept unauthenticated original nodes */
};
struct bj_peer_params bj_peer_params_default(void);

struct bj_peer;

/* Reads the key, binds the listening socket and subscribes to the bus (call before the hive
 * starts publishing, so no local event is missed); no thread yet. NULL with err on failure
 * (address in use, bad key file, ...). */
struct bj_peer *bj_peer_new(const struct bj_peer_params *p, char *err, size_t errlen);
/* Starts the loop thread: dialing, accepting, carrying messages. 0, or -1 with err. */
int bj_peer_start(struct bj_peer *p, char *err, size_t errlen);
/* The port it listens on (useful with port 0), or -1 when not listening. */
int bj_peer_port(const struct bj_peer *p);
/* Sends what is queued, says goodbye to every peer (NEURAL_DISCONNECT), closes the links and
 * joins the thread. Call before the hive is freed; the bus may already be closed. Frees
 * nothing; NULL and a peer never started are fine. */
void bj_peer_stop(struct bj_peer *p);
/* Stops it if needed, then frees everything. NULL is fine. */
void bj_peer_free(struct bj_peer *p);

struct bj_peer_stats {
    uint64_t links_up;       /* now */
    uint64_t accepted, dialed, refused; /* refused: over max_links or failed authentication */
    uint64_t msgs_in, msgs_out;
    uint64_t bad;            /* dropped: invalid JSON or fields, unknown types */
    uint64_t oversized;      /* dropped: over max_object */
    uint64_t garbage_bytes;  /* outside any object */
    uint64_t flood_dropped;  /* over the rate limit */
    uint64_t out_dropped;    /* not queued: a send queue was full */
    uint64_t kicked;         /* links closed for misbehaviour */
    uint64_t auth_failed;    /* messages with a missing or wrong MAC, or a replayed sequence */
};
void bj_peer_get_stats(struct bj_peer *p, struct bj_peer_stats *out);

/* Parses "HOST:PORT" or "[V6]:PORT" into d (name left empty). 0 or -1. */
int bj_peer_parse_addr(const char *s, struct bj_peer_dial *d);

#endif
