/* term: the terminal view of a hive, a bus subscriber on a thread of its own.
 *
 * text:  the focus brain's thoughts stream token by token; other brains' thoughts appear
 *        whole when finished; deaths and resurrections are marked.
 * jsonl: one JSON event per line on stdout, for scripts (every event, status included).
 * Output is flushed per line so pipes see events as they happen. */
#ifndef BJ_TERM_H
#define BJ_TERM_H

#include <stdio.h>

#include "bus.h"

enum bj_events_out { BJ_OUT_TEXT, BJ_OUT_JSONL, BJ_OUT_NONE };

struct bj_term;

struct bj_term_params {
    struct bj_bus *bus;      /* subscribed to by bj_term_new; must outlive the sink */
    enum bj_events_out mode; /* BJ_OUT_NONE: bj_term_new makes no sink and returns NULL, err "" */
    const char *focus;       /* the brain whose thoughts stream token by token (text) */
    FILE *out;               /* not closed by the sink */
};

struct bj_term_params bj_term_params_default(void);

/* Subscribes to the bus (so nothing published after this is missed) and allocates. NULL, with
 * the reason in err, on failure; NULL with err "" for BJ_OUT_NONE. */
struct bj_term *bj_term_new(const struct bj_term_params *p, char *err, size_t errlen);

/* Starts the consumer and writer threads. */
int bj_term_start(struct bj_term *t, char *err, size_t errlen);

/* Call after the bus is closed: the consumer drains its queue, the writer gets 2 s to write it
 * out (then a blocked write is interrupted), both are joined. Takes NULL; may be called again. */
void bj_term_stop(struct bj_term *t);

/* Stops if needed, unsubscribes and frees. Takes NULL. */
void bj_term_free(struct bj_term *t);

#endif
