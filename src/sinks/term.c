/* term: see term.h.
 *
 * Two threads, so that a terminal or pipe that stops reading never holds the hive:
 * - the consumer takes events from the bus as fast as they come, formats them and appends them
 *   to a bounded ring of bytes; when the ring is full the event is dropped and counted (never an
 *   unbounded queue: the bus queue stays short because the consumer never waits on the output);
 * - the writer writes the ring to the output with plain blocking writes. If a write blocks for
 *   ever (a paused terminal, a reader that stopped), only the writer waits; bj_term_stop()
 *   gives it a deadline and then interrupts the write with a signal (a no-op handler installed
 *   without SA_RESTART, so write() returns EINTR).
 * A closed output (EPIPE) ends this sink only, with one message on stderr; SIGPIPE is blocked in
 * the writer so that it cannot kill the process even where the process does not ignore it. */
#include "term.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define TERM_RING_BYTES (1u << 20) /* what may wait for a slow reader; the rest is dropped */
#define TERM_FLUSH_MS 2000         /* bj_term_stop: time the writer gets to drain the ring */
#define TERM_ABORT_MS 1000         /* then: time to interrupt a blocked write */
#define TERM_WRITE_MAX (64u << 10) /* bytes per write() */

struct bj_term {
    struct bj_bus *bus;
    struct bj_sub *sub;
    enum bj_events_out mode;
    char focus[32];
    FILE *out;
    int fd;             /* fileno(out), or -1 (a memory stream: written with fwrite) */
    bool color;
    bool mid_line;      /* the focus brain's stream is mid-line (consumer only) */
    pthread_t consumer, writer;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* data queued, closing, aborted, writer done */
    char *ring;
    size_t head, len;   /* queued bytes: ring[head .. head+len) modulo TERM_RING_BYTES */
    uint64_t dropped;   /* events not printed since the last notice */
    uint64_t dropped_total;
    bool closing;       /* the consumer is done: the writer drains and ends */
    bool abort;         /* finish gave up waiting: the writer ends now */
    bool dead;          /* the output failed (EPIPE, ...): everything is dropped */
    bool writer_done;
    bool writer_started, consumer_started, stopped; /* owner's thread only */
    bool writer_stuck;  /* stop left a write that could not be interrupted: t is never freed */
};

/* ---- formatting (consumer thread) --------------------------------------------------------- */

struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
};

static void sb_putn(struct strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_putn(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)n);
    free(big);
}

/* Model text as the terminal may show it: control characters made visible (a model's carriage
 * return, ESC or C1 control could otherwise rewrite the screen). */
static void sb_put_text(struct strbuf *b, const char *txt)
{
    size_t n = strlen(txt);
    char small[1024];
    char *tmp = 4 * n + 1 <= sizeof small ? small : malloc(4 * n + 1);
    if (!tmp) {
        b->oom = true;
        return;
    }
    size_t m = bj_escape_controls(txt, n, tmp);
    sb_putn(b, tmp, m);
    if (tmp != small)
        free(tmp);
}

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

static void break_line(struct bj_term *t, struct strbuf *b)
{
    if (t->mid_line) {
        sb_putn(b, "\n", 1);
        t->mid_line = false;
    }
}

