/* tui: see tui.h. */
#define NCURSES_WIDECHAR 1
#include "tui.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ncursesw/term.h> /* terminfo (not sinks/term.h) */
#include <unistd.h>

#include "event.h"
#include "hive.h"
#include "log.h"
#include "sysmem.h"
#include "watchdog.h"

#define TUI_DRAIN_MAX 4096    /* events folded per turn of the loop, so that drawing still happens */
#define TUI_STOP_MS 2000      /* stop: time the thread gets to finish */
#define TUI_LOG_KEEP 64       /* log lines kept to write to stderr again when the screen closes */
#define TUI_NOTICE_US 5000000 /* a log line stays at the foot this long */
#define TUI_SENSE_US 1000000  /* memory and temperature are read this often */

struct bj_tui {
    struct bj_tui_params p;
    struct bj_sub *sub;
    struct bj_hiveview *view;
    struct bj_hive *hive;     /* operator keys act on it; NULL: read-only */
    pthread_t thread;
    bool started;

    pthread_mutex_t mu;       /* guards done */
    pthread_cond_t cv;
    bool done;                /* the thread ended (the screen is closed) */

    int saved_stderr;         /* the real stderr while the screen is up, else -1 */
    int log_pipe;             /* read end of what is logged meanwhile, else -1 */
    char log_part[1024];      /* a line not yet ended */
    size_t log_part_len;
    char *log_lines[TUI_LOG_KEEP]; /* a ring of the last lines, oldest first from log_head */
    size_t log_head, log_n;
    char notice[512];
    int64_t notice_until;
    bool remote_operator;     /* remote: the daemon said our token is an operator's */
    char refocus[32];         /* remote: the brain focused before a fresh snapshot, focused again */
};

struct bj_tui_params bj_tui_params_default(void)
{
    return (struct bj_tui_params){.max_fps = 10};
}

bool bj_tui_usable(void)
{
    if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))
        return false;
    const char *term = getenv("TERM");
    if (!term || !term[0] || strcmp(term, "dumb") == 0)
        return false;
    int err = 0;
    if (setupterm(term, STDOUT_FILENO, &err) != OK)
        return false;
    bool ok = cursor_address != NULL;
    del_curterm(cur_term);
    return ok;
}

/* ---- the screen and keys ------------------------------------------------------------------ */

int bj_tui_screen_open(char *err, size_t errlen)
{
    /* only the character type: numbers elsewhere (JSON) keep the C locale's decimal point */
    setlocale(LC_CTYPE, "");
    if (!initscr()) {
        snprintf(err, errlen, "the terminal cannot be used (TERM=%s)", getenv("TERM") ? getenv("TERM") : "");
        return -1;
    }
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    bj_tui_draw_colors();
    return 0;
}

void bj_tui_screen_close(void)
{
    curs_set(1);
    endwin();
}

/* A key while a line is typed for "say": Enter says it, Escape drops it. */
static enum bj_tui_action type_key(struct bj_tui_keys *k, wint_t ch, int kind)
{
    if (kind == KEY_CODE_YES) {
        if (ch == KEY_BACKSPACE && k->line_len > 0) {
            while (k->line_len > 0 && ((unsigned char)k->line[--k->line_len] & 0xC0) == 0x80)
                ;
            k->line[k->line_len] = '\0';
        } else if (ch == KEY_ENTER) {
            k->typing = false;
            return k->line_len ? BJ_TUI_SAY : BJ_TUI_NONE;
        }
        return BJ_TUI_NONE;
    }
    if (ch == L'\r' || ch == L'\n') {
        k->typing = false;
        return k->line_len ? BJ_TUI_SAY : BJ_TUI_NONE;
    }
    if (ch == 27) {
        k->typing = false;
        return BJ_TUI_NONE;
    }
    if (ch == 127 || ch == 8) {
        while (k->line_len > 0 && ((unsigned char)k->line[--k->line_len] & 0xC0) == 0x80)
            ;
        k->line[k->line_len] = '\0';
        return BJ_TUI_NONE;
    }
    if (ch < 0x20)
        return BJ_TUI_NONE;
    char mb[MB_LEN_MAX];
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = wcrtomb(mb, (wchar_t)ch, &st);
    if (n != (size_t)-1 && k->line_len + n < sizeof k->line) {
        memcpy(k->line + k->line_len, mb, n);
        k->line_len += n;
        k->line[k->line_len] = '\0';
    }
    return BJ_TUI_NONE;
}

