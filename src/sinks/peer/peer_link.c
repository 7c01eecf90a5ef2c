/* peer_link: one link's life: opened, queued to, flushed, closed (peer_int.h). */
#include "peer_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "util.h"

void peer_to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++)
        out[2 * i] = hx[b[i] >> 4], out[2 * i + 1] = hx[b[i] & 15];
    out[2 * n] = '\0';
}

/* HMAC-SHA256 over nonce (may be NULL) then body, as hex. */
void peer_mac_of(const struct bj_peer *pe, const unsigned char *nonce, const char *body, size_t len, char *hex)
{
    crypto_auth_hmacsha256_state st;
    unsigned char out[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, pe->key, pe->key_len);
    if (nonce)
        crypto_auth_hmacsha256_update(&st, nonce, 32);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, out);
    peer_to_hex(out, sizeof out, hex);
}

void peer_ep_set(struct bj_peer *pe, struct link *l)
{
    struct epoll_event ev = {.events = (l->paused_in ? 0u : (uint32_t)EPOLLIN) |
                                       (l->want_out || l->state == L_CONNECTING ? (uint32_t)EPOLLOUT : 0u),
                             .data.ptr = l};
    epoll_ctl(pe->ep, EPOLL_CTL_MOD, l->fd, &ev);
}

void peer_publish_link(struct bj_peer *pe, struct link *l, const char *state, const char *text)
{
    struct bj_event ev = {.type = BJ_EV_LINK};
    bj_strlcpy(ev.from, l->addr, sizeof ev.from);
    bj_strlcpy(ev.state, state, sizeof ev.state);
    bj_strlcpy(ev.node, l->alias[0] ? l->alias : l->addr, sizeof ev.node);
    ev.text = (char *)text;
    bj_bus_publish(pe->p.bus, &ev);
}

struct link *peer_link_new(struct bj_peer *pe, int fd, int dial, const char *addr)
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
    l->last_rx_ms = l->last_tx_ms = l->up_ms = peer_now_ms(); /* up_ms: since the dial until it is up */
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

void peer_link_close(struct bj_peer *pe, struct link *l, const char *why)
{
    bool was_up = l->state == L_UP;
    epoll_ctl(pe->ep, EPOLL_CTL_DEL, l->fd, NULL);
    close(l->fd);
    if (was_up) {
        bj_info("peer: link %s (%s) down: %s", l->addr, l->alias[0] ? l->alias : "?", why);
        peer_publish_link(pe, l, "down", why);
        STAT_ADD(pe, links_up, (uint64_t)-1);
    }
    if (l->dial >= 0) {
        struct dialer *d = &pe->dialers[l->dial];
        d->link = NULL;
        int64_t jitter = d->backoff_ms / 4 > 0 ? (int64_t)randombytes_uniform((uint32_t)(d->backoff_ms / 2)) - d->backoff_ms / 4 : 0;
        d->next_try_ms = peer_now_ms() + d->backoff_ms + jitter;
        d->backoff_ms = d->backoff_ms * 2 > pe->p.backoff_max_ms ? pe->p.backoff_max_ms : d->backoff_ms * 2;
    }
    /* A peer whose other link was dropped as a duplicate must be dialed again at once. */
    if (l->remote_id[0]) {
        for (int i = 0; i < pe->p.n_dial; i++) {
            struct dialer *d = &pe->dialers[i];
            if (strcmp(d->satisfied_by, l->remote_id) == 0 && l->dial != i) {
                d->satisfied_by[0] = '\0';
                d->next_try_ms = peer_now_ms();
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
int peer_flush(struct bj_peer *pe, struct link *l)
{
    int64_t now = peer_now_ms();
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
        peer_ep_set(pe, l);
    }
    return 0;
}

/* Queues one encoded message (object + "\n"); signs it first on authenticated links. */
void peer_enqueue(struct bj_peer *pe, struct link *l, const char *buf, size_t len, bool lifecycle)
{
    char signed_buf[BJ_WIRE_SEND_MAX + 128];
    if (pe->auth && (l->brainjar || !l->got_handshake)) {
        bool hs = len > 28 && memcmp(buf, "{\"type\":\"NEURAL_HANDSHAKE\"", 26) == 0;
        if (!hs && !l->peer_nonce_set)
            return; /* nothing but our handshake before we know the peer's nonce */
        char hex[BJ_WIRE_MAC_HEX + 1];
        peer_mac_of(pe, hs ? NULL : l->peer_nonce, buf, len - 2, hex);
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

void peer_send_simple(struct bj_peer *pe, struct link *l, enum bj_wire_type type, const char *content)
{
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, type);
    bj_strlcpy(m.sender_id, pe->p.node_id, sizeof m.sender_id);
    m.content = (char *)content;
    m.sequence = pe->seq++;
    m.memory_usage = pe->memory_pct;
    snprintf(m.agent, sizeof m.agent, "brainjar/%s", BJ_VERSION);
    if (type == BJ_WIRE_HANDSHAKE && pe->auth)
        peer_to_hex(l->my_nonce, sizeof l->my_nonce, m.nonce);
    char buf[BJ_WIRE_SEND_MAX + 1];
    int n = bj_wire_encode(&m, buf, sizeof buf);
    if (n > 0)
        peer_enqueue(pe, l, buf, (size_t)n, true);
}

void peer_link_up(struct bj_peer *pe, struct link *l)
{
    l->state = L_UP;
    l->last_rx_ms = l->last_tx_ms = l->up_ms = peer_now_ms();
    peer_ep_set(pe, l);
    STAT_ADD(pe, links_up, 1);
    peer_send_simple(pe, l, BJ_WIRE_HANDSHAKE, "neural link open");
    bj_info("peer: link %s up (%s)", l->addr, l->dial >= 0 ? "dialed" : "accepted");
    peer_publish_link(pe, l, "up", l->dial >= 0 ? "dialed" : "accepted");
    if (peer_flush(pe, l))
        peer_link_close(pe, l, "write failed");
}
