/* store_writer: the writer thread: takes events off the bus, keeps them in a bounded backlog and
 * commits them in small transactions, retrying with backoff when the database fails. See store.h. */
#include "store_int.h"

/* ---- the writer ----------------------------------------------------------------------------- */

static struct brain_acc *acc_of(struct bj_store *st, const char *id)
{
    for (size_t i = 0; i < st->n_acc; i++)
        if (strcmp(st->acc[i].id, id) == 0)
            return &st->acc[i];
    if (st->n_acc == st->cap_acc) {
        size_t cap = st->cap_acc ? st->cap_acc * 2 : 16;
        struct brain_acc *a = realloc(st->acc, cap * sizeof *a);
        if (!a)
            return NULL;
        st->acc = a;
        st->cap_acc = cap;
    }
    struct brain_acc *a = &st->acc[st->n_acc++];
    memset(a, 0, sizeof *a);
    bj_strlcpy(a->id, id, sizeof a->id);
    a->life = bj_store_brain_deaths(st, id) + 1;
    return a;
}

/* Token events only feed the accumulator: a thought's start time and token count. */
static void on_token(struct bj_store *st, const struct bj_event *ev)
{
    struct brain_acc *a = acc_of(st, ev->brain);
    if (!a)
        return;
    if (a->thought != ev->thought || a->tokens == 0) {
        a->thought = ev->thought;
        a->started_us = ev->time_us;
        a->tokens = 0;
        a->first_jar = ev->jar_used;
    }
    a->tokens++;
    a->last_jar = ev->jar_used;
}

static void backlog_push(struct bj_store *st, struct bj_event *ev)
{
    if (st->len >= st->p.backlog_max) {
        pthread_mutex_lock(&st->slock);
        uint64_t n = ++st->stats.overflow;
        pthread_mutex_unlock(&st->slock);
        if (ev->type == BJ_EV_DEATH)
            st->need_journal_import = true;
        if (n == 1 || n % 1000 == 0)
            bj_error("store: backlog full (%zu events): %" PRIu64 " event%s dropped so far (deaths are taken back "
                     "from %s once writing works)", st->len, n, n == 1 ? "" : "s", BJ_JOURNAL_NAME);
        bj_event_clear(ev);
        return;
    }
    if (st->len == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        if (cap > st->p.backlog_max)
            cap = st->p.backlog_max;
        struct queued *b = malloc(cap * sizeof *b);
        if (!b) {
            bj_event_clear(ev);
            pthread_mutex_lock(&st->slock);
            st->stats.overflow++;
            pthread_mutex_unlock(&st->slock);
            return;
        }
        for (size_t i = 0; i < st->len; i++)
            b[i] = st->backlog[(st->head + i) % st->cap];
        free(st->backlog);
        st->backlog = b;
        st->cap = cap;
        st->head = 0;
    }
    /* What the brain's accumulator says now (later events change it before the flush). */
    struct queued q = {.ev = *ev, .tokens = -1};
    /* A remote brain's events never touch a local brain's accumulator, whatever name they carry. */
    struct brain_acc *a = ev->brain[0] && !ev->node[0] ? acc_of(st, ev->brain) : NULL;
    if (a) {
        if (ev->type == BJ_EV_RESURRECTION)
            a->life = ev->crash_count + 1;
        q.life = a->life;
        if (ev->type == BJ_EV_THOUGHT && a->thought == ev->thought && a->tokens > 0) {
            q.tokens = a->tokens;
            if (a->last_jar > a->first_jar && a->last_jar - a->first_jar + 1 > q.tokens)
                q.tokens = a->last_jar - a->first_jar + 1; /* tokens merged by the bus still took their cells */
            q.started_us = a->started_us;
            a->tokens = 0;
        }
    } else {
        q.life = ev->crash_count + 1;
    }
    st->backlog[(st->head + st->len) % st->cap] = q;
    st->len++;
    pthread_mutex_lock(&st->slock);
    st->stats.backlog = st->len;
    if (st->len > st->stats.backlog_peak)
        st->stats.backlog_peak = st->len;
    pthread_mutex_unlock(&st->slock);
}

/* A THOUGHT, DEATH or RESURRECTION of a brain on another node (ev->node set): its row in the
 * remote tables and its (node, brain) row in remote_brains; never a local row. SQLITE_OK or the
 * error. */
