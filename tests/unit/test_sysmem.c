/* Unit tests for sysmem: meminfo, cgroup v2 and v1 limits (walking up the hierarchy), process
 * RSS, Jetson detection and NVML absence, all on fake /proc and /sys trees in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sysmem.h"
#include "util.h"

#define GIB (1024ull * 1024ull * 1024ull)

/* A fresh fake root per test: <tmp>/bj-sysmem-<pid>-<n>. */
static void make_root(char *root, size_t len)
{
    static int n;
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(root, len, "%s/bj-sysmem-%d-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid(), n++);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(bj_mkdirs(root), 0);
}

static void remove_root(const char *root)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

/* Writes root/rel (making its directory). */
static void put(const char *root, const char *rel, const char *text)
{
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    bj_strlcpy(dir, path, sizeof dir);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(bj_mkdirs(dir), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void put_meminfo(const char *root, unsigned long long total_kb, unsigned long long avail_kb)
{
    char text[256];
    snprintf(text, sizeof text,
             "MemTotal:       %llu kB\nMemFree:         1000 kB\nMemAvailable:   %llu kB\nBuffers:  12 kB\n",
             total_kb, avail_kb);
    put(root, "proc/meminfo", text);
}

static void test_meminfo_only(void **state)
{
    (void)state;
    char root[512], err[256];
    make_root(root, sizeof root);
    put_meminfo(root, 32757515, 23845536); /* the seed's 31.24 GB machine, 22.74 GB available */
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_true(sm.mem_total == 32757515ull * 1024);
    assert_true(sm.total == sm.mem_total);
    assert_true(sm.available == 23845536ull * 1024);
    assert_false(sm.cg_limited);
    assert_int_equal(sm.cg_version, 0);
    assert_false(sm.unified);
    remove_root(root);
}

static void test_meminfo_bad(void **state)
{
    (void)state;
    char root[512], err[256] = "";
    make_root(root, sizeof root);
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), -1);
    assert_non_null(strstr(err, "meminfo"));
    put(root, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 10 kB\n"); /* no MemAvailable */
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), -1);
    assert_non_null(strstr(err, "MemAvailable"));
    remove_root(root);
}

