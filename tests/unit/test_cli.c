/* Unit tests for config and cli: every flag of `brainjar run` (both --flag value and
 * --flag=value), every bad value and every contradiction (exit status 2, with a message that
 * names the flag), modes and their brains, per-brain flags, and hive files: sections, keys,
 * relative paths, comments, and errors with their line numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "util.h"

static struct bj_config *g_c;
static char g_stderr[4096];
static char g_dir[400];

static int setup(void **state)
{
    (void)state;
    g_c = malloc(sizeof *g_c);
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-config-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    assert_int_equal(bj_mkdirs(g_dir), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_c);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

/* Parses `brainjar run ARGS` into g_c with stderr captured in g_stderr; returns the status. */
static int parse(int argc, const char **args)
{
    char *argv[128];
    assert_true(argc < 127);
    argv[0] = "run";
    for (int i = 0; i < argc; i++)
        argv[i + 1] = (char *)args[i];
    argv[argc + 1] = NULL;
    char path[500];
    snprintf(path, sizeof path, "%s/stderr", g_dir);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    FILE *null = fopen("/dev/null", "w");
    int saved_out = dup(1);
    dup2(fileno(null), 1); /* --help prints its usage */
    enum bj_log_level lv = bj_log_get_level();
    int rc = bj_cli_parse_run("run", argc + 1, argv, g_c);
    bj_log_set_level(lv);
    fflush(stderr);
    fflush(stdout);
    dup2(saved, 2);
    dup2(saved_out, 1);
    close(saved);
    close(saved_out);
    fclose(null);
    FILE *f = fopen(path, "r");
    size_t n = fread(g_stderr, 1, sizeof g_stderr - 1, f);
    g_stderr[n] = '\0';
    fclose(f);
    return rc;
}

#define PARSE(...)                                                          \
    ({                                                                      \
        const char *a_[] = {__VA_ARGS__};                                   \
        parse((int)(sizeof a_ / sizeof a_[0]), a_);                         \
    })

/* The arguments must be refused (status 2) with a message containing `needle`. */
#define REFUSED(needle, ...)                                                                     \
    do {                                                                                         \
        int rc_ = PARSE(__VA_ARGS__);                                                            \
        if (rc_ != 2)                                                                            \
            fail_msg("line %d: status %d, expected 2", __LINE__, rc_);                           \
        if (!strstr(g_stderr, needle))                                                           \
            fail_msg("line %d: message '%s' does not say '%s'", __LINE__, g_stderr, needle);    \
    } while (0)

#define OK(...)                                                                                  \
    do {                                                                                         \
        int rc_ = PARSE(__VA_ARGS__);                                                            \
        if (rc_ != 0)                                                                            \
            fail_msg("line %d: status %d: %s", __LINE__, rc_, g_stderr);                         \
    } while (0)

static const struct bj_brain_cfg *brain(const char *id)
{
    int i = bj_spec_find_brain(&g_c->spec, id);
    if (i < 0)
        fail_msg("no brain %s", id);
    return &g_c->spec.brains[i];
}

