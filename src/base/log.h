/* log: leveled, timestamped messages to stderr (journald picks them up from there).
 *
 * The level and the output stream are the only process-wide mutable settings in brainjar.
 * Any thread may log; each message is written with one write so lines never interleave. */
#ifndef BJ_LOG_H
#define BJ_LOG_H

#include <stddef.h>

enum bj_log_level { BJ_LOG_DEBUG, BJ_LOG_INFO, BJ_LOG_WARN, BJ_LOG_ERROR };

/* Messages below `level` are dropped. Call before starting threads. */
void bj_log_set_level(enum bj_log_level level);
enum bj_log_level bj_log_get_level(void);
/* Parses "debug", "info", "warn" or "error"; returns -1 when unknown. */
int bj_log_level_parse(const char *s);

/* Every message is one line: control characters (newline, ESC, BEL, ...), C1 controls and bytes
 * that are not UTF-8 are written escaped (\n, \r, \t, \xHH), so text a client chose (a user name,
 * a path, a header) can never forge a line or act on a terminal. A trailing newline is dropped. */
void bj_log(enum bj_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The escaping bj_log applies: in[0..inlen) into out (NUL-terminated, cut before an escape that
 * does not fit). Returns the length written. */
size_t bj_log_escape(char *out, size_t outlen, const char *in, size_t inlen);

#define bj_debug(...) bj_log(BJ_LOG_DEBUG, __VA_ARGS__)
#define bj_info(...)  bj_log(BJ_LOG_INFO, __VA_ARGS__)
#define bj_warn(...)  bj_log(BJ_LOG_WARN, __VA_ARGS__)
#define bj_error(...) bj_log(BJ_LOG_ERROR, __VA_ARGS__)

/* Routes llama.cpp / ggml logging through bj_log (their info is our debug). */
void bj_log_attach_llama(void);

#endif
