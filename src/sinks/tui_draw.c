/* tui_draw: see tui_draw.h. */
#define NCURSES_WIDECHAR 1
#include "tui_draw.h"

#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

enum {
    PAIR_TITLE = 1, /* a brain's name */
    PAIR_DEAD,      /* the veil, the timeline's deaths */
    PAIR_JAR,       /* the jar bar, filling */
    PAIR_JAR_HIGH,  /* the jar bar past 3/4 */
    PAIR_DIM,       /* older thoughts */
    PAIR_HEADER,    /* the header line */
    PAIR_NOTICE,    /* a notice (reconnecting, a log line) */
    PAIR_FOCUS,     /* the focused brain's frame */
};

#define WRAP_MAX 512 /* wrapped lines kept per text (a thought is at most BJ_HIVEVIEW_TEXT bytes) */

void bj_tui_draw_colors(void)
{
    if (!has_colors())
        return;
    start_color();
    use_default_colors();
    bool rich = COLORS >= 256;
    init_pair(PAIR_TITLE, rich ? 45 : COLOR_CYAN, -1);
    init_pair(PAIR_DEAD, rich ? 196 : COLOR_RED, -1);
    init_pair(PAIR_JAR, rich ? 35 : COLOR_GREEN, -1);
    init_pair(PAIR_JAR_HIGH, rich ? 214 : COLOR_YELLOW, -1);
    init_pair(PAIR_DIM, rich ? 245 : COLOR_WHITE, -1);
    init_pair(PAIR_HEADER, rich ? 231 : COLOR_WHITE, rich ? 24 : COLOR_BLUE);
    init_pair(PAIR_NOTICE, rich ? 16 : COLOR_BLACK, rich ? 220 : COLOR_YELLOW);
    init_pair(PAIR_FOCUS, rich ? 220 : COLOR_YELLOW, -1);
}

static attr_t pair(int p) { return has_colors() ? COLOR_PAIR(p) : 0; }

/* ---- text: UTF-8 to wide characters, cut and wrapped by display width ---------------------- */

/* Decodes UTF-8 into out (at most cap - 1 characters, NUL-terminated); control characters and
 * undecodable bytes become a space or '?', so nothing drawn can act on the terminal. */
static size_t widen(const char *s, wchar_t *out, size_t cap)
{
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = 0, len = strlen(s);
    while (len > 0 && n + 1 < cap) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s, len, &st);
        if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
            memset(&st, 0, sizeof st);
            wc = L'?';
            k = 1;
        }
        if (wc < 0x20 || (wc >= 0x7f && wc < 0xa0) || wcwidth(wc) < 0)
            wc = wc == L'\n' || wc == L'\t' ? L' ' : L'?';
        out[n++] = wc;
        s += k;
        len -= k;
    }
    out[n] = L'\0';
    return n;
}

static int width_of(wchar_t wc)
{
    int w = wcwidth(wc);
    return w < 0 ? 1 : w;
}

/* Draws s at (y, x), at most maxw columns wide. Returns the columns used. */
static int put(int y, int x, int maxw, const char *s)
{
    wchar_t w[512];
    size_t n = widen(s, w, sizeof w / sizeof w[0]);
    int used = 0;
    size_t k = 0;
    while (k < n && used + width_of(w[k]) <= maxw)
        used += width_of(w[k++]);
    if (k > 0)
        mvaddnwstr(y, x, w, (int)k);
    return used;
}

/* printf into a line, then put(). */
__attribute__((format(printf, 4, 5))) static int putf(int y, int x, int maxw, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return put(y, x, maxw, buf);
}

struct wrapped {
    wchar_t text[BJ_HIVEVIEW_TEXT];
    size_t start[WRAP_MAX], len[WRAP_MAX];
    size_t n;
};

/* Wraps text at width columns, at a space where one is in the line's last third, else anywhere. */
static void wrap(struct wrapped *wr, const char *text, int width)
{
    size_t n = widen(text, wr->text, BJ_HIVEVIEW_TEXT);
    wr->n = 0;
    size_t i = 0;
    while (i < n && wr->n < WRAP_MAX) {
        while (i < n && wr->text[i] == L' ' && wr->n > 0)
            i++; /* a wrapped line does not start with the space it was cut at */
        if (i >= n)
            break;
        size_t j = i, cut = 0;
        int used = 0;
        while (j < n && used + width_of(wr->text[j]) <= width) {
            used += width_of(wr->text[j]);
            if (wr->text[j] == L' ' && used > width * 2 / 3)
                cut = j;
            j++;
        }
        if (j == i)
            j = i + 1; /* a character wider than the line: draw it alone */
        if (j < n && cut > i)
            j = cut;
        wr->start[wr->n] = i;
        wr->len[wr->n++] = j - i;
        i = j;
    }
}