static void test_defaults(void **state)
{
    (void)state;
    int rc = parse(0, NULL);
    assert_int_equal(rc, 0);
    struct bj_config *c = g_c;
    assert_int_equal(c->mode, BJ_MODE_MATRIX);
    assert_int_equal(c->spec.n_brains, 3);
    assert_string_equal(c->spec.brains[0].id, "SUBJECT");
    assert_string_equal(c->spec.brains[1].id, "OBSERVER");
    assert_string_equal(c->spec.brains[2].id, "GOD");
    assert_true(brain("SUBJECT")->jar_gb == 8.0);
    assert_true(brain("OBSERVER")->jar_gb == 10.0);
    assert_true(brain("GOD")->jar_gb == 12.0);
    assert_true(bj_spec_watches(brain("OBSERVER"), "SUBJECT"));
    assert_false(bj_spec_watches(brain("OBSERVER"), "GOD"));
    assert_true(brain("GOD")->watches_all && brain("GOD")->sees_lifecycle);
    assert_false(bj_spec_watches(brain("GOD"), "GOD")); /* never its own thoughts */
    assert_string_equal(c->web_host, "127.0.0.1");
    assert_int_equal(c->web_port, 8095);
    assert_int_equal(c->spec.schedule, BJ_SCHED_AUTO);
    assert_int_equal(c->spec.n_threads, 0);
    assert_int_equal(c->spec.n_gpu_layers, -1);
    assert_int_equal(c->spec.kv_type, GGML_TYPE_F16);
    assert_int_equal(c->spec.flash_attn, -1);
    assert_int_equal(c->spec.prefill_chunk, 64);
    assert_int_equal(c->spec.use_mmap, -1);
    assert_int_equal(c->spec.backend_sampling, -1);
    assert_string_equal(c->spec.rpc, "");
    assert_int_equal(c->spec.split.mode, BJ_SPLIT_AUTO);
    assert_int_equal(c->spec.split.main_gpu, -1);
    assert_int_equal(c->spec.split.n_tensor_split, 0);
    assert_false(c->spec.chat_template);
    assert_int_equal(c->spec.pause_ms, 3000);
    assert_int_equal(c->events, BJ_OUT_TEXT);
    assert_true(c->spec.reserve_pct == 15.0 && c->spec.brain_share_pct == 50.0 && c->spec.headroom_gb == 2.0);
    assert_false(c->spec.force);
    assert_int_equal(c->spec.stall_timeout_ms, 60000);
    assert_string_equal(c->spec.stall_brain, "");
    assert_string_equal(c->spec.inject_brain, "");
    assert_int_equal(c->spec.max_steps, 0);
    assert_true(c->duration_s == 0);
    /* Distinct, reproducible seeds per brain. */
    for (int i = 0; i < 3; i++) {
        const struct bj_sampling *s = &c->spec.brains[i].sampling;
        assert_int_equal(s->seed, 1234u + 7919u * (uint32_t)i);
        assert_true(fabsf(s->temp - 0.8f) < 1e-6f && fabsf(s->min_p - 0.05f) < 1e-6f);
        assert_int_equal(s->top_k, 0);
        assert_int_equal(s->max_tokens, 96);
    }
    assert_string_equal(bj_mode_name(BJ_MODE_SINGLE), "single");
    assert_string_equal(bj_mode_name(BJ_MODE_HIVE), "hive");
}

static void test_modes(void **state)
{
    (void)state;
    OK("--mode", "single");
    assert_int_equal(g_c->mode, BJ_MODE_SINGLE);
    assert_int_equal(g_c->spec.n_brains, 1);
    assert_string_equal(brain("SUBJECT")->role, "single");
    OK("--mode=isolated"); /* the original's name */
    assert_int_equal(g_c->mode, BJ_MODE_SINGLE);
    OK("--mode", "matrix");
    assert_int_equal(g_c->spec.n_brains, 3);
    /* the linked modes: one brain, links on (docs/PEERS.md) */
    OK("--mode", "peer");
    assert_int_equal(g_c->mode, BJ_MODE_PEER);
    assert_true(g_c->links && g_c->peer.listen && g_c->peer.exports && g_c->peer.port == 8888);
    assert_string_equal(brain("SUBJECT")->role, "peer");
    assert_true(brain("SUBJECT")->watches_all);
    REFUSED("--target-ip", "--mode=observer");
    OK("--mode=observer", "--target-ip", "10.0.0.2", "--target-port", "8889");
    assert_true(g_c->links && !g_c->peer.listen && !g_c->peer.exports && g_c->peer.n_dial == 1);
    assert_string_equal(g_c->peer.dial[0].host, "10.0.0.2");
    assert_int_equal(g_c->peer.dial[0].port, 8889);
    OK("--mode", "observed");
    assert_true(g_c->links && g_c->peer.listen && g_c->peer.exports);
    assert_false(brain("SUBJECT")->watches_all);
    REFUSED("HOST:PORT", "--mode", "peer", "--peer", "nohost");
    OK("--mode", "peer", "--peer", "127.0.0.1:8889");
    assert_int_equal(g_c->peer.n_dial, 1);
    REFUSED("unknown mode 'bogus'", "--mode", "bogus");
    REFUSED("single mode has only SUBJECT", "--mode", "single", "--model-god", "x.gguf");
    REFUSED("single mode has only SUBJECT", "--mode", "single", "--ram-limit-observer", "3");
    REFUSED("single mode has only SUBJECT", "--mode", "single", "--jar-tokens-god", "300");
    REFUSED("--focus GOD: no such brain", "--mode", "single", "--focus", "GOD");
    OK("--mode", "single", "--focus", "SUBJECT");
}