static void format_text(struct bj_term *t, const struct bj_event *ev, struct strbuf *b)
{
    const char *txt = ev->text ? ev->text : "";
    bool focus = !ev->node[0] && strcmp(ev->brain, t->focus) == 0;
    char who[96]; /* a remote brain is shown as BRAIN@NODE */
    snprintf(who, sizeof who, "%s%s%s", ev->brain, ev->node[0] ? "@" : "", ev->node);
    switch (ev->type) {
    case BJ_EV_TOKEN:
        if (!focus)
            return;
        if (!t->mid_line) {
            sb_printf(b, "%s[%s life %u, thought %u]%s ", color_of(t, ev->brain), ev->brain, ev->crash_count + 1,
                      ev->thought, reset(t));
            t->mid_line = true;
        }
        sb_put_text(b, txt);
        break;
    case BJ_EV_THOUGHT:
        if (focus) {
            break_line(t, b);
            sb_putn(b, "\n", 1);
            return;
        }
        break_line(t, b);
        sb_printf(b, "%s[%s life %u, thought %u]%s ", color_of(t, ev->brain), who, ev->crash_count + 1,
                  ev->thought, reset(t));
        sb_put_text(b, txt);
        sb_printf(b, "%s\n\n", ev->complete ? "" : " ...");
        break;
    case BJ_EV_DEATH:
        break_line(t, b);
        sb_printf(b, "%s*** %s DIED: %s (death #%u; ", t->color ? "\033[1;31m" : "", who, ev->cause,
                  ev->crash_count);
        sb_put_text(b, txt);
        sb_printf(b, ")%s\n\n", reset(t));
        break;
    case BJ_EV_RESURRECTION:
        break_line(t, b);
        sb_printf(b, "%s*** %s RESURRECTED: life %u begins, memory wiped%s\n\n", t->color ? "\033[1;32m" : "",
                  who, ev->crash_count + 1, reset(t));
        break;
    case BJ_EV_ERROR:
    case BJ_EV_BUDGET:
    case BJ_EV_OPERATOR:
    case BJ_EV_WATCHDOG:
        break_line(t, b);
        sb_put_text(b, txt);
        sb_putn(b, "\n", 1);
        break;
    default:
        return;
    }
}

static void format_event(struct bj_term *t, const struct bj_event *ev, struct strbuf *b)
{
    if (t->mode == BJ_OUT_JSONL) {
        char *js = bj_event_to_json(ev);
        if (!js) {
            b->oom = true;
            return;
        }
        sb_putn(b, js, strlen(js));
        sb_putn(b, "\n", 1);
        free(js);
    } else {
        format_text(t, ev, b);
    }
}

/* What is said in the stream itself once output flows again after drops: a JSON error event
 * for scripts, a bracketed line for people. */
static void format_drop_notice(struct bj_term *t, uint64_t n, struct strbuf *b)
{
    char msg[160];
    snprintf(msg, sizeof msg, "brainjar: %llu event%s not shown: the output was not being read fast enough",
             (unsigned long long)n, n == 1 ? "" : "s");
    if (t->mode == BJ_OUT_JSONL) {
        struct bj_event ev = {.type = BJ_EV_ERROR, .time_us = bj_event_now(), .text = msg};
        format_event(t, &ev, b);
    } else {
        if (t->mid_line) {
            sb_putn(b, "\n", 1);
            t->mid_line = false;
        }
        sb_printf(b, "[%s]\n", msg);
    }
}

/* ---- the ring ----------------------------------------------------------------------------- */

/* Copies n bytes in after what is queued; the caller checked the room (mu held). */
static void ring_put(struct bj_term *t, const char *s, size_t n)
{
    size_t tail = (t->head + t->len) % TERM_RING_BYTES;
    size_t first = TERM_RING_BYTES - tail < n ? TERM_RING_BYTES - tail : n;
    memcpy(t->ring + tail, s, first);
    memcpy(t->ring, s + first, n - first);
    t->len += n;
}