enum bj_tui_action bj_tui_keys_read(struct bj_tui_keys *k, struct bj_hiveview *v, bool operator, bool *dirty)
{
    wint_t ch;
    int kind;
    while ((kind = get_wch(&ch)) != ERR) {
        *dirty = true;
        if (kind == KEY_CODE_YES && ch == KEY_RESIZE) {
            clearok(curscr, TRUE); /* the next frame is drawn whole: nothing of the old size is left */
            continue;
        }
        if (k->typing) {
            enum bj_tui_action a = type_key(k, ch, kind);
            if (a != BJ_TUI_NONE)
                return a;
            continue;
        }
        if (k->help) { /* any key closes the help */
            k->help = false;
            continue;
        }
        if (kind == KEY_CODE_YES) {
            if (ch == KEY_RIGHT || ch == KEY_DOWN)
                bj_hiveview_focus_move(v, 1);
            else if (ch == KEY_LEFT || ch == KEY_UP || ch == KEY_BTAB)
                bj_hiveview_focus_move(v, -1);
            else if (ch == KEY_ENTER)
                k->zoom = !k->zoom;
            continue;
        }
        switch (ch) {
        case L'\t': bj_hiveview_focus_move(v, 1); break;
        case L'\r': case L'\n': k->zoom = !k->zoom; break;
        case L'?': k->help = true; break;
        case L'q': case L'Q': return BJ_TUI_QUIT;
        case L'k': if (operator) return BJ_TUI_KILL; break;
        case L'r': if (operator) return BJ_TUI_RESURRECT; break;
        case L'p': if (operator) return BJ_TUI_PAUSE; break;
        case L'u': if (operator) return BJ_TUI_RESUME; break;
        case L's':
            if (operator) {
                k->typing = true;
                k->line_len = 0;
                k->line[0] = '\0';
            }
            break;
        default: break;
        }
    }
    return BJ_TUI_NONE;
}

/* ---- log lines: stderr into a pipe while the screen is up --------------------------------- */

/* stderr goes into a pipe whose write end never blocks: a log line written while this thread is
 * slow is dropped, and no logging thread (an engine's) ever waits for the terminal. */
static void log_capture(struct bj_tui *t)
{
    t->saved_stderr = t->log_pipe = -1;
    if (!isatty(STDERR_FILENO))
        return; /* stderr is a file or the journal: it does not draw on the screen */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return;
    t->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (t->saved_stderr < 0 || dup2(fds[1], STDERR_FILENO) < 0) {
        close(fds[0]);
        close(fds[1]);
        if (t->saved_stderr >= 0)
            close(t->saved_stderr);
        t->saved_stderr = -1;
        return;
    }
    close(fds[1]);
    t->log_pipe = fds[0];
}

static void log_keep(struct bj_tui *t, const char *line, size_t len)
{
    char *copy = strndup(line, len);
    if (!copy)
        return;
    size_t slot = (t->log_head + t->log_n) % TUI_LOG_KEEP;
    if (t->log_n == TUI_LOG_KEEP) {
        free(t->log_lines[t->log_head]);
        t->log_head = (t->log_head + 1) % TUI_LOG_KEEP;
        t->log_n--;
    }
    t->log_lines[slot] = copy;
    t->log_n++;
    snprintf(t->notice, sizeof t->notice, "%s", copy);
    t->notice_until = bj_event_now() + TUI_NOTICE_US;
}

/* Reads what was logged; each whole line is kept and shown. Returns true when one came. */
static bool log_read(struct bj_tui *t)
{
    bool any = false;
    char buf[4096];
    ssize_t n;
    while (t->log_pipe >= 0 && (n = read(t->log_pipe, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                log_keep(t, t->log_part, t->log_part_len);
                t->log_part_len = 0;
                any = true;
            } else if (t->log_part_len + 1 < sizeof t->log_part) {
                t->log_part[t->log_part_len++] = buf[i];
            }
        }
    }
    return any;
}