static int write_remote(struct bj_store *st, const struct bj_event *ev)
{
    int64_t run = st->run_id;
    sqlite3_stmt *s = st->stmt[ST_R_BRAIN];
    sqlite3_bind_text(s, 1, ev->node, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, ev->crash_count);
    sqlite3_bind_int64(s, 4, run);
    sqlite3_bind_int64(s, 5, ev->time_us);
    int rc = store_step_done(s);
    if (rc != SQLITE_OK)
        return rc;
    int i = 1;
    if (ev->type == BJ_EV_THOUGHT)
        s = st->stmt[ST_R_THOUGHT];
    else if (ev->type == BJ_EV_DEATH)
        s = st->stmt[ST_R_DEATH];
    else
        s = st->stmt[ST_R_RES];
    sqlite3_bind_int64(s, i++, run);
    sqlite3_bind_text(s, i++, ev->node, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, ev->brain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ev->crash_count);
    if (ev->type == BJ_EV_THOUGHT)
        sqlite3_bind_int64(s, i++, ev->thought);
    else if (ev->type == BJ_EV_DEATH)
        sqlite3_bind_text(s, i++, ev->cause[0] ? ev->cause : BJ_DEATH_UNKNOWN_NAME, -1, SQLITE_STATIC);
    store_bind_text(s, i++, ev->text);
    sqlite3_bind_int64(s, i++, ev->time_us);
    sqlite3_bind_int64(s, i++, (int64_t)ev->seq);
    return store_step_done(s);
}

static bool is_remote(const struct bj_event *ev)
{
    return ev->node[0] &&
           (ev->type == BJ_EV_THOUGHT || ev->type == BJ_EV_DEATH || ev->type == BJ_EV_RESURRECTION);
}

/* One event -> its rows. SQLITE_OK or the error. */
static int write_event(struct bj_store *st, const struct queued *q, int *rows)
{
    const struct bj_event *ev = &q->ev;
    sqlite3_stmt *s;
    int64_t run = st->run_id;
    int rc = SQLITE_OK;
    if (is_remote(ev)) {
        rc = write_remote(st, ev);
        if (rc == SQLITE_OK)
            (*rows)++;
        return rc;
    }
    switch (ev->type) {
    case BJ_EV_THOUGHT: {
        s = st->stmt[ST_THOUGHT];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, q->life);
        sqlite3_bind_int64(s, 4, ev->thought);
        if (q->started_us)
            sqlite3_bind_int64(s, 5, q->started_us);
        sqlite3_bind_int64(s, 6, ev->time_us);
        if (q->tokens >= 0)
            sqlite3_bind_int(s, 7, q->tokens);
        sqlite3_bind_int(s, 8, ev->complete);
        sqlite3_bind_text(s, 9, ev->text ? ev->text : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 10, (int64_t)ev->seq);
        rc = store_step_done(s);
        break;
    }
    case BJ_EV_DEATH:
        s = st->stmt[ST_DEATH];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, ev->crash_count);
        sqlite3_bind_text(s, 4, ev->cause[0] ? ev->cause : BJ_DEATH_UNKNOWN_NAME, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int(s, 6, ev->jar_used);
        sqlite3_bind_int(s, 7, ev->jar_tokens);
        sqlite3_bind_int64(s, 8, (int64_t)ev->seq);
        rc = store_step_done(s);
        if (rc == SQLITE_OK) {
            s = st->stmt[ST_DEATH_BRAIN];
            sqlite3_bind_text(s, 1, ev->brain, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, ev->crash_count);
            sqlite3_bind_int64(s, 3, run);
            rc = store_step_done(s);
        }
        break;
    case BJ_EV_RESURRECTION:
        s = st->stmt[ST_RES];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, ev->crash_count + 1);
        sqlite3_bind_int64(s, 4, ev->time_us);
        sqlite3_bind_int64(s, 5, (int64_t)ev->seq);
        rc = store_step_done(s);
        break;
    case BJ_EV_OBSERVE:
        s = st->stmt[ST_OBS];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
        store_bind_text(s, 3, ev->from);
        store_bind_text(s, 4, ev->node);
        store_bind_text(s, 5, ev->text);
        sqlite3_bind_int64(s, 6, ev->time_us);
        sqlite3_bind_int64(s, 7, (int64_t)ev->seq);
        rc = store_step_done(s);
        break;
    case BJ_EV_OPERATOR:
        s = st->stmt[ST_OP];
        sqlite3_bind_int64(s, 1, run);
        store_bind_text(s, 2, ev->brain);
        sqlite3_bind_text(s, 3, ev->cause[0] ? ev->cause : "unknown", -1, SQLITE_STATIC);
        store_bind_text(s, 4, ev->text);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int64(s, 6, (int64_t)ev->seq);
        rc = store_step_done(s);
        break;
    case BJ_EV_LINK:
        s = st->stmt[ST_LINK];
        sqlite3_bind_int64(s, 1, run);
        store_bind_text(s, 2, ev->from);
        store_bind_text(s, 3, ev->state);
        store_bind_text(s, 4, ev->text);
        sqlite3_bind_int64(s, 5, ev->time_us);
        sqlite3_bind_int64(s, 6, (int64_t)ev->seq);
        rc = store_step_done(s);
        break;
    case BJ_EV_ERROR:
    case BJ_EV_WATCHDOG:
    case BJ_EV_BUDGET:
        s = st->stmt[ST_NOTICE];
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_text(s, 2, bj_event_type_name(ev->type), -1, SQLITE_STATIC);
        store_bind_text(s, 3, ev->brain);
        store_bind_text(s, 4, ev->cause);
        store_bind_text(s, 5, ev->text);
        sqlite3_bind_int64(s, 6, ev->time_us);
        sqlite3_bind_int64(s, 7, (int64_t)ev->seq);
        rc = store_step_done(s);
        /* An error about a brain, but not the store's own: the brain could not start. */
        if (rc == SQLITE_OK && ev->type == BJ_EV_ERROR && ev->brain[0] && strcmp(ev->cause, "STORE") != 0) {
            s = st->stmt[ST_NOT_STARTED];
            sqlite3_bind_int64(s, 1, run);
            sqlite3_bind_text(s, 2, ev->brain, -1, SQLITE_STATIC);
            rc = store_step_done(s);
        }
        break;
    case BJ_EV_LAB:
        rc = store_lab_event(st, ev);
        break;
    default:
        return SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        (*rows)++;
    return rc;
}

