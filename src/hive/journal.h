/* journal: crash_reports.log, one line per death, made durable in groups.
 *
 * Each line is the original's format plus the brain: `TIME - CRASH #N: BRAIN CAUSE (detail)`.
 * An engine appends the deaths of one step and then commits once (one fdatasync for the whole
 * step, as redis groups its AOF writes), before the step's events are published: whoever saw a
 * death finds it here, even after kill -9, and no brain waits for the disk more than once per
 * step. A line is written with one write(); a short write (a full disk) is cut back to the last
 * whole line, so a later line is never glued onto a torn one. A failed write is counted and
 * reported, never fatal: the store is the source of truth for history.
 *
 * Threads: any (engines of several models share one journal; it has its own lock). */
#ifndef BJ_JOURNAL_H
#define BJ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct bj_journal;

/* Opens (creates) dir/crash_reports.log for appending; repairs a torn last line left by an
 * earlier crash. NULL with err. */
struct bj_journal *bj_journal_open(const char *dir, char *err, size_t errlen);
void bj_journal_close(struct bj_journal *j);

/* Appends the line of one DEATH event (not yet durable). */
void bj_journal_death(struct bj_journal *j, const struct bj_event *death);
/* Makes everything appended so far durable (one fdatasync, only when something is pending). */
void bj_journal_commit(struct bj_journal *j);
/* Closes and reopens the file (SIGHUP: after logrotate moved it). 0 or -1 (logged). */
int bj_journal_reopen(struct bj_journal *j);

/* Deaths whose line could not be written or synced. */
uint64_t bj_journal_failures(struct bj_journal *j);

#endif
