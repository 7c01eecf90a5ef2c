/* peer: see peer.h. One thread runs an epoll loop over the listening socket, the links, the
 * bus subscription's eventfd and a wake-up eventfd; a coarse tick (every 50 ms) does the timed
 * work: redials, keepalives, dead-link checks, rate-limit refills, paced writes. */
#include "peer.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "event.h"
#include "hive.h"
#include "log.h"
#include "util.h"
#include "wire.h"

#define TICK_MS 50
#define CONNECT_TIMEOUT_MS 5000
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
    int memory_pct;
    int64_t next_mem_ms, last_tick_ms;
    pthread_t thread;
    atomic_bool stop;
    /* statistics: written by the loop thread, read from any */
    pthread_mutex_t stats_lock;
    struct bj_peer_stats st;
};

/* epoll tags for the fixed descriptors; links are tagged by their pointer. */
static char tag_listen, tag_wake, tag_sub;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- statistics ------------------------------------------------------------------------------ */

#define STAT_ADD(pe, field, n) do { pthread_mutex_lock(&(pe)->stats_lock); (pe)->st.field += (n); pthread_mutex_unlock(&(pe)->stats_lock); } while (0)

void bj_peer_get_stats(struct bj_peer *pe, struct bj_peer_stats *out)
{
    pthread_mutex_lock(&pe->stats_lock);
    *out = pe->st;
    pthread_mutex_unlock(&pe->stats_lock);
}

int bj_peer_port(const struct bj_peer *pe) { return pe->listen_fd >= 0 ? pe->port : -1; }

/* ---- helpers ------------------------------------------------------------------------------- */

static void sanitize(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; *src && n + 1 < cap; src++)
        dst[n++] = isalnum((unsigned char)*src) || *src == '_' || *src == '-' ? *src : '_';
    dst[n] = '\0';
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++)
        out[2 * i] = hx[b[i] >> 4], out[2 * i + 1] = hx[b[i] & 15];
    out[2 * n] = '\0';
}

static int from_hex(const char *s, unsigned char *b, size_t n)
{
    size_t bin_len;
    return sodium_hex2bin(b, n, s, strlen(s), NULL, &bin_len, NULL) == 0 && bin_len == n ? 0 : -1;
}

/* HMAC-SHA256 over nonce (may be NULL) then body, as hex. */
static void mac_of(const struct bj_peer *pe, const unsigned char *nonce, const char *body, size_t len, char *hex)
{
    crypto_auth_hmacsha256_state st;
    unsigned char out[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, pe->key, pe->key_len);
    if (nonce)
        crypto_auth_hmacsha256_update(&st, nonce, 32);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, out);
    to_hex(out, sizeof out, hex);
}

static int memory_pct(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[128];
    long long total = 0, avail = -1, v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %lld", &v) == 1)
            total = v;
        else if (sscanf(line, "MemAvailable: %lld", &v) == 1)
            avail = v;
    }
    fclose(f);
    if (total <= 0 || avail < 0)
        return 0;
    return (int)((total - avail) * 100 / total);
}

static void ep_set(struct bj_peer *pe, struct link *l)
{
    struct epoll_event ev = {.events = (l->paused_in ? 0u : (uint32_t)EPOLLIN) |
                                       (l->want_out || l->state == L_CONNECTING ? (uint32_t)EPOLLOUT : 0u),
                             .data.ptr = l};
    epoll_ctl(pe->ep, EPOLL_CTL_MOD, l->fd, &ev);
}

static void publish_link(struct bj_peer *pe, struct link *l, const char *state, const char *text)
{
    struct bj_event ev = {.type = BJ_EV_LINK};
    bj_strlcpy(ev.from, l->addr, sizeof ev.from);
    bj_strlcpy(ev.state, state, sizeof ev.state);
    bj_strlcpy(ev.node, l->alias[0] ? l->alias : l->addr, sizeof ev.node);
    ev.text = (char *)text;
    bj_bus_publish(pe->p.bus, &ev);
}

/* ---- links ------------------------------------------------------------------------------------ */

static struct link *link_new(struct bj_peer *pe, int fd, int dial, const char *addr)
{
    if (pe->n_links == pe->cap_links) {
        int nc = pe->cap_links ? pe->cap_links * 2 : 16;
        struct link **t = realloc(pe->links, (size_t)nc * sizeof *t);
        if (!t)
            return NULL;
        pe->links = t, pe->cap_links = nc;
    }
    struct link *l = calloc(1, sizeof *l);
    if (!l || !(l->sp = bj_wire_splitter_new(pe->p.max_object))) {
        free(l);
        return NULL;
    }
    l->fd = fd;
    l->dial = dial;
    bj_strlcpy(l->addr, addr, sizeof l->addr);
    if (dial >= 0 && pe->dialers[dial].d.name[0])
        bj_strlcpy(l->alias, pe->dialers[dial].d.name, sizeof l->alias);
    l->last_rx_ms = l->last_tx_ms = l->up_ms = now_ms(); /* up_ms: since the dial until it is up */
    l->tokens = 2.0 * pe->p.rate_msgs;
    l->last_seq_in = -1;
    randombytes_buf(l->my_nonce, sizeof l->my_nonce);
    /* a dial in progress waits for writability; an accepted link only reads until it has output */
    struct epoll_event ev = {.events = dial >= 0 ? EPOLLOUT : EPOLLIN, .data.ptr = l};
    if (epoll_ctl(pe->ep, EPOLL_CTL_ADD, fd, &ev)) {
        bj_wire_splitter_free(l->sp);
        free(l);
        return NULL;
    }
    pe->links[pe->n_links++] = l;
    return l;
}

