/* journal: see journal.h. */
#include "journal.h"

#include <assert.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "logfile.h"
#include "util.h"

/* ---- the line --------------------------------------------------------------------------------- */

size_t bj_journal_format(const struct bj_journal_entry *e, const char *detail, char *line, size_t len)
{
    char ts[40];
    bj_iso_time_us(e->time_us ? e->time_us : bj_event_now(), ts, sizeof ts);
    int n = snprintf(line, len, "%s - CRASH #%u: %s %s (%s)\n", ts, e->count, e->brain, e->cause, detail ? detail : "");
    if (n < 0 || len < 2)
        return 0;
    if ((size_t)n > len - 1) {
        n = (int)len - 1;
        line[n - 1] = '\n';
    }
    /* One death, one line: a detail (an operator's words, an error text) may hold newlines. */
    for (int i = 0; i < n - 1; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    return (size_t)n;
}

int bj_journal_parse(const char *line, struct bj_journal_entry *e)
{
    struct tm tm = {0};
    const char *p = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    long frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                frac = frac * 10 + (*p - '0');
        for (; digits < 6; digits++)
            frac *= 10;
    }
    if (*p == 'Z')
        p++;
    unsigned long n;
    char b[64], c[64];
    if (sscanf(p, " - CRASH #%lu: %63s %63s", &n, b, c) < 3 || n == 0 || n > UINT32_MAX ||
        strlen(b) >= sizeof e->brain || strlen(c) >= sizeof e->cause)
        return -1;
    e->time_us = (int64_t)timegm(&tm) * 1000000 + frac;
    e->count = (uint32_t)n;
    bj_strlcpy(e->brain, b, sizeof e->brain);
    bj_strlcpy(e->cause, c, sizeof e->cause);
    return 0;
}

static void note_bad(struct bj_journal_scan *out, const char *line)
{
    out->unparsable++;
    if (out->first_bad)
        return;
    out->first_bad = out->lines;
    bj_strlcpy(out->first_bad_text, line, sizeof out->first_bad_text);
    for (char *q = out->first_bad_text; *q; q++)
        if ((unsigned char)*q < 0x20)
            *q = *q == '\n' ? '\0' : '?';
}

int bj_journal_scan(const char *path, int (*fn)(void *ud, const struct bj_journal_entry *e), void *ud,
                    struct bj_journal_scan *out)
{
    memset(out, 0, sizeof *out);
    FILE *in = fopen(path, "re");
    if (!in)
        return errno == ENOENT ? 0 : -errno;
    char line[BJ_JOURNAL_LINE_MAX + 64];
    int rc = 0;
    while (fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        bool whole = n > 0 && line[n - 1] == '\n';
        out->lines++;
        struct bj_journal_entry e;
        if (!whole) { /* longer than any line we write: skip the rest of it */
            note_bad(out, line);
            int ch;
            while ((ch = fgetc(in)) != EOF && ch != '\n')
                ;
            continue;
        }
        if (line[0] == '\n')
            continue; /* an empty line is nothing */
        if (bj_journal_parse(line, &e) != 0) {
            note_bad(out, line);
            continue;
        }
        out->deaths++;
        if (fn && fn(ud, &e))
            break;
    }
    if (ferror(in))
        rc = -EIO;
    fclose(in);
    return rc;
}

int bj_journal_rotate(const char *dir, uint64_t max_bytes, int keep)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BJ_JOURNAL_NAME);
    struct stat sb;
    if (!max_bytes || stat(path, &sb) != 0 || (uint64_t)sb.st_size <= max_bytes)
        return 0;
    struct bj_logfile lf;
    int rc = bj_logfile_open(&lf, path, 0, keep > 0 ? keep : 5);
    if (rc == 0)
        rc = bj_logfile_rotate(&lf);
    bj_logfile_close(&lf);
    return rc ? rc : 1;
}

/* ---- the open journal -------------------------------------------------------------------------- */

struct bj_journal {
    pthread_mutex_t lock;
    struct bj_logfile lf;
    char path[PATH_MAX];
    bool dirty;
    uint64_t failures;
    uint64_t reserved_to; /* the file's blocks are allocated up to here (0: none) */
    /* crash_reports.counts: the count of each brain whose death line failed */
    int cfd;
    bool counts_dirty;
    char names[BJ_JOURNAL_COUNT_SLOTS][32];
    uint32_t counts[BJ_JOURNAL_COUNT_SLOTS];
};

