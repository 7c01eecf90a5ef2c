/* util: see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

size_t bj_strlcpy(char *dst, const char *src, size_t dstsize)
{
    size_t n = strlen(src);
    if (dstsize) {
        size_t c = n < dstsize - 1 ? n : dstsize - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

int bj_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int bj_parse_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int bj_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < BJ_ARRAY_LEN(yes); i++) {
        if (strcmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

long bj_max_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return 4 * (n > 0 ? n : 1);
}

int64_t bj_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void bj_iso_time_us(int64_t us, char *buf, size_t len)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    long frac = (long)(us % 1000000);
    if (frac)
        snprintf(buf + n, len - n, ".%06ldZ", frac);
    else
        snprintf(buf + n, len - n, "Z");
}

void bj_iso_time(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    bj_iso_time_us((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, buf, len);
}

void bj_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

struct timespec bj_deadline_after(int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (us % 1000000) * 1000;
    ts.tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/* Whether the process has SIGINT or SIGTERM pending (brainjar blocks them in every thread and takes
 * them synchronously, so a pending one means "the operator wants out"). */
static bool stop_signal_pending(void)
{
    sigset_t set;
    if (sigpending(&set) != 0)
        return false;
    return sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1;
}

int bj_read_file_max(const char *path, size_t max, const volatile int *stop, char **out, size_t *len)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL; /* refused before opening: opening a device can have effects of its own */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int rc = 0;
    char *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) { /* swapped between stat and open */
        rc = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        rc = -EFBIG;
        goto out;
    }
    /* /proc files say 0 bytes: start small and grow, never past max + 1 (to see "too big"). */
    size_t cap = (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1)
        cap = max + 1;
    buf = malloc(cap + 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if ((stop && *stop) || stop_signal_pending()) {
            rc = -EINTR;
            goto out;
        }
        if (n == cap) {
            if (cap >= max + 1) {
                rc = -EFBIG;
                goto out;
            }
            size_t ncap = cap * 2 < max + 1 ? cap * 2 : max + 1;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        size_t want = cap - n < (1u << 20) ? cap - n : (1u << 20); /* 1 MB at a time: stays interruptible */
        ssize_t r = read(fd, buf + n, want);
        if (r < 0) {
            if (errno == EINTR)
                continue; /* the stop check above decides */
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            rc = -EFBIG;
            goto out;
        }
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (len)
        *len = n;
out:
    free(buf);
    close(fd);
    return rc;
}

int bj_read_file(const char *path, char **out, size_t *len)
{
    return bj_read_file_max(path, BJ_READ_MAX_DEFAULT, NULL, out, len);
}

const char *bj_file_strerror(int rc)
{
    switch (rc) {
    case -EINVAL: return "not a regular file (a FIFO, device, directory or socket)";
    case -ELOOP: return "a symbolic link (refused: give the real path)";
    case -EFBIG: return "larger than the size limit";
    case -EINTR: return "interrupted";
    case -ENOENT: return "no such file";
    default: return strerror(-rc);
    }
}

int bj_output_check(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    return S_ISREG(st.st_mode) ? 0 : -EINVAL;
}

int bj_output_open_tmp(const char *path, char *tmp, size_t tmplen)
{
    int rc = bj_output_check(path);
    if (rc)
        return rc;
    if ((size_t)snprintf(tmp, tmplen, "%s.tmp.%d", path, (int)getpid()) >= tmplen)
        return -ENAMETOOLONG;
    unlink(tmp); /* a leftover of a crashed run with our pid; unlink never follows a link */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int bj_output_commit(const char *tmp, const char *path)
{
    int rc = bj_output_check(path);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

int bj_mkdirs(const char *path)
{
    char tmp[4096];
    if (bj_strlcpy(tmp, path, sizeof tmp) >= sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return -errno;
    return 0;
}

/* Length of the UTF-8 sequence that starts with byte c, or 0 if c cannot start one. */
static int utf8_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

static bool utf8_valid_seq(const unsigned char *s, int n)
{
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return false;
    if (n == 3 && s[0] == 0xE0 && s[1] < 0xA0) return false;   /* overlong */
    if (n == 3 && s[0] == 0xED && s[1] >= 0xA0) return false;  /* surrogate */
    if (n == 4 && s[0] == 0xF0 && s[1] < 0x90) return false;   /* overlong */
    if (n == 4 && s[0] == 0xF4 && s[1] >= 0x90) return false;  /* > U+10FFFF */
    return true;
}

size_t bj_utf8_feed(struct bj_utf8 *st, const char *in, size_t inlen, char *out)
{
    static const char repl[] = "\xEF\xBF\xBD";
    size_t o = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (st->n > 0) {
            if ((c & 0xC0) == 0x80) {
                st->pending[st->n++] = c;
                int need = utf8_len(st->pending[0]);
                if (st->n == need) {
                    if (utf8_valid_seq(st->pending, need)) {
                        memcpy(out + o, st->pending, (size_t)need);
                        o += (size_t)need;
                    } else {
                        memcpy(out + o, repl, 3);
                        o += 3;
                    }
                    st->n = 0;
                }
                continue;
            }
            memcpy(out + o, repl, 3); /* truncated sequence */
            o += 3;
            st->n = 0;
        }
        int need = utf8_len(c);
        if (need == 1) {
            out[o++] = (char)c;
        } else if (need == 0) {
            memcpy(out + o, repl, 3);
            o += 3;
        } else {
            st->pending[0] = c;
            st->n = 1;
        }
    }
    out[o] = '\0';
    return o;
}

size_t bj_escape_controls(const char *in, size_t inlen, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else if (c == 0xC2 && i + 1 < inlen && (unsigned char)in[i + 1] >= 0x80 &&
                   (unsigned char)in[i + 1] <= 0x9F) {
            unsigned char d = (unsigned char)in[++i]; /* 2 bytes in, 6 out */
            memcpy(out + o, "\\u00", 4);
            o += 4;
            out[o++] = hex[d >> 4];
            out[o++] = hex[d & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

bool bj_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || end - p < len)
            return false;
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += len;
    }
    return true;
}

void bj_utf8_repair_start(char *s)
{
    size_t k = 0;
    while (((unsigned char)s[k] & 0xC0) == 0x80)
        k++;
    if (k)
        memmove(s, s + k, strlen(s + k) + 1);
}
