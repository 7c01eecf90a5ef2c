#!/usr/bin/env python3
"""make soak: a long run (minutes, not part of make test) that shows memory flat after warm-up.

Runs `brainjar run` in matrix mode with small jars (deaths every few seconds), the store and the
journal on, no web server, and samples the daemon's RSS every few seconds. After a warm-up (the
first quarter of the run) RSS may move with the allocator but must not grow: the test fails when
the last quarter's median is more than 10% above the second quarter's.

usage: bench/soak/soak.py [--minutes M] [--brainjar PATH] [--model FILE]"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "5")))
    ap.add_argument("--brainjar", default="build/brainjar")
    ap.add_argument("--model", default=os.environ.get("BJ_TINY_MODEL", "build/models/brainjar-tiny.gguf"))
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="bj-soak-")
    cmd = [args.brainjar, "run", "--no-web", "--mode", "matrix", "--model", args.model, "--events", "none",
           "--pause", "0", "--threads", "1", "--jar-tokens", "300", "--data-dir", data]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, end = [], time.time() + args.minutes * 60
    try:
        while time.time() < end and p.poll() is None:
            samples.append((time.time(), rss_kb(p.pid)))
            time.sleep(5)
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    if p.returncode != 0 or len(samples) < 8:
        print(f"soak: brainjar exited {p.returncode} after {len(samples)} samples\n{err[-2000:]}")
        return 1
    q = len(samples) // 4
    second = statistics.median(r for _, r in samples[q:2 * q])
    last = statistics.median(r for _, r in samples[3 * q:])
    deaths = 0
    log = os.path.join(data, "crash_reports.log")
    if os.path.exists(log):
        with open(log) as f:
            deaths = sum(1 for _ in f)
    growth = (last - second) / second * 100
    print(f"soak: {args.minutes:g} min, {deaths} deaths, RSS after warm-up {second / 1024:.1f} MB, "
          f"at the end {last / 1024:.1f} MB ({growth:+.1f}%)")
    return 0 if growth <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