/* stderr back; the lines logged while the screen was up are written to it again. */
static void log_release(struct bj_tui *t)
{
    if (t->saved_stderr < 0)
        return;
    log_read(t);
    dup2(t->saved_stderr, STDERR_FILENO);
    close(t->saved_stderr);
    close(t->log_pipe);
    t->saved_stderr = t->log_pipe = -1;
    for (size_t i = 0; i < t->log_n; i++) {
        char *line = t->log_lines[(t->log_head + i) % TUI_LOG_KEEP];
        dprintf(STDERR_FILENO, "%s\n", line);
        free(line);
    }
    t->log_n = 0;
}

/* ---- the thread --------------------------------------------------------------------------- */

static void sense(struct bj_tui_frame *f, struct bj_watchdog_params *wp)
{
    struct bj_wd_sample s;
    bj_watchdog_sample(wp, &s);
    struct bj_sysmem m;
    char err[256];
    if (bj_sysmem_read(&wp->paths, &m, err, sizeof err) == 0) {
        f->mem_total = (double)m.total;
        f->mem_used = (double)(m.total - (m.available < m.total ? m.available : m.total));
    }
    f->temp_ok = s.temp_ok;
    f->temp_c = s.temp_c;
}

static void notice(struct bj_tui *t, const char *text, int64_t until)
{
    snprintf(t->notice, sizeof t->notice, "%s", text ? text : "");
    t->notice_until = until;
}

static const char *action_name(enum bj_tui_action a)
{
    switch (a) {
    case BJ_TUI_KILL: return "kill";
    case BJ_TUI_RESURRECT: return "resurrect";
    case BJ_TUI_PAUSE: return "pause";
    case BJ_TUI_RESUME: return "resume";
    case BJ_TUI_SAY: return "say";
    default: return NULL;
    }
}

/* An operator key with a remote daemon: sent when our token is an operator's, else refused here. */
static void act_remote(struct bj_tui *t, enum bj_tui_action a, const struct bj_tui_keys *k, const char *brain)
{
    const char *what = action_name(a);
    char text[300];
    if (!what)
        return;
    if (!t->remote_operator)
        snprintf(text, sizeof text, "%s %s: viewer token: read-only", what, brain);
    else if (t->p.remote_act(t->p.remote_ud, what, brain, a == BJ_TUI_SAY ? k->line : NULL) != 0)
        snprintf(text, sizeof text, "%s %s: too many actions waiting", what, brain);
    else
        snprintf(text, sizeof text, "%s %s: sent", what, brain);
    notice(t, text, bj_event_now() + TUI_NOTICE_US);
}

static void act(struct bj_tui *t, enum bj_tui_action a, const struct bj_tui_keys *k)
{
    const struct bj_hiveview_brain *b = bj_hiveview_brain_at(t->view, bj_hiveview_focus(t->view));
    if (b && t->p.remote_act) {
        act_remote(t, a, k, b->name);
        return;
    }
    const char *what = action_name(a);
    if (!b || !t->hive || !what)
        return;
    int rc;
    switch (a) {
    case BJ_TUI_KILL: rc = bj_hive_kill(t->hive, b->name, NULL, "tui"); break;
    case BJ_TUI_RESURRECT: rc = bj_hive_resurrect(t->hive, b->name, "tui"); break;
    case BJ_TUI_PAUSE: rc = bj_hive_pause(t->hive, b->name, "tui"); break;
    case BJ_TUI_RESUME: rc = bj_hive_resume(t->hive, b->name, "tui"); break;
    default: rc = bj_hive_say(t->hive, b->name, "OPERATOR", k->line, "tui"); break;
    }
    char text[400], why[160];
    if (rc == -EBUSY && bj_hive_refuses(t->hive, b->name, what, why, sizeof why))
        snprintf(text, sizeof text, "%s %s: refused: %s", what, b->name, why);
    else
        snprintf(text, sizeof text, "%s %s: %s", what, b->name, rc == 0 ? "done" : strerror(-rc));
    notice(t, text, bj_event_now() + TUI_NOTICE_US);
}

