/* peer_int.h: what the peer wing's rooms share (peer.c: the loop and its lifecycle; peer_link.c:
 * one link's queue and sends; peer_rx.c: what a link receives). Not for use outside
 * src/sinks/peer/. Everything here runs on the peer's loop thread unless it says otherwise. */
#ifndef BJ_PEER_INT_H
#define BJ_PEER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "peer.h"
#include "sysmem.h"
#include "wire.h"

#define BAD_LIMIT 20.0      /* misbehaviour score that gets a peer disconnected */
#define AUTH_SEND_MAX (BJ_WIRE_SEND_MAX - 80) /* room for the mac */

struct blob {
    struct blob *next;
    size_t len;
    bool lifecycle;
    char data[];
};

enum link_state { L_CONNECTING, L_UP };

struct link {
    int fd;
    enum link_state state;
    int dial;                  /* index of the dial target, -1: accepted */
    char addr[64];             /* peer address, "host:port" */
    char alias[24];            /* the NODE of BRAIN@NODE */
    char remote_id[BJ_WIRE_ID_MAX];
    bool brainjar;             /* its handshake said agent brainjar/... */
    bool got_handshake;
    bool want_out;             /* EPOLLOUT registered */
    bool paused_in;            /* EPOLLIN off: rate limit spent */
    /* authentication */
    unsigned char my_nonce[32];
    unsigned char peer_nonce[32];
    bool peer_nonce_set;
    int64_t last_seq_in;
    /* send queue */
    struct blob *head, *tail;
    size_t head_off, q_bytes;
    int64_t next_write_ms;     /* original nodes: pacing */
    /* receive */
    struct bj_wire_splitter *sp;
    struct bj_wire_split_stats seen; /* splitter counters already accounted */
    int64_t last_rx_ms, last_tx_ms, up_ms;
    double tokens;             /* rate limit */
    double bad;                /* misbehaviour score, decays 1 per second */
    bool warned;
    /* a split thought being put together */
    char *asm_text;
    size_t asm_len;
    uint32_t asm_next, asm_parts;
    char asm_brain[32];
};

struct dialer {
    struct bj_peer_dial d;
    struct link *link;         /* NULL: not connected */
    int64_t next_try_ms;
    int backoff_ms;
    char satisfied_by[BJ_WIRE_ID_MAX]; /* a link dialed by the other side carries this peer */
};

struct bj_peer {
    struct bj_peer_params p;
    unsigned char key[64];
    size_t key_len;
    bool auth;
    int ep, wake_fd, listen_fd, port;
    struct bj_sub *sub;
    bool sub_open;
    struct link **links;
    int n_links, cap_links;
    size_t q_total;            /* bytes queued on all links together */
    struct dialer dialers[BJ_PEER_MAX_DIAL];
    int64_t seq;
    int memory_pct;            /* refreshed every second from mem_paths */
    struct bj_sysmem_paths mem_paths;
    int64_t next_mem_ms, last_tick_ms;
    pthread_t thread;
    bool started;              /* the thread runs (between start and stop) */
    atomic_bool stop;
    /* statistics: written by the loop thread, read from any */
    pthread_mutex_t stats_lock;
    struct bj_peer_stats st;
};


#define STAT_ADD(pe, field, n) do { pthread_mutex_lock(&(pe)->stats_lock); (pe)->st.field += (n); pthread_mutex_unlock(&(pe)->stats_lock); } while (0)

int64_t peer_now_ms(void);
/* Letters, digits, '_' and '-' of src (others become '_'), cut to cap. */
void peer_sanitize(char *dst, size_t cap, const char *src);

/* peer_link.c */
void peer_to_hex(const unsigned char *b, size_t n, char *out);
/* HMAC-SHA256 over nonce (may be NULL) then body, as hex. */
void peer_mac_of(const struct bj_peer *pe, const unsigned char *nonce, const char *body, size_t len, char *hex);
void peer_ep_set(struct bj_peer *pe, struct link *l);
void peer_publish_link(struct bj_peer *pe, struct link *l, const char *state, const char *text);
struct link *peer_link_new(struct bj_peer *pe, int fd, int dial, const char *addr);
void peer_link_close(struct bj_peer *pe, struct link *l, const char *why);
/* Writes what the queue holds until the socket would block. Returns -1 when the link died. */
int peer_flush(struct bj_peer *pe, struct link *l);
/* Queues one encoded message (object + "\n"); signs it first on authenticated links. */
void peer_enqueue(struct bj_peer *pe, struct link *l, const char *buf, size_t len, bool lifecycle);
void peer_send_simple(struct bj_peer *pe, struct link *l, enum bj_wire_type type, const char *content);
void peer_link_up(struct bj_peer *pe, struct link *l);

/* peer_rx.c: reads what the socket holds and acts on each message; may close the link. */
void peer_on_readable(struct bj_peer *pe, struct link *l);

#endif
