/* devices: see devices.h. */
#include "devices.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

/* ---- reaching an rpc-server -------------------------------------------------------------- */

/* The greeting of llama.cpp's RPC protocol 7.0 (ggml-rpc.cpp, negotiate_hello): the client sends
 * the command byte HELLO (14 in every version), the request's size as a 64-bit integer in host
 * order and the request: 24 bytes of transport capabilities (zeros: plain TCP). The server answers
 * with the reply's size (28) and the reply: major, minor, patch, a padding byte and its own 24
 * bytes of capabilities. llama.cpp accepts a server of the same major and no newer minor. */
#define RPC_CMD_HELLO_BYTE 14
#define RPC_HELLO_CAPS 24
#define RPC_MAJOR 7
#define RPC_MINOR 0
#if defined(__has_include)
#if __has_include(<ggml-rpc.h>)
#include <ggml-rpc.h>
#if RPC_PROTO_MAJOR_VERSION != RPC_MAJOR || RPC_PROTO_MINOR_VERSION != RPC_MINOR
#error "llama.cpp's RPC protocol changed: check rpc_greet() against negotiate_hello in ggml-rpc.cpp"
#endif
#endif
#endif

/* Reads or writes exactly n bytes on non-blocking fd before deadline_us. 0, -ETIMEDOUT, -EPIPE
 * (the peer closed), or -errno. */
