"""Helpers for integration tests: run the real brainjar binary on the tiny model, collect events."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BRAINJAR = os.environ.get("BRAINJAR", "build/brainjar")
TINY = os.environ.get("BJ_TINY_MODEL", "")
# How much slower than a native run this one is: the arm64 build's tests run under qemu-user,
# 10-30x slower (tests/CMakeLists.txt sets BJ_TEST_SLOW for the cross build only). Waits for the
# daemon to get somewhere scale with it; bounds that are the behaviour under test do not.
SLOW = float(os.environ.get("BJ_TEST_SLOW") or 1)


def slow(seconds):
    """seconds of waiting, scaled for a slow (emulated) run."""
    return seconds * SLOW


def with_model(args):
    """args with --model TINY in front unless they name a model: the tests want the tiny random model's
    speed and 4096-token context, not the embedded default voice (512 tokens, 20 MB)."""
    args = list(args)
    if TINY and not any(a == "--model" or a.startswith("--model-") for a in args):
        return ["--model", TINY] + args
    return args


class HiveCase(unittest.TestCase):
    def setUp(self):
        base = os.environ.get("BJ_TEST_TMP", tempfile.gettempdir())
        os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + "-", dir=base)
        self.data = os.path.join(self.tmp, "data")
        self.dump = os.path.join(self.tmp, "ctx")
        os.makedirs(self.dump)

    def tearDown(self):
        if not os.environ.get("BJ_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run_hive(self, *args, timeout=120, dump=True):
        """Runs brainjar run with args; returns (rc, events, stderr)."""
        cmd = [BRAINJAR, "run", "--events", "jsonl", "--data-dir", self.data, "--pause", "0", "--pace", "0"]
        if "--web-port" not in args:
            cmd.append("--no-web")  # the web tests pick free ports; the rest need no server
        if dump:
            cmd += ["--dump-context", self.dump]
        cmd += with_model(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=slow(timeout), stdin=subprocess.DEVNULL)
        events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        return p.returncode, events, p.stderr

    def dumps(self, brain):
        """Context texts of every life of brain, in life order."""
        out = []
        life = 1
        while True:
            path = os.path.join(self.dump, f"{brain}-life{life}.txt")
            if not os.path.exists(path):
                return out
            with open(path, encoding="utf-8", newline="") as f:
                out.append(f.read())
            life += 1

    def crash_log(self):
        path = os.path.join(self.data, "crash_reports.log")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8", newline="") as f:
            return f.read().splitlines()


def of(events, type_, brain=None):
    return [e for e in events if e["type"] == type_ and (brain is None or e.get("brain") == brain)]