/* Whether SQLite refused a statement for what was in it (a constraint, a type, a size) rather
 * than for the state of the database or the disk: retrying such an event can never succeed. */
static bool data_error(int rc)
{
    int primary = rc & 0xff;
    return primary == SQLITE_CONSTRAINT || primary == SQLITE_MISMATCH || primary == SQLITE_TOOBIG ||
           primary == SQLITE_RANGE;
}

/* Puts an event the database refused into quarantine with the reason (and the event as JSON,
 * when that fits). SQLITE_OK, or the error when even that failed (the event is then lost). */
static int quarantine(struct bj_store *st, const struct queued *q, const char *reason)
{
    const struct bj_event *ev = &q->ev;
    char *json = bj_event_to_json(ev);
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        sqlite3_stmt *s = st->stmt[ST_QUARANTINE];
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_text(s, 2, bj_event_type_name(ev->type), -1, SQLITE_STATIC);
        store_bind_text(s, 3, ev->node);
        store_bind_text(s, 4, ev->brain);
        sqlite3_bind_text(s, 5, reason, -1, SQLITE_TRANSIENT);
        store_bind_text(s, 6, attempt == 0 ? json : NULL); /* the second try: without the event */
        sqlite3_bind_int64(s, 7, ev->time_us);
        sqlite3_bind_int64(s, 8, (int64_t)ev->seq);
        rc = store_step_done(s);
        if (rc == SQLITE_OK || !data_error(rc))
            break;
    }
    free(json);
    return rc;
}

/* Writes one event inside its own savepoint: an event refused for its data is rolled back alone
 * and quarantined, and the batch goes on; any other failure is returned (the whole batch is
 * retried later). */
static int write_guarded(struct bj_store *st, const struct queued *q, int *rows)
{
    int rc = store_step_done(st->stmt[ST_SAVEPOINT]);
    if (rc != SQLITE_OK)
        return rc;
    rc = write_event(st, q, rows);
    if (rc != SQLITE_OK && data_error(rc)) {
        char reason[300];
        snprintf(reason, sizeof reason, "%s", sqlite3_errmsg(st->db));
        int rb = store_step_done(st->stmt[ST_ROLLBACK_TO]);
        if (rb != SQLITE_OK)
            return rb;
        rc = quarantine(st, q, reason);
        pthread_mutex_lock(&st->slock);
        uint64_t nq = rc == SQLITE_OK ? ++st->stats.quarantined : st->stats.quarantined;
        if (rc != SQLITE_OK && data_error(rc))
            st->stats.unwritable++;
        pthread_mutex_unlock(&st->slock);
        if (rc != SQLITE_OK && data_error(rc))
            rc = SQLITE_OK; /* not even quarantine takes it: counted as lost, the batch goes on */
        if ((nq & (nq - 1)) == 0)
            bj_warn("store: a %s event%s%s was refused (%s) and put in quarantine (%" PRIu64 " so far)",
                    bj_event_type_name(q->ev.type), q->ev.brain[0] ? " of " : "", q->ev.brain, reason, nq);
    }
    if (rc != SQLITE_OK)
        return rc;
    return store_step_done(st->stmt[ST_RELEASE]);
}