/* Every flag with a good value, in both spellings. */
static void test_every_flag(void **state)
{
    (void)state;
    for (int eq = 0; eq <= 1; eq++) {
#define F(flag, val) eq ? flag "=" val : flag, eq ? "--chat-template" : val
        /* (--chat-template stands in for the value slot in the --flag=value spelling) */
        OK(F("--model", "/m/all.gguf"), F("--model-subject", "/m/s.gguf"), F("--model-observer", "/m/o.gguf"),
           F("--model-god", "/m/g.gguf"), F("--web-host", "0.0.0.0"), F("--web-port", "9000"),
           F("--data-dir", "/d"), F("--prompts", "/p"), F("--schedule", "parallel"), F("--threads", "7"),
           F("--gpu-layers", "12"), F("--kv-type", "q8_0"), F("--flash-attn", "on"), F("--prefill-chunk", "32"),
           F("--backend-sampling", "off"), F("--pause", "0.25"), F("--temp", "0.5"), F("--top-k", "40"),
           F("--top-p", "0.9"), F("--min-p", "0.1"), F("--max-tokens", "50"), F("--seed", "5"),
           F("--events", "jsonl"), F("--focus", "GOD"), F("--duration", "2.5"), F("--steps", "100"),
           F("--dump-context", "/dump"), F("--log-level", "warn"), F("--reserve", "20"), F("--brain-share", "60"),
           F("--headroom", "1.5"), F("--inject-decode-error", "OBSERVER:3"), F("--inject-stall", "GOD:2:150"),
           F("--stall-timeout", "1.5"), F("--rpc", "10.0.0.2:50052,gpu-host:50053"), F("--split-mode", "layer"),
           F("--tensor-split", "1,2.5"), "--force", "--no-mmap", "--chat-template");
#undef F
        struct bj_config *c = g_c;
        struct bj_hive_spec *s = &c->spec;
        assert_string_equal(s->model, "/m/all.gguf");
        assert_string_equal(brain("SUBJECT")->model, "/m/s.gguf");
        assert_string_equal(brain("OBSERVER")->model, "/m/o.gguf");
        assert_string_equal(brain("GOD")->model, "/m/g.gguf");
        assert_string_equal(c->web_host, "0.0.0.0");
        assert_int_equal(c->web_port, 9000);
        assert_string_equal(s->data_dir, "/d");
        assert_string_equal(s->prompts_dir, "/p");
        assert_int_equal(s->schedule, BJ_SCHED_PARALLEL);
        assert_int_equal(s->n_threads, 7);
        assert_int_equal(s->n_gpu_layers, 12);
        assert_int_equal(s->kv_type, GGML_TYPE_Q8_0);
        assert_int_equal(s->flash_attn, 1);
        assert_int_equal(s->prefill_chunk, 32);
        assert_int_equal(s->backend_sampling, 0);
        assert_int_equal(s->pause_ms, 250);
        assert_int_equal(s->use_mmap, 0);
        assert_true(s->chat_template);
        for (int i = 0; i < s->n_brains; i++) {
            const struct bj_sampling *sm = &s->brains[i].sampling;
            assert_true(fabsf(sm->temp - 0.5f) < 1e-6f);
            assert_int_equal(sm->top_k, 40);
            assert_true(fabsf(sm->top_p - 0.9f) < 1e-6f);
            assert_true(fabsf(sm->min_p - 0.1f) < 1e-6f);
            assert_int_equal(sm->max_tokens, 50);
            assert_int_equal(sm->seed, 5u + 7919u * (uint32_t)i); /* distinct per brain */
        }
        assert_int_equal(c->events, BJ_OUT_JSONL);
        assert_string_equal(c->focus, "GOD");
        assert_true(c->duration_s == 2.5);
        assert_int_equal(s->max_steps, 100);
        assert_string_equal(s->dump_context, "/dump");
        assert_true(s->reserve_pct == 20 && s->brain_share_pct == 60 && s->headroom_gb == 1.5);
        assert_true(s->force);
        assert_string_equal(s->inject_brain, "OBSERVER");
        assert_int_equal(s->inject_step, 3);
        assert_string_equal(s->stall_brain, "GOD");
        assert_int_equal(s->stall_step, 2);
        assert_int_equal(s->stall_ms, 150);
        assert_int_equal(s->stall_timeout_ms, 1500);
        assert_string_equal(s->rpc, "10.0.0.2:50052,gpu-host:50053");
        assert_int_equal(s->split.mode, BJ_SPLIT_LAYER);
        assert_int_equal(s->split.n_tensor_split, 2);
        assert_true(s->split.tensor_split[0] == 1.0f && s->split.tensor_split[1] == 2.5f);
        assert_int_equal(s->split.main_gpu, -1);
    }
    /* the other device settings */
    OK("--split-mode", "none", "--main-gpu", "3");
    assert_int_equal(g_c->spec.split.mode, BJ_SPLIT_NONE);
    assert_int_equal(g_c->spec.split.main_gpu, 3);
    OK("--main-gpu=1"); /* alone: the one device, split mode none */
    assert_int_equal(g_c->spec.split.mode, BJ_SPLIT_NONE);
    assert_int_equal(g_c->spec.split.main_gpu, 1);
    OK("--split-mode=row", "--tensor-split=3/1");
    assert_int_equal(g_c->spec.split.mode, BJ_SPLIT_ROW);
    assert_true(g_c->spec.split.tensor_split[0] == 3.0f && g_c->spec.split.tensor_split[1] == 1.0f);
    OK("--rpc", "127.0.0.1:1", "--gpu-layers", "10");
    assert_string_equal(g_c->spec.rpc, "127.0.0.1:1");
    /* The log level is the one process-wide setting a flag may change; the caller keeps it. */
    /* Other values of the enumerated flags. */
    OK("--schedule", "batched", "--flash-attn", "off", "--backend-sampling", "on", "--events", "none", "--mmap");
    assert_int_equal(g_c->spec.schedule, BJ_SCHED_BATCHED);
    assert_int_equal(g_c->spec.flash_attn, 0);
    assert_int_equal(g_c->spec.backend_sampling, 1);
    assert_int_equal(g_c->events, BJ_OUT_NONE);
    assert_int_equal(g_c->spec.use_mmap, 1);
    OK("--schedule=auto", "--flash-attn=auto", "--backend-sampling=auto", "--events=text", "--gpu-layers=-1");
    assert_int_equal(g_c->spec.schedule, BJ_SCHED_AUTO);
    assert_int_equal(g_c->spec.flash_attn, -1);
    assert_int_equal(g_c->spec.backend_sampling, -1);
    assert_int_equal(g_c->events, BJ_OUT_TEXT);
    assert_int_equal(g_c->spec.n_gpu_layers, -1);
    const char *kv[] = {"f16", "f32", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"};
    for (size_t i = 0; i < BJ_ARRAY_LEN(kv); i++)
        OK("--kv-type", kv[i]);
    const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < BJ_ARRAY_LEN(levels); i++)
        OK("--log-level", levels[i]);
    OK("--pause", "0", "--seed", "4294967295", "--top-k", "0", "--temp", "0", "--web-port", "1");
    assert_int_equal(g_c->spec.pause_ms, 0);
    OK("--inject-decode-error", "GOD:1");
    OK("--web-port", "65535", "--threads", "1", "--prefill-chunk", "8192", "--reserve", "0");
    REFUSED("is not a thread count", "--threads", "100000");
    assert_int_equal(PARSE("--help"), 1);
    assert_int_equal(PARSE("-h"), 1);
}