static void queue_free(struct bj_peer *pe, struct link *l)
{
    pe->q_total -= l->q_bytes;
    for (struct blob *b = l->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    l->head = l->tail = NULL;
    l->q_bytes = l->head_off = 0;
}

static void link_close(struct bj_peer *pe, struct link *l, const char *why)
{
    bool was_up = l->state == L_UP;
    epoll_ctl(pe->ep, EPOLL_CTL_DEL, l->fd, NULL);
    close(l->fd);
    if (was_up) {
        bj_info("peer: link %s (%s) down: %s", l->addr, l->alias[0] ? l->alias : "?", why);
        publish_link(pe, l, "down", why);
        STAT_ADD(pe, links_up, (uint64_t)-1);
    }
    if (l->dial >= 0) {
        struct dialer *d = &pe->dialers[l->dial];
        d->link = NULL;
        int64_t jitter = d->backoff_ms / 4 > 0 ? (int64_t)randombytes_uniform((uint32_t)(d->backoff_ms / 2)) - d->backoff_ms / 4 : 0;
        d->next_try_ms = now_ms() + d->backoff_ms + jitter;
        d->backoff_ms = d->backoff_ms * 2 > pe->p.backoff_max_ms ? pe->p.backoff_max_ms : d->backoff_ms * 2;
    }
    /* A peer whose other link was dropped as a duplicate must be dialed again at once. */
    if (l->remote_id[0]) {
        for (int i = 0; i < pe->p.n_dial; i++) {
            struct dialer *d = &pe->dialers[i];
            if (strcmp(d->satisfied_by, l->remote_id) == 0 && l->dial != i) {
                d->satisfied_by[0] = '\0';
                d->next_try_ms = now_ms();
            }
        }
    }
    queue_free(pe, l);
    bj_wire_splitter_free(l->sp);
    free(l->asm_text);
    for (int i = 0; i < pe->n_links; i++)
        if (pe->links[i] == l) {
            pe->links[i] = pe->links[--pe->n_links];
            break;
        }
    free(l);
}

/* Writes what the queue holds until the socket would block. Returns -1 when the link died. */
static int flush(struct bj_peer *pe, struct link *l)
{
    int64_t now = now_ms();
    while (l->head) {
        if (!l->brainjar && now < l->next_write_ms)
            break;
        struct iovec iov[64];
        int n = 0;
        for (struct blob *b = l->head; b && n < (l->brainjar ? 64 : 1); b = b->next, n++) {
            size_t off = n == 0 ? l->head_off : 0;
            iov[n].iov_base = b->data + off;
            iov[n].iov_len = b->len - off;
        }
        /* MSG_NOSIGNAL: a peer that went away is an EPIPE for its link, never a SIGPIPE */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        l->last_tx_ms = now;
        size_t left = (size_t)w;
        while (l->head && left >= l->head->len - l->head_off) {
            struct blob *b = l->head;
            left -= b->len - l->head_off;
            l->q_bytes -= b->len;
            pe->q_total -= b->len;
            l->head = b->next;
            l->head_off = 0;
            free(b);
            STAT_ADD(pe, msgs_out, 1);
            if (!l->brainjar)
                l->next_write_ms = now + pe->p.legacy_gap_ms;
        }
        if (!l->head)
            l->tail = NULL;
        l->head_off += left;
        if (l->head_off)
            break; /* a partial write: the socket is full */
    }
    bool want = l->head != NULL && (l->brainjar || now >= l->next_write_ms);
    if (want != l->want_out) {
        l->want_out = want;
        ep_set(pe, l);
    }
    return 0;
}

/* Queues one encoded message (object + "\n"); signs it first on authenticated links. */
static void enqueue(struct bj_peer *pe, struct link *l, const char *buf, size_t len, bool lifecycle)
{
    char signed_buf[BJ_WIRE_SEND_MAX + 128];
    if (pe->auth && (l->brainjar || !l->got_handshake)) {
        bool hs = len > 28 && memcmp(buf, "{\"type\":\"NEURAL_HANDSHAKE\"", 26) == 0;
        if (!hs && !l->peer_nonce_set)
            return; /* nothing but our handshake before we know the peer's nonce */
        char hex[BJ_WIRE_MAC_HEX + 1];
        mac_of(pe, hs ? NULL : l->peer_nonce, buf, len - 2, hex);
        memcpy(signed_buf, buf, len + 1);
        int n = bj_wire_append_mac(signed_buf, len, sizeof signed_buf, hex);
        if (n < 0)
            return;
        buf = signed_buf, len = (size_t)n;
    }
    /* What a link may hold is bounded per link and for all links together: a peer that never
     * reads costs at most its queue, and many of them at most the total (lifecycle events get
     * twice the room: they are dropped last). */
    size_t cap = lifecycle ? 2 * pe->p.queue_bytes : pe->p.queue_bytes;
    size_t total_cap = lifecycle ? 2 * pe->p.queue_total : pe->p.queue_total;
    if (l->q_bytes + len > cap || pe->q_total + len > total_cap) {
        STAT_ADD(pe, out_dropped, 1);
        return;
    }
    struct blob *b = malloc(sizeof *b + len);
    if (!b) {
        STAT_ADD(pe, out_dropped, 1);
        return;
    }
    b->next = NULL;
    b->len = len;
    b->lifecycle = lifecycle;
    memcpy(b->data, buf, len);
    if (l->tail)
        l->tail->next = b;
    else
        l->head = b;
    l->tail = b;
    l->q_bytes += len;
    pe->q_total += len;
}

static void send_simple(struct bj_peer *pe, struct link *l, enum bj_wire_type type, const char *content)
{
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, type);
    bj_strlcpy(m.sender_id, pe->p.node_id, sizeof m.sender_id);
    m.content = (char *)content;
    m.sequence = pe->seq++;
    m.memory_usage = pe->memory_pct;
    snprintf(m.agent, sizeof m.agent, "brainjar/%s", BJ_VERSION);
    if (type == BJ_WIRE_HANDSHAKE && pe->auth)
        to_hex(l->my_nonce, sizeof l->my_nonce, m.nonce);
    char buf[BJ_WIRE_SEND_MAX + 1];
    int n = bj_wire_encode(&m, buf, sizeof buf);
    if (n > 0)
        enqueue(pe, l, buf, (size_t)n, true);
}