/* ---- crash_reports.counts ------------------------------------------------------------------- */

enum { COUNT_REC = 64 };

static int parse_record(const char *rec, char *brain, uint32_t *count)
{
    char b[64];
    unsigned long n;
    if (sscanf(rec, "%63s %lu", b, &n) != 2 || strlen(b) >= 32 || n == 0 || n > UINT32_MAX)
        return -1;
    bj_strlcpy(brain, b, 32);
    *count = (uint32_t)n;
    return 0;
}

int bj_journal_read_counts(const char *dir, void (*fn)(void *ud, const char *brain, uint32_t count), void *ud)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BJ_JOURNAL_COUNTS_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    char rec[COUNT_REC + 1];
    for (int i = 0; i < BJ_JOURNAL_COUNT_SLOTS; i++) {
        ssize_t r = pread(fd, rec, COUNT_REC, (off_t)i * COUNT_REC);
        if (r != COUNT_REC)
            break;
        rec[COUNT_REC] = '\0';
        char brain[32];
        uint32_t n;
        if (parse_record(rec, brain, &n) == 0)
            fn(ud, brain, n);
    }
    close(fd);
    return 0;
}

/* Opens crash_reports.counts, written whole (blank records) when it is new, so that a record is
 * later rewritten in place without a new block; loads what it holds. Failure is only logged. */
static void open_counts(struct bj_journal *j, const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BJ_JOURNAL_COUNTS_NAME);
    j->cfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (j->cfd < 0) {
        bj_warn("%s: %s (counts of unjournaled deaths are not kept)", path, strerror(errno));
        return;
    }
    struct stat sb;
    off_t want = (off_t)BJ_JOURNAL_COUNT_SLOTS * COUNT_REC;
    if (fstat(j->cfd, &sb) == 0 && sb.st_size < want) {
        char blank[COUNT_REC];
        memset(blank, ' ', sizeof blank);
        blank[COUNT_REC - 1] = '\n';
        for (off_t off = sb.st_size / COUNT_REC * COUNT_REC; off < want; off += COUNT_REC)
            if (pwrite(j->cfd, blank, COUNT_REC, off) != COUNT_REC) {
                bj_warn("%s: %s (counts of unjournaled deaths are not kept)", path, strerror(errno));
                close(j->cfd);
                j->cfd = -1;
                return;
            }
    }
    char rec[COUNT_REC + 1];
    for (int i = 0; i < BJ_JOURNAL_COUNT_SLOTS; i++) {
        if (pread(j->cfd, rec, COUNT_REC, (off_t)i * COUNT_REC) != COUNT_REC)
            break;
        rec[COUNT_REC] = '\0';
        if (parse_record(rec, j->names[i], &j->counts[i]) != 0)
            j->names[i][0] = '\0', j->counts[i] = 0;
    }
}

/* A death whose line failed: its brain's count, rewritten in place (no new block needed).
 * Caller holds the lock. */
static void record_count(struct bj_journal *j, const char *brain, uint32_t count)
{
    if (j->cfd < 0 || !brain[0])
        return;
    int slot = -1;
    for (int i = 0; i < BJ_JOURNAL_COUNT_SLOTS && slot < 0; i++)
        if (strcmp(j->names[i], brain) == 0)
            slot = i;
    for (int i = 0; i < BJ_JOURNAL_COUNT_SLOTS && slot < 0; i++)
        if (!j->names[i][0])
            slot = i;
    if (slot < 0 || j->counts[slot] >= count)
        return;
    char rec[COUNT_REC + 1];
    int n = snprintf(rec, sizeof rec, "%-31.31s %20u", brain, count);
    memset(rec + n, ' ', (size_t)(COUNT_REC - n));
    rec[COUNT_REC - 1] = '\n';
    if (pwrite(j->cfd, rec, COUNT_REC, (off_t)slot * COUNT_REC) != COUNT_REC) {
        bj_error("%s: the count of %s could not be kept: %s", BJ_JOURNAL_COUNTS_NAME, brain, strerror(errno));
        return;
    }
    bj_strlcpy(j->names[slot], brain, sizeof j->names[slot]);
    j->counts[slot] = count;
    j->counts_dirty = true;
}

/* Keeps BJ_JOURNAL_RESERVE bytes allocated past the end, refilled once half of it is used: lines
 * written while the disk is full go there. Caller holds the lock (or owns j alone). */