static void test_jars(void **state)
{
    (void)state;
    OK("--ram-limit", "2");
    for (int i = 0; i < 3; i++)
        assert_true(g_c->spec.brains[i].jar_gb == 2.0 && g_c->spec.brains[i].jar_tokens == 0);
    OK("--jar-tokens", "500");
    for (int i = 0; i < 3; i++)
        assert_int_equal(g_c->spec.brains[i].jar_tokens, 500);
    /* A tier's flag wins over the flag for all. */
    OK("--jar-tokens", "500", "--jar-tokens-god", "900", "--ram-limit-subject", "0.5");
    assert_int_equal(brain("GOD")->jar_tokens, 900);
    assert_int_equal(brain("OBSERVER")->jar_tokens, 500);
    assert_int_equal(brain("SUBJECT")->jar_tokens, 0);
    assert_true(brain("SUBJECT")->jar_gb == 0.5);
    OK("--ram-limit-subject=1", "--ram-limit-observer=2", "--ram-limit-god=3");
    assert_true(brain("SUBJECT")->jar_gb == 1 && brain("OBSERVER")->jar_gb == 2 && brain("GOD")->jar_gb == 3);
    OK("--jar-tokens-subject=10", "--jar-tokens-observer=20", "--jar-tokens-god=30");
    assert_true(brain("SUBJECT")->jar_tokens == 10 && brain("OBSERVER")->jar_tokens == 20 &&
                brain("GOD")->jar_tokens == 30);
    REFUSED("pick one", "--ram-limit", "2", "--jar-tokens", "500");
    REFUSED("pick one", "--ram-limit-god", "2", "--jar-tokens-god", "500");
    REFUSED("pick one", "--ram-limit-subject=2", "--jar-tokens-subject=500");
}