/* Queues one formatted event whole, or drops it (counted). */
static void emit(struct bj_term *t, const struct strbuf *b)
{
    if (b->n == 0 && !b->oom)
        return;
    pthread_mutex_lock(&t->mu);
    if (t->dead) {
        /* the output is gone (said once by the writer): nothing to count */
    } else if (b->oom || TERM_RING_BYTES - t->len < b->n) {
        t->dropped++;
        t->dropped_total++;
    } else {
        ring_put(t, b->s, b->n);
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

static void *consumer_main(void *arg)
{
    struct bj_term *t = arg;
    struct bj_event ev;
    struct strbuf b = {0};
    while (bj_sub_next(t->sub, &ev, -1) == 1) {
        b.n = 0;
        b.oom = false;
        /* After drops, say so first, once the ring has room again (half empty). */
        pthread_mutex_lock(&t->mu);
        uint64_t dropped = !t->dead && t->dropped && t->len < TERM_RING_BYTES / 2 ? t->dropped : 0;
        t->dropped -= dropped;
        pthread_mutex_unlock(&t->mu);
        if (dropped)
            format_drop_notice(t, dropped, &b);
        format_event(t, &ev, &b);
        emit(t, &b);
        bj_event_clear(&ev);
    }
    b.n = 0;
    b.oom = false;
    break_line(t, &b);
    emit(t, &b);
    free(b.s);
    pthread_mutex_lock(&t->mu);
    t->closing = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- the writer --------------------------------------------------------------------------- */

static int wake_signal(void) { return SIGRTMIN + 3; }

static void on_wake(int sig) { (void)sig; }

static void install_wake_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked write returns EINTR */
    sigaction(wake_signal(), &sa, NULL);
}

static void *writer_main(void *arg)
{
    struct bj_term *t = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* EPIPE instead of death, whatever the process does */
    sigemptyset(&set);
    sigaddset(&set, wake_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->len == 0 && !t->closing && !t->abort)
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->abort || (t->len == 0 && t->closing))
            break;
        size_t n = TERM_RING_BYTES - t->head < t->len ? TERM_RING_BYTES - t->head : t->len;
        if (n > TERM_WRITE_MAX)
            n = TERM_WRITE_MAX;
        const char *p = t->ring + t->head; /* the consumer only writes outside [head, head+len) */
        pthread_mutex_unlock(&t->mu);
        ssize_t w;
        int e = 0;
        if (t->fd >= 0) {
            w = write(t->fd, p, n);
            e = errno;
        } else {
            w = (ssize_t)fwrite(p, 1, n, t->out);
            e = ferror(t->out) ? EIO : 0;
            fflush(t->out);
        }
        pthread_mutex_lock(&t->mu);
        if (w > 0) {
            t->head = (t->head + (size_t)w) % TERM_RING_BYTES;
            t->len -= (size_t)w;
            continue;
        }
        if (w < 0 && (e == EINTR || e == EAGAIN))
            continue; /* EINTR: finish's nudge, abort is checked above; EAGAIN: a non-blocking fd */
        t->dead = true;
        t->len = 0;
        pthread_mutex_unlock(&t->mu);
        if (e == EPIPE)
            bj_warn("terminal: the output was closed (broken pipe); events are no longer printed, the hive goes on");
        else
            bj_warn("terminal: writing the output failed (%s); events are no longer printed, the hive goes on",
                    strerror(e ? e : EIO));
        pthread_mutex_lock(&t->mu);
        break;
    }
    t->writer_done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct bj_term_params bj_term_params_default(void)
{
    return (struct bj_term_params){.mode = BJ_OUT_TEXT, .focus = "", .out = stdout};
}

struct bj_term *bj_term_new(const struct bj_term_params *p, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    if (p->mode == BJ_OUT_NONE)
        return NULL;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_wake_handler);
    struct bj_term *t = calloc(1, sizeof *t);
    if (!t || !(t->ring = malloc(TERM_RING_BYTES))) {
        free(t);
        snprintf(err, errlen, "terminal: out of memory");
        return NULL;
    }
    t->bus = p->bus;
    t->mode = p->mode;
    t->out = p->out;
    fflush(t->out);
    t->fd = fileno(t->out);
    bj_strlcpy(t->focus, p->focus ? p->focus : "", sizeof t->focus);
    t->color = t->mode == BJ_OUT_TEXT && t->fd >= 0 && isatty(t->fd) && !getenv("NO_COLOR");
    pthread_mutex_init(&t->mu, NULL);
    bj_cond_init_monotonic(&t->cv);
    uint32_t mask = t->mode == BJ_OUT_JSONL ? BJ_EV_ALL : BJ_EV_ALL & ~BJ_EV_MASK(BJ_EV_STATUS);
    /* jsonl is for scripts that want every token: a generous queue; text can coalesce. The
     * consumer never waits on the output, so this queue stays short either way. */
    t->sub = bj_bus_subscribe(t->bus, "terminal", mask, t->mode == BJ_OUT_JSONL ? 1u << 20 : 4096);
    if (!t->sub) {
        snprintf(err, errlen, "terminal: cannot subscribe to the bus");
        bj_term_free(t);
        return NULL;
    }
    return t;
}