/* Re-creates the database where the data directory now is (it was replaced or deleted). */
static void reopen_after_dir_change(struct bj_store *st)
{
    store_finalize_all(st);
    sqlite3_close(st->db);
    st->db = NULL;
    char err[300];
    int status;
    int rc = bj_mkdirs(st->dir);
    if (rc) {
        bj_error("store: data directory %s cannot be re-created: %s", st->dir, strerror(-rc));
        return;
    }
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    st->lock_fd = -1;
    if (store_take_lock(st, &status, err, sizeof err))
        bj_error("store: %s", err);
    bj_dir_identity(st->dir, &st->dir_dev, &st->dir_ino);
    if (store_open_writer_db(st, &status, err, sizeof err) || !st->info ||
        store_insert_run(st, st->info, bj_event_now(), err, sizeof err)) {
        bj_error("store: reopening %s failed: %s (retrying)", st->db_path, err);
        if (st->db) {
            store_finalize_all(st);
            sqlite3_close(st->db);
            st->db = NULL;
        }
        return;
    }
    pthread_mutex_lock(&st->rlock);
    sqlite3_close(st->rdb);
    st->rdb = store_open_db(st->db_path, false, 2000, err, sizeof err);
    pthread_mutex_unlock(&st->rlock);
    bj_warn("store: a new %s was made in the re-created data directory (run %" PRId64 "); earlier history is "
            "wherever the old directory went", st->db_path, st->run_id);
}

static void check_dir(struct bj_store *st)
{
    dev_t dev = 0;
    ino_t ino = 0;
    const char *why = NULL;
    if (bj_dir_identity(st->dir, &dev, &ino) != 0)
        why = "was deleted";
    else if (dev != st->dir_dev || ino != st->dir_ino)
        why = "was replaced";
    else if (access(st->db_path, F_OK) != 0)
        why = "lost its database file";
    if (!why)
        return;
    pthread_mutex_lock(&st->slock);
    st->stats.dir_changes++;
    pthread_mutex_unlock(&st->slock);
    char msg[PATH_MAX + 160];
    snprintf(msg, sizeof msg, "store: the data directory %s %s while running; writing goes on in a new one there",
             st->dir, why);
    bj_error("%s", msg);
    store_report(st, msg);
    reopen_after_dir_change(st);
}

/* Commits up to `batch` events of the backlog in one transaction. Returns 0 when they were
 * written (or there was nothing to write), -1 when the commit failed (they stay queued). */
