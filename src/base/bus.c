/* bus: see bus.h. One mutex for the subscriber list and sequence counter, one per queue. */
#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

struct node {
    struct node *next;
    struct bj_event ev;
};

struct bj_sub {
    struct bj_sub *next;
    char name[32];
    uint32_t mask;
    size_t capacity, len;
    struct node *head, *tail;
    uint64_t dropped, coalesced;
    bool closed;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

struct bj_bus {
    pthread_mutex_t lock;
    struct bj_sub *subs;
    uint64_t seq;
    bool closed;
};

struct bj_bus *bj_bus_new(void)
{
    struct bj_bus *bus = calloc(1, sizeof *bus);
    if (bus)
        pthread_mutex_init(&bus->lock, NULL);
    return bus;
}

void bj_bus_free(struct bj_bus *bus)
{
    if (!bus)
        return;
    while (bus->subs)
        bj_bus_unsubscribe(bus, bus->subs);
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

struct bj_sub *bj_bus_subscribe(struct bj_bus *bus, const char *name, uint32_t mask, size_t capacity)
{
    struct bj_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    bj_strlcpy(s->name, name, sizeof s->name);
    s->mask = mask;
    s->capacity = capacity ? capacity : 1;
    pthread_mutex_init(&s->lock, NULL);
    bj_cond_init_monotonic(&s->cond);
    pthread_mutex_lock(&bus->lock);
    s->closed = bus->closed;
    s->next = bus->subs;
    bus->subs = s;
    pthread_mutex_unlock(&bus->lock);
    return s;
}

void bj_bus_unsubscribe(struct bj_bus *bus, struct bj_sub *sub)
{
    pthread_mutex_lock(&bus->lock);
    for (struct bj_sub **p = &bus->subs; *p; p = &(*p)->next)
        if (*p == sub) {
            *p = sub->next;
            break;
        }
    pthread_mutex_unlock(&bus->lock);
    for (struct node *n = sub->head, *next; n; n = next) {
        next = n->next;
        bj_event_clear(&n->ev);
        free(n);
    }
    pthread_mutex_destroy(&sub->lock);
    pthread_cond_destroy(&sub->cond);
    free(sub);
}

/* Over capacity: merge a token into the newest queued token of the same brain. */
static bool coalesce_token(struct bj_sub *s, const struct bj_event *ev)
{
    struct node *last = NULL;
    for (struct node *n = s->head; n; n = n->next)
        if (n->ev.type == BJ_EV_TOKEN && strcmp(n->ev.brain, ev->brain) == 0)
            last = n;
    if (!last || last->ev.thought != ev->thought || !ev->text)
        return false;
    size_t a = last->ev.text ? strlen(last->ev.text) : 0, b = strlen(ev->text);
    char *t = realloc(last->ev.text, a + b + 1);
    if (!t)
        return false;
    memcpy(t + a, ev->text, b + 1);
    last->ev.text = t;
    return true;
}

static void deliver(struct bj_sub *s, const struct bj_event *ev)
{
    pthread_mutex_lock(&s->lock);
    bool lifecycle = BJ_EV_MASK(ev->type) & BJ_EV_LIFECYCLE;
    if (!lifecycle && s->len >= s->capacity) {
        if (ev->type == BJ_EV_TOKEN && coalesce_token(s, ev))
            s->coalesced++;
        else
            s->dropped++;
        pthread_mutex_unlock(&s->lock);
        return;
    }
    struct node *n = malloc(sizeof *n);
    if (!n || bj_event_copy(&n->ev, ev)) {
        free(n);
        s->dropped++;
        pthread_mutex_unlock(&s->lock);
        bj_error("bus: out of memory; %s event lost for %s", bj_event_type_name(ev->type), s->name);
        return;
    }
    n->next = NULL;
    if (s->tail)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    s->len++;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void bj_bus_publish(struct bj_bus *bus, struct bj_event *ev)
{
    if (!ev->time_us)
        ev->time_us = bj_event_now();
    /* The bus lock is held across delivery so that every subscriber sees one global order. */
    pthread_mutex_lock(&bus->lock);
    ev->seq = ++bus->seq;
    for (struct bj_sub *s = bus->subs; s; s = s->next)
        if (s->mask & BJ_EV_MASK(ev->type))
            deliver(s, ev);
    pthread_mutex_unlock(&bus->lock);
}

int bj_sub_next(struct bj_sub *s, struct bj_event *out, int timeout_ms)
{
    struct timespec deadline = bj_deadline_after(timeout_ms > 0 ? (int64_t)timeout_ms * 1000 : 0);
    pthread_mutex_lock(&s->lock);
    while (!s->head && !s->closed && timeout_ms != 0) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&s->cond, &s->lock)
                                : pthread_cond_timedwait(&s->cond, &s->lock, &deadline);
        if (rc == ETIMEDOUT)
            break;
    }
    int result;
    if (s->head) {
        struct node *n = s->head;
        s->head = n->next;
        if (!s->head)
            s->tail = NULL;
        s->len--;
        *out = n->ev;
        free(n);
        result = 1;
    } else {
        result = s->closed ? -1 : 0;
    }
    pthread_mutex_unlock(&s->lock);
    return result;
}

uint64_t bj_sub_dropped(struct bj_sub *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t d = s->dropped;
    pthread_mutex_unlock(&s->lock);
    return d;
}

uint64_t bj_sub_coalesced(struct bj_sub *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t d = s->coalesced;
    pthread_mutex_unlock(&s->lock);
    return d;
}

void bj_bus_close(struct bj_bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    bus->closed = true;
    for (struct bj_sub *s = bus->subs; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->closed = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&bus->lock);
}
