/* util: small string, number and time helpers shared by every module. */
#ifndef BJ_UTIL_H
#define BJ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BJ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Copies at most dstsize-1 bytes and always terminates; returns strlen(src). */
size_t bj_strlcpy(char *dst, const char *src, size_t dstsize);

/* Strict parsers: the whole string must be a number in [min, max]. Return 0 or -1. */
int bj_parse_long(const char *s, long min, long max, long *out);
int bj_parse_double(const char *s, double min, double max, double *out);
int bj_parse_bool(const char *s, bool *out);

/* The most compute threads a flag may ask for: 4 per online core (more only thrashes). */
long bj_max_threads(void);

/* Monotonic and wall clocks. */
int64_t bj_now_us(void);
/* ISO-8601 UTC with microseconds and 'Z' ("2025-11-16T08:55:40.004210Z"); the fraction is
 * dropped when zero, as the original did. buf must hold 32 bytes. */
void bj_iso_time(char *buf, size_t len);
/* The same for a wall-clock time in microseconds since the epoch. */
void bj_iso_time_us(int64_t us, char *buf, size_t len);

/* Initializes a condition variable that waits on the monotonic clock (deadlines from
 * bj_deadline_after are immune to wall-clock jumps). */
#include <pthread.h>
#include <time.h>
void bj_cond_init_monotonic(pthread_cond_t *cond);
/* The monotonic-clock time `us` microseconds from now, for pthread_cond_timedwait. */
struct timespec bj_deadline_after(int64_t us);

/* ---- files: every file brainjar reads or writes goes through these -----------------------
 * Hostile paths (a FIFO, /dev/zero, a symlink to a device, a huge file) must give a clear error
 * quickly, never a hang or unbounded memory. */

/* The default size limit of bj_read_file (prompts and hive files are far smaller). */
#define BJ_READ_MAX_DEFAULT (64u << 20)

/* Reads a whole regular file (NUL-terminated; the caller frees *out; *len may be NULL), at most
 * `max` bytes. The file is opened with O_NONBLOCK (a FIFO cannot hang the open) and must be a
 * regular file (checked before opening and on the opened descriptor). The read gives up with
 * -EINTR when *stop becomes non-zero (stop may be NULL) or when SIGINT or SIGTERM is pending
 * for the process (brainjar blocks them and takes them synchronously), so start-up
 * stays interruptible. Returns 0 or a negative errno: -EINVAL not a regular file, -EFBIG over
 * `max`, -EINTR stopped, -ENOMEM, or what open/read said. Any thread. */
int bj_read_file_max(const char *path, size_t max, const volatile int *stop, char **out, size_t *len);
/* bj_read_file_max(path, BJ_READ_MAX_DEFAULT, NULL, out, len). */
int bj_read_file(const char *path, char **out, size_t *len);
/* A short reason for an error of the file functions here ("not a regular file (a FIFO, device,
 * directory or socket)", "larger than the limit", ...); strerror for the rest. */
const char *bj_file_strerror(int rc);

/* Whether `path` may be written by replacing it: 0 when it does not exist or is a regular file
 * (not a symlink); -ELOOP for a symlink, -EINVAL for anything else (a device, FIFO, directory,
 * socket), or another -errno from lstat. Writers call it before they start and again right
 * before they rename their temp file over `path`. Any thread. */
int bj_output_check(const char *path);
/* Creates `tmp` (path + ".tmp.<pid>") exclusively (O_EXCL|O_NOFOLLOW, 0644) for a writer that
 * will bj_output_commit it. Returns the fd, or -errno (bj_output_check's codes included). */
int bj_output_open_tmp(const char *path, char *tmp, size_t tmplen);
/* Renames tmp over path after bj_output_check(path) passes; on failure tmp is unlinked.
 * Returns 0 or -errno. */
int bj_output_commit(const char *tmp, const char *path);
/* mkdir -p. Returns 0 or -errno. */
int bj_mkdirs(const char *path);

/* Appends the valid UTF-8 prefix of `in` to `out` and keeps an incomplete trailing sequence in
 * `pending` (at most 4 bytes) for the next call; invalid bytes become U+FFFD. Tokens split
 * multi-byte characters, and every consumer of text (JSON, terminals) wants valid UTF-8. */
struct bj_utf8 { unsigned char pending[4]; int n; };
/* Returns the number of bytes written into out (out must have 3*inlen+8 bytes), terminated. */
size_t bj_utf8_feed(struct bj_utf8 *st, const char *in, size_t inlen, char *out);
/* Whether s[0..n) is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
bool bj_utf8_valid(const char *s, size_t n);
/* Drops continuation bytes at the start of s (after cutting a string at an arbitrary byte). */
void bj_utf8_repair_start(char *s);

/* Makes model text safe for a terminal: carriage returns, C0 controls other than newline and
 * tab, DEL, ESC and C1 controls (U+0080-U+009F, UTF-8 C2 80-C2 9F) are written as visible escapes
 * (\r, \x1b, \u009b); everything else is copied. `in` should be valid UTF-8 (bj_utf8_feed).
 * out must have 4*inlen+1 bytes; returns the length written (terminated). */
size_t bj_escape_controls(const char *in, size_t inlen, char *out);

#endif