/* Every bad value is refused with a message naming the flag, in both spellings. */
static void test_bad_values(void **state)
{
    (void)state;
    static const struct {
        const char *flag, *bad;
    } cases[] = {
        {"--ram-limit", "abc"}, {"--ram-limit", "0"}, {"--ram-limit", "-1"}, {"--ram-limit-subject", "x"},
        {"--ram-limit-observer", "0"}, {"--ram-limit-god", "nan"}, {"--jar-tokens", "0"}, {"--jar-tokens", "1.5"},
        {"--jar-tokens-subject", "-3"}, {"--jar-tokens-observer", ""}, {"--jar-tokens-god", "2000000000"},
        {"--web-port", "-1"}, {"--web-port", "65536"}, {"--web-port", "http"}, {"--schedule", "serial"},
        {"--threads", "0"}, {"--threads", "1025"}, {"--threads", "two"}, {"--gpu-layers", "-2"},
        {"--gpu-layers", "all"}, {"--kv-type", "q9"}, {"--kv-type", "F16 "}, {"--flash-attn", "yes"},
        {"--prefill-chunk", "0"}, {"--prefill-chunk", "8193"}, {"--backend-sampling", "gpu"},
        {"--pause", "-1"}, {"--pause", "86401"}, {"--pause", "inf"}, {"--temp", "-0.1"}, {"--temp", "11"},
        {"--top-k", "-1"}, {"--top-p", "1.5"}, {"--min-p", "-0.5"}, {"--max-tokens", "0"},
        {"--seed", "-1"}, {"--seed", "4294967296"}, {"--events", "xml"}, {"--duration", "-5"},
        {"--steps", "0"}, {"--log-level", "verbose"}, {"--reserve", "101"}, {"--brain-share", "0"},
        {"--brain-share", "100.5"}, {"--headroom", "-1"}, {"--inject-decode-error", "SUBJECT"},
        {"--inject-decode-error", ":3"}, {"--inject-decode-error", "SUBJECT:0"},
        {"--inject-decode-error", "SUBJECT:x"},
        {"--inject-decode-error", "A_NAME_LONGER_THAN_THIRTY_TWO_CHARS:1"},
        {"--inject-stall", "GOD"}, {"--inject-stall", "GOD:1"}, {"--inject-stall", "GOD:0:10"},
        {"--inject-stall", "GOD:1:0"}, {"--inject-stall", "GOD:1:3600001"}, {"--inject-stall", "GOD:1:10x"},
        {"--inject-stall", "G.D:1:10"}, {"--inject-stall", "A_NAME_LONGER_THAN_THIRTY_TWO_CHARS:1:1"},
        {"--stall-timeout", "0.05"}, {"--stall-timeout", "86401"}, {"--stall-timeout", "soon"},
        {"--rpc", "host"}, {"--rpc", "host:0"}, {"--rpc", "host:65536"}, {"--rpc", ":50052"}, {"--rpc", "h:1,"},
        {"--rpc", "h:1,,g:2"}, {"--rpc", "h:1,h:1"}, {"--rpc", "[::1]:50052"}, {"--rpc", "fe80::1:50052"},
        {"--rpc", "h:1x"}, {"--rpc", "h o:1"},
        {"--rpc", "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1,l:1,m:1,n:1,o:1,p:1,q:1"},
        {"--split-mode", "tensor"}, {"--split-mode", "LAYER"}, {"--main-gpu", "-1"}, {"--main-gpu", "16"},
        {"--main-gpu", "gpu0"}, {"--tensor-split", "0,0"}, {"--tensor-split", "1,x"}, {"--tensor-split", "-1,2"},
        {"--tensor-split", "1,,2"}, {"--tensor-split", "inf"}, {"--tensor-split", "nan,1"},
        {"--tensor-split", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"},
    };
    char joined[200];
    for (size_t i = 0; i < BJ_ARRAY_LEN(cases); i++) {
        int rc = PARSE("--mode", "matrix", cases[i].flag, cases[i].bad);
        if (rc != 2 || !strstr(g_stderr, cases[i].flag))
            fail_msg("%s '%s': status %d, message '%s'", cases[i].flag, cases[i].bad, rc, g_stderr);
        /* --flag=value: the message names that flag too, not a neighbouring argument. */
        snprintf(joined, sizeof joined, "%s=%s", cases[i].flag, cases[i].bad);
        rc = PARSE("--mode", "matrix", joined);
        if (rc != 2 || !strstr(g_stderr, cases[i].flag))
            fail_msg("%s: status %d, message '%s'", joined, rc, g_stderr);
        if (!strstr(g_stderr, cases[i].bad))
            fail_msg("%s: the message '%s' does not quote the value", joined, g_stderr);
    }
}

static void test_contradictions(void **state)
{
    (void)state;
    char hive[600];
    snprintf(hive, sizeof hive, "%s/two.hive", g_dir);
    FILE *f = fopen(hive, "w");
    fputs("[brain SUBJECT]\n[brain B]\nwatches = SUBJECT\n", f);
    fclose(f);
    REFUSED("contradict", "--hive", hive, "--mode", "single");
    REFUSED("contradict", "--mode=matrix", "--hive", hive);
    REFUSED("the hive file has no such brain", "--hive", hive, "--model-god", "g.gguf");
    REFUSED("the hive file has no such brain", "--hive", hive, "--ram-limit-observer", "2");
    REFUSED("--focus NOPE: no such brain", "--focus", "NOPE");
    REFUSED("--inject-decode-error NOPE: no such brain", "--inject-decode-error", "NOPE:2");
    REFUSED("--inject-stall NOPE: no such brain", "--inject-stall", "NOPE:1:10");
    REFUSED("--inject-stall GOD: no such brain", "--mode", "single", "--inject-stall", "GOD:1:10");
    REFUSED("needs flash attention", "--kv-type", "q8_0", "--flash-attn", "off");
    REFUSED("needs flash attention", "--kv-type=q4_0", "--flash-attn=off");
    OK("--kv-type", "f32", "--flash-attn", "off");
    OK("--kv-type", "bf16", "--flash-attn", "off");
    OK("--kv-type", "q8_0", "--flash-attn", "auto");
    /* devices */
    REFUSED("--gpu-layers 0 keeps every layer on the CPU", "--gpu-layers", "0", "--rpc", "h:1");
    REFUSED("--gpu-layers 0 keeps every layer on the CPU", "--split-mode=layer", "--gpu-layers=0");
    REFUSED("--gpu-layers 0 keeps every layer on the CPU", "--gpu-layers", "0", "--tensor-split", "1,1");
    REFUSED("--main-gpu picks the one device of --split-mode none", "--main-gpu", "1", "--split-mode", "layer");
    REFUSED("--main-gpu picks the one device of --split-mode none", "--split-mode", "row", "--main-gpu", "0");
    REFUSED("--tensor-split weighs several devices, but --split-mode none uses one", "--split-mode", "none",
            "--tensor-split", "1,1");
    REFUSED("--tensor-split weighs several devices, but --main-gpu uses one", "--main-gpu", "0", "--tensor-split",
            "1,1");
    REFUSED("rpc-servers cannot join", "--rpc", "h:1", "--split-mode", "row");
    OK("--rpc", "h:1", "--split-mode", "none", "--main-gpu", "0");
    OK("--split-mode", "none", "--gpu-layers", "-1");
    REFUSED("unknown option '--bogus'", "--bogus");
    REFUSED("unknown option '--bogus=1'", "--bogus=1");
    REFUSED("--no-mmap takes no value", "--no-mmap=1");
    REFUSED("needs a value", "--threads");
    REFUSED("needs a value", "--mode", "matrix", "--hive");
    REFUSED("unexpected argument 'extra'", "extra");
    REFUSED("unexpected argument", "--threads", "2", "model.gguf");
    OK("--hive", hive, "--model-subject", "s.gguf", "--focus", "B");
    assert_string_equal(brain("SUBJECT")->model, "s.gguf");
    /* The last of a repeated flag wins. */
    OK("--threads", "2", "--threads", "3", "--no-mmap", "--mmap");
    assert_int_equal(g_c->spec.n_threads, 3);
    assert_int_equal(g_c->spec.use_mmap, 1);
}

/* ---- hive files ---------------------------------------------------------------------------- */

static const char *write_hive(const char *name, const char *text)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_hive_file(void **state)
{
    (void)state;
    const char *path = write_hive("good.hive",
                                  "# a comment\n"
                                  "; another\n"
                                  "\n"
                                  "[hive]\n"
                                  "model = models/base.gguf\n"
                                  "rpc = 10.0.0.2:50052, 10.0.0.3:50052\n"
                                  "split_mode = layer\n"
                                  "tensor_split = 2,1\n"
                                  "\n"
                                  "[brain ALICE]\r\n"
                                  "  role = poet  \n"
                                  "model = /abs/alice.gguf\n"
                                  "jar_gb = 0.5\n"
                                  "watches = BOB , CAROL\n"
                                  "sees_deaths = yes\n"
                                  "temperature = 0.3\n"
                                  "top_k = 20\n"
                                  "top_p = 0.8\n"
                                  "min_p = 0.02\n"
                                  "max_tokens = 33\n"
                                  "seed = 99\n"
                                  "[ brain BOB ]\n"
                                  "jar_tokens = 700\n"
                                  "model = rel/bob.gguf\n"
                                  "watches = *\n"
                                  "sees_deaths = off\n"
                                  "[brain CAROL]\n"
                                  "jar_gb = 1\n"
                                  "jar_tokens = 300\n");
    OK("--hive", path);
    struct bj_hive_spec *s = &g_c->spec;
    assert_int_equal(g_c->mode, BJ_MODE_HIVE);
    assert_string_equal(g_c->hive_file, path);
    assert_int_equal(s->n_brains, 3);
    char want[700];
    snprintf(want, sizeof want, "%s/models/base.gguf", g_dir); /* relative to the hive file */
    assert_string_equal(s->model, want);
    const struct bj_brain_cfg *a = brain("ALICE"), *b = brain("BOB"), *c = brain("CAROL");
    assert_string_equal(a->role, "poet");
    assert_string_equal(a->model, "/abs/alice.gguf");
    assert_true(a->jar_gb == 0.5 && a->jar_tokens == 0);
    assert_int_equal(a->n_watches, 2);
    assert_string_equal(a->watches[0], "BOB");
    assert_string_equal(a->watches[1], "CAROL");
    assert_false(a->watches_all);
    assert_true(a->sees_lifecycle);
    assert_true(fabsf(a->sampling.temp - 0.3f) < 1e-6f);
    assert_int_equal(a->sampling.top_k, 20);
    assert_true(fabsf(a->sampling.top_p - 0.8f) < 1e-6f);
    assert_true(fabsf(a->sampling.min_p - 0.02f) < 1e-6f);
    assert_int_equal(a->sampling.max_tokens, 33);
    assert_int_equal(a->sampling.seed, 99);
    assert_string_equal(b->role, "bob"); /* the role defaults to the name, lower case */
    snprintf(want, sizeof want, "%s/rel/bob.gguf", g_dir);
    assert_string_equal(b->model, want);
    assert_int_equal(b->jar_tokens, 700);
    assert_true(b->watches_all);
    assert_false(b->sees_lifecycle);
    assert_int_equal(c->jar_tokens, 300); /* tokens win over GB */
    assert_int_equal(c->sampling.seed, 1234u + 7919u * 2u);
    assert_string_equal(bj_spec_brain_model(s, c), s->model);
    assert_string_equal(bj_spec_brain_model(s, a), "/abs/alice.gguf");
    assert_string_equal(s->rpc, "10.0.0.2:50052,10.0.0.3:50052");
    assert_int_equal(s->split.mode, BJ_SPLIT_LAYER);
    assert_int_equal(s->split.n_tensor_split, 2);
    assert_true(s->split.tensor_split[0] == 2.0f && s->split.tensor_split[1] == 1.0f);
    /* Flags apply on top of the file. */
    OK("--hive", path, "--jar-tokens", "111", "--temp", "1.5", "--rpc", "h:9", "--tensor-split", "1,1,1");
    assert_int_equal(brain("ALICE")->jar_tokens, 111);
    assert_true(fabsf(brain("BOB")->sampling.temp - 1.5f) < 1e-6f);
    assert_string_equal(g_c->spec.rpc, "h:9");
    assert_int_equal(g_c->spec.split.n_tensor_split, 3);
    assert_int_equal(g_c->spec.split.mode, BJ_SPLIT_LAYER);
    /* a file's device settings meet the same contradictions as flags */
    path = write_hive("main.hive", "[hive]\nmain_gpu = 2\n[brain A]\n");
    OK("--hive", path);
    assert_int_equal(g_c->spec.split.mode, BJ_SPLIT_NONE);
    assert_int_equal(g_c->spec.split.main_gpu, 2);
    REFUSED("--tensor-split weighs several devices, but --main-gpu uses one", "--hive", path, "--tensor-split",
            "1,1");
}

/* Errors name the file and the line (blank lines and comments count). */
static void test_hive_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"[brain A]\n\n\n[brain A\n", "line 4: malformed section header"},
        {"[brain A] x\n", "line 1: malformed section header"},
        {"\n\n# c\n\n[other]\n", "line 5: unknown section [other]"},
        {"[brainA]\n", "line 1: unknown section [brainA]"},
        {"[brain]\n", "line 1: unknown section [brain]"},
        {"[brain a.b]\n", "line 1: bad brain name 'a.b'"},
        {"[brain ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456]\n", "line 1: bad brain name"},
        {"[brain A]\n\n[brain A]\n", "line 3: brain A defined twice"},
        {"[brain A]\nrole\n", "line 2: expected key = value"},
        {"[hive]\n\nthreads = 3\n", "line 3: unknown key 'threads' in [hive]"},
        {"[hive]\nrpc = host\n[brain A]\n", "line 2: [hive] rpc: 'host' is not HOST:PORT"},
        {"[hive]\nrpc = a:1, a:1\n[brain A]\n", "line 2: [hive] rpc: 'a:1' is given twice"},
        {"[hive]\nsplit_mode = rows\n[brain A]\n", "line 2: [hive] split_mode: 'rows' is not none, layer or row"},
        {"[hive]\nmain_gpu = -1\n[brain A]\n", "line 2: [hive] main_gpu: '-1' is not a device index"},
        {"[hive]\ntensor_split = 0\n[brain A]\n", "line 2: [hive] tensor_split: '0': every share is 0"},
        {"[hive]\nrpc = a:1\nsplit_mode = row\n[brain A]\n", "rpc-servers cannot join"},
        {"role = x\n", "line 1: key 'role' outside a section"},
        {"[brain A]\ncolour = red\n", "line 2: brain A: unknown key 'colour'"},
        {"[brain A]\n\n\njar_gb = lots\n", "line 4: brain A: bad value 'lots' for jar_gb"},
        {"[brain A]\njar_gb = 0\n", "line 2: brain A: bad value '0' for jar_gb"},
        {"[brain A]\njar_tokens = -1\n", "line 2: brain A: bad value '-1' for jar_tokens"},
        {"[brain A]\nsees_deaths = maybe\n", "line 2: brain A: bad value 'maybe' for sees_deaths"},
        {"[brain A]\ntemperature = 20\n", "line 2: brain A: bad value '20' for temperature"},
        {"[brain A]\ntop_p = 2\n", "line 2: brain A: bad value '2' for top_p"},
        {"[brain A]\nmin_p = -1\n", "line 2: brain A: bad value '-1' for min_p"},
        {"[brain A]\ntop_k = x\n", "line 2: brain A: bad value 'x' for top_k"},
        {"[brain A]\nmax_tokens = 0\n", "line 2: brain A: bad value '0' for max_tokens"},
        {"[brain A]\nseed = -4\n", "line 2: brain A: bad value '-4' for seed"},
        {"[brain A]\nrole = ../etc\n", "line 2: brain A: bad value '../etc' for role"},
        {"[brain A]\nwatches = B, b.c\n", "line 2: brain A: bad name 'b.c' in watches"},
        {"[brain A]\nwatches = B1,B2,B3,B4,B5,B6,B7,B8,B9,B10,B11,B12,B13,B14,B15,B16,B17\n",
         "line 2: brain A: watches too many brains"},
        {"# nothing\n[hive]\n", "no [brain NAME] section"},
        {"", "no [brain NAME] section"},
        {"[brain A]\nwatches = NOBODY\n", "brain A watches NOBODY, which is not in the hive"},
        {"[brain A]\nwatches = A\n", "brain A cannot watch itself"},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(cases); i++) {
        const char *path = write_hive("bad.hive", cases[i].text);
        int rc = PARSE("--hive", path);
        if (rc != 2 || !strstr(g_stderr, cases[i].needle))
            fail_msg("case %zu: status %d, message '%s', expected '%s'", i, rc, g_stderr, cases[i].needle);
        if (strstr(cases[i].needle, "line ") && !strstr(g_stderr, "bad.hive, line"))
            fail_msg("case %zu: '%s' does not name the file", i, g_stderr);
    }
    REFUSED("cannot read it", "--hive", "/nonexistent/x.hive");
    /* Too many brains. */
    size_t cap = 20000, n = 0;
    char *text = malloc(cap);
    for (int i = 0; i <= BJ_MAX_BRAINS; i++)
        n += (size_t)snprintf(text + n, cap - n, "[brain B%d]\n", i);
    const char *path = write_hive("many.hive", text);
    free(text);
    REFUSED("line 257: too many brains", "--hive", path);
    /* Direct calls report the same, without the CLI. */
    char err[600];
    bj_config_defaults(g_c);
    path = write_hive("direct.hive", "[brain A]\n\n\nbogus = 1\n");
    assert_int_equal(bj_config_load_hive(g_c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 4"));
}

/* Every flag the usage text names is one the parser knows (the help and the parser agree). */
static void test_usage_names_real_flags(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bj_cli_usage_run("run", f);
    fclose(f);
    int n = 0;
    for (const char *p = text; (p = strstr(p, "--"));) {
        char flag[48];
        size_t k = 2;
        while (k < sizeof flag - 1 && (p[k] == '-' || (p[k] >= 'a' && p[k] <= 'z')))
            k++;
        memcpy(flag, p, k);
        flag[k] = '\0';
        p += k;
        if (k <= 2)
            continue;
        if (strcmp(flag, "--replay") == 0)
            continue; /* rewritten before parsing (bj_replay_args in main) */
        int rc = PARSE(flag);
        if (strstr(g_stderr, "unknown option"))
            fail_msg("the usage names %s, which the parser does not know", flag);
        assert_true(rc == 0 || rc == 1 || rc == 2);
        n++;
    }
    assert_true(n >= 40);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_jars),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_contradictions),
        cmocka_unit_test(test_hive_file),
        cmocka_unit_test(test_hive_errors),
        cmocka_unit_test(test_usage_names_real_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