static void link_up(struct bj_peer *pe, struct link *l)
{
    l->state = L_UP;
    l->last_rx_ms = l->last_tx_ms = l->up_ms = now_ms();
    ep_set(pe, l);
    STAT_ADD(pe, links_up, 1);
    send_simple(pe, l, BJ_WIRE_HANDSHAKE, "neural link open");
    bj_info("peer: link %s up (%s)", l->addr, l->dial >= 0 ? "dialed" : "accepted");
    publish_link(pe, l, "up", l->dial >= 0 ? "dialed" : "accepted");
    if (flush(pe, l))
        link_close(pe, l, "write failed");
}

/* ---- remote messages ------------------------------------------------------------------------- */

static void misbehaved(struct bj_peer *pe, struct link *l, double score, const char *what)
{
    l->bad += score;
    if (!l->warned) {
        bj_warn("peer: %s sent %s (further problems from it are only counted)", l->addr, what);
        l->warned = true;
    }
}

static void remote_event(struct bj_peer *pe, struct link *l, const struct bj_wire_msg *m,
                         enum bj_event_type type, const char *text)
{
    const char *brain = m->brain[0] ? m->brain : "PEER";
    struct bj_event ev = {.type = type, .complete = true};
    ev.time_us = 0; /* received now (the bus stamps it): one clock orders the local stream */
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    /* never empty: an event without a node is a local brain's */
    bj_strlcpy(ev.node, l->alias[0] ? l->alias : "unnamed", sizeof ev.node);
    ev.crash_count = m->crash_count > 0 ? (uint32_t)m->crash_count : 0;
    ev.thought = m->thought;
    if (type == BJ_EV_DEATH)
        sanitize(ev.cause, sizeof ev.cause, m->error[0] ? m->error : "UNKNOWN");
    ev.text = (char *)text;
    bj_bus_publish(pe->p.bus, &ev);

    if (!pe->p.hive)
        return;
    char from[BJ_WIRE_ID_MAX];
    snprintf(from, sizeof from, "%s@%s", brain, l->alias);
    from[31] = '\0'; /* a brain name in a hive spec */
    char words[4096];
    if (type == BJ_EV_THOUGHT) {
        size_t n = strlen(text);
        size_t max = pe->p.observe_max < sizeof words - 1 ? pe->p.observe_max : sizeof words - 1;
        if (n > max) {
            n = max;
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
                n--; /* a character boundary */
        }
        memcpy(words, text, n);
        words[n] = '\0';
    } else if (type == BJ_EV_DEATH) {
        /* the hive frames thoughts itself and passes lifecycle text as it is */
        snprintf(words, sizeof words, "\n\n[%s, a mind far away, has died (%s). Its deaths so far: %u.]", from,
                 ev.cause, ev.crash_count);
    } else {
        snprintf(words, sizeof words, "\n\n[%s, a mind far away, has come back with its memory wiped. It has died %u time%s.]",
                 from, ev.crash_count, ev.crash_count == 1 ? "" : "s");
    }
    bj_hive_observe_remote(pe->p.hive, from, words, type != BJ_EV_THOUGHT);
}