/* A remote daemon's link (see tui.h). Returns 1: the event was the link's. */
static int remote_link(struct bj_tui *t, const struct bj_event *ev)
{
    if (ev->type != BJ_EV_LINK)
        return 0;
    if (ev->brain[0]) {
        if (strcmp(ev->state, "watches") == 0) {
            bj_hiveview_set_role(t->view, ev->brain, ev->text ? ev->text : "");
            if (t->refocus[0] && strcmp(t->refocus, ev->brain) == 0) { /* the snapshot's order */
                bj_hiveview_focus_move(t->view, (int)bj_hiveview_count(t->view) - 1 - (int)bj_hiveview_focus(t->view));
                t->refocus[0] = '\0';
            }
        }
        return 1;
    }
    if (strcmp(ev->state, "up") == 0) { /* a snapshot follows: the view starts afresh */
        struct bj_hiveview *fresh = bj_hiveview_new(ev->time_us); /* "alive for": the daemon's hive */
        if (fresh) {
            const struct bj_hiveview_brain *f = bj_hiveview_brain_at(t->view, bj_hiveview_focus(t->view));
            snprintf(t->refocus, sizeof t->refocus, "%s", f ? f->name : "");
            bj_hiveview_free(t->view);
            t->view = fresh;
        }
        t->remote_operator = strcmp(ev->cause, "operator") == 0;
        char text[600];
        snprintf(text, sizeof text, "connected to %s as %s", ev->text ? ev->text : "", ev->cause[0] ? ev->cause : "?");
        notice(t, text, bj_event_now() + TUI_NOTICE_US);
    } else if (strcmp(ev->state, "down") == 0) {
        notice(t, ev->text, INT64_MAX); /* until the link is up again */
    } else {
        notice(t, ev->text, bj_event_now() + TUI_NOTICE_US);
    }
    return 1;
}

/* Folds what the bus has (at most TUI_DRAIN_MAX events). Returns -1 once the bus is closed and
 * drained, else whether anything visible changed. */
static int drain(struct bj_tui *t)
{
    int changed = 0;
    for (int i = 0; i < TUI_DRAIN_MAX; i++) {
        struct bj_event ev;
        int rc = bj_sub_next(t->sub, &ev, 0);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (t->p.remote_act && remote_link(t, &ev))
            changed = 1;
        else
            changed |= bj_hiveview_apply(t->view, &ev);
        bj_event_clear(&ev);
    }
    return changed;
}

static void draw(struct bj_tui *t, struct bj_tui_frame *f, const struct bj_tui_keys *k, int64_t now)
{
    char typing[300];
    f->now_us = now;
    f->zoom = k->zoom;
    f->help = k->help;
    f->notice = NULL;
    if (k->typing) {
        snprintf(typing, sizeof typing, "say: %s_   (Enter says it, Esc drops it)", k->line);
        f->notice = typing;
    } else if (now < t->notice_until) {
        f->notice = t->notice;
    }
    bj_tui_draw(t->view, f);
    refresh();
}

