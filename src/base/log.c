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

static void vlog(enum bj_log_level level, const char *fmt, va_list ap)
{
    static const char *tags[] = {"debug", "info", "warn", "error"};
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld brainjar %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, tags[level]);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    while (len > 0 && line[len - 1] == '\n')
        len--;
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