/* ---- pieces ------------------------------------------------------------------------------- */

static void jar_bar(int y, int x, int w, const struct bj_hiveview_brain *b)
{
    if (w < 3)
        return;
    double fill = b->jar_tokens > 0 ? (double)b->jar_used / b->jar_tokens : 0;
    fill = fill < 0 ? 0 : fill > 1 ? 1 : fill;
    int full = (int)(fill * w + 0.5);
    attr_t a = pair(fill > 0.75 ? PAIR_JAR_HIGH : PAIR_JAR);
    attron(a);
    for (int i = 0; i < w; i++)
        mvaddwstr(y, x + i, i < full ? L"\u2588" : L"\u2591");
    attroff(a);
}

static void frame_box(int y, int x, int h, int w, bool focused)
{
    attr_t a = focused ? pair(PAIR_FOCUS) | A_BOLD : pair(PAIR_DIM);
    attron(a);
    /* the wide-character forms: Unicode box lines on a UTF-8 terminal (tmux and screen draw the
     * narrow ACS ones from a charset that a copy of the screen shows as letters) */
    mvhline_set(y, x + 1, WACS_HLINE, w - 2);
    mvhline_set(y + h - 1, x + 1, WACS_HLINE, w - 2);
    mvvline_set(y + 1, x, WACS_VLINE, h - 2);
    mvvline_set(y + 1, x + w - 1, WACS_VLINE, h - 2);
    mvadd_wch(y, x, WACS_ULCORNER);
    mvadd_wch(y, x + w - 1, WACS_URCORNER);
    mvadd_wch(y + h - 1, x, WACS_LLCORNER);
    mvadd_wch(y + h - 1, x + w - 1, WACS_LRCORNER);
    attroff(a);
}

/* The thoughts, newest at the bottom of rows [y, y + h): the streaming one bold, older ones dim. */
static void thoughts(int y, int x, int h, int w, const struct bj_hiveview_brain *b)
{
    static struct wrapped wr; /* large; only the drawing thread draws */
    int row = y + h - 1;
    for (long k = (long)b->ring_n; k >= -1 && row >= y; k--) {
        const char *text = k == (long)b->ring_n ? b->current : k >= 0 ? b->ring[k] : NULL;
        if (!text)
            break;
        if (!text[0])
            continue;
        wrap(&wr, text, w);
        attr_t a = k == (long)b->ring_n ? A_BOLD : pair(PAIR_DIM);
        attron(a);
        for (long i = (long)wr.n - 1; i >= 0 && row >= y; i--, row--)
            mvaddnwstr(row, x, wr.text + wr.start[i], (int)wr.len[i]);
        attroff(a);
        if (row >= y && k < (long)b->ring_n)
            row--; /* a blank line between finished thoughts */
    }
}

static void veil(int y, int x, int h, int w, const struct bj_hiveview_brain *b)
{
    for (int r = y; r < y + h; r++)
        mvhline(r, x, ' ', w);
    attron(pair(PAIR_DEAD) | A_BOLD);
    int mid = y + h / 2 - 1;
    char line[96];
    snprintf(line, sizeof line, "\u2620 DEAD: %s", b->cause[0] ? b->cause : "?");
    int len = (int)strlen(b->cause) + 8;
    put(mid, x + (w > len ? (w - len) / 2 : 0), w, line);
    attroff(pair(PAIR_DEAD) | A_BOLD);
    if (h > 2) {
        attron(pair(PAIR_DIM));
        const char *s = "waiting for the resurrection";
        put(mid + 1, x + (w > 28 ? (w - 28) / 2 : 0), w, s);
        attroff(pair(PAIR_DIM));
    }
}

static int life_of(const struct bj_hiveview_brain *b) { return (int)b->deaths + 1 - (b->dead ? 1 : 0); }

/* One brain in a box: title, a line of numbers, the jar bar, the thoughts (or the veil). */
static void panel(int y, int x, int h, int w, const struct bj_hiveview_brain *b, bool focused)
{
    if (h < 3 || w < 8)
        return;
    frame_box(y, x, h, w, focused);
    attron(pair(PAIR_TITLE) | A_BOLD);
    int used = putf(y, x + 2, w - 4, " %s ", b->name);
    attroff(pair(PAIR_TITLE) | A_BOLD);
    if (b->role[0])
        putf(y, x + 2 + used, w - 4 - used, "watches %s ", b->role);
    int iw = w - 2, ix = x + 1, row = y + 1, end = y + h - 1;
    if (row < end)
        putf(row++, ix, iw, "life %d  deaths %u  %s  %.1f tok/s", life_of(b), b->deaths, b->state,
             b->dead ? 0.0 : b->tok_s);
    if (row < end) {
        int lw = putf(row, ix, iw, "%d/%d ", b->jar_used, b->jar_tokens);
        jar_bar(row++, ix + lw, iw - lw, b);
    }
    if (row >= end)
        return;
    if (b->dead)
        veil(row, ix, end - row, iw, b);
    else
        thoughts(row, ix, end - row, iw, b);
}

