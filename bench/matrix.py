#!/usr/bin/env python3
"""bench/matrix: brainjar matrix (3 brains, one shared model) side by side with llama.cpp's own
llama-batched-bench (3 sequences) and with three separate single-brain processes (the seed's
one-model-copy-per-brain design), on the same model, in one run, repeated and interleaved.

Measures aggregate generated tokens/s and peak memory (max RSS; on a GPU also device memory via
nvidia-smi when present). Prints medians and the ratios the issue asks for.

usage: bench/matrix [--model FILE] [--steps N] [--repeat R] [--threads N] [--gpu-layers N]
With no --model, a TinyLlama-shaped Q4_0 model is made in bench/out/ (a Mistral-7B-shaped
Q4_K_M with --preset mistral-7b --type Q4_K_M)."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import shutil
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY = re.compile(r"summary: (\d+) tokens generated in ([\d.]+) s = ([\d.]+) tok/s aggregate "
                     r"\(generation-only steps: ([\d.]+) tok/s\); peak RSS ([\d.]+) MB; jars ([\d.]+) MB")


class GpuMemory:
    """Peak device memory per process, sampled with nvidia-smi every 0.2 s (absent: all zero)."""

    def __init__(self):
        self.peak = {}
        self.ok = shutil.which("nvidia-smi") is not None
        self.stop = threading.Event()
        if self.ok:
            threading.Thread(target=self.poll, daemon=True).start()

    def poll(self):
        while not self.stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                try:
                    pid, mb = (int(x) for x in line.split(","))
                except ValueError:
                    continue
                self.peak[pid] = max(self.peak.get(pid, 0), mb)
            time.sleep(0.2)

    def of(self, pids):
        return float(sum(self.peak.get(p, 0) for p in pids))


GPU = None


def wait_rss(p):
    """Waits for p; returns (returncode, max RSS in MB)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024.0


