/* tui: the full-screen terminal view of a running hive (ncurses), a bus subscriber on a thread of
 * its own, and the screen and keys it shares with `brainjar top`.
 *
 * The thread takes events from its bus subscription as fast as they come and folds them into a
 * hiveview (sinks/hiveview); it draws at most max_fps frames a second, and only when something
 * changed. A terminal that cannot keep up blocks only this thread's drawing: the bus coalesces
 * this subscriber's tokens and the store, the web and the others get everything (frames are
 * dropped, never another sink's events). While the screen is up, the process's log lines (stderr)
 * are taken into a pipe and shown at the foot one at a time; they are written to stderr again
 * when the screen closes, so nothing logged is lost from the terminal's scrollback.
 *
 * Keys: arrows/Tab focus, Enter zoom, ? help, q quits as Ctrl-C does (SIGINT to this process);
 * with a hive, k/r/p/u/s kill, resurrect, pause, resume and say to the focused brain.
 *
 * Threads: params/new/start/stop/free on one thread (main); the view's own thread does the rest. */
#ifndef BJ_TUI_H
#define BJ_TUI_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "hiveview.h"
#include "spec.h"
#include "tui_draw.h"

struct bj_hive;
struct bj_tui;

struct bj_tui_params {
    struct bj_bus *bus;                 /* required */
    const struct bj_hive_spec *spec;    /* the brains in order, and whom each watches; NULL: as they come */
    const char *focus;                  /* the brain focused first; NULL: the first */
    int max_fps;                        /* redraws a second at most (10) */
    /* A remote daemon's view (`brainjar top`, sinks/wsclient): the events on bus come from it, its
     * link is told by BJ_EV_LINK events without a brain (up: a snapshot follows, the view starts
     * afresh, cause the role; down: a lasting notice; note: a passing one), and a brain's LINK
     * "watches" declares whom it watches. NULL remote_act: a local run. */
    const char *source;                 /* the header's source: "local" (NULL) or the daemon's URL */
    void *remote_ud;
    /* An operator action ("kill", "resurrect", "pause", "resume", "say" with text) on brain. */
    int (*remote_act)(void *ud, const char *action, const char *brain, const char *text);
    /* The daemon's memory and temperature. */
    void (*remote_sense)(void *ud, double *mem_used, double *mem_total, bool *temp_ok, double *temp_c);
};
struct bj_tui_params bj_tui_params_default(void);

/* Whether a full-screen view can be shown: stdout and stdin are terminals and TERM names a
 * terminal that terminfo knows and that can address the cursor. */
bool bj_tui_usable(void);

/* Subscribes (before anything is published, so nothing is missed). NULL with err. */
struct bj_tui *bj_tui_new(const struct bj_tui_params *p, char *err, size_t errlen);
/* Takes the screen and starts the thread. hive: operator keys act on it (NULL: read-only). */
int bj_tui_start(struct bj_tui *t, struct bj_hive *hive, char *err, size_t errlen);
/* After the bus is closed: the thread draws what is queued, ends, and the terminal is restored.
 * A thread blocked on a terminal that never reads again is interrupted after a deadline. */
void bj_tui_stop(struct bj_tui *t);
/* Unsubscribes and frees; after stop. */
void bj_tui_free(struct bj_tui *t, struct bj_bus *bus);

/* ---- the screen and keys, shared with `brainjar top` (the owning thread only) ------------- */

/* Takes the terminal: UTF-8 where the locale says so, no echo, keys unbuffered, no cursor,
 * colours. 0, or -1 with err. */
int bj_tui_screen_open(char *err, size_t errlen);
/* Gives the terminal back as it was. */
void bj_tui_screen_close(void);

enum bj_tui_action {
    BJ_TUI_NONE, BJ_TUI_QUIT, BJ_TUI_KILL, BJ_TUI_RESURRECT, BJ_TUI_PAUSE, BJ_TUI_RESUME, BJ_TUI_SAY
};

/* The keyboard's state: the zoom, the help and a line being typed for "say". */
struct bj_tui_keys {
    bool zoom, help;
    bool typing;       /* "say": a line is being typed */
    char line[256];    /* what was typed (UTF-8) */
    size_t line_len;
};

/* Reads every key waiting. Focus, zoom, help and typing are handled here; an action for the caller
 * is returned (QUIT, or an operator action with operator true; SAY with keys->line to say).
 * dirty is set when the screen should be drawn again (a resize included). */
enum bj_tui_action bj_tui_keys_read(struct bj_tui_keys *k, struct bj_hiveview *v, bool operator, bool *dirty);

#endif
