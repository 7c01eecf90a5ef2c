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

/* Subscribes and starts the thread. NULL on failure. */
struct bj_term *bj_term_start(struct bj_bus *bus, enum bj_events_out mode, const char *focus, FILE *out);

/* Waits until the bus is closed and everything queued is printed, then frees. */
void bj_term_finish(struct bj_term *t, struct bj_bus *bus);

#endif
