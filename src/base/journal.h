/* journal: crash_reports.log, one line per death: its format, its parser, appends made durable in
 * groups, the torn-line repair, rotation. The one place that knows the file; the hive appends the
 * deaths of its brains, the store reads the file back (deaths it lacks) and writes the lines it
 * adds itself (UNCLEAN_EXIT, back-fill).
 *
 * Each line is the original's format plus the brain: `TIME - CRASH #N: BRAIN CAUSE (detail)`, TIME
 * ISO-8601 UTC with microseconds. An engine appends the deaths of one step and then commits once
 * (one fdatasync for the whole step, as redis groups its AOF writes), before the step's events are
 * published: whoever saw a death finds it here, even after kill -9, and no brain waits for the disk
 * more than once per step. Lines go through base/logfile: one write() each; a short write (a full
 * disk) is cut back to the last whole line; a torn last line left by a crash is cut at open.
 *
 * A full disk: the file keeps BJ_JOURNAL_RESERVE bytes allocated past its end (fallocate with
 * KEEP_SIZE, refilled at each commit while there is room), so the lines of the deaths that happen
 * after the disk filled still land (about 2,500 of them), and the counts restored at the next start
 * never go back to a number already published. Where the file system cannot preallocate, or once
 * the reserve is spent, a failed write is counted and reported, never fatal, and the brain's count
 * is written instead, in place, into crash_reports.counts: a file of fixed size (one 64-byte
 * record per brain, written whole at open) that needs no new block when the disk is full. The
 * store takes each brain's count at start as the highest of its rows, the journal's lines and this
 * file, so a number published once is never given again.
 *
 * Threads: a struct bj_journal from any thread (engines of several models share one; it has its
 * own lock). The path helpers (format, parse, scan, rotate) are stateless. */
#ifndef BJ_JOURNAL_H
#define BJ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define BJ_JOURNAL_NAME "crash_reports.log"
#define BJ_JOURNAL_LINE_MAX 600
#define BJ_JOURNAL_RESERVE (256u << 10)
#define BJ_JOURNAL_COUNTS_NAME "crash_reports.counts"
#define BJ_JOURNAL_COUNT_SLOTS 256 /* brains a hive may have (BJ_MAX_BRAINS) */

/* What a line says (the detail in parentheses is for people; it is not parsed). */
struct bj_journal_entry {
    int64_t time_us;
    uint32_t count;
    char brain[32];
    char cause[24];
};

/* The line of e with detail (NULL: empty), '\n'-terminated, control characters replaced by
 * spaces, cut to fit `len` (at most BJ_JOURNAL_LINE_MAX is ever needed). Returns its length. */
size_t bj_journal_format(const struct bj_journal_entry *e, const char *detail, char *line, size_t len);
/* A line back into its fields. 0, or -1 when it is not a death line. */
int bj_journal_parse(const char *line, struct bj_journal_entry *e);

struct bj_journal_scan {
    uint64_t lines, deaths, unparsable;
    uint64_t first_bad;      /* line number of the first unparsable line (0: none) */
    char first_bad_text[80]; /* its beginning, control characters replaced */
};
/* Calls fn for every death line of the file at `path`, in order (fn returns non-zero to stop);
 * counts the lines it cannot read. 0 (a missing file is empty), or -errno. */
int bj_journal_scan(const char *path, int (*fn)(void *ud, const struct bj_journal_entry *e), void *ud,
                    struct bj_journal_scan *out);

/* Calls fn for each brain recorded in dir/crash_reports.counts (the count of a death whose line
 * could not be written). 0 (no file: none), or -errno. */
int bj_journal_read_counts(const char *dir, void (*fn)(void *ud, const char *brain, uint32_t count), void *ud);

/* Rotates dir/crash_reports.log when it is past max_bytes (name -> name.1 -> ... -> name.<keep>).
 * 1 when it rotated (whoever holds it open must reopen), 0 when not needed, -errno. */
int bj_journal_rotate(const char *dir, uint64_t max_bytes, int keep);

struct bj_journal;

/* Opens (creates) dir/crash_reports.log for appending; repairs a torn last line left by an
 * earlier crash; reserves room past the end. NULL with err. */
struct bj_journal *bj_journal_open(const char *dir, char *err, size_t errlen);
void bj_journal_close(struct bj_journal *j);

/* Appends the line of one DEATH event (not yet durable). */
void bj_journal_death(struct bj_journal *j, const struct bj_event *death);
/* Appends one line (not yet durable). 0 or -errno (counted and reported). */
int bj_journal_append(struct bj_journal *j, const struct bj_journal_entry *e, const char *detail);
/* Makes everything appended so far durable (one fdatasync, only when something is pending) and
 * refills the reserve. */
void bj_journal_commit(struct bj_journal *j);
/* Closes and reopens the file (SIGHUP: after logrotate moved it). 0 or -1 (logged). */
int bj_journal_reopen(struct bj_journal *j);

/* Deaths whose line could not be written or synced. */
uint64_t bj_journal_failures(struct bj_journal *j);

#endif
