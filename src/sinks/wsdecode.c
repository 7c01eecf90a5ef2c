/* wsdecode: the daemon's WebSocket messages turned into bj_events (see wsclient.h). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wsclient.h"

static void copy_str(char *dst, size_t cap, json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(dst, cap, "%s", s ? s : "");
}

static long long int_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : json_is_real(v) ? (long long)json_real_value(v) : 0;
}

static double num_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static int push(struct bj_evbuf *out, struct bj_event *ev, const char *text)
{
    ev->text = (char *)(text ? text : NULL);
    int rc = bj_evbuf_push(out, ev); /* deep copy: text duplicated */
    ev->text = NULL;
    return rc;
}

static bool type_of(const char *name, enum bj_event_type *t)
{
    for (int i = 0; name && i < BJ_EV_COUNT; i++)
        if (strcmp(name, bj_event_type_name((enum bj_event_type)i)) == 0) {
            *t = (enum bj_event_type)i;
            return true;
        }
    return false;
}

/* A live event in the --events jsonl shape. */
static int live_event(json_t *o, enum bj_event_type t, struct bj_evbuf *out)
{
    struct bj_event ev = {.type = t, .time_us = bj_event_now()};
    copy_str(ev.brain, sizeof ev.brain, o, "brain");
    copy_str(ev.node, sizeof ev.node, o, "node");
    ev.crash_count = (uint32_t)int_of(o, "crash_count");
    ev.thought = (uint32_t)int_of(o, "thought");
    ev.jar_used = (int32_t)int_of(o, "jar_used");
    ev.jar_tokens = (int32_t)int_of(o, "jar_tokens");
    ev.pieces = (uint32_t)int_of(o, "n");
    ev.complete = json_is_true(json_object_get(o, "complete"));
    copy_str(ev.cause, sizeof ev.cause, o, t == BJ_EV_DEATH ? "cause" : "action");
    copy_str(ev.from, sizeof ev.from, o, t == BJ_EV_LINK ? "peer" : "from");
    copy_str(ev.state, sizeof ev.state, o, "state");
    return push(out, &ev, json_string_value(json_object_get(o, "text")));
}

/* One brain's state as a STATUS event (a tick's or a snapshot's). */
static int status_event(const char *id, const char *state, json_t *b, int32_t used, int32_t size, struct bj_evbuf *out)
{
    struct bj_event ev = {.type = BJ_EV_STATUS, .time_us = bj_event_now(), .jar_used = used, .jar_tokens = size};
    snprintf(ev.brain, sizeof ev.brain, "%s", id);
    snprintf(ev.state, sizeof ev.state, "%s", state ? state : "");
    ev.tok_s = num_of(b, "tok_s");
    ev.crash_count = (uint32_t)int_of(b, "deaths");
    ev.thought = (uint32_t)int_of(b, "thought");
    return push(out, &ev, NULL);
}

static void memory_of(json_t *mem, struct bj_wsclient_msg *info)
{
    double total = num_of(mem, "system_total"), avail = num_of(mem, "system_available");
    if (total > 0) {
        info->has_memory = true;
        info->mem_total = total;
        info->mem_used = total - (avail < total ? avail : total);
    }
}

static int tick(json_t *o, struct bj_evbuf *out, struct bj_wsclient_msg *info)
{
    const char *id;
    json_t *b;
    json_object_foreach(json_object_get(o, "brains"), id, b) {
        if (status_event(id, json_string_value(json_object_get(b, "state")), b, (int32_t)int_of(b, "jar_used"),
                         (int32_t)int_of(b, "jar_tokens"), out) != 0)
            return -1;
    }
    memory_of(json_object_get(o, "memory"), info);
    json_t *inst;
    json_object_foreach(json_object_get(o, "instances"), id, inst) {
        json_t *t = json_object_get(inst, "cpu_temp");
        info->temp_ok = json_is_number(t);
        info->temp_c = json_is_number(t) ? json_number_value(t) : 0;
        break;
    }
    return 0;
}

/* "2026-11-25T15:06:25.633846Z" in microseconds since the epoch; 0 when it is not one. */
static int64_t iso_us(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return 0;
    long frac = 0;
    int digits = 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                frac = frac * 10 + (*p - '0');
    for (; digits < 6; digits++)
        frac *= 10;
    time_t t = timegm(&tm);
    return t > 0 ? (int64_t)t * 1000000 + frac : 0;
}

/* A snapshot: the deaths (oldest first: the timeline), then per brain who it watches, its last
 * thoughts, whether it lives, its state and the thought it is streaming. */
