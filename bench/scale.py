#!/usr/bin/env python3
"""bench/scale: brainjar with N brains on one model (--brains N) against llama.cpp's own
llama-batched-bench with N sequences, for several N, interleaved in one run.

Per N and round: `brainjar run --brains N` (jars of --jar tokens, --steps generated tokens per
brain, --profile) and `llama-batched-bench -npp 128 -ntg STEPS -npl N` on the same model. Reports
generation-only tok/s (brainjar's summary line; batched-bench's S_TG), overall tok/s (generated
tokens over the whole run, prefill included), brainjar's share of the step outside llama_decode
(--profile), and on a GPU the peak device memory of the brainjar process (nvidia-smi) against
`brainjar validate`'s estimate for the same hive.

Then, for each N of --latency-ns (default 3,16,64,128): one run of N brains with small jars (many
deaths, no pause) for the resurrection latency (end of the pause -> the new life's first token,
p50/p99 in ms and in steps: 1 = the step its life began in), the longest wait of a live brain in
steps, and the spread of tokens across brains (from the jsonl events); one table of them at the end.

--variants measures several brainjars side by side against the same batched-bench runs:
'NAME=FLAGS;NAME@BIN=FLAGS' (a variant with @BIN runs that binary, e.g. main's build as "before").

usage: bench/scale.py --brainjar BIN --batched-bench BIN --model FILE [--ns 1,3,8] [--repeat R]
                      [--steps N] [--jar N] [--threads N] [--bj-threads N|auto] [--gpu-layers N] [--latency-ns 3,16,64]
                      [--variants SPEC] [--out DIR]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import matrix  # noqa: E402  (GpuMemory, wait_rss, SUMMARY)

PROFILE = re.compile(r"profile-summary: (.*)")
GPU_REQ = re.compile(r"GPU required:\s+\S+ \S+ \((\d+) MiB")


def kv(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split())}


def bj_threads(a):
    """brainjar's --threads: --bj-threads, else --threads; 'auto' leaves it to brainjar's default."""
    t = a.bj_threads or str(a.threads)
    return [] if t == "auto" else ["--threads", t]


def brainjar_cmd(a, n, jar, steps, tmp, extra=(), binary=None):
    # A store of its own for every run: brains resume their death counts from a store, which
    # changes their prompts (and when they die together), so runs sharing one would not measure
    # the same piece (the variant that ran second met older brains).
    data = tempfile.mkdtemp(prefix="run-", dir=tmp)
    return [binary or a.brainjar, "run", "--brains", str(n), "--model", a.model, "--pause", "0", "--jar-tokens", str(jar),
            "--steps", str(steps), *bj_threads(a), "--gpu-layers", str(a.gpu_layers),
            "--data-dir", data, "--force", "--profile", *a.bj_extra.split(), *extra]


def run_logged(cmd, stream, what, log):
    """Runs cmd to its end, reading its "stdout" or "stderr" (the other is dropped); logs the command
    and that text under ### what. Returns (exit code, peak RSS MB, text, pid)."""
    t0 = time.time()
    pipe = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    pipe[stream] = subprocess.PIPE
    p = subprocess.Popen(cmd, text=True, **pipe)
    holder = []
    th = threading.Thread(target=lambda: holder.append(getattr(p, stream).read()))
    th.start()
    rc, rss = matrix.wait_rss(p)
    th.join()
    log.write(f"### {what} ({time.time() - t0:.1f} s)\n$ {' '.join(cmd)}\n{holder[0]}\n")
    return rc, rss, holder[0], p.pid


def run_brainjar(a, n, gpu, tmp, log, extra=(), binary=None):
    # Prefill (the system prompts) takes a few steps; then about a.steps steps in which every
    # brain generates. One long thought each: nobody dies.
    # The prompt budget is about 512 tokens a step: N system prompts of ~130 tokens take N/4 steps.
    steps = a.steps + 3 + (n * 130 + 511) // 512
    cmd = brainjar_cmd(a, n, a.jar, steps, tmp, ("--events", "none", "--max-tokens", str(1 << 20), *extra), binary)
    rc, rss, err, pid = run_logged(cmd, "stderr", f"brainjar N={n}", log)
    m = matrix.SUMMARY.search(err)
    # The last engine's profile: a supervisor that gave up a stalled engine (a busy CPU) leaves two.
    prof = PROFILE.findall(err)
    if rc != 0 or not m or not prof:
        sys.exit(f"bench: brainjar --brains {n} failed (rc {rc}):\n{err[-3000:]}")
    return {"tg": float(m.group(4)), "overall": float(m.group(3)), "rss": rss, "gpu": gpu.of([pid]),
            "profile": kv(prof[-1])}