static int flush(struct bj_store *st)
{
    if (st->len == 0)
        return 0;
    int64_t now = bj_now_us();
    if (now < st->retry_at_us)
        return -1;
    if (!st->db) {
        reopen_after_dir_change(st);
        if (!st->db) {
            st->backoff_us = st->backoff_us ? (st->backoff_us * 2 > 5000000 ? 5000000 : st->backoff_us * 2) : 100000;
            st->retry_at_us = now + st->backoff_us;
            return -1;
        }
    }
    size_t n = st->len < (size_t)st->p.batch ? st->len : (size_t)st->p.batch;
    int rows = 0, rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    int64_t last_us = 0;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        const struct queued *q = &st->backlog[(st->head + i) % st->cap];
        rc = write_guarded(st, q, &rows);
        if (q->ev.time_us > last_us)
            last_us = q->ev.time_us;
    }
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = st->stmt[ST_LAST_US];
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_int64(s, 2, last_us);
        rc = store_step_done(s);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "store: commit of %zu events failed: %s (%zu waiting; retrying)", n,
                 sqlite3_errmsg(st->db), st->len);
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        st->backoff_us = st->backoff_us ? (st->backoff_us * 2 > 5000000 ? 5000000 : st->backoff_us * 2) : 100000;
        st->retry_at_us = now + st->backoff_us;
        pthread_mutex_lock(&st->slock);
        bool first = !st->stats.failing;
        st->stats.failing = true;
        st->stats.commit_errors++;
        bj_strlcpy(st->stats.last_error, msg, sizeof st->stats.last_error);
        pthread_mutex_unlock(&st->slock);
        if (first || now - st->last_report_us > 10000000) {
            bj_error("%s", msg);
            store_report(st, msg);
            st->last_report_us = now;
        }
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        bj_event_clear(&st->backlog[(st->head + i) % st->cap].ev);
    st->head = (st->head + n) % st->cap;
    st->len -= n;
    bool recovered = false;
    pthread_mutex_lock(&st->slock);
    st->stats.rows += (uint64_t)rows;
    st->stats.commits++;
    st->stats.backlog = st->len;
    if (st->stats.failing) {
        st->stats.failing = false;
        recovered = true;
    }
    pthread_mutex_unlock(&st->slock);
    st->backoff_us = 0;
    st->retry_at_us = 0;
    if (recovered) {
        bj_info("store: writing works again (%zu events still waiting)", st->len);
        char msg[120];
        snprintf(msg, sizeof msg, "store: writing works again");
        store_report(st, msg);
    }
    if (st->need_journal_import && st->len == 0) {
        char e[200];
        int k = store_import_journal(st, e, sizeof e);
        if (k >= 0) {
            st->need_journal_import = false;
            bj_info("store: %d death%s that overflowed the backlog taken back from %s", k, k == 1 ? "" : "s",
                    BJ_JOURNAL_NAME);
        }
    }
    return 0;
}