static void *tui_main(void *arg)
{
    struct bj_tui *t = arg;
    struct bj_tui_keys keys = {0};
    struct bj_tui_frame f = {.source = t->p.source ? t->p.source : "local", .operator_keys = t->hive != NULL};
    struct bj_watchdog_params wp;
    bj_watchdog_params_default(&wp);
    int64_t frame_us = 1000000 / (t->p.max_fps > 0 ? t->p.max_fps : 10), last_draw = 0, last_sense = 0;
    bool dirty = true;
    for (;;) {
        int64_t now = bj_event_now();
        int wait_ms = dirty ? (int)((last_draw + frame_us - now) / 1000) : 1000;
        wait_ms = wait_ms < 0 ? 0 : wait_ms > 1000 ? 1000 : wait_ms;
        struct pollfd p[3] = {{.fd = bj_sub_fd(t->sub), .events = POLLIN},
                              {.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = t->log_pipe, .events = POLLIN}};
        poll(p, 3, wait_ms);
        int changed = drain(t);
        if (changed < 0)
            break;
        dirty |= changed > 0;
        dirty |= log_read(t);
        enum bj_tui_action a;
        /* remote: every operator key is answered (sent, or "read-only" for a viewer's token) */
        bool keys_on = t->hive != NULL || t->p.remote_act != NULL;
        if (t->p.remote_act)
            f.operator_keys = t->remote_operator;
        while ((a = bj_tui_keys_read(&keys, t->view, keys_on, &dirty)) != BJ_TUI_NONE) {
            if (a == BJ_TUI_QUIT)
                kill(getpid(), SIGINT); /* as Ctrl-C: the process loop stops the run */
            else
                act(t, a, &keys);
        }
        now = bj_event_now();
        if (now - last_sense >= TUI_SENSE_US) {
            if (t->p.remote_sense)
                t->p.remote_sense(t->p.remote_ud, &f.mem_used, &f.mem_total, &f.temp_ok, &f.temp_c);
            else
                sense(&f, &wp);
            last_sense = now;
            dirty = true; /* "alive for" moves */
        }
        if (dirty && now - last_draw >= frame_us) {
            draw(t, &f, &keys, now);
            last_draw = now;
            dirty = false;
        }
    }
    draw(t, &f, &keys, bj_event_now()); /* the last state, left on the screen's scrollback */
    bj_tui_screen_close();
    log_release(t);
    pthread_mutex_lock(&t->mu);
    t->done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct bj_tui *bj_tui_new(const struct bj_tui_params *p, char *err, size_t errlen)
{
    struct bj_tui *t = calloc(1, sizeof *t);
    if (!t || !p->bus) {
        snprintf(err, errlen, "tui: %s", t ? "no bus" : "out of memory");
        free(t);
        return NULL;
    }
    t->p = *p;
    t->saved_stderr = t->log_pipe = -1;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->view = bj_hiveview_new(bj_event_now());
    /* tokens beyond 4096 queued merge into each other: a slow screen costs its own detail only */
    t->sub = bj_bus_subscribe(p->bus, "tui", BJ_EV_ALL, 4096);
    if (!t->view || !t->sub) {
        snprintf(err, errlen, "tui: out of memory");
        bj_tui_free(t, p->bus);
        return NULL;
    }
    for (int i = 0; p->spec && i < p->spec->n_brains; i++) {
        const struct bj_brain_cfg *b = &p->spec->brains[i];
        char role[64] = "";
        for (int w = 0; w < b->n_watches; w++)
            snprintf(role + strlen(role), sizeof role - strlen(role), "%s%s", w ? "," : "", b->watches[w]);
        bj_hiveview_set_role(t->view, b->id, b->watches_all ? "*" : role);
        if (p->focus && strcmp(p->focus, b->id) == 0)
            bj_hiveview_focus_move(t->view, i);
    }
    return t;
}

int bj_tui_start(struct bj_tui *t, struct bj_hive *hive, char *err, size_t errlen)
{
    t->hive = hive;
    log_capture(t);
    if (bj_tui_screen_open(err, errlen) != 0) {
        log_release(t);
        return -1;
    }
    if (pthread_create(&t->thread, NULL, tui_main, t) != 0) {
        bj_tui_screen_close();
        log_release(t);
        snprintf(err, errlen, "tui: cannot start a thread");
        return -1;
    }
    t->started = true;
    return 0;
}

static void on_wake(int sig) { (void)sig; }

void bj_tui_stop(struct bj_tui *t)
{
    if (!t || !t->started)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += TUI_STOP_MS / 1000;
    pthread_mutex_lock(&t->mu);
    while (!t->done && pthread_cond_timedwait(&t->cv, &t->mu, &until) == 0)
        ;
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    if (!done) {
        /* a terminal that does not read (output suspended): interrupt the blocked write */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_wake;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGRTMIN + 4, &sa, NULL);
        pthread_kill(t->thread, SIGRTMIN + 4);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&t->mu);
        while (!t->done && pthread_cond_timedwait(&t->cv, &t->mu, &until) == 0)
            ;
        done = t->done;
        pthread_mutex_unlock(&t->mu);
    }
    if (done)
        pthread_join(t->thread, NULL);
    else
        pthread_detach(t->thread); /* still stuck: left to the process's exit, with its memory */
    t->started = !done;
}

void bj_tui_free(struct bj_tui *t, struct bj_bus *bus)
{
    if (!t || t->started) /* a thread that never ended still uses it */
        return;
    if (t->sub)
        bj_bus_unsubscribe(bus, t->sub);
    bj_hiveview_free(t->view);
    for (size_t i = 0; i < t->log_n; i++)
        free(t->log_lines[(t->log_head + i) % TUI_LOG_KEEP]);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}
