#!/usr/bin/env python3
"""bench/web: what the web server costs the hive, and how fast it answers.

One `brainjar run` (matrix mode, the embedded tiny model, --web-auth off on loopback so the
clients need no login) runs the whole time; measuring windows of --seconds each, interleaved for
--rounds rounds so that a change in the machine's load hits every case alike:
  * clients=N   N WebSocket clients read everything: one measures token-to-client latency on
                its own thread (the token event's generation time `ts`, which for merged tokens
                is the oldest part's, to its arrival; same clock), the others read in a
                separate process so that reading them does not delay the measuring one;
  * stalled     one live client and one that never reads (a tiny receive buffer);
  * http        one WebSocket client while wrk hammers /api/health, then /api/status.
The hive's tokens/s is read from /api/metrics (tokens generated this run) at both ends of each
window; the table gives each case's median over the rounds and its ratio to no clients. Figures
go to stdout and to --out as JSON.

usage: bench/web/bench.py [--brainjar build/brainjar] [--seconds 10] [--rounds 3] [--clients 0,1,100,1000]
"""
import argparse
import base64
import datetime
import json
import os
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def ws_connect(port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s, rest


def bulk_reader(port, n, ready, stop):
    """Another process: n clients that read and discard everything (so that reading them does
    not delay the measuring client)."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s, _ = ws_connect(port)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    ready.set()
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            try:
                key.fileobj.recv(1 << 20)
            except BlockingIOError:
                pass
    for s in socks:
        s.close()


class Readers:
    """Client 0 measures token latency on its own thread; the other n-1 read in another process."""

    def __init__(self, port, n):
        import multiprocessing
        self.lat_ms = []
        self.measure_buf = b""
        self.stop = False
        self.bulk = None
        if n > 1:
            self.ready, self.stop_ev = multiprocessing.Event(), multiprocessing.Event()
            self.bulk = multiprocessing.Process(target=bulk_reader, args=(port, n - 1, self.ready, self.stop_ev))
            self.bulk.start()
            self.ready.wait(120)
        self.sock, self.measure_buf = ws_connect(port)
        self.sock.settimeout(0.2)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def frames(self):
        b = self.measure_buf
        while len(b) >= 2:
            n = b[1] & 0x7F
            off = 2
            if n == 126:
                if len(b) < 4:
                    break
                n, off = struct.unpack("!H", b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    break
                n, off = struct.unpack("!Q", b[2:10])[0], 10
            if len(b) < off + n:
                break
            yield b[off:off + n]
            b = b[off + n:]
        self.measure_buf = b

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                return
            now = time.time()
            self.measure_buf += data
            for f in self.frames():
                if b'"type":"token"' not in f:
                    continue
                data = json.loads(f)
                for m in data if isinstance(data, list) else [data]:
                    if m.get("type") != "token":
                        continue
                    ts = datetime.datetime.strptime(m["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=datetime.timezone.utc).timestamp()
                    self.lat_ms.append((now - ts) * 1000)

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()
        if self.bulk:
            self.stop_ev.set()
            self.bulk.join(60)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def hive(args, port, data):
    cmd = [args.brainjar, "run", "--events", "none", "--data-dir", data, "--web-port", str(port), "--web-auth", "off",
           "--pause", "0", "--jar-tokens", str(args.jar), "--log-level", "warn"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            get(port, "/api/health")
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("brainjar did not start")


def tokens(port):
    return get(port, "/api/metrics")["tokens"]


def wrk(port, path, seconds):
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t", "1", "-c", "16", "-d", f"{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def window(args, port, name, n_clients=0, stalled=False, http=None):
    """One measuring window on the running hive."""
    r = stall = None
    try:
        if n_clients:
            r = Readers(port, n_clients)
        if stalled:
            stall, _ = ws_connect(port, rcvbuf=4096)
        time.sleep(1)
        t0, k0 = time.time(), tokens(port)
        rps = {}
        if http:
            for path in http:
                rps[path] = wrk(port, path, max(1, args.seconds // len(http)))
        else:
            time.sleep(args.seconds)
        t1, k1 = time.time(), tokens(port)
        res = {"case": name, "clients": n_clients, "stalled": stalled, "tok_s": round((k1 - k0) / (t1 - t0), 1)}
        if r and r.lat_ms:
            res["latency_ms"] = r.lat_ms
        if http:
            res["req_s"] = rps
        return res
    finally:
        if r:
            r.close()
        if stall:
            stall.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brainjar", default="build/brainjar")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jar", type=int, default=2000)
    ap.add_argument("--clients", default="0,1,100,1000")
    ap.add_argument("--out", default="bench/out/web.json")
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    port = free_port()
    data = tempfile.mkdtemp(prefix="bj-bench-web-")
    p = hive(args, port, data)
    windows = []
    try:
        time.sleep(args.warmup)
        # The cases interleave, round after round, so that a change of the machine's load hits all.
        for rnd in range(args.rounds):
            for n in [int(x) for x in args.clients.split(",")]:
                windows.append(window(args, port, f"clients={n}", n_clients=n))
            windows.append(window(args, port, "1 + 1 stalled", n_clients=1, stalled=True))
            windows.append(window(args, port, "http (1 client)", n_clients=1, http=["/api/health", "/api/status"]))
            print(f"round {rnd + 1}: " + ", ".join(f"{w['case']} {w['tok_s']}" for w in windows[-6:]), flush=True)
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        extra = {l.split()[0]: l.split()[1] for l in m.splitlines()
                 if l.startswith(("brainjar_ws_resyncs_total", "brainjar_ws_coalesced_total"))}
    finally:
        p.terminate()
        p.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    cases = {}
    for w in windows:
        c = cases.setdefault(w["case"], {"tok_s": [], "lat": [], "req_s": {}})
        c["tok_s"].append(w["tok_s"])
        c["lat"] += w.get("latency_ms", [])
        for k, v in w.get("req_s", {}).items():
            c["req_s"].setdefault(k, []).append(v)
    base = statistics.median(cases["clients=0"]["tok_s"])
    summary = []
    for name, c in cases.items():
        row = {"case": name, "tok_s_median": statistics.median(c["tok_s"]), "tok_s_all": c["tok_s"],
               "vs_no_clients": round(statistics.median(c["tok_s"]) / base, 3) if base else None}
        if c["lat"]:
            row.update(latency_ms_p50=round(pct(c["lat"], 50), 2), latency_ms_p99=round(pct(c["lat"], 99), 2),
                       token_messages=len(c["lat"]))
        if c["req_s"]:
            row["req_s_median"] = {k: statistics.median([x for x in v if x]) if any(v) else None
                                   for k, v in c["req_s"].items()}
        summary.append(row)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": os.uname().nodename, "cores": os.cpu_count(), "load_after": os.getloadavg(),
                   "args": vars(args), "summary": summary, "ws_counters": extra}, f, indent=1)
    print(f"{'case':<18}{'tok/s':>8}{'x none':>8}{'p50 ms':>9}{'p99 ms':>9}  req/s")
    for r in summary:
        print(f"{r['case']:<18}{r['tok_s_median']:>8}{str(r['vs_no_clients']):>8}{str(r.get('latency_ms_p50', '')):>9}"
              f"{str(r.get('latency_ms_p99', '')):>9}  {r.get('req_s_median', '')}")
    print("load average after:", os.getloadavg(), "ws counters:", extra)


if __name__ == "__main__":
    sys.exit(main())
