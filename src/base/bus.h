/* bus: the in-process publish/subscribe path for events.
 *
 * Publishers never wait for a subscriber's work. An event is copied once into a shared,
 * reference-counted message; each subscription holds its own ring of message pointers under its
 * own lock, so publishing costs one short critical section per interested subscription and a
 * slow or stalled consumer delays nobody. Lifecycle events (everything but tokens and status) are
 * always queued (the ring grows for them); when a ring is at its capacity a token is merged into
 * that subscription's newest queued token of the same brain and thought (O(1): a small index by
 * brain), or dropped and counted; status events over capacity are dropped and counted.
 *
 * Each subscription has a file descriptor (an eventfd) that is readable while events are queued
 * or the bus is closed, so any event loop (poll, epoll, libwebsockets) can wait on it; or block in
 * bj_sub_next(). Taps are synchronous callbacks run on the publisher's thread for every event:
 * for small views that must see everything at once (a tap must be quick and never block).
 *
 * Threads: any thread may publish; each subscription is read by one consumer thread at a time.
 * Each publisher's events reach every subscription in the order it published them; seq numbers
 * are unique and increase with publish time. */
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

/* Subscribes to the event types in `mask` (BJ_EV_MASK bits). capacity: ring length for tokens
 * and status (lifecycle events are never refused). NULL when out of memory. */
struct bj_sub *bj_bus_subscribe(struct bj_bus *bus, const char *name, uint32_t mask, size_t capacity);
/* Removes the subscription and frees what is still queued. */
void bj_bus_unsubscribe(struct bj_bus *bus, struct bj_sub *sub);

/* A synchronous observer: fn(ud, ev) runs on the publishing thread for every event in mask,
 * after seq is assigned. Add taps before publishing starts; they live as long as the bus. */
int bj_bus_tap(struct bj_bus *bus, uint32_t mask, void (*fn)(void *ud, const struct bj_event *ev), void *ud);

/* Assigns ev->seq (and time_us when 0) and queues the event for every interested subscriber. */
void bj_bus_publish(struct bj_bus *bus, struct bj_event *ev);
/* The same for n events in one pass (one lock and at most one wake-up per subscription). */
void bj_bus_publish_many(struct bj_bus *bus, struct bj_event *evs, size_t n);

/* Takes the next event into *out (the caller then owns out->text). Waits up to timeout_ms
 * (-1: forever, 0: not at all). Returns 1 with an event, 0 on timeout, -1 when the bus is
 * closed and the queue is empty. */
int bj_sub_next(struct bj_sub *sub, struct bj_event *out, int timeout_ms);

/* Readable while events are queued or the bus is closed; owned by the subscription. */
int bj_sub_fd(const struct bj_sub *sub);

/* Events queued now. */
size_t bj_sub_pending(struct bj_sub *sub);
/* Events this subscriber lost (tokens not coalescible, status over capacity). */
uint64_t bj_sub_dropped(struct bj_sub *sub);
/* Tokens merged into an earlier token event. */
uint64_t bj_sub_coalesced(struct bj_sub *sub);
const char *bj_sub_name(const struct bj_sub *sub);

/* Calls fn for every subscription (under the bus's list lock: fn must not subscribe). */
void bj_bus_each_sub(struct bj_bus *bus, void (*fn)(void *ud, struct bj_sub *sub), void *ud);

/* Wakes every subscriber; bj_sub_next returns -1 once its queue is drained. */
void bj_bus_close(struct bj_bus *bus);

#endif
