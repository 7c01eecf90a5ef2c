/* Unit tests of the watchdog: sensors from fake files (missing ones stay missing), judging, and
 * the staged escalation in order: WARN, SLOW (throttle), KILL (one brain), EXIT only at last. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus.h"
#include "ops.h"
#include "util.h"
#include "watchdog.h"

static char g_root[512];

static void put(const char *rel, const char *text)
{
    char path[700], dir[700];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    bj_strlcpy(dir, path, sizeof dir);
    *strrchr(dir, '/') = '\0';
    bj_mkdirs(dir);
    char tmp[720];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    rename(tmp, path); /* the reader never sees half a file */
}

static void mem_used(double pct)
{
    char text[200];
    long total = 16000000, avail = (long)((double)total * (100.0 - pct) / 100.0);
    snprintf(text, sizeof text, "MemTotal: %ld kB\nMemFree: 1000 kB\nMemAvailable: %ld kB\n", total, avail);
    put("proc/meminfo", text);
}

static void make_root(void)
{
    const char *base = getenv("BJ_TEST_TMP") ? getenv("BJ_TEST_TMP") : "/tmp";
    bj_mkdirs(base);
    snprintf(g_root, sizeof g_root, "%s/wd-%d-XXXXXX", base, (int)getpid());
    assert_non_null(mkdtemp(g_root));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_sensors(void **state)
{
    (void)state;
    make_root();
    struct bj_watchdog_params p;
    bj_watchdog_params_default(&p);
    bj_watchdog_paths_under(&p, g_root);
    struct bj_wd_sample s;
    bj_watchdog_sample(&p, &s);
    assert_false(s.mem_ok); /* nothing there: nothing invented */
    assert_false(s.psi_ok);
    assert_false(s.temp_ok);
    assert_false(s.gpu_ok);
    mem_used(50);
    put("proc/pressure/memory", "some avg10=12.50 avg60=1.00 avg300=0.00 total=1\nfull avg10=3.00 avg60=0 avg300=0 total=1\n");
    put("sys/class/thermal/thermal_zone0/type", "acpitz\n");
    put("sys/class/thermal/thermal_zone0/temp", "91000\n");
    put("sys/class/thermal/thermal_zone1/type", "cpu-thermal\n");
    put("sys/class/thermal/thermal_zone1/temp", "47500\n");
    put("sys/class/thermal/thermal_zone2/type", "broken\n");
    put("sys/class/thermal/thermal_zone2/temp", "error\n");
    bj_watchdog_sample(&p, &s);
    assert_true(s.mem_ok);
    assert_true(s.mem_pct > 49.9 && s.mem_pct < 50.1);
    assert_true(s.psi_ok);
    assert_true(s.psi_some10 > 12.4 && s.psi_some10 < 12.6);
    assert_true(s.temp_ok);
    assert_string_equal(s.temp_zone, "acpitz");
    assert_true(s.temp_c > 90.9 && s.temp_c < 91.1);
    char why[200];
    assert_int_equal(bj_watchdog_judge(&p, &s, why, sizeof why), BJ_WD_KILL); /* 91 C */
    assert_non_null(strstr(why, "acpitz"));
    /* Zones by type name: only cpu-thermal. */
    bj_strlcpy(p.thermal_types, "gpu-thermal,cpu-thermal", sizeof p.thermal_types);
    bj_watchdog_sample(&p, &s);
    assert_string_equal(s.temp_zone, "cpu-thermal");
    assert_int_equal(bj_watchdog_judge(&p, &s, why, sizeof why), BJ_WD_OK);
    p.psi.warn = 10;
    assert_int_equal(bj_watchdog_judge(&p, &s, why, sizeof why), BJ_WD_WARN);
    assert_non_null(strstr(why, "PSI"));
}

struct rec {
    int throttle, max_throttle, kills, exits;
    char order[256];
};

static void rec_throttle(void *ud, int level)
{
    struct rec *r = ud;
    r->throttle = level;
    if (level > r->max_throttle)
        r->max_throttle = level;
}
static int rec_kill(void *ud, char *brain, size_t len)
{
    struct rec *r = ud;
    r->kills++;
    bj_strlcpy(brain, "GOD", len);
    return 0;
}
static void rec_exit(void *ud, const char *why)
{
    struct rec *r = ud;
    r->exits++;
}

static void drain(struct bj_sub *sub, struct rec *r)
{
    struct bj_event ev;
    while (bj_sub_next(sub, &ev, 0) == 1) {
        size_t n = strlen(r->order);
        snprintf(r->order + n, sizeof r->order - n, "%s%s", n ? " " : "", ev.cause);
        bj_event_clear(&ev);
    }
}

static void test_escalation(void **state)
{
    (void)state;
    make_root();
    mem_used(50);
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *sub = bj_bus_subscribe(bus, "t", BJ_EV_MASK(BJ_EV_WATCHDOG), 64);
    struct rec r = {0};
    struct bj_watchdog_params p;
    bj_watchdog_params_default(&p);
    bj_watchdog_paths_under(&p, g_root);
    p.bus = bus;
    p.interval_ms = 20;
    p.calm_samples = 3;
    p.kill_cooldown_ms = 100000; /* one kill in this test */
    p.exit_after = 5;
    p.throttle = rec_throttle;
    p.kill_largest = rec_kill;
    p.on_exit = rec_exit;
    p.ud = &r;
    struct bj_watchdog *w = bj_watchdog_new(&p);
    assert_int_equal(bj_watchdog_start(w), 0);
    sleep_ms(100);
    drain(sub, &r);
    assert_string_equal(r.order, ""); /* calm */
    mem_used(96);                     /* KILL level: escalates one stage per sample */
    sleep_ms(300);
    drain(sub, &r);
    assert_string_equal(r.order, "WARN SLOW KILL KILL"); /* the stage, then the kill itself */
    assert_int_equal(r.kills, 1);
    assert_true(r.max_throttle >= 1);
    assert_int_equal(r.exits, 0);
    mem_used(60); /* pressure gone: down stage by stage, throttling lifted */
    sleep_ms(600);
    drain(sub, &r);
    assert_string_equal(r.order, "WARN SLOW KILL KILL SLOW WARN OK");
    assert_int_equal(r.throttle, 0);
    struct bj_watchdog_stats ws;
    bj_watchdog_stats(w, &ws);
    assert_int_equal(ws.stage, BJ_WD_OK);
    assert_int_equal(ws.entered[BJ_WD_KILL], 1);
    assert_int_equal(ws.kills, 1);
    assert_false(ws.exit_requested);
    bj_watchdog_free(w);

    /* The last resort: the exit threshold holds after a kill. */
    r = (struct rec){0};
    p.kill_cooldown_ms = 0;
    mem_used(99);
    w = bj_watchdog_new(&p);
    assert_int_equal(bj_watchdog_start(w), 0);
    sleep_ms(500);
    bj_watchdog_stats(w, &ws);
    assert_true(ws.exit_requested);
    assert_int_equal(r.exits, 1);
    assert_true(r.kills >= 1);
    assert_int_equal(ws.entered[BJ_WD_EXIT], 1);
    bj_watchdog_free(w);
    bj_bus_unsubscribe(bus, sub);
    bj_bus_free(bus);
}

/* The app's defaults (ops.h, inline) are the watchdog's. */
static void test_app_defaults_agree(void **state)
{
    (void)state;
    struct bj_watchdog_params p;
    bj_watchdog_params_default(&p);
    struct bj_ops_config o;
    bj_ops_config_defaults(&o);
    assert_int_equal(o.wd_interval_ms, p.interval_ms);
    assert_int_equal(o.wd_calm, p.calm_samples);
    assert_int_equal(o.wd_kill_cooldown_ms, p.kill_cooldown_ms);
    assert_int_equal(o.wd_exit_after, p.exit_after);
    assert_memory_equal(&o.wd_mem, &p.mem_pct, sizeof o.wd_mem);
    assert_memory_equal(&o.wd_psi, &p.psi, sizeof o.wd_psi);
    assert_memory_equal(&o.wd_temp, &p.temp_c, sizeof o.wd_temp);
    assert_memory_equal(&o.wd_gpu, &p.gpu_pct, sizeof o.wd_gpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sensors),
        cmocka_unit_test(test_escalation),
        cmocka_unit_test(test_app_defaults_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
