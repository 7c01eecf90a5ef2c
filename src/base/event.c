/* event: see event.h. */
#include "event.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "util.h"

static const char *const k_names[BJ_EV_COUNT] = {
    "token", "thought", "death", "resurrection", "observe", "status", "error", "budget", "operator", "watchdog",
    "link", "lab",
};

static const char *const k_death_causes[BJ_DEATH_CAUSES] = {"JAR_FULL", "DECODE_ERROR", "WATCHDOG", "OPERATOR",
                                                          "UNCLEAN_EXIT", "other"};

const char *bj_death_cause_name(enum bj_death_cause c)
{
    return (unsigned)c < BJ_DEATH_CAUSES ? k_death_causes[c] : k_death_causes[BJ_DEATH_OTHER];
}

enum bj_death_cause bj_death_cause_of(const char *name)
{
    for (int k = 0; name && k < BJ_DEATH_OTHER; k++)
        if (strcmp(name, k_death_causes[k]) == 0)
            return (enum bj_death_cause)k;
    return BJ_DEATH_OTHER;
}

const char *bj_event_type_name(enum bj_event_type t)
{
    return (unsigned)t < BJ_EV_COUNT ? k_names[t] : "unknown";
}

int bj_event_copy(struct bj_event *dst, const struct bj_event *src)
{
    *dst = *src;
    if (src->text && !(dst->text = strdup(src->text)))
        return -1;
    return 0;
}

void bj_event_clear(struct bj_event *ev)
{
    free(ev->text);
    ev->text = NULL;
}

int bj_evbuf_push(struct bj_evbuf *b, const struct bj_event *ev)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct bj_event *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        b->v = nv;
        b->cap = nc;
    }
    if (bj_event_copy(&b->v[b->n], ev))
        return -1;
    b->n++;
    return 0;
}

void bj_evbuf_reset(struct bj_evbuf *b)
{
    for (size_t i = 0; i < b->n; i++)
        bj_event_clear(&b->v[i]);
    b->n = 0;
}

void bj_evbuf_free(struct bj_evbuf *b)
{
    bj_evbuf_reset(b);
    free(b->v);
    b->v = NULL;
    b->cap = 0;
}

int64_t bj_event_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


char *bj_event_to_json(const struct bj_event *ev)
{
    char ts[40];
    bj_iso_time_us(ev->time_us, ts, sizeof ts);
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(bj_event_type_name(ev->type)));
    json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
    json_object_set_new(o, "ts", json_string(ts));
    if (ev->brain[0])
        json_object_set_new(o, "brain", json_string(ev->brain));
    if (ev->node[0])
        json_object_set_new(o, "node", json_string(ev->node));
    json_object_set_new(o, "crash_count", json_integer(ev->crash_count));
    switch (ev->type) {
    case BJ_EV_TOKEN:
        json_object_set_new(o, "thought", json_integer(ev->thought));
        json_object_set_new(o, "jar_used", json_integer(ev->jar_used));
        if (ev->pieces > 1)
            json_object_set_new(o, "n", json_integer(ev->pieces));
        break;
    case BJ_EV_THOUGHT:
        json_object_set_new(o, "thought", json_integer(ev->thought));
        json_object_set_new(o, "complete", json_boolean(ev->complete));
        break;
    case BJ_EV_DEATH:
        json_object_set_new(o, "cause", json_string(ev->cause));
        json_object_set_new(o, "jar_used", json_integer(ev->jar_used));
        json_object_set_new(o, "jar_tokens", json_integer(ev->jar_tokens));
        break;
    case BJ_EV_OBSERVE:
        json_object_set_new(o, "from", json_string(ev->from));
        break;
    case BJ_EV_OPERATOR:
    case BJ_EV_WATCHDOG:
        json_object_set_new(o, "action", json_string(ev->cause));
        break;
    case BJ_EV_LAB:
        json_object_set_new(o, "action", json_string(ev->cause));
        json_object_set_new(o, "id", json_string(ev->from));
        json_object_set_new(o, "thought", json_integer(ev->thought));
        json_object_set_new(o, "jar_used", json_integer(ev->jar_used));
        break;
    case BJ_EV_LINK:
        json_object_set_new(o, "peer", json_string(ev->from));
        json_object_set_new(o, "state", json_string(ev->state));
        break;
    case BJ_EV_STATUS:
        json_object_set_new(o, "state", json_string(ev->state));
        json_object_set_new(o, "jar_used", json_integer(ev->jar_used));
        json_object_set_new(o, "jar_tokens", json_integer(ev->jar_tokens));
        json_object_set_new(o, "tok_s", json_real(ev->tok_s));
        break;
    default:
        break;
    }
    if (ev->text) {
        json_t *t = json_string(ev->text);
        /* Text is sanitized to UTF-8 where it is made; this guards the contract anyway. */
        json_object_set_new(o, "text", t ? t : json_string("(invalid UTF-8)"));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
