/* logfile: append-only text logs that survive torn writes, rotation and a vanished directory.
 *
 * crash_reports.log (the journal of deaths) and other line-oriented text logs are opened through
 * here. At open a torn last line (a write cut short by a full disk or a kill) is cut off and
 * reported, so the next line never glues onto it. The file's identity (st_dev/st_ino of the file
 * and its directory) is remembered; bj_logfile_check() compares it with what the path names now
 * and reopens when the directory was replaced or the file deleted or rotated by someone else,
 * saying so (a deleted data directory is reported, never written into silently). Size-based
 * rotation keeps `keep` old files: name.1 (newest) .. name.<keep>.
 *
 * Threads: one struct bj_logfile is used by one thread at a time (the caller locks); the helpers
 * that take a path only are stateless. */
#ifndef BJ_LOGFILE_H
#define BJ_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bj_logfile {
    int fd;               /* -1 when closed */
    char path[4096];
    dev_t dev, dir_dev;   /* identity at open */
    ino_t ino, dir_ino;
    uint64_t max_bytes;   /* rotate when a write would pass this; 0: never */
    int keep;             /* rotated files kept (name.1 .. name.keep) */
    uint64_t size;        /* bytes in the current file */
    uint64_t repaired;    /* torn bytes cut off at opens */
    uint64_t reopens;     /* times the identity check reopened the file */
    uint64_t write_errors;
};

/* Cuts a torn last line off `path` (everything after the last '\n'); the cut text is logged.
 * Returns the number of bytes removed (0: nothing torn, or no file), or -errno. */
long bj_logfile_repair(const char *path);

/* Repairs, then opens `path` for appending (created 0644). max_bytes/keep: rotation (0: none).
 * Returns 0, or -errno (lf->fd is then -1). */
int bj_logfile_open(struct bj_logfile *lf, const char *path, uint64_t max_bytes, int keep);

/* Appends one whole line (a '\n' is added when missing) with one write, rotating first when the
 * line would pass max_bytes; sync: fdatasync after. A short write (full disk) is undone by
 * truncating back, so the file never holds a partial line. Returns 0 or -errno. */
int bj_logfile_append(struct bj_logfile *lf, const char *line, bool sync);

/* Renames name.(k) -> name.(k+1) for k = keep-1..1, then name -> name.1, and reopens an empty
 * file. Returns 0 or -errno. */
int bj_logfile_rotate(struct bj_logfile *lf);

/* Whether the path still names the open file in the same directory. 0: same; 1: it changed
 * (directory replaced or deleted, file moved or deleted) and was reopened (or the reopen failed:
 * then fd is -1 and the next check tries again); the change is logged. -errno when the check
 * itself failed. */
int bj_logfile_check(struct bj_logfile *lf);

void bj_logfile_close(struct bj_logfile *lf);

/* Identity of a directory, for callers that watch their data directory. 0 or -errno. */
int bj_dir_identity(const char *dir, dev_t *dev, ino_t *ino);

#endif