static void *writer_main(void *arg)
{
    struct bj_store *st = arg;
    int64_t deadline = 0;    /* monotonic: when the oldest queued event must be committed */
    int64_t last_commit = 0; /* commits come as soon as the bus goes quiet, at most every 10 ms */
    const int64_t gap_us = 10000;
    bool bus_closed = false;
    for (;;) {
        int64_t now = bj_now_us();
        if (now - st->last_dir_check_us >= 1000000) {
            st->last_dir_check_us = now;
            check_dir(st);
        }
        bool stopping = atomic_load(&st->stopping);
        int wait_ms = 1000;
        if (st->len > 0) {
            int64_t due = last_commit + gap_us < deadline ? last_commit + gap_us : deadline;
            if (due < st->retry_at_us)
                due = st->retry_at_us;
            wait_ms = due <= now ? 0 : (int)((due - now + 999) / 1000);
        }
        bool retain = store_retain_on(st) && !stopping && !bus_closed;
        if (retain) {
            int64_t until = st->next_retain_us - now;
            int ms = until <= 0 ? 0 : (int)((until + 999) / 1000);
            if (ms < wait_ms)
                wait_ms = ms;
        }
        if (stopping || bus_closed)
            wait_ms = 0;
        struct bj_event ev;
        int r = bus_closed ? -1 : bj_sub_next(st->sub, &ev, wait_ms);
        if (r == 1) {
            pthread_mutex_lock(&st->slock);
            st->stats.events++;
            pthread_mutex_unlock(&st->slock);
            if (ev.type == BJ_EV_TOKEN) {
                on_token(st, &ev);
                bj_event_clear(&ev);
            } else {
                if (st->len == 0)
                    deadline = bj_now_us() + (int64_t)st->p.commit_ms * 1000;
                backlog_push(st, &ev);
            }
        } else if (r < 0) {
            bus_closed = true;
        }
        now = bj_now_us();
        bool drained = r != 1; /* nothing more was waiting */
        bool quiet = r == 0 && now >= last_commit + gap_us;
        if (st->len > 0 && (st->len >= (size_t)st->p.batch || now >= deadline || quiet ||
                            ((stopping || bus_closed) && drained))) {
            if (flush(st) == 0) {
                last_commit = now;
                if (st->len > 0)
                    deadline = now; /* more than one batch was waiting */
            }
        }
        /* Retention between commits: one batch at a time, so events never wait behind it. */
        if (retain && now >= st->next_retain_us && st->len < (size_t)st->p.batch) {
            bool more = false;
            store_retain_step(st, &more);
            st->next_retain_us = bj_now_us() + (more ? 0 : 1000000);
        }
        if ((stopping || bus_closed) && drained) {
            if (st->len == 0)
                break;
            /* The database fails: keep trying until stop's timeout. */
            int64_t wait = st->retry_at_us - bj_now_us();
            if (wait > 0) {
                struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
            if (atomic_load(&st->stop_timeout_ms) <= 0)
                break;
        }
    }
    return NULL;
}

int bj_store_start(struct bj_store *st, struct bj_bus *bus, char *err, size_t errlen)
{
    if (!st->db || st->run_id <= 0) {
        snprintf(err, errlen, "store: bj_store_begin_run must come first");
        return -1;
    }
    st->bus = bus;
    if (!st->p.report_bus)
        st->p.report_bus = bus;
    st->sub = bj_bus_subscribe(bus, "store", BJ_EV_ALL & ~BJ_EV_MASK(BJ_EV_STATUS), 4096);
    if (!st->sub) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->last_dir_check_us = bj_now_us();
    atomic_store(&st->stop_timeout_ms, 1);
    int rc = pthread_create(&st->thread, NULL, writer_main, st);
    if (rc) {
        snprintf(err, errlen, "store writer thread: %s", strerror(rc));
        bj_bus_unsubscribe(bus, st->sub);
        st->sub = NULL;
        return -1;
    }
    st->thread_started = true;
    st->ever_started = true;
    return 0;
}

/* Stops the writer thread (when it runs) and takes back what it could not write. Returns the
 * events left unwritten. */
static size_t stop_writer(struct bj_store *st, int timeout_ms)
{
    if (!st->thread_started)
        return 0;
    atomic_store(&st->stop_timeout_ms, timeout_ms);
    atomic_store(&st->stopping, true);
    /* The writer flushes and exits; past the timeout it is told to give up. */
    int64_t end = bj_now_us() + (int64_t)timeout_ms * 1000;
    while (pthread_tryjoin_np(st->thread, NULL) == EBUSY) {
        if (bj_now_us() >= end)
            atomic_store(&st->stop_timeout_ms, 0);
        struct timespec d = {0, 10 * 1000000L};
        nanosleep(&d, NULL);
    }
    st->thread_started = false;
    pthread_mutex_lock(&st->slock);
    st->stats.bus_dropped = bj_sub_dropped(st->sub);
    pthread_mutex_unlock(&st->slock);
    bj_bus_unsubscribe(st->bus, st->sub);
    st->sub = NULL;
    size_t lost = st->len;
    for (size_t i = 0; i < st->len; i++)
        bj_event_clear(&st->backlog[(st->head + i) % st->cap].ev);
    st->len = 0;
    if (lost)
        bj_error("store: %zu events could not be written before stopping (deaths are in %s)", lost,
                 BJ_JOURNAL_NAME);
    return lost;
}

int bj_store_stop(struct bj_store *st, bool clean, int timeout_ms)
{
    if (!st || !st->db || st->run_id <= 0 || st->run_marked)
        return 0;
    size_t lost = stop_writer(st, timeout_ms);
    pthread_mutex_lock(&st->slock);
    uint64_t overflow = st->stats.overflow + st->stats.unwritable;
    pthread_mutex_unlock(&st->slock);
    bool all = lost == 0 && overflow == 0;
    /* clean: the process stopped in order (the brains' lives ended without a death); lost:
     * events that never reached the database (deaths among them are in the journal); refused:
     * the run never started (its brains never lived: no UNCLEAN_EXIT for them, ever). Ended but
     * not clean: the next open must not add UNCLEAN_EXIT deaths for it either (recovered=1). */
    bool refused = st->refused[0] != '\0';
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "UPDATE runs SET ended_us=?2, clean=?3, lost=?4, refused=?5,"
                                   " recovered=CASE WHEN ?3 THEN recovered ELSE 1 END WHERE id=?1", -1, &s,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, st->run_id);
        sqlite3_bind_int64(s, 2, bj_event_now());
        sqlite3_bind_int(s, 3, clean && !refused);
        sqlite3_bind_int64(s, 4, (int64_t)(lost + overflow));
        store_bind_text(s, 5, refused ? st->refused : NULL);
        int rc = store_step_done(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_OK) {
            bj_error("store: could not mark run %" PRId64 " ended: %s", st->run_id, sqlite3_errmsg(st->db));
            all = false;
        } else {
            st->run_marked = true;
        }
    } else {
        all = false;
    }
    return all ? 0 : -1;
}

void bj_store_refuse_run(struct bj_store *st, const char *reason)
{
    if (st)
        bj_strlcpy(st->refused, reason && *reason ? reason : "refused", sizeof st->refused);
}

