/* logfile: see logfile.h. */
#include "logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void dir_of(const char *path, char *dir, size_t len)
{
    bj_strlcpy(dir, path, len);
    char *slash = strrchr(dir, '/');
    if (!slash)
        bj_strlcpy(dir, ".", len);
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

int bj_dir_identity(const char *dir, dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

long bj_logfile_repair(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    struct stat st;
    long rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (st.st_size == 0)
        goto out;
    /* Scan back from the end, in blocks, for the last newline. */
    char buf[4096];
    off_t end = st.st_size, pos = end, keep = 0;
    bool found = false;
    while (pos > 0 && !found) {
        size_t n = pos >= (off_t)sizeof buf ? sizeof buf : (size_t)pos;
        pos -= (off_t)n;
        if (pread(fd, buf, n, pos) != (ssize_t)n) {
            rc = -EIO;
            goto out;
        }
        for (size_t i = n; i-- > 0;)
            if (buf[i] == '\n') {
                keep = pos + (off_t)i + 1;
                found = true;
                break;
            }
    }
    if (keep == end)
        goto out;
    char torn[200];
    size_t tn = (size_t)(end - keep) < sizeof torn - 1 ? (size_t)(end - keep) : sizeof torn - 1;
    ssize_t got = pread(fd, torn, tn, keep);
    torn[got > 0 ? got : 0] = '\0';
    for (char *p = torn; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    if (ftruncate(fd, keep) != 0 || fdatasync(fd) != 0) {
        rc = -errno;
        bj_error("%s: a torn last line (%ld bytes) could not be cut off: %s", path, (long)(end - keep),
                 strerror(errno));
        goto out;
    }
    bj_warn("%s: cut off a torn last line of %ld bytes (a write cut short by a full disk or a kill): '%s%s'",
            path, (long)(end - keep), torn, (size_t)(end - keep) > tn ? "..." : "");
    rc = (long)(end - keep);
out:
    close(fd);
    return rc;
}

static int open_fd(struct bj_logfile *lf)
{
    lf->fd = open(lf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (lf->fd < 0)
        return -errno;
    struct stat st;
    char dir[PATH_MAX];
    dir_of(lf->path, dir, sizeof dir);
    if (fstat(lf->fd, &st) != 0 || bj_dir_identity(dir, &lf->dir_dev, &lf->dir_ino) != 0) {
        int e = errno;
        close(lf->fd);
        lf->fd = -1;
        return -e;
    }
    lf->dev = st.st_dev;
    lf->ino = st.st_ino;
    lf->size = (uint64_t)st.st_size;
    return 0;
}

int bj_logfile_open(struct bj_logfile *lf, const char *path, uint64_t max_bytes, int keep)
{
    memset(lf, 0, sizeof *lf);
    lf->fd = -1;
    bj_strlcpy(lf->path, path, sizeof lf->path);
    lf->max_bytes = max_bytes;
    lf->keep = keep < 1 ? 1 : keep;
    long r = bj_logfile_repair(path);
    if (r > 0)
        lf->repaired += (uint64_t)r;
    return open_fd(lf);
}

int bj_logfile_rotate(struct bj_logfile *lf)
{
    char from[PATH_MAX + 16], to[PATH_MAX + 16];
    for (int k = lf->keep - 1; k >= 1; k--) {
        snprintf(from, sizeof from, "%s.%d", lf->path, k);
        snprintf(to, sizeof to, "%s.%d", lf->path, k + 1);
        if (rename(from, to) != 0 && errno != ENOENT)
            bj_warn("%s: rotation: %s", from, strerror(errno));
    }
    snprintf(to, sizeof to, "%s.1", lf->path);
    int rc = 0;
    if (rename(lf->path, to) != 0 && errno != ENOENT)
        rc = -errno;
    if (lf->fd >= 0)
        close(lf->fd);
    lf->fd = -1;
    int o = open_fd(lf);
    if (rc == 0 && o == 0)
        bj_info("%s: rotated (kept %d older file%s)", lf->path, lf->keep, lf->keep == 1 ? "" : "s");
    return rc ? rc : o;
}

int bj_logfile_append(struct bj_logfile *lf, const char *line, bool sync)
{
    size_t n = strlen(line);
    bool nl = n > 0 && line[n - 1] == '\n';
    if (lf->fd < 0) {
        int o = open_fd(lf);
        if (o) {
            lf->write_errors++;
            return o;
        }
    }
    if (lf->max_bytes && lf->size > 0 && lf->size + n + 1 > lf->max_bytes) {
        int r = bj_logfile_rotate(lf);
        if (r)
            bj_warn("%s: rotation failed: %s (appending to the current file)", lf->path, strerror(-r));
        if (lf->fd < 0) {
            lf->write_errors++;
            return r ? r : -EBADF;
        }
    }
    char stackbuf[1024];
    char *buf = n + 2 <= sizeof stackbuf ? stackbuf : malloc(n + 2);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, line, n);
    if (!nl)
        buf[n++] = '\n';
    ssize_t w = write(lf->fd, buf, n);
    int rc = 0;
    if (w != (ssize_t)n) {
        rc = w < 0 ? -errno : -ENOSPC;
        /* Undo the part that went in: the file keeps whole lines only. */
        if (w > 0 && ftruncate(lf->fd, (off_t)lf->size) != 0)
            bj_warn("%s: could not undo a partial line: %s", lf->path, strerror(errno));
        lf->write_errors++;
    } else {
        lf->size += n;
        if (sync && fdatasync(lf->fd) != 0) {
            rc = -errno;
            lf->write_errors++;
        }
    }
    if (buf != stackbuf)
        free(buf);
    return rc;
}

int bj_logfile_check(struct bj_logfile *lf)
{
    char dir[PATH_MAX];
    dir_of(lf->path, dir, sizeof dir);
    dev_t ddev = 0;
    ino_t dino = 0;
    struct stat st;
    const char *why = NULL;
    if (bj_dir_identity(dir, &ddev, &dino) != 0)
        why = "its directory is gone";
    else if (ddev != lf->dir_dev || dino != lf->dir_ino)
        why = "its directory was replaced";
    else if (stat(lf->path, &st) != 0)
        why = "the file was deleted or moved away";
    else if (st.st_dev != lf->dev || st.st_ino != lf->ino)
        why = "the file was replaced";
    if (!why && lf->fd >= 0)
        return 0;
    if (!why)
        why = "it was not open";
    if (lf->fd >= 0)
        close(lf->fd);
    lf->fd = -1;
    lf->reopens++;
    int mk = bj_mkdirs(dir);
    int o = mk ? mk : open_fd(lf);
    if (o)
        bj_error("%s: %s; reopening failed: %s (lines are not written until it can be reopened)", lf->path, why,
                 strerror(-o));
    else
        bj_warn("%s: %s; reopened a new file there", lf->path, why);
    return 1;
}

void bj_logfile_close(struct bj_logfile *lf)
{
    if (lf->fd >= 0)
        close(lf->fd);
    lf->fd = -1;
}
