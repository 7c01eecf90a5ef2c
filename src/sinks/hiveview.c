/* view: the terminal's model of a hive, fed by events (see view.h). */
#include "hiveview.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bj_hiveview {
    int64_t start_us;
    struct bj_hiveview_brain *brains; /* BJ_HIVEVIEW_MAX_BRAINS slots, n used */
    size_t n;
    size_t focus;
    struct bj_hiveview_death deaths[BJ_HIVEVIEW_DEATHS]; /* a ring: head is the next slot to write */
    size_t deaths_head, deaths_n;
};

struct bj_hiveview *bj_hiveview_new(int64_t start_us)
{
    struct bj_hiveview *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->brains = calloc(BJ_HIVEVIEW_MAX_BRAINS, sizeof *v->brains);
    if (!v->brains) {
        free(v);
        return NULL;
    }
    v->start_us = start_us;
    return v;
}

void bj_hiveview_free(struct bj_hiveview *v)
{
    if (!v)
        return;
    free(v->brains);
    free(v);
}

/* Copies src into a fixed field, always NUL-terminated; reads at most cap - 1 bytes of src, so
 * an event's fixed field that lacks its NUL (a bad decoder upstream) is still read safely. */
static void set_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%.*s", (int)(cap - 1), src ? src : "");
}

static struct bj_hiveview_brain *find(struct bj_hiveview *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->brains[i].name, name) == 0)
            return &v->brains[i];
    return NULL;
}

/* The brain called name, added when new; NULL for an empty name or a full view. */
static struct bj_hiveview_brain *get(struct bj_hiveview *v, const char *name)
{
    if (!name || !name[0])
        return NULL;
    struct bj_hiveview_brain *b = find(v, name);
    if (b || v->n >= BJ_HIVEVIEW_MAX_BRAINS)
        return b;
    b = &v->brains[v->n++];
    memset(b, 0, sizeof *b);
    set_field(b->name, sizeof b->name, name);
    set_field(b->state, sizeof b->state, "?");
    return b;
}

/* Appends text to a thought buffer; when it would overflow, keeps the tail, cut at a UTF-8
 * character boundary so a screen never gets half a character. */
static void append_text(char *buf, const char *text)
{
    size_t have = strlen(buf), add = strlen(text);
    if (add >= BJ_HIVEVIEW_TEXT) {
        text += add - (BJ_HIVEVIEW_TEXT - 1);
        add = BJ_HIVEVIEW_TEXT - 1;
        have = 0;
    } else if (have + add >= BJ_HIVEVIEW_TEXT) {
        size_t drop = have + add - (BJ_HIVEVIEW_TEXT - 1);
        while (drop < have && ((unsigned char)buf[drop] & 0xC0) == 0x80)
            drop++;
        memmove(buf, buf + drop, have - drop);
        have -= drop;
    }
    while (add > 0 && ((unsigned char)*text & 0xC0) == 0x80 && have == 0) {
        text++;
        add--;
    }
    memcpy(buf + have, text, add);
    buf[have + add] = '\0';
    assert(strlen(buf) < BJ_HIVEVIEW_TEXT);
}

/* A finished thought moves to the ring (the oldest falls out) and the stream starts afresh. */
static void finish_thought(struct bj_hiveview_brain *b, const char *text)
{
    if (b->ring_n == BJ_HIVEVIEW_RING) {
        memmove(b->ring[0], b->ring[1], sizeof b->ring[0] * (BJ_HIVEVIEW_RING - 1));
        b->ring_n--;
    }
    char *slot = b->ring[b->ring_n++];
    slot[0] = '\0';
    append_text(slot, text && text[0] ? text : b->current);
    b->current[0] = '\0';
}

