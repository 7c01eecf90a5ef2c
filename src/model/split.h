/* split: how a model is spread over devices, as the user gives it: the rpc-servers to add, the
 * split mode, the main GPU and the tensor split (flags, hive files), their parsers and the checks
 * that need no device. Pure: any thread. What the devices are is devices.h's; what the machine's
 * devices make of these settings, the plan's (plan.h). */
#ifndef BJ_SPLIT_H
#define BJ_SPLIT_H

#include <stdbool.h>
#include <stddef.h>

#define BJ_MAX_DEVICES 16   /* llama_max_devices(): a tensor split has this many entries */
#define BJ_MAX_RPC 16       /* rpc-servers at most (GGML_RPC_MAX_SERVERS) */
#define BJ_ENDPOINT_MAX 272 /* HOST:PORT, host up to 255 bytes */
#define BJ_RPC_LIST_MAX (BJ_MAX_RPC * BJ_ENDPOINT_MAX)

/* How a model is split over several devices; the values are llama_split_mode's. */
enum bj_split { BJ_SPLIT_AUTO = -1, BJ_SPLIT_NONE = 0, BJ_SPLIT_LAYER = 1, BJ_SPLIT_ROW = 2 };

/* How a model is spread over the devices, as given (flags, hive file); llama.cpp's defaults when
 * not: every device takes layers in proportion to its free memory. */
struct bj_split_settings {
    int mode;               /* enum bj_split; BJ_SPLIT_AUTO: layer */
    int main_gpu;           /* -1: not given; the one device of mode none (an index into the list) */
    float tensor_split[BJ_MAX_DEVICES]; /* each device's share, in bj_devices_list's order */
    int n_tensor_split;     /* 0: not given (by free memory) */
};
struct bj_split_settings bj_split_default(void);
/* Whether anything was given. */
bool bj_split_given(const struct bj_split_settings *s);
/* The settings that contradict each other or the rest, whatever the machine's devices: anything
 * with n_gpu_layers 0 (nothing offloaded), a main GPU with mode layer or row, a tensor split with
 * one device (mode none or a main GPU), mode row with rpc-servers. A main GPU alone means mode
 * none. 0, or -1 with err naming the flags. */
int bj_split_check(struct bj_split_settings *s, bool rpc, int n_gpu_layers, char *err, size_t errlen);

/* "HOST:PORT[,HOST:PORT...]" (host: a name or an IPv4 address, as llama.cpp's RPC client takes;
 * port 1-65535; at most BJ_MAX_RPC, none twice; shorter than BJ_RPC_LIST_MAX) into out[0..*n)
 * (out may be NULL: only checked). 0, or -1 with err quoting the bad part. */
int bj_rpc_parse(const char *list, char (*out)[BJ_ENDPOINT_MAX], int *n, char *err, size_t errlen);

/* "none", "layer" or "row" into *out; 0 or -1. */
int bj_split_parse(const char *s, int *out);
const char *bj_split_name(int split);

/* "a,b,..." (',' or '/' between them, as llama.cpp's --tensor-split): finite shares >= 0, at least
 * one > 0, at most BJ_MAX_DEVICES, into out[0..*n). 0, or -1 with err. */
int bj_tensor_split_parse(const char *s, float *out, int *n, char *err, size_t errlen);

#endif