int bj_term_start(struct bj_term *t, char *err, size_t errlen)
{
    if (pthread_create(&t->writer, NULL, writer_main, t) != 0) {
        snprintf(err, errlen, "terminal: cannot start the writer thread");
        return -1;
    }
    t->writer_started = true;
    if (pthread_create(&t->consumer, NULL, consumer_main, t) != 0) {
        snprintf(err, errlen, "terminal: cannot start the consumer thread");
        pthread_mutex_lock(&t->mu);
        t->abort = true;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        return -1;
    }
    t->consumer_started = true;
    return 0;
}

/* Waits until the writer is done or the monotonic deadline passes (mu held). */
static bool wait_writer(struct bj_term *t, int64_t ms)
{
    struct timespec dl = bj_deadline_after(ms * 1000);
    while (!t->writer_done)
        if (pthread_cond_timedwait(&t->cv, &t->mu, &dl) == ETIMEDOUT)
            break;
    return t->writer_done;
}

/* Gives the writer TERM_FLUSH_MS to drain the ring, then interrupts a blocked write. Returns
 * whether the writer ended. */
static bool drain_writer(struct bj_term *t)
{
    pthread_mutex_lock(&t->mu);
    t->closing = true; /* a writer whose consumer never ran must end too */
    pthread_cond_broadcast(&t->cv);
    bool done = wait_writer(t, TERM_FLUSH_MS);
    size_t unwritten = 0;
    if (!done) {
        /* The output is not being read: stop trying, interrupting a blocked write. */
        unwritten = t->len;
        t->abort = true;
        pthread_cond_broadcast(&t->cv);
        for (int i = 0; i < TERM_ABORT_MS / 50 && !t->writer_done; i++) {
            pthread_kill(t->writer, wake_signal());
            wait_writer(t, 50);
        }
        done = t->writer_done;
    }
    uint64_t dropped = t->dropped_total;
    pthread_mutex_unlock(&t->mu);
    if (dropped || unwritten)
        bj_warn("terminal: %llu event%s dropped and %zu bytes left unwritten: the output was not being read",
                (unsigned long long)dropped, dropped == 1 ? "" : "s", unwritten);
    return done;
}

void bj_term_stop(struct bj_term *t)
{
    if (!t || t->stopped)
        return;
    t->stopped = true;
    /* The bus is closed: the consumer drains its queue into the ring (dropping what does not
     * fit) and ends; it never waits on the output. */
    if (t->consumer_started)
        pthread_join(t->consumer, NULL);
    if (!t->writer_started)
        return;
    if (drain_writer(t)) {
        pthread_join(t->writer, NULL);
        return;
    }
    /* A write that even a signal cannot end: leave the writer (and what it reads) behind. */
    pthread_detach(t->writer);
    t->writer_stuck = true;
}

void bj_term_free(struct bj_term *t)
{
    if (!t)
        return;
    bj_term_stop(t);
    if (t->sub)
        bj_bus_unsubscribe(t->bus, t->sub);
    if (t->writer_stuck)
        return; /* the detached writer still reads t */
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t->ring);
    free(t);
}