def run_bb(a, n, gpu, log):
    cmd = [a.batched_bench, "-m", a.model, "-c", str(n * a.jar), "-b", "512", "-ub", "512", "-npp", "128",
           "-ntg", str(a.steps), "-npl", str(n), "-t", str(a.threads),
           "-ngl", str(a.gpu_layers if a.gpu_layers >= 0 else 999), "-fa", "auto"]
    # Once more where it printed no result: on the 2-core VM it once exited 0 after the table's
    # header (a GPU machine's time is too dear to lose a whole run to that).
    for attempt in (1, 2):
        rc, rss, out, pid = run_logged(cmd, "stdout", f"llama-batched-bench N={n}", log)
        rows = [line for line in out.splitlines() if re.match(r"^\|\s+128 \|", line)]
        if rc == 0 and rows:
            break
        if attempt == 2:
            sys.exit(f"bench: llama-batched-bench -npl {n} failed (rc {rc}):\n{out[-2000:]}")
        print(f"bench: llama-batched-bench -npl {n} printed no result (rc {rc}); once more", flush=True)
    cols = [c.strip() for c in rows[-1].strip("|").split("|")]
    # S_TG; overall = generated tokens over the whole time, prefill included (as brainjar's)
    return {"tg": float(cols[7]), "overall": n * a.steps / float(cols[8]), "rss": rss, "gpu": gpu.of([pid])}


