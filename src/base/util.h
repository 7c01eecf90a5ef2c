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

/* Reads a whole file (NUL-terminated); the caller frees *out. Returns 0 or -errno. */
int bj_read_file(const char *path, char **out, size_t *len);
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

#endif
