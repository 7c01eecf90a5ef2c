/* notify: systemd's service notification protocol (sd_notify), for Type=notify units.
 *
 * READY=1 once the hive runs, STATUS= lines for `systemctl status`, WATCHDOG=1 keep-alives that
 * the supervisor sends only while every part is healthy (so that a stalled daemon is restarted
 * by systemd's WatchdogSec), STOPPING=1 at shutdown. Without NOTIFY_SOCKET (not started by
 * systemd) every call does nothing. Any thread may call these (sd_notify is thread-safe). */
#ifndef BJ_NOTIFY_H
#define BJ_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Whether a service manager listens (NOTIFY_SOCKET is set). */
bool bj_notify_enabled(void);
void bj_notify_ready(void);
void bj_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bj_notify_watchdog(void);
void bj_notify_stopping(void);
/* The watchdog interval systemd expects keep-alives within (WatchdogSec), microseconds; 0 when
 * there is no watchdog. Ping at half of it. */
uint64_t bj_notify_watchdog_usec(void);

#endif
