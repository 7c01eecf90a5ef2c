"""Integration tests of the supervisor: an engine stalled on purpose (--inject-stall) is noticed
within the stall timeout, its brains die with cause WATCHDOG (journaled), a new engine on the same
loaded model resurrects them, and the hive goes on; the abandoned engine's late events are never
published."""
import os
import json
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, HiveCase, of, with_model  # noqa: E402

BRAINS = ("SUBJECT", "OBSERVER", "GOD")


class Supervisor(HiveCase):
    def run_until(self, args, done, timeout=180):
        """Runs the hive, reading its events until done(events) holds, then stops it with SIGINT."""
        cmd = [BRAINJAR, "run", "--events", "jsonl", "--data-dir", self.data, "--pause", "0", "--no-web"] + with_model(args)
        err_path = os.path.join(self.tmp, "err")
        with open(err_path, "w") as err_f:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_f, stdin=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        ev, deadline = [], time.time() + timeout
        for line in p.stdout:
            ev.append(json.loads(line))
            if done(ev) or time.time() > deadline:
                break
        p.send_signal(signal.SIGINT)
        for line in p.stdout:
            ev.append(json.loads(line))
        p.wait(timeout=60)
        with open(err_path) as f:
            return p.returncode, ev, f.read()

    def test_stalled_engine_is_rebuilt(self):
        def back(ev):  # every brain resurrected and thinking again
            rises = {e["brain"]: e["seq"] for e in of(ev, "resurrection")}
            return all(any(t["seq"] > rises.get(b, 1 << 62) for t in of(ev, "token", b)) for b in BRAINS)
        rc, ev, err = self.run_until(["--mode", "matrix", "--inject-stall", "SUBJECT:5:4000", "--stall-timeout", "1"],
                                     back)
        self.assertEqual(rc, 0, err)
        restarts = [e for e in of(ev, "watchdog") if e.get("action") == "engine_restart"]
        self.assertEqual(len(restarts), 1, err)
        m = re.search(r"rebuilt in ([0-9.]+) ms", err)
        self.assertIsNotNone(m, err)
        for b in BRAINS:
            deaths = of(ev, "death", b)
            self.assertEqual([d["cause"] for d in deaths], ["WATCHDOG"], b)
            self.assertEqual(deaths[0]["crash_count"], 1)
            rises = of(ev, "resurrection", b)
            self.assertEqual([r["crash_count"] for r in rises], [1], b)
            self.assertGreater(rises[0]["seq"], deaths[0]["seq"])
            # It thinks again after coming back.
            self.assertTrue([t for t in of(ev, "token", b) if t["seq"] > rises[0]["seq"]], b)
            # Counts never go backwards: no event of the abandoned engine (crash_count 0) after the death.
            self.assertFalse([e for e in ev if e.get("brain") == b and e["seq"] > deaths[0]["seq"]
                              and e.get("crash_count", 1) < 1], b)
        log = self.crash_log()
        self.assertEqual(len([line for line in log if "WATCHDOG" in line]), 3, log)

    def test_stall_shorter_than_timeout_is_not_a_death(self):
        rc, ev, err = self.run_hive("--mode", "single", "--inject-stall", "SUBJECT:5:300", "--stall-timeout", "3",
                                    "--duration", "3", dump=False)
        self.assertEqual(rc, 0, err)
        self.assertFalse(of(ev, "death"))
        self.assertFalse(of(ev, "watchdog"))


class Hangup(HiveCase):
    def test_sighup_reopens_the_crash_log_and_reloads_prompts(self):
        prompts = os.path.join(self.tmp, "prompts")
        os.makedirs(prompts)
        with open(os.path.join(prompts, "single.txt"), "w") as f:
            f.write("You are {name}, a small mind in a jar of {jar} tokens.")
        cmd = [BRAINJAR, "run", "--mode", "single", "--events", "jsonl", "--data-dir", self.data, "--pause", "0", "--no-web",
               "--jar-tokens-subject", "200", "--prompts", prompts, "--dump-context", self.dump] + with_model([])
        out_path, err_path = os.path.join(self.tmp, "out"), os.path.join(self.tmp, "err")
        with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
            p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        log = os.path.join(self.data, "crash_reports.log")
        deadline = time.time() + 60
        while time.time() < deadline and len(self.crash_log()) < 2:
            time.sleep(0.2)
        self.assertGreaterEqual(len(self.crash_log()), 2)
        os.rename(log, log + ".1")  # what logrotate does
        with open(os.path.join(prompts, "single.txt"), "w") as f:
            f.write("You are {name}, RELOADED, in a jar of {jar} tokens.")
        p.send_signal(signal.SIGHUP)
        while time.time() < deadline and len(self.crash_log()) < 2:
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        with open(err_path) as f:
            err = f.read()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("SIGHUP", err)
        self.assertGreaterEqual(len(self.crash_log()), 2, "deaths after SIGHUP go to the new file")
        self.assertTrue(any("RELOADED" in life for life in self.dumps("SUBJECT")), "later lives use the new prompt")


if __name__ == "__main__":
    unittest.main()
