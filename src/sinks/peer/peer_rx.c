/* peer_rx: what a link receives: framing, authentication, rate limit and misbehaviour score, and
 * remote thoughts, deaths and resurrections onto the local bus and into watchers (peer_int.h). */
#include "peer_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "hive.h"
#include "log.h"
#include "util.h"

static int from_hex(const char *s, unsigned char *b, size_t n)
{
    size_t bin_len;
    return sodium_hex2bin(b, n, s, strlen(s), NULL, &bin_len, NULL) == 0 && bin_len == n ? 0 : -1;
}


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
        peer_sanitize(ev.cause, sizeof ev.cause, m->error[0] ? m->error : BJ_DEATH_UNKNOWN_NAME);
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
        peer_send_simple(pe, drop, BJ_WIRE_DISCONNECT, "duplicate link");
        peer_flush(pe, drop);
        peer_link_close(pe, drop, "duplicate link");
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
            peer_mac_of(pe, hs ? NULL : l->my_nonce, obj, body_len, want);
            ok = sodium_memcmp(want, mac, BJ_WIRE_MAC_HEX) == 0 && m.sequence > l->last_seq_in;
        }
        if (!ok) {
            STAT_ADD(pe, auth_failed, 1);
            bj_warn("peer: %s: message without a valid MAC or replayed; link closed", l->addr);
            bj_wire_msg_clear(&m);
            STAT_ADD(pe, refused, 1);
            peer_link_close(pe, l, "authentication failed");
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
        peer_sanitize(l->alias, 21, m.sender_id);
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
            peer_publish_link(pe, l, "hello", what);
            if (dedupe(pe, l))
                closed = 1;
        } else {
            peer_publish_link(pe, l, "hello", "original node");
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
        peer_link_close(pe, l, "the peer said goodbye");
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

void peer_on_readable(struct bj_peer *pe, struct link *l)
{
    char buf[65536];
    for (int rounds = 0; rounds < 4; rounds++) {
        ssize_t n = read(l->fd, buf, sizeof buf);
        if (n == 0) {
            peer_link_close(pe, l, "closed by the peer");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                peer_link_close(pe, l, strerror(errno));
            return;
        }
        l->last_rx_ms = peer_now_ms();
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
            peer_link_close(pe, l, "misbehaviour");
            return;
        }
        if (l->tokens <= 0 && !l->paused_in) {
            l->paused_in = true; /* rate limit spent: the tick resumes reading */
            peer_ep_set(pe, l);
            return;
        }
        if ((size_t)n < sizeof buf)
            return;
    }
}