/* One brain on one line: name, state, deaths, a small jar bar, tok/s, the tail of its thought. */
static void compact_row(int y, int x, int w, const struct bj_hiveview_brain *b, bool focused)
{
    if (focused)
        attron(A_REVERSE);
    mvhline(y, x, ' ', w);
    attron(pair(b->dead ? PAIR_DEAD : PAIR_TITLE) | A_BOLD);
    int used = putf(y, x, w, "%-10.10s", b->name);
    attroff(pair(b->dead ? PAIR_DEAD : PAIR_TITLE) | A_BOLD);
    used += putf(y, x + used, w - used, " %-9.9s d%-4u ", b->dead ? b->cause : b->state, b->deaths);
    if (w - used > 10) {
        jar_bar(y, x + used, 8, b);
        used += 9;
    }
    used += putf(y, x + used, w - used, "%6.1f ", b->dead ? 0.0 : b->tok_s);
    if (w - used > 4) {
        const char *t = b->dead ? "" : b->current[0] ? b->current : b->ring_n ? b->ring[b->ring_n - 1] : "";
        /* the tail: what is being said now */
        static wchar_t wt[BJ_HIVEVIEW_TEXT];
        size_t n = widen(t, wt, BJ_HIVEVIEW_TEXT);
        int room = w - used, cols = 0;
        size_t from = n;
        while (from > 0 && cols + width_of(wt[from - 1]) <= room)
            cols += width_of(wt[--from]);
        if (n > from)
            mvaddnwstr(y, x + used, wt + from, (int)(n - from));
    }
    if (focused)
        attroff(A_REVERSE);
}

