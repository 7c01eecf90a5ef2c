/* store_retain: retention for long runs on small disks (--store-keep-days, --store-max-mb): the
 * oldest thoughts are deleted in small batches on the writer's thread and their pages given back
 * to the file system by incremental vacuum. Deaths, resurrections, runs and brains are kept
 * forever. See store.h. */
#include "store_int.h"

enum { RETAIN_BATCH = 256 }; /* thoughts per delete: a few ms, never a long stall of the writer */

bool store_retain_on(const struct bj_store *st)
{
    return st->p.keep_days > 0 || st->p.max_bytes > 0;
}

int store_retain_setup(struct bj_store *st, char *err, size_t errlen)
{
    int64_t mode = store_query_i64(st->db, "PRAGMA auto_vacuum", -1);
    int64_t tables = store_query_i64(st->db, "SELECT count(*) FROM sqlite_schema", -1);
    char e[300];
    if (tables == 0 && mode != 2) {
        /* A new database: incremental from its first table (it costs nothing until pruning). WAL
         * mode already wrote its header: the empty file's VACUUM (instant) applies the setting. */
        if (store_exec(st->db, "PRAGMA auto_vacuum=INCREMENTAL", e, sizeof e) || store_exec(st->db, "VACUUM", e, sizeof e)) {
            snprintf(err, errlen, "%s: %s", st->db_path, e);
            return -1;
        }
    } else if (mode != 2 && store_retain_on(st)) {
        /* A database made before retention existed: pruned pages can only be given back once the
         * file is rebuilt with incremental auto-vacuum, which takes one VACUUM (once; it needs
         * free disk space about the size of the database). */
        int64_t t0 = bj_now_us();
        bj_info("%s: converting to incremental auto-vacuum for retention (one VACUUM, once)", st->db_path);
        if (store_exec(st->db, "PRAGMA auto_vacuum=INCREMENTAL", e, sizeof e) || store_exec(st->db, "VACUUM", e, sizeof e)) {
            snprintf(err, errlen, "%s: the one-time VACUUM for retention failed: %s (free disk space the size of "
                     "the database, or run without --store-keep-days/--store-max-mb)", st->db_path, e);
            return -1;
        }
        bj_info("%s: converted in %.1f s", st->db_path, (double)(bj_now_us() - t0) / 1e6);
    }
    if (st->p.max_bytes > 0 && store_exec(st->db, "PRAGMA journal_size_limit=4194304", e, sizeof e)) {
        snprintf(err, errlen, "%s: %s", st->db_path, e);
        return -1;
    }
    return 0;
}

int64_t store_used_bytes(sqlite3 *db)
{
    int64_t pages = store_query_i64(db, "PRAGMA page_count", 0);
    int64_t free_pages = store_query_i64(db, "PRAGMA freelist_count", 0);
    int64_t size = store_query_i64(db, "PRAGMA page_size", 0);
    return (pages - free_pages) * size;
}

/* Deletes up to RETAIN_BATCH of the oldest rows of `table` (by id), only those whose `time_col`
 * is before cutoff_us (0: any). Returns rows deleted or -1. */
static int delete_oldest(sqlite3 *db, const char *table, const char *time_col, int64_t cutoff_us, char *err,
                         size_t errlen)
{
    char sql[300];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id IN (SELECT id FROM %s ORDER BY id LIMIT %d)%s%s%s", table,
             table, RETAIN_BATCH, cutoff_us ? " AND " : "", cutoff_us ? time_col : "", cutoff_us ? " < ?1" : "");
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    if (cutoff_us)
        sqlite3_bind_int64(s, 1, cutoff_us);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    return sqlite3_changes(db);
}

int store_retain_step(struct bj_store *st, bool *more)
{
    *more = false;
    if (!st->db)
        return 0;
    int64_t cutoff = 0;
    if (st->p.keep_days > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        cutoff = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - (int64_t)st->p.keep_days * 86400 * 1000000;
    }
    int64_t used = st->p.max_bytes ? store_used_bytes(st->db) : 0;
    bool over = st->p.max_bytes && used > (int64_t)st->p.max_bytes;
    if (over)
        cutoff = 0; /* over the cap: the oldest go, whatever their age */
    else if (!cutoff)
        return 0;
    char e[300] = "";
    int n = -1, m = -1;
    if (store_exec(st->db, "BEGIN IMMEDIATE", e, sizeof e) == 0) {
        n = delete_oldest(st->db, "thoughts", "ended_us", cutoff, e, sizeof e);
        m = n < 0 ? -1 : delete_oldest(st->db, "remote_thoughts", "time_us", cutoff, e, sizeof e);
        if (m < 0 || store_exec(st->db, "COMMIT", e, sizeof e)) {
            char e2[8];
            store_exec(st->db, "ROLLBACK", e2, sizeof e2);
            n = m = -1;
        }
    }
    if (n < 0) {
        bj_warn("store: retention: pruning failed (retried in a second): %s", e);
        return -1;
    }
    int deleted = n + m;
    if (deleted > 0 && store_exec(st->db, "PRAGMA incremental_vacuum", e, sizeof e))
        bj_warn("store: retention: incremental vacuum failed: %s", e);
    pthread_mutex_lock(&st->slock);
    st->stats.pruned += (uint64_t)deleted;
    pthread_mutex_unlock(&st->slock);
    if (over && deleted == 0 && !st->retain_full_reported) {
        st->retain_full_reported = true;
        char msg[300];
        snprintf(msg, sizeof msg, "store: %s holds %.1f MB with no thoughts left to prune (deaths and runs are "
                 "kept forever): raise --store-max-mb", st->db_path, (double)used / 1e6);
        bj_warn("%s", msg);
        store_report(st, msg);
    }
    *more = n == RETAIN_BATCH || m == RETAIN_BATCH || (over && deleted > 0);
    return deleted;
}