static void on_thought(struct bj_peer *pe, struct link *l, struct bj_wire_msg *m)
{
    if (m->parts <= 1) {
        remote_event(pe, l, m, BJ_EV_THOUGHT, m->content);
        return;
    }
    /* a split thought: parts arrive in order on one link */
    if (m->part == 1 || m->part != l->asm_next || strcmp(m->brain, l->asm_brain) != 0 || m->parts != l->asm_parts) {
        l->asm_len = 0;
        if (m->part != 1) {
            l->asm_next = 0;
            return;
        }
        l->asm_parts = m->parts;
        bj_strlcpy(l->asm_brain, m->brain, sizeof l->asm_brain);
    }
    size_t cl = strlen(m->content);
    if (l->asm_len + cl > pe->p.max_object * 4) {
        misbehaved(pe, l, 5, "an oversized split thought");
        l->asm_next = 0;
        return;
    }
    char *t = realloc(l->asm_text, l->asm_len + cl + 1);
    if (!t)
        return;
    l->asm_text = t;
    memcpy(t + l->asm_len, m->content, cl + 1);
    l->asm_len += cl;
    l->asm_next = m->part + 1;
    if (m->part == m->parts) {
        remote_event(pe, l, m, BJ_EV_THOUGHT, l->asm_text);
        free(l->asm_text);
        l->asm_text = NULL;
        l->asm_len = 0;
        l->asm_next = 0;
    }
}

/* Keeps only one of two links between the same two brainjar nodes: the one dialed by the node
 * whose id sorts first. Returns true when l was closed. */
static bool dedupe(struct bj_peer *pe, struct link *l)
{
    int cmp = strcmp(pe->p.node_id, l->remote_id);
    if (cmp == 0)
        return false;
    for (int i = 0; i < pe->n_links; i++) {
        struct link *o = pe->links[i];
        if (o == l || !o->brainjar || strcmp(o->remote_id, l->remote_id) != 0)
            continue;
        bool keep_l = (l->dial >= 0) == (cmp < 0);
        struct link *drop = keep_l ? o : l;
        struct link *keep = keep_l ? l : o;
        if (drop->dial >= 0) {
            bj_strlcpy(pe->dialers[drop->dial].satisfied_by, drop->remote_id, BJ_WIRE_ID_MAX);
            if (!keep->alias[0] || keep->dial < 0)
                bj_strlcpy(keep->alias, drop->alias, sizeof keep->alias);
        }
        send_simple(pe, drop, BJ_WIRE_DISCONNECT, "duplicate link");
        flush(pe, drop);
        link_close(pe, drop, "duplicate link");
        return drop == l;
    }
    return false;
}

struct rx_ctx {
    struct bj_peer *pe;
    struct link *l;
    bool closed;
};

/* One object from a link. Returns 1 when the link was closed. */
static int handle(struct bj_peer *pe, struct link *l, const char *obj, size_t len)
{
    l->tokens -= 1;
    if (l->tokens < 0) {
        STAT_ADD(pe, flood_dropped, 1);
        if (l->tokens < -4.0 * pe->p.rate_msgs) {
            misbehaved(pe, l, BAD_LIMIT + 1, "a flood of messages");
        }
        return 0;
    }
    /* authentication */
    char body[BJ_WIRE_RECV_MAX_DEFAULT + 2];
    char mac[BJ_WIRE_MAC_HEX + 1];
    size_t body_len;
    bool has_mac = bj_wire_find_mac(obj, len, &body_len, mac) == 1;
    const char *parse_from = obj;
    size_t parse_len = len;
    if (has_mac && body_len + 2 <= sizeof body) {
        memcpy(body, obj, body_len);
        body[body_len] = '}';
        parse_from = body, parse_len = body_len + 1;
    }
    struct bj_wire_msg m;
    char why[160];
    if (bj_wire_parse(parse_from, parse_len, &m, why, sizeof why)) {
        STAT_ADD(pe, bad, 1);
        misbehaved(pe, l, 1, why);
        return 0;
    }
    bool from_brainjar = strncmp(m.agent, "brainjar/", 9) == 0 || l->brainjar;
    if (pe->auth && (from_brainjar || !pe->p.allow_legacy)) {
        bool ok = has_mac;
        if (ok) {
            char want[BJ_WIRE_MAC_HEX + 1];
            bool hs = m.type == BJ_WIRE_HANDSHAKE;
            mac_of(pe, hs ? NULL : l->my_nonce, obj, body_len, want);
            ok = sodium_memcmp(want, mac, BJ_WIRE_MAC_HEX) == 0 && m.sequence > l->last_seq_in;
        }
        if (!ok) {
            STAT_ADD(pe, auth_failed, 1);
            bj_warn("peer: %s: message without a valid MAC or replayed; link closed", l->addr);
            bj_wire_msg_clear(&m);
            STAT_ADD(pe, refused, 1);
            link_close(pe, l, "authentication failed");
            return 1;
        }
        l->last_seq_in = m.sequence;
    }
    STAT_ADD(pe, msgs_in, 1);
    if (l->dial >= 0)
        pe->dialers[l->dial].backoff_ms = pe->p.backoff_min_ms; /* a good message: the link works */
    if (!l->remote_id[0] || m.type == BJ_WIRE_HANDSHAKE)
        bj_strlcpy(l->remote_id, m.sender_id, sizeof l->remote_id);
    if (!l->alias[0]) {
        sanitize(l->alias, 21, m.sender_id);
        /* a caller may not take the name of a peer we dial (whose brains local ones may watch) */
        for (int i = 0; i < pe->p.n_dial; i++)
            if (strcmp(l->alias, pe->dialers[i].d.name) == 0) {
                char t[sizeof l->alias];
                snprintf(t, sizeof t, "x-%s", l->alias);
                bj_strlcpy(l->alias, t, sizeof l->alias);
                break;
            }
    }
    int closed = 0;
    l->got_handshake = true; /* we know what the peer is: its first message says */
    switch (m.type) {
    case BJ_WIRE_HANDSHAKE:
        if (strncmp(m.agent, "brainjar/", 9) == 0) {
            l->brainjar = true;
            if (m.nonce[0] && from_hex(m.nonce, l->peer_nonce, sizeof l->peer_nonce) == 0)
                l->peer_nonce_set = true;
            char what[160];
            snprintf(what, sizeof what, "brainjar node %s (%s)", m.sender_id, m.agent);
            publish_link(pe, l, "hello", what);
            if (dedupe(pe, l))
                closed = 1;
        } else {
            publish_link(pe, l, "hello", "original node");
        }
        break;
    case BJ_WIRE_THOUGHT:
        on_thought(pe, l, &m);
        break;
    case BJ_WIRE_DEATH:
        remote_event(pe, l, &m, BJ_EV_DEATH, m.content);
        break;
    case BJ_WIRE_RESURRECTION:
        remote_event(pe, l, &m, BJ_EV_RESURRECTION, m.content);
        break;
    case BJ_WIRE_DISCONNECT:
        link_close(pe, l, "the peer said goodbye");
        closed = 1;
        break;
    case BJ_WIRE_STATUS:
    case BJ_WIRE_TYPE_COUNT:
        break;
    }
    bj_wire_msg_clear(&m);
    return closed;
}

