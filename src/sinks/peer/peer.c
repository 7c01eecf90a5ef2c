/* peer: see peer.h. One thread runs an epoll loop over the listening socket, the links, the
 * bus subscription's eventfd and a wake-up eventfd; a coarse tick (every 50 ms) does the timed
 * work: redials, keepalives, dead-link checks, rate-limit refills, paced writes. The links
 * themselves live in peer_link.c, what they receive in peer_rx.c. */
#include "peer_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "sysmem.h"
#include "util.h"

#define TICK_MS 50
#define CONNECT_TIMEOUT_MS 5000

/* epoll tags for the fixed descriptors; links are tagged by their pointer. */
static char tag_listen, tag_wake, tag_sub;


int64_t peer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- statistics ------------------------------------------------------------------------------ */


void bj_peer_get_stats(struct bj_peer *pe, struct bj_peer_stats *out)
{
    pthread_mutex_lock(&pe->stats_lock);
    *out = pe->st;
    pthread_mutex_unlock(&pe->stats_lock);
}

int bj_peer_port(const struct bj_peer *pe) { return pe->listen_fd >= 0 ? pe->port : -1; }

void peer_sanitize(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; *src && n + 1 < cap; src++)
        dst[n++] = isalnum((unsigned char)*src) || *src == '_' || *src == '-' ? *src : '_';
    dst[n] = '\0';
}

/* Memory in use as the wire's memory_usage reports it (cgroup-aware, as the budget sees it). */
static int memory_pct(const struct bj_peer *pe)
{
    int pct = bj_sysmem_used_pct(&pe->mem_paths);
    return pct < 0 ? 0 : pct;
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
    peer_enqueue(e->pe, e->l, buf, len, e->lifecycle);
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
        bj_strlcpy(m.error, ev->cause[0] ? ev->cause : BJ_DEATH_UNKNOWN_NAME, sizeof m.error);
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
        if (l->state == L_UP && l->head && peer_flush(pe, l)) {
            peer_link_close(pe, l, "write failed");
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
    int64_t now = peer_now_ms();
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
    struct link *l = peer_link_new(pe, fd, i, addr);
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
        peer_link_close(pe, l, strerror(err));
        return;
    }
    peer_link_up(pe, l);
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
        struct link *l = peer_link_new(pe, fd, -1, addr);
        if (!l) {
            close(fd);
            continue;
        }
        STAT_ADD(pe, accepted, 1);
        peer_link_up(pe, l);
    }
}

/* ---- the loop ----------------------------------------------------------------------------------- */

static void tick(struct bj_peer *pe, int64_t now)
{
    double dt = (double)(now - pe->last_tick_ms) / 1000.0;
    pe->last_tick_ms = now;
    if (now >= pe->next_mem_ms) {
        pe->memory_pct = memory_pct(pe);
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
            peer_ep_set(pe, l);
        }
        if (l->state == L_CONNECTING && now - l->up_ms > CONNECT_TIMEOUT_MS) {
            peer_link_close(pe, l, "connect timed out");
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
                peer_link_close(pe, l, "no authenticated handshake");
                i--;
                continue;
            }
        }
        if (l->brainjar && now - l->last_rx_ms > pe->p.dead_ms) {
            peer_link_close(pe, l, "no data from the peer (dead link)");
            i--;
            continue;
        }
        if (l->brainjar && !l->head && now - l->last_tx_ms >= pe->p.keepalive_ms)
            peer_send_simple(pe, l, BJ_WIRE_STATUS, "alive");
        if (l->head && peer_flush(pe, l)) {
            peer_link_close(pe, l, "write failed");
            i--;
        }
    }
}

