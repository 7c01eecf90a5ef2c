/* bus: the in-process publish/subscribe path for events.
 *
 * Publishers never block for a subscriber: each subscriber has its own queue with a soft
 * capacity. Lifecycle events (everything but tokens and status) are always queued; when a
 * queue is over capacity, a token is merged into the subscriber's latest queued token of the
 * same brain (text is kept, granularity is lost) or, failing that, dropped and counted; status
 * events over capacity are dropped and counted. Any thread may publish; each subscription is
 * read by one consumer thread. */
#ifndef BJ_BUS_H
#define BJ_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct bj_bus;
struct bj_sub;

struct bj_bus *bj_bus_new(void);
/* All subscriptions must have been released. */
void bj_bus_free(struct bj_bus *bus);

/* Subscribes to the event types in `mask` (BJ_EV_MASK bits). capacity: soft queue length. */
struct bj_sub *bj_bus_subscribe(struct bj_bus *bus, const char *name, uint32_t mask, size_t capacity);
/* Removes the subscription and frees what is still queued. */
void bj_bus_unsubscribe(struct bj_bus *bus, struct bj_sub *sub);

/* Assigns ev->seq and copies the event to every interested subscriber. */
void bj_bus_publish(struct bj_bus *bus, struct bj_event *ev);

/* Takes the next event into *out (the caller then owns out->text). Waits up to timeout_ms
 * (-1: forever). Returns 1 with an event, 0 on timeout, -1 when the bus is closed and the
 * queue is empty. */
int bj_sub_next(struct bj_sub *sub, struct bj_event *out, int timeout_ms);

/* Events this subscriber lost (tokens not coalescible, status over capacity). */
uint64_t bj_sub_dropped(struct bj_sub *sub);
/* Tokens merged into an earlier token event. */
uint64_t bj_sub_coalesced(struct bj_sub *sub);

/* Wakes every subscriber; bj_sub_next returns -1 once its queue is drained. */
void bj_bus_close(struct bj_bus *bus);

#endif