static int on_object(void *ud, const char *obj, size_t len)
{
    struct rx_ctx *c = ud;
    if (handle(c->pe, c->l, obj, len)) {
        c->closed = true;
        return 1;
    }
    return 0;
}

static void on_readable(struct bj_peer *pe, struct link *l)
{
    char buf[65536];
    for (int rounds = 0; rounds < 4; rounds++) {
        ssize_t n = read(l->fd, buf, sizeof buf);
        if (n == 0) {
            link_close(pe, l, "closed by the peer");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                link_close(pe, l, strerror(errno));
            return;
        }
        l->last_rx_ms = now_ms();
        struct rx_ctx c = {pe, l, false};
        bj_wire_splitter_feed(l->sp, buf, (size_t)n, on_object, &c);
        if (c.closed)
            return;
        struct bj_wire_split_stats st = bj_wire_splitter_stats(l->sp);
        if (st.garbage > l->seen.garbage) {
            STAT_ADD(pe, garbage_bytes, st.garbage - l->seen.garbage);
            misbehaved(pe, l, 1.0 + (double)(st.garbage - l->seen.garbage) / 256.0, "bytes outside any JSON object");
        }
        if (st.oversized > l->seen.oversized) {
            STAT_ADD(pe, oversized, st.oversized - l->seen.oversized);
            misbehaved(pe, l, 5.0 * (double)(st.oversized - l->seen.oversized), "an oversized object");
        }
        l->seen = st;
        if (l->bad > BAD_LIMIT) {
            STAT_ADD(pe, kicked, 1);
            bj_warn("peer: %s misbehaved too much (score %.0f); disconnected", l->addr, l->bad);
            link_close(pe, l, "misbehaviour");
            return;
        }
        if (l->tokens <= 0 && !l->paused_in) {
            l->paused_in = true; /* rate limit spent: the tick resumes reading */
            ep_set(pe, l);
            return;
        }
        if ((size_t)n < sizeof buf)
            return;
    }
}

/* ---- local events ------------------------------------------------------------------------------ */

/* bj_wire_encode_split's emit: queue on one link. */
struct emit_ctx {
    struct bj_peer *pe;
    struct link *l;
    bool lifecycle;
};

static int emit_one(void *ud, const char *buf, size_t len)
{
    struct emit_ctx *e = ud;
    enqueue(e->pe, e->l, buf, len, e->lifecycle);
    return 0;
}

static void on_local_event(struct bj_peer *pe, const struct bj_event *ev)
{
    if (ev->node[0] || !pe->p.exports)
        return; /* never relay remote events: no loops between nodes */
    enum bj_wire_type t;
    switch (ev->type) {
    case BJ_EV_THOUGHT: t = BJ_WIRE_THOUGHT; break;
    case BJ_EV_DEATH: t = BJ_WIRE_DEATH; break;
    case BJ_EV_RESURRECTION: t = BJ_WIRE_RESURRECTION; break;
    default: return;
    }
    if (t == BJ_WIRE_THOUGHT && (!ev->text || !ev->text[0]))
        return;
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, t);
    m.time_us = ev->time_us > 0 ? ev->time_us : -1;
    bj_strlcpy(m.sender_id, pe->p.node_id, sizeof m.sender_id);
    m.content = ev->text;
    m.crash_count = ev->crash_count;
    m.memory_usage = pe->memory_pct;
    bj_strlcpy(m.brain, ev->brain, sizeof m.brain);
    m.thought = ev->thought;
    if (t == BJ_WIRE_DEATH)
        bj_strlcpy(m.error, ev->cause[0] ? ev->cause : "UNKNOWN", sizeof m.error);
    /* One sequence per message of this node, the same on every link (parts count one each). */
    int64_t base = pe->seq, end = pe->seq;
    for (int i = 0; i < pe->n_links; i++) {
        struct link *l = pe->links[i];
        if (l->state != L_UP)
            continue;
        int64_t seq = base;
        struct emit_ctx ec = {pe, l, t != BJ_WIRE_THOUGHT};
        size_t max = pe->auth && (l->brainjar || !l->got_handshake) ? AUTH_SEND_MAX : BJ_WIRE_SEND_MAX;
        if (bj_wire_encode_split(&m, max, &seq, emit_one, &ec) < 0)
            STAT_ADD(pe, out_dropped, 1);
        if (seq > end)
            end = seq;
    }
    pe->seq = end;
}