static void *loop(void *arg)
{
    struct bj_peer *pe = arg;
    struct epoll_event evs[64];
    pe->last_tick_ms = peer_now_ms();
    tick(pe, pe->last_tick_ms);
    while (!atomic_load(&pe->stop)) {
        int64_t now = peer_now_ms();
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
                peer_on_readable(pe, l);
                alive = false;
                for (int i = 0; i < pe->n_links && !alive; i++)
                    alive = pe->links[i] == l;
                if (!alive)
                    continue;
            }
            if ((evs[k].events & EPOLLOUT) && peer_flush(pe, l))
                peer_link_close(pe, l, "write failed");
        }
        now = peer_now_ms();
        if (now - pe->last_tick_ms >= TICK_MS)
            tick(pe, now);
        else
            for (int i = 0; i < pe->n_links; i++) {
                struct link *l = pe->links[i];
                if (l->head && !l->brainjar && l->state == L_UP && now >= l->next_write_ms && peer_flush(pe, l)) {
                    peer_link_close(pe, l, "write failed");
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
        peer_send_simple(pe, l, BJ_WIRE_DISCONNECT, "neural link closed");
        peer_flush(pe, l);
    }
    while (pe->n_links)
        peer_link_close(pe, pe->links[pe->n_links - 1], "shutting down");
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

struct bj_peer *bj_peer_new(const struct bj_peer_params *p, char *err, size_t errlen)
{
    if (!p->bus) {
        snprintf(err, errlen, "peer links: no bus");
        return NULL;
    }
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
    bj_sysmem_paths_default(&pe->mem_paths);
    pthread_mutex_init(&pe->stats_lock, NULL);
    if (!pe->p.node_id[0]) {
        char host[64] = "host", id[64];
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "BJ_%.30s_%d", host, (int)getpid());
        peer_sanitize(pe->p.node_id, sizeof pe->p.node_id, id);
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
    pe->memory_pct = memory_pct(pe);
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
    return pe;
fail:
    bj_peer_free(pe);
    return NULL;
}

int bj_peer_start(struct bj_peer *pe, char *err, size_t errlen)
{
    if (pe->started) {
        snprintf(err, errlen, "peer links: already started");
        return -1;
    }
    if (pthread_create(&pe->thread, NULL, loop, pe)) {
        snprintf(err, errlen, "cannot start the peer thread");
        return -1;
    }
    pe->started = true;
    return 0;
}

void bj_peer_stop(struct bj_peer *pe)
{
    if (!pe || !pe->started)
        return;
    atomic_store(&pe->stop, true);
    uint64_t one = 1;
    if (write(pe->wake_fd, &one, sizeof one) < 0) { /* the loop also wakes on its tick */ }
    pthread_join(pe->thread, NULL);
    pe->started = false;
    struct bj_peer_stats st;
    bj_peer_get_stats(pe, &st);
    bj_info("peer: %llu messages in, %llu out; links: %llu accepted, %llu dialed, %llu refused, %llu kicked; "
            "dropped: %llu bad, %llu oversized, %llu flood, %llu unsent, %llu failed authentication",
            (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out, (unsigned long long)st.accepted,
            (unsigned long long)st.dialed, (unsigned long long)st.refused, (unsigned long long)st.kicked,
            (unsigned long long)st.bad, (unsigned long long)st.oversized, (unsigned long long)st.flood_dropped,
            (unsigned long long)st.out_dropped, (unsigned long long)st.auth_failed);
}

void bj_peer_free(struct bj_peer *pe)
{
    if (!pe)
        return;
    bj_peer_stop(pe);
    while (pe->n_links) /* links of a peer that never started (or already said goodbye) */
        peer_link_close(pe, pe->links[pe->n_links - 1], "shutting down");
    if (pe->sub)
        bj_bus_unsubscribe(pe->p.bus, pe->sub);
    if (pe->listen_fd >= 0)
        close(pe->listen_fd);
    if (pe->wake_fd >= 0)
        close(pe->wake_fd);
    if (pe->ep >= 0)
        close(pe->ep);
    free(pe->links);
    pthread_mutex_destroy(&pe->stats_lock);
    sodium_memzero(pe->key, sizeof pe->key);
    free(pe);
}
