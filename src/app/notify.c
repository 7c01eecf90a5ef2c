/* notify: see notify.h. A thin layer over libsystemd's sd_notify. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#include "log.h"

bool bj_notify_enabled(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

static void notify(const char *state)
{
    if (!bj_notify_enabled())
        return;
    int rc = sd_notify(0, state);
    if (rc < 0)
        bj_debug("sd_notify(%s): error %d", state, rc);
}

void bj_notify_ready(void) { notify("READY=1"); }
void bj_notify_watchdog(void) { notify("WATCHDOG=1"); }
void bj_notify_stopping(void) { notify("STOPPING=1"); }

void bj_notify_status(const char *fmt, ...)
{
    if (!bj_notify_enabled())
        return;
    char buf[512] = "STATUS=";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + 7, sizeof buf - 7, fmt, ap);
    va_end(ap);
    notify(buf);
}

uint64_t bj_notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
    return 0;
}