static void add_death(struct bj_hiveview *v, const struct bj_event *ev)
{
    struct bj_hiveview_death *d = &v->deaths[v->deaths_head];
    d->time_us = ev->time_us;
    set_field(d->brain, sizeof d->brain, ev->brain);
    set_field(d->cause, sizeof d->cause, ev->cause);
    d->deaths = ev->crash_count;
    v->deaths_head = (v->deaths_head + 1) % BJ_HIVEVIEW_DEATHS;
    if (v->deaths_n < BJ_HIVEVIEW_DEATHS)
        v->deaths_n++;
}

int bj_hiveview_apply(struct bj_hiveview *v, const struct bj_event *ev)
{
    if (!v || !ev)
        return 0;
    char name[sizeof ev->brain];
    set_field(name, sizeof name, ev->brain);
    struct bj_hiveview_brain *b = get(v, name);
    if (!b)
        return 0;
    const char *text = ev->text ? ev->text : "";
    switch (ev->type) {
    case BJ_EV_TOKEN:
        append_text(b->current, text);
        b->thought = ev->thought;
        return 1;
    case BJ_EV_THOUGHT:
        finish_thought(b, text);
        return 1;
    case BJ_EV_DEATH:
        b->dead = true;
        b->deaths = ev->crash_count;
        set_field(b->cause, sizeof b->cause, ev->cause);
        set_field(b->state, sizeof b->state, "dead");
        add_death(v, ev);
        return 1;
    case BJ_EV_RESURRECTION:
        b->dead = false;
        b->deaths = ev->crash_count;
        b->current[0] = '\0';
        set_field(b->state, sizeof b->state, "alive");
        return 1;
    case BJ_EV_STATUS:
        if (ev->state[0])
            set_field(b->state, sizeof b->state, ev->state);
        b->jar_used = ev->jar_used;
        b->jar_tokens = ev->jar_tokens;
        b->tok_s = ev->tok_s;
        return 1;
    case BJ_EV_OBSERVE:
        if (ev->from[0] && !b->role[0])
            set_field(b->role, sizeof b->role, ev->from);
        return 1;
    default:
        return 0;
    }
}

int bj_hiveview_set_role(struct bj_hiveview *v, const char *brain, const char *watches)
{
    struct bj_hiveview_brain *b = get(v, brain);
    if (!b)
        return -1;
    set_field(b->role, sizeof b->role, watches);
    return 0;
}

size_t bj_hiveview_count(const struct bj_hiveview *v) { return v->n; }

const struct bj_hiveview_brain *bj_hiveview_brain_at(const struct bj_hiveview *v, size_t i)
{
    return i < v->n ? &v->brains[i] : NULL;
}

const struct bj_hiveview_brain *bj_hiveview_find(const struct bj_hiveview *v, const char *name)
{
    return name ? find((struct bj_hiveview *)v, name) : NULL;
}

uint64_t bj_hiveview_total_deaths(const struct bj_hiveview *v)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < v->n; i++)
        sum += v->brains[i].deaths;
    return sum;
}

double bj_hiveview_total_tok_s(const struct bj_hiveview *v)
{
    double sum = 0;
    for (size_t i = 0; i < v->n; i++)
        if (!v->brains[i].dead)
            sum += v->brains[i].tok_s;
    return sum;
}

int64_t bj_hiveview_start_us(const struct bj_hiveview *v) { return v->start_us; }

size_t bj_hiveview_death_count(const struct bj_hiveview *v) { return v->deaths_n; }

const struct bj_hiveview_death *bj_hiveview_death_at(const struct bj_hiveview *v, size_t i)
{
    if (i >= v->deaths_n)
        return NULL;
    size_t slot = (v->deaths_head + BJ_HIVEVIEW_DEATHS - 1 - i) % BJ_HIVEVIEW_DEATHS;
    return &v->deaths[slot];
}

size_t bj_hiveview_focus(const struct bj_hiveview *v) { return v->n ? v->focus % v->n : 0; }

void bj_hiveview_focus_move(struct bj_hiveview *v, int delta)
{
    if (v->n == 0)
        return;
    long n = (long)v->n;
    long f = ((long)(v->focus % v->n) + delta % n + n) % n;
    v->focus = (size_t)f;
}
