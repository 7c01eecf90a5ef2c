/* hiveview: the terminal's model of a hive, fed by events, drawn by nobody in particular.
 *
 * A view keeps, per brain, what a screen shows of it: role, life, deaths, state, jar fill, tok/s,
 * the thought being streamed, a ring of the last finished thoughts, and the cause of its last death
 * while it is dead (the "veil"). Hive-wide it keeps the counters of a header and a ring of the last
 * deaths (the timeline). It is pure: no I/O, no threads, no terminal; one owner thread calls
 * everything (the TUI's thread, or `brainjar top`'s). The same events from a local bus or from a
 * remote daemon's WebSocket feed the same view, so the drawing code has one source.
 *
 * Bad input never crashes it: unknown brains are added (up to BJ_HIVEVIEW_MAX_BRAINS, then ignored),
 * texts are bounded, NULL texts are empty. */
#ifndef BJ_HIVEVIEW_H
#define BJ_HIVEVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define BJ_HIVEVIEW_MAX_BRAINS 256
#define BJ_HIVEVIEW_RING 8          /* finished thoughts kept per brain */
#define BJ_HIVEVIEW_DEATHS 32       /* deaths kept in the timeline */
#define BJ_HIVEVIEW_TEXT 2048       /* bytes kept of a thought (the tail of a longer one) */

struct bj_hiveview_brain {
    char name[32];
    char role[32];              /* what it watches ("" when nothing): who watches whom */
    char state[16];
    uint32_t deaths;            /* crash_count as last reported */
    uint32_t thought;           /* thought number within the life */
    int32_t jar_used, jar_tokens;
    double tok_s;
    bool dead;                  /* between a death and its resurrection: the veil is up */
    char cause[24];             /* the last death's cause */
    char current[BJ_HIVEVIEW_TEXT]; /* the thought being streamed, NUL-terminated */
    char ring[BJ_HIVEVIEW_RING][BJ_HIVEVIEW_TEXT]; /* the last finished thoughts, oldest first */
    size_t ring_n;              /* how many of ring are filled (<= BJ_HIVEVIEW_RING) */
};

struct bj_hiveview_death {
    int64_t time_us;
    char brain[32];
    char cause[24];
    uint32_t deaths;            /* the brain's count after this death */
};

struct bj_hiveview;

/* An empty view, start_us being "alive since" for the header. NULL when out of memory. */
struct bj_hiveview *bj_hiveview_new(int64_t start_us);
void bj_hiveview_free(struct bj_hiveview *v);

/* Folds one event into the view. Returns 1 when something visible changed, 0 when not. */
int bj_hiveview_apply(struct bj_hiveview *v, const struct bj_event *ev);

/* Declares who brain watches (e.g. from the hive's config or the API's /brains). Adds the brain
 * when new. 0, or -1 when the view is full. */
int bj_hiveview_set_role(struct bj_hiveview *v, const char *brain, const char *watches);

size_t bj_hiveview_count(const struct bj_hiveview *v);
/* The i-th brain in order of first appearance; NULL when out of range. */
const struct bj_hiveview_brain *bj_hiveview_brain_at(const struct bj_hiveview *v, size_t i);
const struct bj_hiveview_brain *bj_hiveview_find(const struct bj_hiveview *v, const char *name);

/* Header counters: deaths of all brains, the sum of the latest tok/s, when the view began. */
uint64_t bj_hiveview_total_deaths(const struct bj_hiveview *v);
double bj_hiveview_total_tok_s(const struct bj_hiveview *v);
int64_t bj_hiveview_start_us(const struct bj_hiveview *v);

/* The timeline: i = 0 is the most recent death; NULL when out of range. */
size_t bj_hiveview_death_count(const struct bj_hiveview *v);
const struct bj_hiveview_death *bj_hiveview_death_at(const struct bj_hiveview *v, size_t i);

/* Focus for the drawing code: an index into the brains, moved by the arrow/Tab keys (wraps). */
size_t bj_hiveview_focus(const struct bj_hiveview *v);
void bj_hiveview_focus_move(struct bj_hiveview *v, int delta);

#endif