def brainjar(args, cfg, mode, steps, threads, schedule="auto", data=None):
    jar = str(cfg.jar)
    cmd = [args.brainjar, "run", "--no-web", "--mode", mode, "--schedule", schedule, "--model", args.model, "--events", "none", "--pause", "0",
           "--jar-tokens", jar, "--steps", str(steps), "--max-tokens", str(1 << 20), "--threads", str(threads),
           "--gpu-layers", str(args.gpu_layers), "--data-dir", data or cfg.tmp, "--force"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def parse_summary(p, what):
    err = p.stderr.read()
    m = SUMMARY.search(err)
    if p.returncode != 0 or not m:
        sys.exit(f"bench: {what} failed (rc {p.returncode}):\n{err[-2000:]}")
    # (overall tok/s incl. prefill, generation-only tok/s, jar MB)
    return float(m.group(3)), float(m.group(4)), float(m.group(6))


def run_matrix(args, cfg, schedule="auto"):
    p = brainjar(args, cfg, "matrix", args.steps, args.threads, schedule)
    _, rss = wait_rss(p)
    _, tg, jars = parse_summary(p, "brainjar matrix")
    if schedule == "auto":
        cfg.gpu["bj"].append(GPU.of([p.pid]))
    return tg, rss, jars


def run_single(args, cfg):
    p = brainjar(args, cfg, "single", args.steps, args.threads)
    _, rss = wait_rss(p)
    _, tg, jars = parse_summary(p, "brainjar single")
    cfg.gpu["one"].append(GPU.of([p.pid]))
    return tg, rss, jars


def run_separate(args, cfg):
    """Three processes at once, each with its own copy of the model; cores split between them.
    Aggregate = sum of each process's generation-only speed (they run at the same time)."""
    per = max(1, args.threads // 3)
    # one data directory each: a data directory belongs to one daemon (its lock)
    procs = [brainjar(args, cfg, "single", args.steps, per, data=os.path.join(cfg.tmp, f"sep{k}")) for k in range(3)]
    rss = 0.0
    tps = 0.0
    for p in procs:
        _, r = wait_rss(p)
        rss += r
        tps += parse_summary(p, "separate brainjar")[1]
    cfg.gpu["sep"].append(GPU.of([p.pid for p in procs]))
    return tps, rss


def run_batched_bench(args, cfg):
    cmd = [args.batched_bench, "-m", args.model, "-c", str(3 * (cfg.jar + 256)), "-b", "512", "-ub", "512",
           "-npp", "128", "-ntg", str(args.steps), "-npl", "3", "-t", str(args.threads), "-ngl", str(args.gpu_layers
           if args.gpu_layers >= 0 else 999), "-fa", "auto"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, rss = wait_rss(p)
    out = p.stdout.read()
    rows = [line for line in out.splitlines() if re.match(r"^\|\s+128 \|", line)]
    if p.returncode != 0 or not rows:
        sys.exit(f"bench: llama-batched-bench failed (rc {p.returncode}):\n{out[-1500:]}\n{p.stderr.read()[-1500:]}")
    cols = [c.strip() for c in rows[-1].strip("|").split("|")]
    cfg.gpu["bb"].append(GPU.of([p.pid]))
    return float(cols[7]), rss  # S_TG t/s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--preset", default="tinyllama-1.1b")
    ap.add_argument("--type", default="Q4_0")
    ap.add_argument("--steps", type=int, default=128, help="tokens generated per brain per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--brainjar", default=os.path.join(ROOT, "build", "brainjar"))
    ap.add_argument("--batched-bench")
    ap.add_argument("--no-parallel", action="store_true", help="skip the parallel-schedule row")
    args = ap.parse_args()

    if not args.model:
        os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
        args.model = os.path.join(ROOT, "bench", "out", f"{args.preset}-{args.type}.gguf")
        if not os.path.exists(args.model):
            subprocess.run([args.brainjar, "mkmodel", "--preset", args.preset, "--type", args.type, "-o", args.model],
                           check=True)
    if not args.batched_bench:
        args.batched_bench = subprocess.run([os.path.join(ROOT, "scripts", "bootstrap"), "--batched-bench"],
                                            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]

    class Cfg:
        pass
    global GPU
    GPU = GpuMemory()
    cfg = Cfg()
    cfg.gpu = {k: [] for k in ("bj", "bb", "sep", "one")}
    cfg.tmp = tempfile.mkdtemp(prefix="bench-matrix-")
    cfg.jar = 128 + 64 + args.steps + 64  # prompt + room: nobody dies while measured
    print(f"model {args.model} ({os.path.getsize(args.model) / 1e6:.0f} MB), {args.steps} tokens per brain, "
          f"{args.threads} threads, gpu layers {args.gpu_layers}, {args.repeat} rounds", flush=True)
    res = {k: [] for k in ("bj", "bb", "sep", "bj_rss", "bb_rss", "sep_rss", "one_rss", "jars", "par")}
    for r in range(args.repeat):
        tps, rss, jars = run_matrix(args, cfg)
        res["bj"].append(tps), res["bj_rss"].append(rss), res["jars"].append(jars)
        tps, rss = run_batched_bench(args, cfg)
        res["bb"].append(tps), res["bb_rss"].append(rss)
        tps, rss = run_separate(args, cfg)
        res["sep"].append(tps), res["sep_rss"].append(rss)
        _, rss, _ = run_single(args, cfg)
        res["one_rss"].append(rss)
        if not args.no_parallel:
            res["par"].append(run_matrix(args, cfg, "parallel")[0])
        print(f"round {r + 1}: brainjar {res['bj'][-1]:.1f} tok/s, batched-bench {res['bb'][-1]:.1f} tok/s, "
              f"separate {res['sep'][-1]:.1f} tok/s", flush=True)
    med = {k: statistics.median(v) if v else 0.0 for k, v in res.items()}
    one_jar = med["jars"] / 3
    budget = med["one_rss"] + 2 * one_jar
    print()
    print(f"{'':32}{'tok/s (median)':>16}{'peak RSS MB':>14}")
    print(f"{'brainjar matrix (3 brains)':32}{med['bj']:16.1f}{med['bj_rss']:14.0f}")
    print(f"{'llama-batched-bench (3 seq)':32}{med['bb']:16.1f}{med['bb_rss']:14.0f}")
    print(f"{'3 separate processes':32}{med['sep']:16.1f}{med['sep_rss']:14.0f}")
    print(f"{'brainjar single (1 brain)':32}{'':16}{med['one_rss']:14.0f}")
    if res["par"]:
        print(f"{'brainjar matrix, parallel sched.':32}{med['par']:16.1f}")
    print()
    print(f"brainjar / llama-batched-bench tok/s: {med['bj'] / med['bb']:.3f}   (GPU target >= 0.95)")
    print(f"brainjar / 3 separate tok/s:          {med['bj'] / med['sep']:.3f}   (CPU target >= 1.0 of the better)")
    print(f"brainjar / max(batched-bench, separate): {med['bj'] / max(med['bb'], med['sep']):.3f}")
    if res["par"]:
        print(f"schedule: batched / parallel tok/s: {med['bj'] / med['par']:.3f}   (auto: batched on GPUs and below 4 cores per brain)")
    print(f"memory: 3 brains {med['bj_rss']:.0f} MB vs one brain + two jars {budget:.0f} MB: "
          f"{med['bj_rss'] / budget:.3f}   (target <= 1.15)")
    print(f"memory: 3 separate / brainjar: {med['sep_rss'] / med['bj_rss']:.2f}x")
    if GPU.ok:
        g = {k: statistics.median(v) for k, v in cfg.gpu.items()}
        gbudget = g["one"] + 2 * one_jar
        print(f"GPU memory (MB, nvidia-smi peak): brainjar {g['bj']:.0f}, batched-bench {g['bb']:.0f}, "
              f"3 separate {g['sep']:.0f}, one brain {g['one']:.0f}")
        print(f"GPU memory: 3 brains vs one brain + two jars {gbudget:.0f} MB: {g['bj'] / max(gbudget, 1):.3f}"
              f"   (target <= 1.15)")


if __name__ == "__main__":
    main()