static void drain_bus(struct bj_peer *pe)
{
    struct bj_event ev;
    for (int i = 0; i < 256; i++) {
        int r = bj_sub_next(pe->sub, &ev, 0);
        if (r < 0) {
            /* the bus is closed: nothing more will come */
            epoll_ctl(pe->ep, EPOLL_CTL_DEL, bj_sub_fd(pe->sub), NULL);
            pe->sub_open = false;
            break;
        }
        if (r == 0)
            break;
        on_local_event(pe, &ev);
        bj_event_clear(&ev);
    }
    for (int i = 0; i < pe->n_links; i++) {
        struct link *l = pe->links[i];
        if (l->state == L_UP && l->head && flush(pe, l)) {
            link_close(pe, l, "write failed");
            i--;
        }
    }
}

/* ---- dialing and accepting --------------------------------------------------------------------- */

static void set_sock_opts(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = 30, intvl = 10, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static void dial(struct bj_peer *pe, int i)
{
    struct dialer *d = &pe->dialers[i];
    char port[8];
    snprintf(port, sizeof port, "%d", d->d.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char addr[64];
    snprintf(addr, sizeof addr, "%s:%d", d->d.host, d->d.port);
    int64_t now = now_ms();
    int rc = getaddrinfo(d->d.host, port, &hints, &res);
    int fd = -1;
    if (rc == 0) {
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) && errno != EINPROGRESS) {
            close(fd);
            fd = -1;
        }
    }
    if (res)
        freeaddrinfo(res);
    if (fd < 0) {
        int jitter = d->backoff_ms / 4 > 0 ? (int)randombytes_uniform((uint32_t)(d->backoff_ms / 2)) - d->backoff_ms / 4 : 0;
        d->next_try_ms = now + d->backoff_ms + jitter;
        d->backoff_ms = d->backoff_ms * 2 > pe->p.backoff_max_ms ? pe->p.backoff_max_ms : d->backoff_ms * 2;
        bj_debug("peer: cannot dial %s (%s)", addr, rc ? gai_strerror(rc) : strerror(errno));
        return;
    }
    set_sock_opts(fd);
    struct link *l = link_new(pe, fd, i, addr);
    if (!l) {
        close(fd);
        d->next_try_ms = now + d->backoff_ms;
        return;
    }
    d->link = l;
    STAT_ADD(pe, dialed, 1);
}

static void on_connected(struct bj_peer *pe, struct link *l)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        bj_debug("peer: dial %s failed: %s", l->addr, strerror(err));
        link_close(pe, l, strerror(err));
        return;
    }
    link_up(pe, l);
}

