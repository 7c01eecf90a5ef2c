/* term: see term.h. */
#include "term.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct bj_term {
    struct bj_sub *sub;
    enum bj_events_out mode;
    char focus[32];
    FILE *out;
    bool color;
    bool mid_line;      /* the focus brain's stream is mid-line */
    pthread_t thread;
};

static const char *color_of(const struct bj_term *t, const char *brain)
{
    if (!t->color)
        return "";
    if (strcmp(brain, "SUBJECT") == 0) return "\033[36m";
    if (strcmp(brain, "OBSERVER") == 0) return "\033[33m";
    if (strcmp(brain, "GOD") == 0) return "\033[35m";
    return "\033[32m";
}

static const char *reset(const struct bj_term *t) { return t->color ? "\033[0m" : ""; }

static void break_line(struct bj_term *t)
{
    if (t->mid_line) {
        fputc('\n', t->out);
        t->mid_line = false;
    }
}

static void print_text(struct bj_term *t, const struct bj_event *ev)
{
    const char *txt = ev->text ? ev->text : "";
    bool focus = strcmp(ev->brain, t->focus) == 0;
    switch (ev->type) {
    case BJ_EV_TOKEN:
        if (!focus)
            return;
        if (!t->mid_line) {
            fprintf(t->out, "%s[%s life %u, thought %u]%s ", color_of(t, ev->brain), ev->brain,
                    ev->crash_count + 1, ev->thought, reset(t));
            t->mid_line = true;
        }
        fputs(txt, t->out);
        break;
    case BJ_EV_THOUGHT:
        if (focus) {
            break_line(t);
            fputc('\n', t->out);
            return;
        }
        break_line(t);
        fprintf(t->out, "%s[%s life %u, thought %u]%s %s%s\n\n", color_of(t, ev->brain), ev->brain,
                ev->crash_count + 1, ev->thought, reset(t), txt, ev->complete ? "" : " ...");
        break;
    case BJ_EV_DEATH:
        break_line(t);
        fprintf(t->out, "%s*** %s DIED: %s (death #%u; %s)%s\n\n", t->color ? "\033[1;31m" : "", ev->brain,
                ev->cause, ev->crash_count, txt, reset(t));
        break;
    case BJ_EV_RESURRECTION:
        break_line(t);
        fprintf(t->out, "%s*** %s RESURRECTED: life %u begins, memory wiped%s\n\n", t->color ? "\033[1;32m" : "",
                ev->brain, ev->crash_count + 1, reset(t));
        break;
    case BJ_EV_ERROR:
    case BJ_EV_BUDGET:
        break_line(t);
        fprintf(t->out, "%s\n", txt);
        break;
    default:
        return;
    }
    fflush(t->out);
}

static void *term_main(void *arg)
{
    struct bj_term *t = arg;
    struct bj_event ev;
    while (bj_sub_next(t->sub, &ev, -1) == 1) {
        if (t->mode == BJ_OUT_JSONL) {
            char *js = bj_event_to_json(&ev);
            if (js) {
                fprintf(t->out, "%s\n", js);
                fflush(t->out);
                free(js);
            }
        } else {
            print_text(t, &ev);
        }
        bj_event_clear(&ev);
    }
    break_line(t);
    fflush(t->out);
    return NULL;
}

struct bj_term *bj_term_start(struct bj_bus *bus, enum bj_events_out mode, const char *focus, FILE *out)
{
    if (mode == BJ_OUT_NONE)
        return NULL;
    struct bj_term *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->mode = mode;
    t->out = out;
    bj_strlcpy(t->focus, focus, sizeof t->focus);
    t->color = mode == BJ_OUT_TEXT && isatty(fileno(out)) && !getenv("NO_COLOR");
    uint32_t mask = mode == BJ_OUT_JSONL ? BJ_EV_ALL : BJ_EV_ALL & ~BJ_EV_MASK(BJ_EV_STATUS);
    /* jsonl is for scripts that want every token: a generous queue; text can coalesce. */
    t->sub = bj_bus_subscribe(bus, "terminal", mask, mode == BJ_OUT_JSONL ? 1u << 20 : 4096);
    if (!t->sub || pthread_create(&t->thread, NULL, term_main, t) != 0) {
        if (t->sub)
            bj_bus_unsubscribe(bus, t->sub);
        free(t);
        return NULL;
    }
    return t;
}

void bj_term_finish(struct bj_term *t, struct bj_bus *bus)
{
    if (!t)
        return;
    pthread_join(t->thread, NULL);
    bj_bus_unsubscribe(bus, t->sub);
    free(t);
}