static void test_cgroup_v2(void **state)
{
    (void)state;
    char root[512], err[256], buf[64];
    make_root(root, sizeof root);
    put_meminfo(root, 64ull * 1024 * 1024, 60ull * 1024 * 1024); /* 64 GiB, 60 available */
    put(root, "proc/self/cgroup", "0::/user.slice/brainjar.service\n");
    put(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    snprintf(buf, sizeof buf, "%llu\n", 8 * GIB);
    put(root, "sys/fs/cgroup/user.slice/brainjar.service/memory.max", buf);
    snprintf(buf, sizeof buf, "%llu\n", 3 * GIB);
    put(root, "sys/fs/cgroup/user.slice/brainjar.service/memory.current", buf);
    snprintf(buf, sizeof buf, "anon 100\nfile 200\ninactive_file %llu\nactive_file 5\n", 1 * GIB);
    put(root, "sys/fs/cgroup/user.slice/brainjar.service/memory.stat", buf);
    put(root, "sys/fs/cgroup/user.slice/memory.max", "max\n");
    put(root, "sys/fs/cgroup/user.slice/memory.current", "123\n");
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_int_equal(sm.cg_version, 2);
    assert_true(sm.cg_limited);
    assert_true(sm.cg_limit == 8 * GIB);
    assert_true(sm.total == 8 * GIB);              /* the cgroup caps the machine */
    assert_true(sm.cg_room == 6 * GIB);            /* 8 - (3 - 1 reclaimable) */
    assert_true(sm.available == 6 * GIB);          /* lower than MemAvailable */
    assert_non_null(strstr(sm.cg_path, "brainjar.service"));
    remove_root(root);
}

static void test_cgroup_v2_parent_limit(void **state)
{
    (void)state;
    char root[512], err[256], buf[64];
    make_root(root, sizeof root);
    put_meminfo(root, 64ull * 1024 * 1024, 60ull * 1024 * 1024);
    put(root, "proc/self/cgroup", "0::/box/app\n");
    put(root, "sys/fs/cgroup/cgroup.controllers", "memory\n");
    put(root, "sys/fs/cgroup/box/app/memory.max", "max\n");
    put(root, "sys/fs/cgroup/box/app/memory.current", "1000\n");
    snprintf(buf, sizeof buf, "%llu\n", 4 * GIB);
    put(root, "sys/fs/cgroup/box/memory.max", buf);
    snprintf(buf, sizeof buf, "%llu\n", 3 * GIB);
    put(root, "sys/fs/cgroup/box/memory.current", buf); /* siblings use 3 GiB of the box */
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_true(sm.cg_limited);
    assert_true(sm.total == 4 * GIB);
    assert_true(sm.available == 1 * GIB);
    remove_root(root);
}

static void test_cgroup_v2_unlimited(void **state)
{
    (void)state;
    char root[512], err[256];
    make_root(root, sizeof root);
    put_meminfo(root, 16ull * 1024 * 1024, 10ull * 1024 * 1024);
    put(root, "proc/self/cgroup", "0::/\n");
    put(root, "sys/fs/cgroup/cgroup.controllers", "memory\n");
    put(root, "sys/fs/cgroup/memory.max", "max\n");
    put(root, "sys/fs/cgroup/memory.current", "5000\n");
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_int_equal(sm.cg_version, 2);
    assert_false(sm.cg_limited);
    assert_true(sm.total == 16 * GIB);
    assert_true(sm.available == 10 * GIB);
    remove_root(root);
}

static void test_cgroup_v1(void **state)
{
    (void)state;
    char root[512], err[256], buf[128];
    make_root(root, sizeof root);
    put_meminfo(root, 32ull * 1024 * 1024, 30ull * 1024 * 1024);
    put(root, "proc/self/cgroup", "9:name=systemd:/\n4:cpu,memory:/docker/abc\n0::/\n"); /* hybrid: no v2 mount */
    snprintf(buf, sizeof buf, "%llu\n", 6 * GIB);
    put(root, "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", buf);
    snprintf(buf, sizeof buf, "%llu\n", 2 * GIB);
    put(root, "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes", buf);
    put(root, "sys/fs/cgroup/memory/docker/abc/memory.stat", "cache 10\ntotal_inactive_file 0\n");
    put(root, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"); /* unlimited */
    put(root, "sys/fs/cgroup/memory/memory.usage_in_bytes", "1000\n");
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_int_equal(sm.cg_version, 1);
    assert_true(sm.cg_limited);
    assert_true(sm.total == 6 * GIB);
    assert_true(sm.available == 4 * GIB);
    remove_root(root);
}

static void test_proc_status(void **state)
{
    (void)state;
    char root[512];
    make_root(root, sizeof root);
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    struct bj_proc_mem pm;
    assert_int_equal(bj_sysmem_read_proc(&p, &pm), -1);
    put(root, "proc/self/status",
        "Name:\tbrainjar\nVmPeak:\t  9000 kB\nVmRSS:\t    2000 kB\nRssAnon:\t     500 kB\n"
        "RssFile:\t    1400 kB\nRssShmem:\t     100 kB\n");
    assert_int_equal(bj_sysmem_read_proc(&p, &pm), 0);
    assert_true(pm.rss == 2000 * 1024);
    assert_true(pm.rss_anon == 500 * 1024);
    assert_true(pm.rss_file == 1400 * 1024);
    assert_true(pm.rss_shmem == 100 * 1024);
    remove_root(root);
}

static void test_jetson(void **state)
{
    (void)state;
    char root[512], err[256];
    make_root(root, sizeof root);
    put_meminfo(root, 8ull * 1024 * 1024, 5ull * 1024 * 1024);
    struct bj_sysmem_paths p;
    bj_sysmem_paths_under(&p, root);
    assert_false(bj_sysmem_is_unified(&p));
    /* device tree: a NUL-separated list */
    char path[600];
    snprintf(path, sizeof path, "%s/proc/device-tree", root);
    assert_int_equal(bj_mkdirs(path), 0);
    snprintf(path, sizeof path, "%s/proc/device-tree/compatible", root);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("nvidia,p3768-0000\0nvidia,tegra234\0", 1, 34, f);
    fclose(f);
    assert_true(bj_sysmem_is_unified(&p));
    struct bj_sysmem sm;
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_true(sm.unified);
    /* the GPU's free memory is MemAvailable, not NVML's */
    struct bj_gpu_info g;
    bj_sysmem_read_gpu(&p, &sm, &g);
    assert_true(g.available);
    assert_true(g.unified);
    assert_int_equal(g.n, 1);
    assert_true(g.dev[0].free == 5 * GIB);
    assert_true(g.dev[0].total == 8 * GIB);
    unlink(path);
    put(root, "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1\n");
    assert_true(bj_sysmem_is_unified(&p));
    remove_root(root);
}

static void test_no_nvml(void **state)
{
    (void)state;
    struct bj_sysmem_paths p;
    bj_sysmem_paths_default(&p);
    bj_strlcpy(p.nvml_lib, "libnvidia-ml-does-not-exist.so.1", sizeof p.nvml_lib);
    struct bj_gpu_info g;
    bj_sysmem_read_gpu(&p, NULL, &g);
    assert_false(g.available);
    assert_int_equal(g.n, 0);
    assert_non_null(strstr(g.why, "not found"));
    bj_sysmem_read_gpu(&p, NULL, &g); /* said once: no crash, same answer */
    assert_false(g.available);
    p.nvml_lib[0] = '\0';
    bj_sysmem_read_gpu(&p, NULL, &g);
    assert_false(g.available);
}

static void test_this_machine(void **state)
{
    (void)state;
    struct bj_sysmem_paths p;
    bj_sysmem_paths_default(&p);
    struct bj_sysmem sm;
    char err[256];
    assert_int_equal(bj_sysmem_read(&p, &sm, err, sizeof err), 0);
    assert_true(sm.total > 0 && sm.available > 0 && sm.available <= sm.mem_total);
    struct bj_proc_mem pm;
    assert_int_equal(bj_sysmem_read_proc(&p, &pm), 0);
    assert_true(pm.rss > 0);
    struct bj_gpu_info g;
    bj_sysmem_read_gpu(&p, &sm, &g); /* whatever the machine has; must not fail */
    assert_true(g.n >= 0 && g.n <= BJ_SYSMEM_MAX_GPUS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meminfo_only),
        cmocka_unit_test(test_meminfo_bad),
        cmocka_unit_test(test_cgroup_v2),
        cmocka_unit_test(test_cgroup_v2_parent_limit),
        cmocka_unit_test(test_cgroup_v2_unlimited),
        cmocka_unit_test(test_cgroup_v1),
        cmocka_unit_test(test_proc_status),
        cmocka_unit_test(test_jetson),
        cmocka_unit_test(test_no_nvml),
        cmocka_unit_test(test_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
