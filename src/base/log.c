/* log: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llama.h>

static enum bj_log_level g_level = BJ_LOG_INFO;

void bj_log_set_level(enum bj_log_level level) { g_level = level; }
enum bj_log_level bj_log_get_level(void) { return g_level; }

int bj_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Length of the valid UTF-8 sequence at p (n bytes left) that is not a C1 control (U+0080..U+009F,
 * which terminals may act on like ESC), or 0. Overlong forms and surrogates count as invalid. */
static size_t utf8_ok(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (p[0] == 0xC2 && p[1] <= 0x9F)
        return 0; /* C1 control */
    if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) || (p[0] == 0xF0 && p[1] < 0x90) ||
        (p[0] == 0xF4 && p[1] >= 0x90))
        return 0;
    return len;
}

size_t bj_log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < inlen;) {
        char esc[4];
        const char *piece = (const char *)p + i;
        size_t n = 1;
        if (p[i] >= 0x20 && p[i] < 0x7F) {
            /* printable ASCII as is */
        } else if (p[i] >= 0x80 && (n = utf8_ok(p + i, inlen - i)) > 0) {
            /* a whole printable UTF-8 character */
        } else {
            n = 1;
            esc[0] = '\\';
            esc[1] = p[i] == '\n' ? 'n' : p[i] == '\r' ? 'r' : p[i] == '\t' ? 't' : 'x';
            if (esc[1] == 'x') {
                esc[2] = hex[p[i] >> 4];
                esc[3] = hex[p[i] & 15];
            }
            piece = esc;
        }
        size_t plen = piece == esc ? (esc[1] == 'x' ? 4 : 2) : n;
        if (o + plen >= outlen)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    out[o] = 0;
    return o;
}

static void vlog(enum bj_log_level level, const char *fmt, va_list ap)
{
    static const char *tags[] = {"debug", "info", "warn", "error"};
    char msg[4096], line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld brainjar %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, tags[level]);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
    while (mlen > 0 && msg[mlen - 1] == '\n')
        mlen--;
    /* One message, one line: whatever it quotes (a client's user name, a path, a header) cannot
     * start a line of its own or reach the terminal as a control sequence. */
    size_t len = (size_t)n + bj_log_escape(line + n, sizeof line - (size_t)n - 1, msg, mlen);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void bj_log(enum bj_log_level level, const char *fmt, ...)
{
    if (level < g_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

/* llama.cpp logs in pieces (continuation lines without a newline); we keep whole lines only,
 * and drop its chatter unless debugging. Called from whichever thread llama.cpp logs on. */
static void llama_log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    enum bj_log_level l = level == GGML_LOG_LEVEL_ERROR  ? BJ_LOG_ERROR
                          : level == GGML_LOG_LEVEL_WARN ? BJ_LOG_WARN
                                                         : BJ_LOG_DEBUG;
    if (l < g_level || level == GGML_LOG_LEVEL_CONT || !text || !*text || strcmp(text, "\n") == 0)
        return;
    bj_log(l, "llama: %s", text);
}

void bj_log_attach_llama(void) { llama_log_set(llama_log_cb, NULL); }