static void reserve(struct bj_journal *j)
{
    if (j->lf.fd < 0 || j->lf.size + BJ_JOURNAL_RESERVE / 2 < j->reserved_to)
        return;
    if (fallocate(j->lf.fd, FALLOC_FL_KEEP_SIZE, (off_t)j->lf.size, BJ_JOURNAL_RESERVE) == 0)
        j->reserved_to = j->lf.size + BJ_JOURNAL_RESERVE;
    /* else: a full disk (the rest of the old reserve serves) or a file system without it */
}

/* Opens the file through logfile (which cuts a torn last line); a symlink is refused. 0 or -errno. */
static int open_file(struct bj_journal *j)
{
    struct stat sb;
    if (lstat(j->path, &sb) == 0 && S_ISLNK(sb.st_mode))
        return -ELOOP;
    int rc = bj_logfile_open(&j->lf, j->path, 0, 1);
    j->reserved_to = 0;
    if (rc == 0)
        reserve(j);
    return rc;
}

struct bj_journal *bj_journal_open(const char *dir, char *err, size_t errlen)
{
    struct bj_journal *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    j->lf.fd = -1;
    j->cfd = -1;
    snprintf(j->path, sizeof j->path, "%s/%s", dir, BJ_JOURNAL_NAME);
    int rc = open_file(j);
    if (rc) {
        snprintf(err, errlen, "%s: %s", j->path, strerror(-rc));
        bj_logfile_close(&j->lf);
        free(j);
        return NULL;
    }
    open_counts(j, dir);
    pthread_mutex_init(&j->lock, NULL);
    return j;
}

void bj_journal_close(struct bj_journal *j)
{
    if (!j)
        return;
    bj_journal_commit(j);
    bj_logfile_close(&j->lf);
    if (j->cfd >= 0)
        close(j->cfd);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void fail(struct bj_journal *j, const char *what, int e)
{
    j->failures++;
    /* Once per power of two: a full disk must not flood the log either. */
    if ((j->failures & (j->failures - 1)) == 0)
        bj_error("%s: %s failed: %s (%llu deaths not journaled so far; the store is asked to write them back "
                 "at the next start)", j->path, what, strerror(e), (unsigned long long)j->failures);
}

int bj_journal_append(struct bj_journal *j, const struct bj_journal_entry *e, const char *detail)
{
    char line[BJ_JOURNAL_LINE_MAX];
    size_t n = bj_journal_format(e, detail, line, sizeof line);
    /* one death, one whole line that parses back: what a restart counts from */
    assert(n > 0 && line[n - 1] == '\n' && memchr(line, '\n', n) == line + n - 1);
    (void)n;
    pthread_mutex_lock(&j->lock);
    int rc = bj_logfile_append(&j->lf, line, false);
    if (rc) {
        fail(j, "write", -rc);
        record_count(j, e->brain, e->count);
    } else
        j->dirty = true;
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void bj_journal_death(struct bj_journal *j, const struct bj_event *d)
{
    struct bj_journal_entry e = {.time_us = d->time_us, .count = d->crash_count};
    bj_strlcpy(e.brain, d->brain, sizeof e.brain);
    bj_strlcpy(e.cause, d->cause, sizeof e.cause);
    bj_journal_append(j, &e, d->text);
}

void bj_journal_commit(struct bj_journal *j)
{
    pthread_mutex_lock(&j->lock);
    if (j->dirty && j->lf.fd >= 0) {
        if (fdatasync(j->lf.fd) != 0)
            fail(j, "fdatasync", errno);
        j->dirty = false;
    }
    if (j->counts_dirty && j->cfd >= 0) {
        if (fdatasync(j->cfd) != 0)
            bj_error("%s: fdatasync: %s", BJ_JOURNAL_COUNTS_NAME, strerror(errno));
        j->counts_dirty = false;
    }
    reserve(j);
    pthread_mutex_unlock(&j->lock);
}

int bj_journal_reopen(struct bj_journal *j)
{
    pthread_mutex_lock(&j->lock);
    if (j->lf.fd >= 0 && j->dirty)
        fdatasync(j->lf.fd);
    bj_logfile_close(&j->lf);
    j->dirty = false;
    int rc = open_file(j);
    pthread_mutex_unlock(&j->lock);
    if (rc) {
        bj_error("%s: cannot reopen: %s", j->path, strerror(-rc));
        return -1;
    }
    bj_info("%s reopened", j->path);
    return 0;
}

uint64_t bj_journal_failures(struct bj_journal *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t f = j->failures;
    pthread_mutex_unlock(&j->lock);
    return f;
}