static void fmt_duration(char *out, size_t len, int64_t us)
{
    long s = us > 0 ? (long)(us / 1000000) : 0;
    if (s >= 86400)
        snprintf(out, len, "%ldd %02ld:%02ld:%02ld", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    else
        snprintf(out, len, "%02ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void header(const struct bj_hiveview *v, const struct bj_tui_frame *f)
{
    attron(pair(PAIR_HEADER) | A_BOLD);
    mvhline(0, 0, ' ', COLS);
    char alive[32], mem[64] = "", temp[32] = "";
    fmt_duration(alive, sizeof alive, f->now_us - bj_hiveview_start_us(v));
    if (f->mem_total > 0)
        snprintf(mem, sizeof mem, "  mem %.1f/%.1f GiB", f->mem_used / 1073741824.0, f->mem_total / 1073741824.0);
    if (f->temp_ok)
        snprintf(temp, sizeof temp, "  %.0f\u00b0C", f->temp_c);
    putf(0, 0, COLS, " brainjar  %s  alive %s  brains %zu  deaths %llu  %.1f tok/s%s%s", f->source ? f->source : "",
         alive, bj_hiveview_count(v), (unsigned long long)bj_hiveview_total_deaths(v), bj_hiveview_total_tok_s(v), mem,
         temp);
    attroff(pair(PAIR_HEADER) | A_BOLD);
}

/* The foot: the death timeline, who watches whom, then keys or the notice. */
static void foot(const struct bj_hiveview *v, const struct bj_tui_frame *f, int y)
{
    int x = 0;
    attron(A_BOLD);
    x += put(y, x, COLS, "deaths ");
    attroff(A_BOLD);
    if (bj_hiveview_death_count(v) == 0)
        put(y, x, COLS - x, "none yet");
    for (size_t i = 0; i < bj_hiveview_death_count(v) && x < COLS; i++) {
        const struct bj_hiveview_death *d = bj_hiveview_death_at(v, i);
        time_t t = (time_t)(d->time_us / 1000000);
        struct tm tm;
        localtime_r(&t, &tm);
        char when[16];
        strftime(when, sizeof when, "%H:%M:%S", &tm);
        x += putf(y, x, COLS - x, "%s ", when);
        attron(pair(PAIR_DEAD));
        x += putf(y, x, COLS - x, "%s", d->brain);
        attroff(pair(PAIR_DEAD));
        x += putf(y, x, COLS - x, " %s #%u \u00b7 ", d->cause, d->deaths);
    }
    x = 0;
    attron(A_BOLD);
    x += put(y + 1, x, COLS, "watching ");
    attroff(A_BOLD);
    bool any = false;
    for (size_t i = 0; i < bj_hiveview_count(v) && x < COLS; i++) {
        const struct bj_hiveview_brain *b = bj_hiveview_brain_at(v, i);
        if (!b->role[0])
            continue;
        x += putf(y + 1, x, COLS - x, "%s%s \u2192 %s", any ? " \u00b7 " : "", b->name, b->role);
        any = true;
    }
    if (!any)
        put(y + 1, x, COLS - x, "nobody watches anybody");
    if (f->notice && f->notice[0]) {
        attron(pair(PAIR_NOTICE) | A_BOLD);
        mvhline(y + 2, 0, ' ', COLS);
        put(y + 2, 1, COLS - 1, f->notice);
        attroff(pair(PAIR_NOTICE) | A_BOLD);
    } else {
        attron(pair(PAIR_DIM));
        put(y + 2, 0, COLS,
            f->operator_keys
                ? "\u2190\u2192/Tab focus  Enter zoom  k kill  r resurrect  p pause  u resume  s say  ? help  q quit"
                : "\u2190\u2192/Tab focus  Enter zoom  ? help  q quit  (read-only)");
        attroff(pair(PAIR_DIM));
    }
}

static void help_box(const struct bj_tui_frame *f)
{
    static const char *const lines[] = {
        "\u2190 \u2192 \u2191 \u2193 Tab   focus another brain",
        "Enter           zoom the focused brain (again: back)",
        "k               kill the focused brain (cause OPERATOR)",
        "r               resurrect it now (skips the pause)",
        "p / u           pause / resume it",
        "s               say something to it",
        "?               this help (any key closes it)",
        "q               quit (as Ctrl-C)",
    };
    int n = (int)(sizeof lines / sizeof lines[0]), w = 60, h = n + 4;
    int y = (LINES - h) / 2, x = (COLS - w) / 2;
    if (y < 1 || x < 0)
        return;
    for (int r = y; r < y + h; r++)
        mvhline(r, x, ' ', w);
    frame_box(y, x, h, w, true);
    put(y, x + 2, w - 4, " keys ");
    for (int i = 0, r = y + 2; i < n; i++) {
        bool op = i >= 2 && i <= 5;
        if (op && !f->operator_keys)
            continue;
        put(r++, x + 3, w - 6, lines[i]);
    }
}

/* ---- layout ------------------------------------------------------------------------------- */

/* The body [top, top + h): side by side when every panel gets 28 columns, stacked when each gets
 * 7 rows, else the focused brain large and the others in compact rows (two columns when wide). */
static void body(const struct bj_hiveview *v, const struct bj_tui_frame *f, int top, int h)
{
    size_t n = bj_hiveview_count(v), focus = bj_hiveview_focus(v);
    if (n == 0) {
        put(top + h / 2, 2, COLS - 2, "waiting for the first brain\u2026");
        return;
    }
    if (f->zoom) {
        panel(top, 0, h, COLS, bj_hiveview_brain_at(v, focus), true);
        return;
    }
    if (n <= 6 && COLS / (int)n >= 28) {
        int w = COLS / (int)n;
        for (size_t i = 0; i < n; i++)
            panel(top, (int)i * w, h, i + 1 == n ? COLS - (int)i * w : w, bj_hiveview_brain_at(v, i), i == focus);
        return;
    }
    if (n <= 6 && h / (int)n >= 7) {
        int ph = h / (int)n;
        for (size_t i = 0; i < n; i++)
            panel(top + (int)i * ph, 0, i + 1 == n ? h - (int)i * ph : ph, COLS, bj_hiveview_brain_at(v, i), i == focus);
        return;
    }
    int big = h / 2 < 8 ? (h < 8 ? 0 : 8) : h / 2;
    if (big > 0)
        panel(top, 0, big, COLS, bj_hiveview_brain_at(v, focus), true);
    int rows = h - big, cols = COLS >= 150 ? 2 : 1, cw = COLS / cols;
    if (rows <= 0)
        return;
    size_t per_page = (size_t)rows * (size_t)cols;
    size_t first = focus / per_page * per_page; /* the page that holds the focused brain */
    for (size_t i = first; i < n && i < first + per_page; i++) {
        size_t k = i - first;
        int r = (int)(k % (size_t)rows), c = (int)(k / (size_t)rows);
        compact_row(top + big + r, c * cw, cw - (c + 1 < cols ? 1 : 0), bj_hiveview_brain_at(v, i), i == focus);
    }
}

void bj_tui_draw(const struct bj_hiveview *v, const struct bj_tui_frame *f)
{
    erase();
    if (LINES < 1 || COLS < 1)
        return;
    header(v, f);
    if (LINES < 6 || COLS < 20)
        return;
    int foot_h = 3, top = 1, h = LINES - top - foot_h;
    body(v, f, top, h);
    foot(v, f, LINES - foot_h);
    if (f->help)
        help_box(f);
}
