/* tui_draw: draws a hive's view (sinks/hiveview) on an ncurses screen; no input, no I/O of its own.
 *
 * The screen: a header (alive for, deaths, tok/s, memory, temperature where a sensor answered),
 * one panel per brain (name, whom it watches, life, deaths, state, jar bar, tok/s, the last
 * thoughts above the one streaming, and a veil with the death's cause while the brain is dead),
 * the death timeline and who watches whom at the foot, and a line of keys. With more brains than
 * fit side by side (e.g. --brains 64) the focused brain gets a large panel and the others one
 * compact row each; zoom gives the focused brain the whole body.
 *
 * Text is UTF-8 (drawn through ncursesw's wide characters, cut by display width); control
 * characters are drawn as spaces, so a thought can never move the cursor or act on the terminal.
 * 256 colours where the terminal has them, 8 where not, none on a monochrome terminal.
 *
 * Threads: the one thread that owns the curses screen (the TUI's or `brainjar top`'s). */
#ifndef BJ_TUI_DRAW_H
#define BJ_TUI_DRAW_H

#include <stdbool.h>
#include <stdint.h>

#include "hiveview.h"

/* What a frame shows beside the view. */
struct bj_tui_frame {
    int64_t now_us;          /* wall clock, for "alive for" and the timeline */
    double mem_used, mem_total; /* bytes; mem_total <= 0: unknown, not shown */
    bool temp_ok;            /* a thermal sensor answered */
    double temp_c;
    const char *source;      /* "local", or the daemon's URL */
    const char *notice;      /* one highlighted line at the foot (reconnecting, a log line); NULL: none */
    bool zoom;               /* the focused brain takes the whole body */
    bool help;               /* the help box is shown */
    bool operator_keys;      /* kill/resurrect/pause/resume/say are offered */
};

/* Colour pairs for this terminal (256 colours where it has them). Call once after initscr(). */
void bj_tui_draw_colors(void);

/* Draws the whole screen into stdscr (erase first: nothing of the last frame is left); the caller
 * refreshes. Any screen size works; below 20x6 only the header is drawn. */
void bj_tui_draw(const struct bj_hiveview *v, const struct bj_tui_frame *f);

#endif
