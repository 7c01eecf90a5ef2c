/* event: everything observable that happens in a hive, as one plain struct.
 *
 * Events are made by engines (brain lifecycle, tokens, status) and the hive (errors, budget),
 * carried by the bus, and consumed by the terminal view, and later the store, the web server
 * and peer links. An event owns its text; bj_event_clear() frees it. */
#ifndef BJ_EVENT_H
#define BJ_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bj_event_type {
    BJ_EV_TOKEN,        /* a piece of text a brain just generated */
    BJ_EV_THOUGHT,      /* a finished thought (complete=false: cut short by death) */
    BJ_EV_DEATH,        /* cause, crash_count (after the death) */
    BJ_EV_RESURRECTION, /* crash_count = deaths so far; life = crash_count + 1 */
    BJ_EV_OBSERVE,      /* a brain received what it watches (from, text) */
    BJ_EV_STATUS,       /* periodic: state, jar fill, tokens/s */
    BJ_EV_ERROR,        /* a brain could not start, or a hive-level problem */
    BJ_EV_BUDGET,       /* a memory budget report (text) */
    BJ_EV_OPERATOR,     /* an operator action (cause: kill, resurrect, pause, resume, say; text) */
    BJ_EV_WATCHDOG,     /* a watchdog or supervisor stage (cause: the stage; text: why) */
    BJ_EV_LINK,         /* a peer link changed state (from: peer address; state: up/down; text) */
    BJ_EV_LAB,          /* an experiment's act on a brain (cause: erase, inject, clone, answer, ...;
                         * from: the intervention or question id; text: what it changed, JSON) */
    BJ_EV_COUNT
};
#define BJ_EV_MASK(t) (1u << (t))
#define BJ_EV_ALL ((1u << BJ_EV_COUNT) - 1)
/* Lifecycle events are never dropped by the bus; tokens and status may be coalesced. */
#define BJ_EV_LIFECYCLE (BJ_EV_ALL & ~(BJ_EV_MASK(BJ_EV_TOKEN) | BJ_EV_MASK(BJ_EV_STATUS)))

/* Why a brain died. An event carries the cause as text (a peer's deaths may name causes of its
 * own, which the store keeps as sent); local deaths use these, by name. */
enum bj_death_cause {
    BJ_DEATH_JAR_FULL,      /* its jar (KV cache) had no room for the next tokens */
    BJ_DEATH_DECODE_ERROR,  /* llama.cpp failed to decode its tokens */
    BJ_DEATH_WATCHDOG,      /* the watchdog or the supervisor ended it */
    BJ_DEATH_OPERATOR,      /* an operator killed it */
    BJ_DEATH_UNCLEAN_EXIT,  /* the process died while it lived (found at the next start) */
    BJ_DEATH_OTHER,         /* anything else (remote causes, unknown text) */
    BJ_DEATH_CAUSES
};
/* The cause's name as events, the journal, the store and the API spell it ("JAR_FULL", ...;
 * "other" for BJ_DEATH_OTHER). */
const char *bj_death_cause_name(enum bj_death_cause c);
/* The cause a name spells; BJ_DEATH_OTHER for any other text (and NULL). */
enum bj_death_cause bj_death_cause_of(const char *name);
/* What a death whose cause is missing is recorded as. */
#define BJ_DEATH_UNKNOWN_NAME "UNKNOWN"

struct bj_event {
    enum bj_event_type type;
    uint64_t seq;        /* assigned by the bus: one global order */
    int64_t time_us;     /* wall clock, microseconds since the epoch (set by the publisher) */
    char brain[32];
    char from[32];       /* OBSERVE: whose words */
    char cause[24];      /* DEATH: bj_death_cause_name(), or a peer's own cause */
    char state[16];      /* STATUS: brain state name */
    uint32_t crash_count;
    uint32_t thought;    /* thought number within the life, from 1 */
    int32_t jar_used, jar_tokens; /* TOKEN, STATUS, DEATH: the jar's fill then, and its size */
    uint32_t pieces;     /* TOKEN: how many tokens a merged token holds (0 and 1: one) */
    double tok_s;
    bool complete;       /* THOUGHT: ended normally */
    char node[48];       /* empty: a local brain; else the peer node it lives on (remote events) */
    char *text;          /* owned, NUL-terminated UTF-8, may be NULL */
};

const char *bj_event_type_name(enum bj_event_type t);

/* Deep copy (text duplicated). Returns 0 or -1 when out of memory. */
int bj_event_copy(struct bj_event *dst, const struct bj_event *src);
void bj_event_clear(struct bj_event *ev);

/* One compact JSON object, no newline; the caller frees. NULL when out of memory. */
char *bj_event_to_json(const struct bj_event *ev);

/* A growable list of events that owns their texts: what an engine step produced, published
 * together once the step is over. */
struct bj_evbuf {
    struct bj_event *v;
    size_t n, cap;
};
/* Appends a deep copy of ev. 0, or -1 when out of memory (the event is lost and logged). */
int bj_evbuf_push(struct bj_evbuf *b, const struct bj_event *ev);
/* Frees the texts and empties the list (keeps its memory for reuse). */
void bj_evbuf_reset(struct bj_evbuf *b);
void bj_evbuf_free(struct bj_evbuf *b);

/* Wall clock now, microseconds since the epoch. */
int64_t bj_event_now(void);

#endif
