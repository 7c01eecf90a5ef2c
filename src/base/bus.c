/* bus: see bus.h.
 *
 * A published event becomes one reference-counted message shared by every subscription that
 * wants it. The subscription list is guarded by a read-write lock (publishers read it at once);
 * each subscription has its own mutex around a ring of message pointers, so a consumer that is
 * slow (or holds its lock while it copies) only ever delays publishers by one short critical
 * section and never by its own work. */
#include "bus.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "msg.h"
#include "util.h"

/* A queued event is a bj_msg whose payload is the struct bj_event (its text owned by it). */
static struct bj_event *ev_of(struct bj_msg *m) { return (struct bj_event *)bj_msg_payload(m); }

static void release_event(struct bj_msg *m) { bj_event_clear(ev_of(m)); }

static struct bj_msg *msg_new(const struct bj_event *ev)
{
    struct bj_msg *m = bj_msg_new(0, -1, 0, NULL, sizeof(struct bj_event));
    if (!m)
        return NULL;
    if (bj_event_copy(ev_of(m), ev)) {
        bj_msg_unref(m);
        return NULL;
    }
    m->release = release_event;
    return m;
}

/* The newest queued token of a brain (and node), by absolute queue position, for O(1)
 * coalescing: open addressing with a short bounded probe, so 256 brains rarely share a slot, and a
 * slot whose token has left the queue is free again. */
#define TOKEN_INDEX 256 /* a power of two */
#define TOKEN_PROBE 8
struct token_slot {
    char brain[32];
    uint32_t node;  /* hash of the event's node ("" for local brains) */
    uint64_t pos;   /* absolute position in the ring + 1; 0: empty */
};

struct bj_sub {
    struct bj_sub *next;
    char name[32];
    uint32_t mask;
    size_t capacity;
    pthread_mutex_t lock;
    struct bj_msg **ring;      /* power-of-two size >= capacity; grows for lifecycle events */
    size_t size;
    uint64_t head, tail;    /* absolute positions: queued = tail - head */
    struct token_slot tokens[TOKEN_INDEX];
    uint64_t dropped, coalesced;
    bool closed;
    int fd;                 /* eventfd: non-zero while events are queued or the bus is closed */
    bool signalled;
};

struct tap {
    struct tap *next;
    uint32_t mask;
    void (*fn)(void *ud, const struct bj_event *ev);
    void *ud;
};

struct bj_bus {
    pthread_rwlock_t lock; /* the subscription list */
    struct bj_sub *subs;
    struct tap *taps;
    atomic_uint_fast64_t seq;
    bool closed;
};

struct bj_bus *bj_bus_new(void)
{
    struct bj_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    pthread_rwlock_init(&bus->lock, NULL);
    atomic_init(&bus->seq, 0);
    return bus;
}

void bj_bus_free(struct bj_bus *bus)
{
    if (!bus)
        return;
    while (bus->subs)
        bj_bus_unsubscribe(bus, bus->subs);
    for (struct tap *t = bus->taps, *next; t; t = next) {
        next = t->next;
        free(t);
    }
    pthread_rwlock_destroy(&bus->lock);
    free(bus);
}

static size_t pow2_at_least(size_t n)
{
    size_t s = 16;
    while (s < n)
        s <<= 1;
    return s;
}

static void wake(struct bj_sub *s);

struct bj_sub *bj_bus_subscribe(struct bj_bus *bus, const char *name, uint32_t mask, size_t capacity)
{
    struct bj_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    bj_strlcpy(s->name, name, sizeof s->name);
    s->mask = mask;
    s->capacity = capacity ? capacity : 1;
    s->size = pow2_at_least(s->capacity < 4096 ? s->capacity + 16 : 4096);
    s->ring = calloc(s->size, sizeof *s->ring);
    s->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->ring || s->fd < 0) {
        free(s->ring);
        if (s->fd >= 0)
            close(s->fd);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_rwlock_wrlock(&bus->lock);
    s->closed = bus->closed;
    if (s->closed)
        wake(s); /* readable once the bus is closed, for a late subscriber too */
    s->next = bus->subs;
    bus->subs = s;
    pthread_rwlock_unlock(&bus->lock);
    return s;
}

void bj_bus_unsubscribe(struct bj_bus *bus, struct bj_sub *sub)
{
    pthread_rwlock_wrlock(&bus->lock);
    for (struct bj_sub **p = &bus->subs; *p; p = &(*p)->next)
        if (*p == sub) {
            *p = sub->next;
            break;
        }
    pthread_rwlock_unlock(&bus->lock);
    for (uint64_t i = sub->head; i < sub->tail; i++)
        bj_msg_unref(sub->ring[i & (sub->size - 1)]);
    free(sub->ring);
    close(sub->fd);
    pthread_mutex_destroy(&sub->lock);
    free(sub);
}