static int io_full(int fd, void *buf, size_t n, bool write_it, int64_t deadline_us)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = write_it ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k == 0 && !write_it)
            return -EPIPE;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return errno == ECONNRESET ? -EPIPE : -errno;
        int64_t left = deadline_us - bj_now_us();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = write_it ? POLLOUT : POLLIN};
        if (poll(&pf, 1, (int)(left / 1000) + 1) < 0 && errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Connects to HOST:PORT (IPv4, as llama.cpp does) before deadline_us. Returns the socket or
 * -1 with err. */
static int rpc_connect(const char *endpoint, int timeout_ms, int64_t deadline_us, char *err, size_t errlen)
{
    char host[BJ_ENDPOINT_MAX];
    bj_strlcpy(host, endpoint, sizeof host);
    char *colon = strchr(host, ':');
    *colon = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0 || !ai) {
        snprintf(err, errlen, "rpc-server %s: cannot resolve %s to an IPv4 address: %s", endpoint, host,
                 g ? gai_strerror(g) : "no address");
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "rpc-server %s: socket: %s", endpoint, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno == EINPROGRESS) {
        int64_t left = deadline_us - bj_now_us();
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int pr = left > 0 ? poll(&pf, 1, (int)(left / 1000) + 1) : 0;
        if (pr == 0) {
            snprintf(err, errlen, "rpc-server %s: no connection within %d ms (is the host up and the port open?)",
                     endpoint, timeout_ms);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        errno = soerr;
        rc = soerr ? -1 : 0;
    }
    if (rc != 0) {
        snprintf(err, errlen, "rpc-server %s: cannot connect: %s (is llama.cpp's rpc-server running there?)",
                 endpoint, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects to the rpc-server at `endpoint` and greets it as llama.cpp will (see above), so that
 * whatever would make llama.cpp abort the process is found here first. 0, or -1 with err. */
static int rpc_greet(const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = bj_now_us() + (int64_t)timeout_ms * 1000;
    int fd = rpc_connect(endpoint, timeout_ms, deadline, err, errlen);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char req[1 + 8 + RPC_HELLO_CAPS] = {RPC_CMD_HELLO_BYTE};
    uint64_t size = RPC_HELLO_CAPS;
    memcpy(req + 1, &size, sizeof size);
    unsigned char reply[4 + RPC_HELLO_CAPS];
    int rc = io_full(fd, req, sizeof req, true, deadline);
    if (rc == 0)
        rc = io_full(fd, &size, sizeof size, false, deadline);
    if (rc == 0 && size != sizeof reply) {
        snprintf(err, errlen,
                 "rpc-server %s: answered the greeting with %llu bytes instead of %zu: not an rpc-server of RPC "
                 "protocol %d.%d",
                 endpoint, (unsigned long long)size, sizeof reply, RPC_MAJOR, RPC_MINOR);
        close(fd);
        return -1;
    }
    if (rc == 0)
        rc = io_full(fd, reply, sizeof reply, false, deadline);
    close(fd);
    if (rc == -ETIMEDOUT) {
        snprintf(err, errlen,
                 "rpc-server %s: connected, but no greeting within %d ms (an rpc-server serves one client at a "
                 "time: is another process using it?)",
                 endpoint, timeout_ms);
        return -1;
    }
    if (rc == -EPIPE) {
        snprintf(err, errlen,
                 "rpc-server %s: closed the connection during the greeting: not an rpc-server, or one of another "
                 "RPC protocol version than this llama.cpp's %d.%d",
                 endpoint, RPC_MAJOR, RPC_MINOR);
        return -1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "rpc-server %s: %s", endpoint, strerror(-rc));
        return -1;
    }
    if (reply[0] != RPC_MAJOR || reply[1] > RPC_MINOR) {
        snprintf(err, errlen,
                 "rpc-server %s speaks RPC protocol %u.%u.%u, this llama.cpp %d.%d: build rpc-server from the same "
                 "llama.cpp as brainjar (scripts/bootstrap --rpc-server)",
                 endpoint, reply[0], reply[1], reply[2], RPC_MAJOR, RPC_MINOR);
        return -1;
    }
    return 0;
}

typedef ggml_backend_reg_t (*rpc_add_server_fn)(const char *endpoint);

int bj_devices_add_rpc(const char *list, int timeout_ms, char *err, size_t errlen)
{
    static char ends[BJ_MAX_RPC][BJ_ENDPOINT_MAX]; /* main thread only (devices.h) */
    char why[400];
    int n;
    if (bj_rpc_parse(list, ends, &n, why, sizeof why) != 0) {
        snprintf(err, errlen, "--rpc: %s", why);
        return -1;
    }
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (!rpc) {
        snprintf(err, errlen,
                 "--rpc: this llama.cpp has no RPC backend (built without GGML_RPC; scripts/bootstrap builds it "
                 "with it where the source has ggml-rpc)");
        return -1;
    }
    rpc_add_server_fn add = NULL;
    *(void **)&add = ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server");
    if (!add) {
        snprintf(err, errlen, "--rpc: this llama.cpp's RPC backend cannot add servers");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char name[BJ_ENDPOINT_MAX + 8];
        snprintf(name, sizeof name, "RPC[%s]", ends[i]); /* the name llama.cpp gives a server's registry */
        if (ggml_backend_reg_by_name(name))
            continue;
        if (rpc_greet(ends[i], timeout_ms, err, errlen) != 0)
            return -1;
        ggml_backend_reg_t reg = add(ends[i]);
        if (!reg) {
            snprintf(err, errlen, "rpc-server %s: it offers no device", ends[i]);
            return -1;
        }
        ggml_backend_register(reg);
    }
    return 0;
}

/* ---- listing ----------------------------------------------------------------------------- */

static void describe(ggml_backend_dev_t dev, bool remote, struct bj_device *d)
{
    memset(d, 0, sizeof *d);
    d->dev = dev;
    d->remote = remote;
    bj_strlcpy(d->name, ggml_backend_dev_name(dev), sizeof d->name);
    bj_strlcpy(d->desc, ggml_backend_dev_description(dev), sizeof d->desc);
    ggml_backend_buffer_type_t buft = ggml_backend_dev_buffer_type(dev);
    bj_strlcpy(d->buft, buft ? ggml_backend_buft_name(buft) : "", sizeof d->buft);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    d->splits_rows = reg && ggml_backend_reg_get_proc_address(reg, "ggml_backend_split_buffer_type") != NULL;
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(dev, &free, &total);
    d->free = free;
    d->total = total;
    d->free_known = total > 0 && !(remote && free >= total);
    d->split_weight = free;
    if (free == 0 && total == 0) { /* as llama.cpp: the host's memory stands in */
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (cpu) {
            ggml_backend_dev_memory(cpu, &free, &total);
            d->split_weight = free;
        }
    }
}

static bool is_rpc(ggml_backend_dev_t dev)
{
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    return reg && strcmp(ggml_backend_reg_name(reg), "RPC") == 0;
}

/* The same physical GPU seen by two backends (CUDA and Vulkan, say) is used once. */
static bool same_gpu_listed(const struct bj_devices *out, int first_gpu, ggml_backend_dev_t dev)
{
    struct ggml_backend_dev_props p;
    ggml_backend_dev_get_props(dev, &p);
    for (int i = first_gpu; i < out->n; i++) {
        struct ggml_backend_dev_props q;
        ggml_backend_dev_get_props(out->d[i].dev, &q);
        if (p.device_id && q.device_id && strcmp(p.device_id, q.device_id) == 0)
            return true;
    }
    return false;
}

void bj_devices_list(struct bj_devices *out)
{
    memset(out, 0, sizeof *out);
    size_t n = ggml_backend_dev_count();
    /* rpc-servers first (llama.cpp puts them first to keep transfers down), in the order added */
    for (size_t i = 0; i < n && out->n < BJ_MAX_DEVICES; i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU && is_rpc(dev))
            describe(dev, true, &out->d[out->n++]);
    }
    int first_gpu = out->n;
    for (size_t i = 0; i < n && out->n < BJ_MAX_DEVICES; i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU && !is_rpc(dev) &&
            !same_gpu_listed(out, first_gpu, dev))
            describe(dev, false, &out->d[out->n++]);
    }
    if (out->n > first_gpu)
        return;
    /* integrated GPUs only without a discrete one, and of one backend only */
    ggml_backend_reg_t igpu_reg = NULL;
    for (size_t i = 0; i < n && out->n < BJ_MAX_DEVICES; i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_IGPU)
            continue;
        if (igpu_reg && ggml_backend_dev_backend_reg(dev) != igpu_reg)
            continue;
        igpu_reg = ggml_backend_dev_backend_reg(dev);
        describe(dev, false, &out->d[out->n++]);
    }
}