static int snapshot(json_t *o, struct bj_evbuf *out, struct bj_wsclient_msg *info)
{
    info->snapshot = true;
    copy_str(info->role, sizeof info->role, json_object_get(o, "you"), "role");
    info->started_us = iso_us(json_string_value(json_object_get(json_object_get(o, "hive"), "started")));
    memory_of(json_object_get(o, "memory"), info);
    size_t i;
    json_t *b, *d, *thoughts = json_object_get(o, "thoughts");
    json_array_foreach(json_object_get(o, "brains"), i, b) {
        const char *id = json_string_value(json_object_get(b, "id"));
        if (!id)
            continue;
        /* who it watches: an OBSERVE-free declaration, as a LINK of the brain (see tui.c) */
        struct bj_event role = {.type = BJ_EV_LINK, .time_us = bj_event_now()};
        snprintf(role.brain, sizeof role.brain, "%s", id);
        snprintf(role.state, sizeof role.state, "watches");
        char watches[64] = "";
        size_t w;
        json_t *x;
        json_array_foreach(json_object_get(b, "watches"), w, x) {
            const char *s = json_string_value(x);
            size_t have = strlen(watches);
            if (s)
                snprintf(watches + have, sizeof watches - have, "%s%s", have ? "," : "", s);
        }
        if (push(out, &role, json_is_true(json_object_get(b, "watches_all")) ? "*" : watches) != 0)
            return -1;
    }
    json_array_foreach(json_object_get(o, "deaths"), i, d) {
        struct bj_event ev = {.type = BJ_EV_DEATH, .time_us = int_of(d, "time_us")};
        copy_str(ev.brain, sizeof ev.brain, d, "brain");
        copy_str(ev.cause, sizeof ev.cause, d, "cause");
        ev.crash_count = (uint32_t)int_of(d, "crash_count");
        if (push(out, &ev, NULL) != 0)
            return -1;
    }
    json_array_foreach(json_object_get(o, "brains"), i, b) {
        const char *id = json_string_value(json_object_get(b, "id"));
        if (!id)
            continue;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(thoughts, id), k, t) {
            struct bj_event ev = {.type = BJ_EV_THOUGHT, .time_us = int_of(t, "time_us")};
            snprintf(ev.brain, sizeof ev.brain, "%s", id);
            ev.thought = (uint32_t)int_of(t, "thought");
            ev.complete = json_is_true(json_object_get(t, "complete"));
            if (push(out, &ev, json_string_value(json_object_get(t, "text"))) != 0)
                return -1;
        }
        const char *state = json_string_value(json_object_get(b, "state"));
        bool dead = state && (strcmp(state, "dead") == 0 || strcmp(state, "dying") == 0);
        if (!dead) {
            struct bj_event ev = {.type = BJ_EV_RESURRECTION, .time_us = bj_event_now()};
            snprintf(ev.brain, sizeof ev.brain, "%s", id);
            ev.crash_count = (uint32_t)int_of(b, "deaths");
            if (push(out, &ev, NULL) != 0)
                return -1;
        }
        json_t *jar = json_object_get(b, "jar");
        if (status_event(id, state, b, (int32_t)int_of(jar, "used"), (int32_t)int_of(jar, "tokens"), out) != 0)
            return -1;
        const char *cur = json_string_value(json_object_get(b, "current"));
        if (!dead && cur && cur[0]) {
            struct bj_event ev = {.type = BJ_EV_TOKEN, .time_us = bj_event_now()};
            snprintf(ev.brain, sizeof ev.brain, "%s", id);
            ev.thought = (uint32_t)int_of(b, "thought");
            if (push(out, &ev, cur) != 0)
                return -1;
        }
    }
    return 0;
}

static int one(json_t *o, struct bj_evbuf *out, struct bj_wsclient_msg *info)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type)
        return 0; /* not ours: skipped */
    enum bj_event_type t;
    if (strcmp(type, "snapshot") == 0)
        return snapshot(o, out, info);
    if (strcmp(type, "tick") == 0)
        return tick(o, out, info);
    if (strcmp(type, "error") == 0) {
        const char *e = json_string_value(json_object_get(o, "error"));
        /* after a snapshot (--web-auth off answers our empty token so) it refuses nothing */
        info->auth_error |= e && strcmp(e, "Authentication required") == 0 && !info->snapshot;
        return 0;
    }
    if (type_of(type, &t) && t != BJ_EV_STATUS)
        return live_event(o, t, out);
    return 0;
}

int bj_wsclient_decode(const char *text, size_t len, struct bj_evbuf *out, struct bj_wsclient_msg *info,
                       char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (!o || (!json_is_object(o) && !json_is_array(o))) {
        snprintf(err, errlen, "not a JSON object: %s", o ? "another JSON value" : jerr.text);
        json_decref(o);
        return -1;
    }
    int rc = 0;
    if (json_is_array(o)) {
        size_t i;
        json_t *x;
        json_array_foreach(o, i, x) {
            if (rc == 0 && json_is_object(x))
                rc = one(x, out, info);
        }
    } else {
        rc = one(o, out, info);
    }
    json_decref(o);
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}
