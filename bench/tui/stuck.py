#!/usr/bin/env python3
"""A terminal that cannot keep up must not slow the hive (issue 26): brainjar run's full-screen view
on a normal terminal (a tmux pane) against one that nobody reads (a pty whose master is never read:
every write of the view blocks once the kernel's buffer is full), and --tui off as the baseline.
Each mode runs ROUNDS times, interleaved, on the tiny model; tok/s is the growth of
brainjar_tokens_generated_total (/metrics) over WINDOW seconds after WARM seconds. "Nothing lost":
brainjar_bus_dropped_total of the store's subscription is 0, and the run ends clean in the store.

  python3 bench/tui/stuck.py --brainjar build/brainjar --model build/models/brainjar-tiny.gguf
"""
import argparse
import http.client
import os
import pty
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metrics(port, token):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return text


def total(text, name):
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def sub_value(text, name, sub):
    m = re.search(rf'^{name}{{[^}}]*"{sub}"[^}}]*}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def one(args, mode, data):
    port = free_port()
    tok = subprocess.run([args.brainjar, "token", "create", "--role", "viewer", "--data-dir", data],
                         capture_output=True, text=True, check=True).stdout.strip()
    cmd = ["nice", "-n", "10", args.brainjar, "run", "--data-dir", data, "--web-port", str(port), "--pace", "0",
           "--model", args.model, "--mode", "matrix", "--tui", "off" if mode == "off" else "on"]
    pid, master, sock = None, None, None
    if mode == "off":
        p = subprocess.Popen(cmd + ["--events", "text"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        pid = p.pid
    elif mode == "stuck":
        pid, master = pty.fork()
        if pid == 0:
            os.environ["TERM"] = "xterm-256color"
            os.environ["LANG"] = "C.UTF-8"
            os.execvp(cmd[0], cmd)
        # master is never read: the view's writes block once the pty's buffer is full
    else:
        sock = f"bjstuck{os.getpid()}"
        line = " ".join(f"'{a}'" for a in cmd)
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "160", "-y", "48",
                        f"env TERM=xterm-256color LANG=C.UTF-8 {line}"], check=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                metrics(port, tok)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(args.warm)
        m0 = metrics(port, tok)
        t0 = time.time()
        time.sleep(args.window)
        m1 = metrics(port, tok)
        t1 = time.time()
        name = "brainjar_tokens_generated_total"
        rate = (total(m1, name) - total(m0, name)) / (t1 - t0)
        dropped = {s: sub_value(m1, "brainjar_bus_dropped_total", s) for s in ("store", "tui")}
        coalesced = {s: sub_value(m1, "brainjar_bus_coalesced_total", s) for s in ("store", "tui")}
    finally:
        if sock:
            subprocess.run(["tmux", "-L", sock, "send-keys", "q"])
            time.sleep(3)
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
        else:
            os.kill(pid, signal.SIGTERM)
            end = time.time() + 30
            status = None
            while time.time() < end:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    break
                time.sleep(0.2)
            if status is None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                print(f"  {mode}: did not stop within 30 s of SIGTERM")
            elif mode == "stuck":
                print(f"  stuck: exited {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status} after SIGTERM")
        if master is not None:
            os.close(master)
    runs = subprocess.run([args.brainjar, "runs", "--data-dir", data], capture_output=True, text=True).stdout
    return rate, dropped, coalesced, runs.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brainjar", default="build/brainjar")
    ap.add_argument("--model", default="build/models/brainjar-tiny.gguf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=float, default=5)
    ap.add_argument("--window", type=float, default=20)
    args = ap.parse_args()
    res = {"off": [], "tmux": [], "stuck": []}
    for r in range(args.rounds):
        for mode in res:
            data = tempfile.mkdtemp(prefix=f"stuck-{mode}-")
            try:
                rate, dropped, coalesced, run = one(args, mode, data)
            finally:
                shutil.rmtree(data, ignore_errors=True)
            res[mode].append(rate)
            print(f"round {r + 1} {mode:5s} {rate:8.1f} tok/s  dropped {dropped}  coalesced {coalesced}  store: {run}",
                  flush=True)
    for mode, v in res.items():
        print(f"{mode:5s} median {statistics.median(v):8.1f} tok/s  runs {' '.join(f'{x:.1f}' for x in v)}")
    base = statistics.median(res["tmux"])
    print(f"stuck vs tmux: {100 * (statistics.median(res['stuck']) - base) / base:+.1f}%")


if __name__ == "__main__":
    main()