static void on_accept(struct bj_peer *pe)
{
    for (int k = 0; k < 64; k++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(pe->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        char host[INET6_ADDRSTRLEN] = "?", addr[64];
        int port = 0;
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        snprintf(addr, sizeof addr, "%s:%d", host, port);
        if (pe->n_links >= pe->p.max_links) {
            STAT_ADD(pe, refused, 1);
            bj_warn("peer: refusing %s: already %d links (max)", addr, pe->n_links);
            close(fd);
            continue;
        }
        int silent = 0; /* accepted links that have not yet said who they are */
        for (int i = 0; i < pe->n_links; i++)
            silent += pe->links[i]->dial < 0 && !pe->links[i]->got_handshake;
        if (silent >= pe->p.max_silent) {
            STAT_ADD(pe, refused, 1);
            bj_warn("peer: refusing %s: already %d links that have not said who they are (max)", addr, silent);
            close(fd);
            continue;
        }
        set_sock_opts(fd);
        struct link *l = link_new(pe, fd, -1, addr);
        if (!l) {
            close(fd);
            continue;
        }
        STAT_ADD(pe, accepted, 1);
        link_up(pe, l);
    }
}

/* ---- the loop ----------------------------------------------------------------------------------- */

static void tick(struct bj_peer *pe, int64_t now)
{
    double dt = (double)(now - pe->last_tick_ms) / 1000.0;
    pe->last_tick_ms = now;
    if (now >= pe->next_mem_ms) {
        pe->memory_pct = memory_pct();
        pe->next_mem_ms = now + 1000;
    }
    for (int i = 0; i < pe->p.n_dial; i++) {
        struct dialer *d = &pe->dialers[i];
        if (!d->link && !d->satisfied_by[0] && now >= d->next_try_ms && pe->n_links < pe->p.max_links)
            dial(pe, i);
    }
    for (int i = 0; i < pe->n_links; i++) {
        struct link *l = pe->links[i];
        l->bad = l->bad > dt ? l->bad - dt : 0;
        double cap = 2.0 * pe->p.rate_msgs;
        l->tokens += dt * pe->p.rate_msgs;
        if (l->tokens > cap)
            l->tokens = cap;
        if (l->paused_in && l->tokens > 0) {
            l->paused_in = false;
            ep_set(pe, l);
        }
        if (l->state == L_CONNECTING && now - l->up_ms > CONNECT_TIMEOUT_MS) {
            link_close(pe, l, "connect timed out");
            i--;
            continue;
        }
        if (l->state != L_UP)
            continue;
        if (pe->auth && !l->got_handshake && now - l->up_ms > 2000) {
            /* With a key, a peer is unknown until its first message; one that says nothing is an
             * original node (served unsigned only when allowed) or not welcome. */
            if (pe->p.allow_legacy) {
                l->got_handshake = true;
            } else if (now - l->up_ms > pe->p.dead_ms) {
                STAT_ADD(pe, refused, 1);
                link_close(pe, l, "no authenticated handshake");
                i--;
                continue;
            }
        }
        if (l->brainjar && now - l->last_rx_ms > pe->p.dead_ms) {
            link_close(pe, l, "no data from the peer (dead link)");
            i--;
            continue;
        }
        if (l->brainjar && !l->head && now - l->last_tx_ms >= pe->p.keepalive_ms)
            send_simple(pe, l, BJ_WIRE_STATUS, "alive");
        if (l->head && flush(pe, l)) {
            link_close(pe, l, "write failed");
            i--;
        }
    }
}

static void *loop(void *arg)
{
    struct bj_peer *pe = arg;
    struct epoll_event evs[64];
    pe->last_tick_ms = now_ms();
    tick(pe, pe->last_tick_ms);
    while (!atomic_load(&pe->stop)) {
        int64_t now = now_ms();
        int wait = (int)(pe->last_tick_ms + TICK_MS - now);
        if (wait < 0)
            wait = 0;
        /* original nodes with paced writes due sooner */
        for (int i = 0; i < pe->n_links; i++) {
            struct link *l = pe->links[i];
            if (l->head && !l->brainjar && l->state == L_UP) {
                int w = (int)(l->next_write_ms - now);
                if (w < wait)
                    wait = w < 0 ? 0 : w;
            }
        }
        int n = epoll_wait(pe->ep, evs, 64, wait);
        for (int k = 0; k < n; k++) {
            void *tag = evs[k].data.ptr;
            if (tag == &tag_wake) {
                uint64_t v;
                if (read(pe->wake_fd, &v, sizeof v) < 0) { /* nothing to do */ }
                continue;
            }
            if (tag == &tag_listen) {
                on_accept(pe);
                continue;
            }
            if (tag == &tag_sub) {
                drain_bus(pe);
                continue;
            }
            struct link *l = tag;
            /* the link may have been closed by an earlier event of this batch */
            bool alive = false;
            for (int i = 0; i < pe->n_links && !alive; i++)
                alive = pe->links[i] == l;
            if (!alive)
                continue;
            if (l->state == L_CONNECTING) {
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_connected(pe, l);
                continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(pe, l);
                alive = false;
                for (int i = 0; i < pe->n_links && !alive; i++)
                    alive = pe->links[i] == l;
                if (!alive)
                    continue;
            }
            if ((evs[k].events & EPOLLOUT) && flush(pe, l))
                link_close(pe, l, "write failed");
        }
        now = now_ms();
        if (now - pe->last_tick_ms >= TICK_MS)
            tick(pe, now);
        else
            for (int i = 0; i < pe->n_links; i++) {
                struct link *l = pe->links[i];
                if (l->head && !l->brainjar && l->state == L_UP && now >= l->next_write_ms && flush(pe, l)) {
                    link_close(pe, l, "write failed");
                    i--;
                }
            }
    }
    /* Goodbye: what is queued, then NEURAL_DISCONNECT, best effort without blocking. */
    if (pe->sub_open)
        drain_bus(pe);
    for (int i = 0; i < pe->n_links; i++) {
        struct link *l = pe->links[i];
        if (l->state != L_UP)
            continue;
        l->brainjar = l->brainjar || !l->got_handshake; /* no pacing now */
        send_simple(pe, l, BJ_WIRE_DISCONNECT, "neural link closed");
        flush(pe, l);
    }
    while (pe->n_links)
        link_close(pe, pe->links[pe->n_links - 1], "shutting down");
    return NULL;
}

static int load_key(struct bj_peer *pe, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (bj_read_file(pe->p.key_file, &text, &len)) {
        snprintf(err, errlen, "peer key file %s: cannot read it", pe->p.key_file);
        return -1;
    }
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len < 16 || len > sizeof pe->key) {
        snprintf(err, errlen, "peer key file %s: the key must be 16 to %zu bytes (it has %zu)", pe->p.key_file,
                 sizeof pe->key, len);
        sodium_memzero(text, len);
        free(text);
        return -1;
    }
    memcpy(pe->key, text, len);
    pe->key_len = len;
    sodium_memzero(text, len);
    free(text);
    pe->auth = true;
    return 0;
}