int bj_bus_tap(struct bj_bus *bus, uint32_t mask, void (*fn)(void *ud, const struct bj_event *ev), void *ud)
{
    struct tap *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->mask = mask;
    t->fn = fn;
    t->ud = ud;
    pthread_rwlock_wrlock(&bus->lock);
    t->next = bus->taps;
    bus->taps = t;
    pthread_rwlock_unlock(&bus->lock);
    return 0;
}

/* Caller holds s->lock. */
static void wake(struct bj_sub *s)
{
    if (s->signalled)
        return;
    uint64_t one = 1;
    if (write(s->fd, &one, sizeof one) == sizeof one)
        s->signalled = true;
}

static void unwake(struct bj_sub *s)
{
    if (!s->signalled)
        return;
    uint64_t v;
    if (read(s->fd, &v, sizeof v) == sizeof v || errno == EAGAIN)
        s->signalled = false;
}

static uint32_t fnv1a(const char *p)
{
    uint32_t h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static bool slot_live(const struct bj_sub *s, const struct token_slot *t)
{
    return t->pos && t->pos - 1 >= s->head;
}

static bool slot_is(const struct token_slot *t, const struct bj_event *ev, uint32_t node)
{
    return t->node == node && strcmp(t->brain, ev->brain) == 0;
}

/* The live slot of ev's brain, or NULL. */
static struct token_slot *token_find(struct bj_sub *s, const struct bj_event *ev)
{
    uint32_t h = fnv1a(ev->brain), node = fnv1a(ev->node);
    for (uint32_t k = 0; k < TOKEN_PROBE; k++) {
        struct token_slot *t = &s->tokens[(h + k) & (TOKEN_INDEX - 1)];
        if (slot_live(s, t) && slot_is(t, ev, node))
            return t;
    }
    return NULL;
}

/* Remembers that ev's brain's newest token is at absolute position pos (+1). */
static void token_remember(struct bj_sub *s, const struct bj_event *ev, uint64_t pos)
{
    uint32_t h = fnv1a(ev->brain), node = fnv1a(ev->node);
    struct token_slot *use = &s->tokens[h & (TOKEN_INDEX - 1)]; /* all taken: the home slot */
    for (uint32_t k = 0; k < TOKEN_PROBE; k++) {
        struct token_slot *t = &s->tokens[(h + k) & (TOKEN_INDEX - 1)];
        if (!slot_live(s, t) || slot_is(t, ev, node)) {
            use = t;
            break;
        }
    }
    bj_strlcpy(use->brain, ev->brain, sizeof use->brain);
    use->node = node;
    use->pos = pos;
}

/* Over capacity: merge a token into the newest queued token of its brain and thought. The
 * queued message may be shared with other subscriptions, so the merge makes a private one. */
static bool coalesce_token(struct bj_sub *s, const struct bj_event *ev)
{
    struct token_slot *slot = token_find(s, ev);
    if (!slot || !ev->text)
        return false;
    struct bj_msg **at = &s->ring[(slot->pos - 1) & (s->size - 1)];
    struct bj_msg *old = *at;
    if (ev_of(old)->thought != ev->thought || ev_of(old)->crash_count != ev->crash_count)
        return false;
    size_t a = ev_of(old)->text ? strlen(ev_of(old)->text) : 0, b = strlen(ev->text);
    char *t = malloc(a + b + 1);
    /* a new message: the old one may be shared by other subscriptions (its text stays its own) */
    struct bj_msg *m = t ? bj_msg_new(0, -1, 0, ev_of(old), sizeof(struct bj_event)) : NULL;
    if (!m) {
        free(t);
        return false;
    }
    if (a)
        memcpy(t, ev_of(old)->text, a);
    memcpy(t + a, ev->text, b + 1);
    ev_of(m)->text = t;
    m->release = release_event;
    ev_of(m)->jar_used = ev->jar_used; /* the newer fill */
    ev_of(m)->pieces = (ev_of(old)->pieces > 1 ? ev_of(old)->pieces : 1) + (ev->pieces > 1 ? ev->pieces : 1);
    *at = m;
    bj_msg_unref(old);
    return true;
}

static int grow(struct bj_sub *s)
{
    size_t n = s->size * 2;
    struct bj_msg **r = calloc(n, sizeof *r);
    if (!r)
        return -1;
    for (uint64_t i = s->head; i < s->tail; i++)
        r[i & (n - 1)] = s->ring[i & (s->size - 1)];
    free(s->ring);
    s->ring = r;
    s->size = n;
    return 0;
}

/* Caller holds s->lock. Takes a reference to m when it queues it. */
static void enqueue(struct bj_sub *s, struct bj_msg *m)
{
    const struct bj_event *ev = ev_of(m);
    size_t queued = (size_t)(s->tail - s->head);
    bool lifecycle = BJ_EV_MASK(ev->type) & BJ_EV_LIFECYCLE;
    if (!lifecycle && queued >= s->capacity) {
        if (ev->type == BJ_EV_TOKEN && coalesce_token(s, ev))
            s->coalesced++;
        else
            s->dropped++;
        return;
    }
    if (queued == s->size && grow(s) != 0) {
        s->dropped++;
        bj_error("bus: out of memory; %s event lost for %s", bj_event_type_name(ev->type), s->name);
        return;
    }
    bj_msg_ref(m);
    s->ring[s->tail & (s->size - 1)] = m;
    s->tail++;
    assert(s->tail - s->head <= s->size); /* the ring never laps its reader */
    if (ev->type == BJ_EV_TOKEN)
        token_remember(s, ev, s->tail);
}

void bj_bus_publish_many(struct bj_bus *bus, struct bj_event *evs, size_t n)
{
    if (n == 0)
        return;
    struct bj_msg *stack[64], **msgs = n <= 64 ? stack : malloc(n * sizeof *msgs);
    if (!msgs) {
        bj_error("bus: out of memory; %zu events lost", n);
        return;
    }
    pthread_rwlock_rdlock(&bus->lock);
    for (size_t i = 0; i < n; i++) {
        if (!evs[i].time_us)
            evs[i].time_us = bj_event_now();
        evs[i].seq = atomic_fetch_add(&bus->seq, 1) + 1;
        for (struct tap *t = bus->taps; t; t = t->next)
            if (t->mask & BJ_EV_MASK(evs[i].type))
                t->fn(t->ud, &evs[i]);
        msgs[i] = msg_new(&evs[i]);
        if (!msgs[i])
            bj_error("bus: out of memory; %s event lost", bj_event_type_name(evs[i].type));
    }
    for (struct bj_sub *s = bus->subs; s; s = s->next) {
        bool locked = false;
        for (size_t i = 0; i < n; i++) {
            if (!msgs[i] || !(s->mask & BJ_EV_MASK(evs[i].type)))
                continue;
            if (!locked) {
                pthread_mutex_lock(&s->lock);
                locked = true;
            }
            enqueue(s, msgs[i]);
        }
        if (locked) {
            if (s->tail != s->head)
                wake(s);
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    for (size_t i = 0; i < n; i++)
        bj_msg_unref(msgs[i]);
    if (msgs != stack)
        free(msgs);
}

void bj_bus_publish(struct bj_bus *bus, struct bj_event *ev)
{
    bj_bus_publish_many(bus, ev, 1);
}

static bool take(struct bj_sub *s, struct bj_event *out)
{
    if (s->head == s->tail)
        return false;
    assert(s->tail - s->head <= s->size && (s->size & (s->size - 1)) == 0);
    struct bj_msg *m = s->ring[s->head & (s->size - 1)];
    assert(m);
    s->head++;
    if (s->head == s->tail && !s->closed)
        unwake(s);
    *out = *ev_of(m);
    out->text = NULL;
    if (ev_of(m)->text) {
        if (bj_msg_sole(m)) { /* the last holder: take the text instead of copying */
            out->text = ev_of(m)->text;
            ev_of(m)->text = NULL;
        } else if (!(out->text = strdup(ev_of(m)->text))) {
            s->dropped++;
        }
    }
    bj_msg_unref(m);
    return true;
}

int bj_sub_next(struct bj_sub *s, struct bj_event *out, int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? bj_now_us() + (int64_t)timeout_ms * 1000 : 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool got = take(s, out);
        bool closed = s->closed;
        pthread_mutex_unlock(&s->lock);
        if (got)
            return 1;
        if (closed)
            return -1;
        if (timeout_ms == 0)
            return 0;
        int wait_ms = -1;
        if (timeout_ms > 0) {
            int64_t left = deadline - bj_now_us();
            if (left <= 0)
                return 0;
            wait_ms = (int)((left + 999) / 1000);
        }
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
            return 0;
    }
}

int bj_sub_fd(const struct bj_sub *s)
{
    return s->fd;
}

#define SUB_GETTER(name, type, expr)        \
    type name(struct bj_sub *s)             \
    {                                       \
        pthread_mutex_lock(&s->lock);       \
        type v = (type)(expr);              \
        pthread_mutex_unlock(&s->lock);     \
        return v;                           \
    }
SUB_GETTER(bj_sub_pending, size_t, s->tail - s->head)
SUB_GETTER(bj_sub_dropped, uint64_t, s->dropped)
SUB_GETTER(bj_sub_coalesced, uint64_t, s->coalesced)

const char *bj_sub_name(const struct bj_sub *s)
{
    return s->name;
}

void bj_bus_each_sub(struct bj_bus *bus, void (*fn)(void *ud, struct bj_sub *sub), void *ud)
{
    pthread_rwlock_rdlock(&bus->lock);
    for (struct bj_sub *s = bus->subs; s; s = s->next)
        fn(ud, s);
    pthread_rwlock_unlock(&bus->lock);
}

void bj_bus_close(struct bj_bus *bus)
{
    pthread_rwlock_wrlock(&bus->lock);
    bus->closed = true;
    for (struct bj_sub *s = bus->subs; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->closed = true;
        wake(s);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_rwlock_unlock(&bus->lock);
}
