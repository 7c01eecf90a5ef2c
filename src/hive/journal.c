/* journal: see journal.h. */
#include "journal.h"

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
#include "util.h"

struct bj_journal {
    pthread_mutex_t lock;
    char path[PATH_MAX];
    int fd;
    bool dirty;
    uint64_t failures;
};

/* A crash before a line's newline reached the disk leaves a torn line: cut it off, so the next
 * line starts on a line of its own. */
static void repair_tail(int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0)
        return;
    off_t end = st.st_size, pos = end;
    char buf[512];
    while (pos > 0) {
        size_t n = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
        pos -= (off_t)n;
        if (pread(fd, buf, n, pos) != (ssize_t)n)
            return;
        for (size_t k = n; k-- > 0;) {
            if (buf[k] != '\n')
                continue;
            off_t keep = pos + (off_t)k + 1;
            if (keep < end) {
                bj_warn("%s: cut a torn last line (%lld bytes) left by an earlier crash", path, (long long)(end - keep));
                if (ftruncate(fd, keep) != 0)
                    bj_warn("%s: cannot cut the torn line: %s", path, strerror(errno));
            }
            return;
        }
    }
    if (ftruncate(fd, 0) != 0)
        bj_warn("%s: cannot cut the torn line: %s", path, strerror(errno));
}

static int open_file(struct bj_journal *j)
{
    /* Read access too: repair_tail() reads the end of the file (pread on a write-only
     * descriptor fails with EBADF, and the repair would silently never happen). */
    j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (j->fd < 0)
        return -errno;
    repair_tail(j->fd, j->path);
    return 0;
}

struct bj_journal *bj_journal_open(const char *dir, char *err, size_t errlen)
{
    struct bj_journal *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(j->path, sizeof j->path, "%s/crash_reports.log", dir);
    int rc = open_file(j);
    if (rc) {
        snprintf(err, errlen, "%s: %s", j->path, strerror(-rc));
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->lock, NULL);
    return j;
}

void bj_journal_close(struct bj_journal *j)
{
    if (!j)
        return;
    bj_journal_commit(j);
    if (j->fd >= 0)
        close(j->fd);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void fail(struct bj_journal *j, const char *what, int e)
{
    j->failures++;
    /* Once per power of two: a full disk must not flood the log either. */
    if ((j->failures & (j->failures - 1)) == 0)
        bj_error("%s: %s failed: %s (%llu deaths not journaled so far; the store still has them)", j->path, what,
                 strerror(e), (unsigned long long)j->failures);
}

void bj_journal_death(struct bj_journal *j, const struct bj_event *d)
{
    char ts[40], line[600];
    bj_iso_time_us(d->time_us ? d->time_us : bj_event_now(), ts, sizeof ts);
    int n = snprintf(line, sizeof line, "%s - CRASH #%u: %s %s (%s)\n", ts, d->crash_count, d->brain, d->cause,
                     d->text ? d->text : "");
    if (n > (int)sizeof line - 1) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    /* One death, one line: a detail (an operator's words, an error text) may hold newlines. */
    for (int i = 0; i < n - 1; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    pthread_mutex_lock(&j->lock);
    if (j->fd < 0) {
        fail(j, "write", EBADF);
    } else {
        struct stat st;
        off_t before = fstat(j->fd, &st) == 0 ? st.st_size : -1;
        ssize_t w = write(j->fd, line, (size_t)n);
        if (w != n) {
            int e = w < 0 ? errno : ENOSPC;
            if (w > 0 && before >= 0 && ftruncate(j->fd, before) != 0)
                bj_debug("%s: cannot cut a partial line", j->path);
            fail(j, "write", e);
        } else {
            j->dirty = true;
        }
    }
    pthread_mutex_unlock(&j->lock);
}

void bj_journal_commit(struct bj_journal *j)
{
    pthread_mutex_lock(&j->lock);
    if (j->dirty && j->fd >= 0) {
        if (fdatasync(j->fd) != 0)
            fail(j, "fdatasync", errno);
        j->dirty = false;
    }
    pthread_mutex_unlock(&j->lock);
}

int bj_journal_reopen(struct bj_journal *j)
{
    pthread_mutex_lock(&j->lock);
    if (j->fd >= 0) {
        if (j->dirty)
            fdatasync(j->fd);
        close(j->fd);
    }
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