def estimate_gpu(a, n, log):
    cmd = [a.brainjar, "validate", "--brains", str(n), "--model", a.model, "--jar-tokens", str(a.jar),
           *bj_threads(a), "--gpu-layers", str(a.gpu_layers)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    log.write(f"### validate N={n}\n$ {' '.join(cmd)}\n{p.stdout}\n{p.stderr[-1500:]}\n")
    m = GPU_REQ.search(p.stdout)
    return float(m.group(1)) if m else 0.0


def latency_run(a, n, tmp, log, extra=(), binary=None):
    cmd = brainjar_cmd(a, n, a.latency_jar, a.latency_steps, tmp, ("--events", "jsonl", "--max-tokens", "24", *extra),
                       binary)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    log.write(f"### latency N={n} ({wall:.1f} s)\n$ {' '.join(cmd)}\n{p.stderr}\n")
    prof = PROFILE.findall(p.stderr)
    if p.returncode != 0 or not prof:
        sys.exit(f"bench: latency run failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    tokens, first, last = {}, None, None
    deaths = 0
    for line in p.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        t = ev.get("type")
        if t == "token":
            tokens[ev["brain"]] = tokens.get(ev["brain"], 0) + 1
            ts = ev.get("timestamp") or ev.get("time")
            if isinstance(ts, (int, float)):
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
        elif t == "death":
            deaths += 1
    counts = sorted(tokens.values()) or [0]
    return {"n": n, "profile": kv(prof[-1]), "deaths": deaths, "tokens_min": counts[0],
            "tokens_median": statistics.median(counts), "tokens_max": counts[-1], "brains_seen": len(tokens)}


def steps_of(p, key):  # a brainjar before the steps' percentiles has none
    return f"{p[key]:.0f}" if key in p else "-"


def print_latency(a, lat, name=""):
    p = lat["profile"]
    print(f"\nlatency run{' (' + name + ')' if name else ''}: {lat['n']} brains, jars {a.latency_jar}, {a.latency_steps} steps, pause 0: "
          f"{int(p['resurrections'])} resurrections ({lat['deaths']} deaths seen); end of pause -> first new "
          f"token p50 {p['first_token_p50_ms']:.1f} ms, p99 {p['first_token_p99_ms']:.1f} ms, max "
          f"{p['first_token_max_ms']:.1f} ms; in steps p50 {steps_of(p, 'first_token_p50_steps')}, p99 "
          f"{steps_of(p, 'first_token_p99_steps')}, max {p['first_token_max_steps']:.0f}; step {p['step_us']:.0f} us; longest wait of a live brain "
          f"{int(p['max_wait_steps'])} steps; tokens per brain min {lat['tokens_min']} / median "
          f"{lat['tokens_median']} / max {lat['tokens_max']} over {lat['brains_seen']} brains\n", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brainjar", required=True)
    ap.add_argument("--batched-bench", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ns", default="1,3,8,16,32,64,128")
    ap.add_argument("--steps", type=int, default=128, help="tokens generated per brain")
    ap.add_argument("--jar", type=int, default=384, help="jar tokens per brain (and per sequence)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--bj-threads", default="", help="brainjar's --threads if not --threads ('auto': its default)")
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--latency-ns", default="3,16,64,128", help="brains of the latency runs (empty: none)")
    ap.add_argument("--latency-n", type=int, default=None, help="one latency run of N brains (0: none)")
    ap.add_argument("--latency-jar", type=int, default=220)
    ap.add_argument("--latency-steps", type=int, default=600)
    ap.add_argument("--bj-extra", default="", help="more brainjar flags (one string)")
    ap.add_argument("--variants", default="", help="brainjar variants measured side by side, "
                    "'NAME=FLAGS;NAME=FLAGS' (e.g. 'graph=--backend-sampling on;cpu=--backend-sampling off')")
    ap.add_argument("--out", default=None, help="folder for the full log and the results (json)")
    a = ap.parse_args()
    ns = [int(x) for x in a.ns.split(",") if x]
    lat_ns = [int(x) for x in a.latency_ns.split(",") if x] if a.latency_n is None else [a.latency_n]
    lat_ns = [n for n in lat_ns if n > 0]
    out = a.out or tempfile.mkdtemp(prefix="bench-scale-")
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "scale.log"), "w", buffering=1)
    tmp = tempfile.mkdtemp(prefix="bench-scale-data-")
    gpu = matrix.GpuMemory()
    print(f"model {a.model} ({os.path.getsize(a.model) / 1e6:.0f} MB), N = {ns}, {a.steps} tokens per brain, "
          f"jars {a.jar}, {a.threads} threads (brainjar: {a.bj_threads or a.threads}), gpu layers {a.gpu_layers}, {a.repeat} rounds; log {out}/scale.log",
          flush=True)
    variants = []  # (name, flags, binary)
    for v in a.variants.split(";"):
        if not v.strip():
            continue
        head, flags = (v.split("=", 1) + [""])[:2]
        name, binary = (head.strip().split("@", 1) + [None])[:2]
        variants.append((name, flags.split(), binary))
    variants = variants or [("brainjar", [], None)]
    res = {n: {"bb": [], **{name: [] for name, _, _ in variants}} for n in ns}
    est = {}
    if gpu.ok:
        for n in ns:
            est[n] = estimate_gpu(a, n, log)
        print("GPU estimate (MiB, brainjar validate): " + ", ".join(f"N={n}: {v:.0f}" for n, v in est.items()),
              flush=True)
    lat = {name: [] for name, _, _ in variants}

    def latency_all():
        for n in lat_ns:
            for name, flags, binary in variants:
                lat[name].append(latency_run(a, n, tmp, log, flags, binary))
                print_latency(a, lat[name][-1], name if len(variants) > 1 else "")

    for r in range(a.repeat):
        if r == 1 and lat_ns:  # after the first round: the key figures come first
            latency_all()
        for n in ns:
            c = run_bb(a, n, gpu, log)
            res[n]["bb"].append(c)
            for name, flags, binary in variants:
                b = run_brainjar(a, n, gpu, tmp, log, flags, binary)
                res[n][name].append(b)
                print(f"round {r + 1} N={n:3} {name:>8}: {b['tg']:8.1f} tok/s (outside decode "
                      f"{b['profile']['tg_outside_decode_pct']:.2f}%), batched-bench {c['tg']:8.1f}: "
                      f"{b['tg'] / c['tg']:.3f}; GPU MiB {b['gpu']:.0f} (bb {c['gpu']:.0f})", flush=True)

    def med(n, who, key):
        return statistics.median(x[key] for x in res[n][who])

    def medp(n, who, key):
        return statistics.median(x["profile"][key] for x in res[n][who])

    def ratios(n, who):  # per round, measured side by side
        return [b["tg"] / c["tg"] for b, c in zip(res[n][who], res[n]["bb"])]

    table = []
    for name, _, _ in variants:
        print(f"\n{name}:" if len(variants) > 1 else "")
        hdr = (f"{'N':>4} {'bj tg':>9} {'bb tg':>9} {'ratio':>6} {'rounds':>13} {'bj all':>8} {'bb all':>8} "
               f"{'ratio':>6} {'step us':>8} {'outside':>8} {'RSS MB':>7}")
        if gpu.ok:
            hdr += f" {'GPU MiB':>8} {'est MiB':>8} {'err %':>6} {'bb GPU':>7}"
        print(hdr)
        for n in ns:
            rr = ratios(n, name)
            row = {"variant": name, "n": n, "bj_tg": med(n, name, "tg"), "bb_tg": med(n, "bb", "tg"),
                   "ratio": statistics.median(rr), "ratio_rounds": rr,
                   "bj_all": med(n, name, "overall"), "bb_all": med(n, "bb", "overall"),
                   "step_us": medp(n, name, "tg_step_us"), "outside_pct": medp(n, name, "tg_outside_decode_pct"),
                   "rss": med(n, name, "rss"), "gpu": med(n, name, "gpu"), "bb_gpu": med(n, "bb", "gpu"),
                   "est": est.get(n, 0.0), "rounds_bj": [x["tg"] for x in res[n][name]],
                   "rounds_bb": [x["tg"] for x in res[n]["bb"]]}
            table.append(row)
            line = (f"{n:4} {row['bj_tg']:9.1f} {row['bb_tg']:9.1f} {row['ratio']:6.3f} "
                    f"{'/'.join(f'{x:.2f}' for x in rr):>13} "
                    f"{row['bj_all']:8.1f} {row['bb_all']:8.1f} {row['bj_all'] / row['bb_all']:6.3f} "
                    f"{row['step_us']:8.0f} {row['outside_pct']:7.2f}% {row['rss']:7.0f}")
            if gpu.ok:
                errp = 100.0 * (row["est"] - row["gpu"]) / row["gpu"] if row["gpu"] else 0.0
                line += f" {row['gpu']:8.0f} {row['est']:8.0f} {errp:+6.2f} {row['bb_gpu']:7.0f}"
            print(line, flush=True)
    if lat_ns and not any(lat.values()):
        latency_all()
    if lat_ns:
        print(f"\nresurrection latency (jars {a.latency_jar}, 24-token thoughts, pause 0, {a.latency_steps} steps): "
              "end of the pause -> first new token, in ms and in steps (1 = the step its life began in)")
        # open ms: the mean step that decoded an opening; tg ms: a generation-only step; open ub:
        # the ubatches (passes over the weights) of an opening step (a brainjar before the count: -)
        print(f"{'variant':>10} {'N':>4} {'resurr':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p50 st':>6} "
              f"{'p99 st':>6} {'max st':>6} {'step ms':>7} {'p99/step':>8} {'open ms':>7} {'tg ms':>6} {'open ub':>7}")
        for name, _, _ in variants:
            for x in lat[name]:
                p = x["profile"]
                step_ms = p["step_us"] / 1000.0
                print(f"{name:>10} {x['n']:4} {p['resurrections']:7.0f} {p['first_token_p50_ms']:7.1f} "
                      f"{p['first_token_p99_ms']:7.1f} {p['first_token_max_ms']:7.1f} "
                      f"{steps_of(p, 'first_token_p50_steps'):>6} {steps_of(p, 'first_token_p99_steps'):>6} "
                      f"{p['first_token_max_steps']:6.0f} {step_ms:7.2f} "
                      f"{p['first_token_p99_ms'] / step_ms if step_ms else 0:8.2f} "
                      f"{p['opening_step_us'] / 1000.0 if 'opening_step_us' in p else float('nan'):7.2f} "
                      f"{p['tg_step_us'] / 1000.0:6.2f} "
                      f"{p['opening_ubatches_per_step'] if 'opening_ubatches_per_step' in p else float('nan'):7.2f}",
                      flush=True)
    with open(os.path.join(out, "scale.json"), "w") as f:
        json.dump({"args": vars(a), "table": table, "latency": lat}, f, indent=1)


if __name__ == "__main__":
    main()
