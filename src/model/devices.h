/* devices: where a model's layers can run besides the CPU: local GPUs and llama.cpp rpc-servers.
 *
 * llama.cpp offloads layers to ggml backend devices. Local GPUs are devices once their backend is
 * loaded; another host joins as a device when its rpc-server (llama.cpp's tools/rpc) is added to
 * llama.cpp's RPC backend, as llama.cpp's own tools do for --rpc. brainjar writes no distribution
 * layer: it adds the servers (bj_devices_add_rpc), lists the devices in the order llama.cpp uses
 * them by default (bj_devices_list: rpc-servers first, then GPUs) and the plan hands that list to
 * llama_model_params.devices (plan.h), with the split mode, the main GPU and the tensor split.
 *
 * Before an rpc-server is added, brainjar connects to it and makes the RPC protocol's greeting
 * itself, with a time limit: llama.cpp aborts the process when a server cannot be reached or
 * speaks another protocol version, brainjar reports it. A server that goes away later, while a
 * model runs on it, still ends the process inside llama.cpp (systemd's restart takes over).
 *
 * The settings (which servers, the split mode, the main GPU, the tensor split) and their parsers
 * are split.h's.
 *
 * Threads: main thread, before any model loads (ggml's backend registry is not locked). */
#ifndef BJ_DEVICES_H
#define BJ_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ggml-backend.h>

#include "split.h"

#define BJ_RPC_TIMEOUT_MS 5000 /* to connect to an rpc-server and hear its greeting */

struct bj_device {
    ggml_backend_dev_t dev;
    char name[32];         /* ggml's: CUDA0, Vulkan1, RPC0 */
    char desc[128];        /* ggml's description ("NVIDIA H100 80GB HBM3"); an RPC device's: HOST:PORT */
    char buft[128];        /* the name of its buffer type: how llama.cpp's log names its buffers */
    bool remote;           /* an rpc-server's device */
    bool splits_rows;      /* its backend can split matrices over devices by rows (split mode row) */
    uint64_t free, total;  /* bytes, as the device reported them when listed */
    bool free_known;       /* `free` is a measurement; not for an rpc-server that reports all of its
                            * memory as free (a CPU backend does: ggml calls free memory
                            * "ill-defined" there), nor for a device that reports nothing */
    uint64_t split_weight; /* what llama.cpp's default split weighs it by: free, or the host's
                            * memory when the device reports none (llama.cpp does the same) */
};

struct bj_devices {
    int n;
    struct bj_device d[BJ_MAX_DEVICES];
};

/* Adds the rpc-servers of `list` (bj_rpc_parse's form) to llama.cpp's RPC backend: each is first
 * reached and greeted within timeout_ms; a server added before in this process is not added again.
 * Returns 0, or -1 with err naming the server and what is wrong (not reachable, not an rpc-server,
 * another protocol version, no devices, no RPC backend in this llama.cpp). */
int bj_devices_add_rpc(const char *list, int timeout_ms, char *err, size_t errlen);

/* The offload devices of this process in llama.cpp's default order (llama_model_load's device
 * selection): the rpc-servers' devices in the order they were added, then the GPUs (one per
 * physical device), then integrated GPUs only when there is no GPU. Never the CPU. Each device's
 * memory is read now (an rpc-server is asked over the network). */
void bj_devices_list(struct bj_devices *out);

#endif