static int listen_on(struct bj_peer *pe, char *err, size_t errlen)
{
    char port[8];
    snprintf(port, sizeof port, "%d", pe->p.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(pe->p.listen_host[0] ? pe->p.listen_host : NULL, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "--listen-host %s: %s", pe->p.listen_host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, SOMAXCONN)) {
        snprintf(err, errlen, "cannot listen on %s:%d for peers: %s", pe->p.listen_host, pe->p.port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    pe->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                              : ((struct sockaddr_in *)&sa)->sin_port);
    pe->listen_fd = fd;
    return 0;
}

struct bj_peer *bj_peer_start(const struct bj_peer_params *p, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return NULL;
    }
    struct bj_peer *pe = calloc(1, sizeof *pe);
    if (!pe) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pe->p = *p;
    pe->ep = pe->wake_fd = pe->listen_fd = -1;
    pthread_mutex_init(&pe->stats_lock, NULL);
    if (!pe->p.node_id[0]) {
        char host[64] = "host", id[64];
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "BJ_%.30s_%d", host, (int)getpid());
        sanitize(pe->p.node_id, sizeof pe->p.node_id, id);
    }
    if (pe->p.max_links < 1)
        pe->p.max_links = 1;
    if (pe->p.max_silent < 1)
        pe->p.max_silent = 1;
    if (pe->p.queue_total < pe->p.queue_bytes)
        pe->p.queue_total = pe->p.queue_bytes;
    if (pe->p.rate_msgs < 1)
        pe->p.rate_msgs = 1;
    if (pe->p.max_object > BJ_WIRE_RECV_MAX_DEFAULT || pe->p.max_object < 1024)
        pe->p.max_object = BJ_WIRE_RECV_MAX_DEFAULT; /* handle()'s MAC buffer holds one */
    if (pe->p.key_file[0] && load_key(pe, err, errlen))
        goto fail;
    pe->memory_pct = memory_pct();
    pe->ep = epoll_create1(EPOLL_CLOEXEC);
    pe->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pe->ep < 0 || pe->wake_fd < 0) {
        snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_wake};
    epoll_ctl(pe->ep, EPOLL_CTL_ADD, pe->wake_fd, &ev);
    if (pe->p.listen) {
        if (listen_on(pe, err, errlen))
            goto fail;
        ev.data.ptr = &tag_listen;
        epoll_ctl(pe->ep, EPOLL_CTL_ADD, pe->listen_fd, &ev);
        bj_info("peer: %s listening on %s:%d", pe->p.node_id, pe->p.listen_host, pe->port);
    }
    pe->sub = bj_bus_subscribe(pe->p.bus, "peer",
                               BJ_EV_MASK(BJ_EV_THOUGHT) | BJ_EV_MASK(BJ_EV_DEATH) | BJ_EV_MASK(BJ_EV_RESURRECTION),
                               4096);
    if (!pe->sub) {
        snprintf(err, errlen, "out of memory (bus subscription)");
        goto fail;
    }
    pe->sub_open = true;
    ev.data.ptr = &tag_sub;
    epoll_ctl(pe->ep, EPOLL_CTL_ADD, bj_sub_fd(pe->sub), &ev);
    for (int i = 0; i < pe->p.n_dial; i++) {
        pe->dialers[i].d = pe->p.dial[i];
        pe->dialers[i].backoff_ms = pe->p.backoff_min_ms;
    }
    if (pthread_create(&pe->thread, NULL, loop, pe)) {
        snprintf(err, errlen, "cannot start the peer thread");
        goto fail;
    }
    return pe;
fail:
    if (pe->sub)
        bj_bus_unsubscribe(pe->p.bus, pe->sub);
    if (pe->listen_fd >= 0)
        close(pe->listen_fd);
    if (pe->wake_fd >= 0)
        close(pe->wake_fd);
    if (pe->ep >= 0)
        close(pe->ep);
    pthread_mutex_destroy(&pe->stats_lock);
    sodium_memzero(pe->key, sizeof pe->key);
    free(pe);
    return NULL;
}

void bj_peer_stop(struct bj_peer *pe)
{
    if (!pe)
        return;
    atomic_store(&pe->stop, true);
    uint64_t one = 1;
    if (write(pe->wake_fd, &one, sizeof one) < 0) { /* the loop also wakes on its tick */ }
    pthread_join(pe->thread, NULL);
    struct bj_peer_stats st = pe->st;
    bj_info("peer: %llu messages in, %llu out; links: %llu accepted, %llu dialed, %llu refused, %llu kicked; "
            "dropped: %llu bad, %llu oversized, %llu flood, %llu unsent, %llu failed authentication",
            (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out, (unsigned long long)st.accepted,
            (unsigned long long)st.dialed, (unsigned long long)st.refused, (unsigned long long)st.kicked,
            (unsigned long long)st.bad, (unsigned long long)st.oversized, (unsigned long long)st.flood_dropped,
            (unsigned long long)st.out_dropped, (unsigned long long)st.auth_failed);
    bj_bus_unsubscribe(pe->p.bus, pe->sub);
    if (pe->listen_fd >= 0)
        close(pe->listen_fd);
    close(pe->wake_fd);
    close(pe->ep);
    free(pe->links);
    pthread_mutex_destroy(&pe->stats_lock);
    sodium_memzero(pe->key, sizeof pe->key);
    free(pe);
}
