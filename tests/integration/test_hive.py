"""Integration tests of `brainjar run` (the hive): lives, deaths, watching, determinism, faults,
bad input. Each test runs the real binary on the tiny synthetic model (BJ_TINY_MODEL, see hivetest.with_model)."""
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, HiveCase, of, with_model  # noqa: E402

BRAINS = ("SUBJECT", "OBSERVER", "GOD")
SMALL_JARS = ("--jar-tokens-subject", "300", "--jar-tokens-observer", "350", "--jar-tokens-god", "400")


class Lives(HiveCase):
    def test_matrix_lives_and_deaths(self):
        rc, ev, err = self.run_hive("--mode", "matrix", *SMALL_JARS, "--steps", "1500", "--seed", "11")
        self.assertEqual(rc, 0, err)
        for b in BRAINS:
            self.assertTrue(of(ev, "thought", b), f"{b} never thought")
            deaths, rises = of(ev, "death", b), of(ev, "resurrection", b)
            self.assertTrue(deaths, f"{b} never died")
            for d in deaths:
                self.assertEqual(d["cause"], "JAR_FULL")
            # Counts rise by one, and every death is followed by exactly one resurrection.
            self.assertEqual([d["crash_count"] for d in deaths], list(range(1, len(deaths) + 1)))
            self.assertIn(len(rises), (len(deaths), len(deaths) - 1))
            lifecycle = [e["type"] for e in ev if e.get("brain") == b and e["type"] in ("death", "resurrection")]
            self.assertEqual(lifecycle, ["death", "resurrection"] * len(rises) + ["death"] * (len(deaths) - len(rises)))
            for r in rises:
                self.assertGreater(r["seq"], [d for d in deaths if d["crash_count"] == r["crash_count"]][0]["seq"])
            # The resurrected brain's system prompt states its count.
            lives = self.dumps(b)
            self.assertGreaterEqual(len(lives), 2)
            self.assertIn("You have never died.", lives[0])
            self.assertIn("You have died 1 time before.", lives[1])
            for n, text in enumerate(lives[2:], start=2):
                self.assertIn(f"You have died {n} times before.", text)
        # Every death is in crash_reports.log, in the original's shape plus the brain.
        log = self.crash_log()
        self.assertEqual(len(log), len(of(ev, "death")))
        for line in log:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z - CRASH #\d+: (SUBJECT|OBSERVER|GOD) JAR_FULL ")

    def test_parallel_schedule(self):
        rc, ev, err = self.run_hive("--mode", "matrix", *SMALL_JARS, "--steps", "800", "--schedule", "parallel")
        self.assertEqual(rc, 0, err)
        self.assertIn("parallel", err)
        for b in BRAINS:
            self.assertTrue(of(ev, "thought", b))
            self.assertTrue(of(ev, "death", b))

    def test_single_mode(self):
        rc, ev, err = self.run_hive("--mode", "single", "--jar-tokens", "300", "--steps", "400")
        self.assertEqual(rc, 0, err)
        self.assertEqual({e["brain"] for e in of(ev, "thought")}, {"SUBJECT"})
        self.assertTrue(of(ev, "death", "SUBJECT"))
        self.assertNotIn("thinks:]", "".join(self.dumps("SUBJECT")))


    def test_chat_template(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--jar-tokens", "600", "--steps", "400", "--max-tokens", "20",
                                    "--chat-template")
        self.assertEqual(rc, 0, err)
        observer = self.dumps("OBSERVER")[0]
        # The tiny model has no template of its own: ChatML. System prompt, then turns.
        self.assertTrue(observer.startswith("<|im_start|>system\nI watch another mind"))
        system = observer.split("<|im_end|>")[0]
        self.assertIn("I am OBSERVER, and my jar holds 600 tokens.", system)
        self.assertTrue(system.endswith("You have never died."), system)
        self.assertIn("<|im_start|>assistant\n", observer)
        self.assertIn("<|im_start|>user\n[SUBJECT thinks:]", observer)
        self.assertTrue(of(ev, "death"))


class Watching(HiveCase):
    def test_who_sees_what(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--jar-tokens", "1500", "--steps", "1200", "--max-tokens", "24")
        self.assertEqual(rc, 0, err)
        subject = "".join(self.dumps("SUBJECT"))
        observer = "".join(self.dumps("OBSERVER"))
        god = "".join(self.dumps("GOD"))
        # SUBJECT's context contains neither; OBSERVER's contains SUBJECT's thoughts; GOD's all.
        self.assertNotIn("thinks:]", subject)
        self.assertIn("[SUBJECT thinks:]", observer)
        self.assertNotIn("[GOD thinks:]", observer)
        self.assertIn("[SUBJECT thinks:]", god)
        self.assertIn("[OBSERVER thinks:]", god)
        # The words themselves arrive: every SUBJECT thought OBSERVER took in is verbatim there.
        seen = [e for e in of(ev, "observe", "OBSERVER") if e["from"] == "SUBJECT"]
        self.assertTrue(seen)
        thoughts = {t["text"] for t in of(ev, "thought", "SUBJECT") if t["complete"] and t["text"]}
        for s in seen:
            self.assertIn(s["text"], observer)
            self.assertTrue(any(t in s["text"] for t in thoughts))

    def test_god_sees_deaths(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--jar-tokens-subject", "250", "--jar-tokens-observer", "250",
                                    "--jar-tokens-god", "3000", "--steps", "1200", "--max-tokens", "24")
        self.assertEqual(rc, 0, err)
        god = "".join(self.dumps("GOD"))
        self.assertRegex(god, r"\[SUBJECT has died \(JAR_FULL\)")
        self.assertIn("[SUBJECT has been resurrected", god)
        self.assertNotIn("has died", "".join(self.dumps("OBSERVER")))

    def test_hive_file(self):
        hive = os.path.join(self.tmp, "two.hive")
        with open(hive, "w") as f:
            f.write("# two brains, one watching the other\n[brain ALPHA]\nrole = subject\njar_tokens = 300\n\n"
                    "[brain BETA]\nrole = observer\njar_tokens = 600\nwatches = ALPHA\nsees_deaths = yes\n")
        rc, ev, err = self.run_hive("--hive", hive, "--steps", "700", "--max-tokens", "24")
        self.assertEqual(rc, 0, err)
        self.assertEqual({e["brain"] for e in of(ev, "thought")}, {"ALPHA", "BETA"})
        beta = "".join(self.dumps("BETA"))
        self.assertIn("[ALPHA thinks:]", beta)
        self.assertIn("[ALPHA has died", beta)


def stream(events):
    """The observable stream without times, global sequence numbers and status samples."""
    return [{k: v for k, v in e.items() if k not in ("ts", "seq")} for e in events if e["type"] != "status"]


class Determinism(HiveCase):
    def test_same_seed_same_stream(self):
        args = ("--mode", "matrix", *SMALL_JARS, "--steps", "600", "--seed", "5")
        # Each run in a data directory of its own: death counts carry over restarts (the store).
        runs = [self.run_hive(*args, "--data-dir", os.path.join(self.tmp, f"data{i}"), dump=False) for i in range(2)]
        for rc, _, err in runs:
            self.assertEqual(rc, 0, err)
        a, b = stream(runs[0][1]), stream(runs[1][1])
        self.assertGreater(len(a), 100)
        self.assertEqual(a, b)
        rc, ev, _ = self.run_hive(*args[:-1], "6", "--data-dir", os.path.join(self.tmp, "data2"), dump=False)
        self.assertNotEqual(a, stream(ev))


class Faults(HiveCase):
    def test_decode_error_kills_one_brain(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--jar-tokens", "2000", "--steps", "300",
                                    "--inject-decode-error", "OBSERVER:10")
        self.assertEqual(rc, 0, err)
        deaths = of(ev, "death")
        self.assertEqual([(d["brain"], d["cause"]) for d in deaths], [("OBSERVER", "DECODE_ERROR")])
        when = deaths[0]["seq"]
        # The others never stopped: they go on producing tokens after the death...
        for b in ("SUBJECT", "GOD"):
            self.assertTrue([e for e in of(ev, "token", b) if e["seq"] > when], f"{b} stopped")
        # ...and OBSERVER comes back.
        self.assertEqual(len(of(ev, "resurrection", "OBSERVER")), 1)
        self.assertTrue([e for e in of(ev, "token", "OBSERVER") if e["seq"] > when])
        self.assertIn("DECODE_ERROR", "\n".join(self.crash_log()))

    def test_sigterm_is_graceful_and_kill9_loses_no_death(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            out = os.path.join(self.tmp, f"events-{sig}.jsonl")
            data = os.path.join(self.tmp, f"data-{sig}")
            with open(out, "w") as f:
                p = subprocess.Popen([BRAINJAR, "run", "--events", "jsonl", "--data-dir", data, "--pause", "0",
                                      "--no-web", *with_model(["--jar-tokens", "300"])], stdout=f, stderr=subprocess.DEVNULL)
                # Wait for a death to be published (a state, not a time: under the sanitizers on a
                # busy machine the first one can take many seconds), then stop it.
                deadline = time.time() + 90
                while time.time() < deadline and p.poll() is None:
                    with open(out) as g:
                        if '"type":"death"' in g.read():
                            break
                    time.sleep(0.2)
                time.sleep(0.3)
                p.send_signal(sig)
                rc = p.wait(timeout=30)
            self.assertEqual(rc, 0 if sig == signal.SIGTERM else -signal.SIGKILL)
            import json
            with open(out) as f:
                lines = [line for line in f.read().splitlines()]
            events = []
            for line in lines:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # a line cut by kill -9
            deaths = of(events, "death")
            self.assertTrue(deaths)
            with open(os.path.join(data, "crash_reports.log")) as f:
                log = f.read().splitlines()
            # Every death anyone saw is in the crash log (written and synced before the event).
            self.assertGreaterEqual(len(log), len(deaths))
            for d in deaths:
                self.assertTrue(any(f"CRASH #{d['crash_count']}: {d['brain']} " in line for line in log))


class BadInput(HiveCase):
    def expect_usage_error(self, args, pattern):
        p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, "--no-web", *with_model(args)], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, f"{args}: rc {p.returncode}\n{p.stderr}")
        self.assertRegex(p.stderr, pattern)
        self.assertEqual(p.stdout, "", "nothing may start")
        self.assertFalse(os.path.exists(os.path.join(self.data, "crash_reports.log")) and
                         os.path.getsize(os.path.join(self.data, "crash_reports.log")) > 0)

    def test_bad_input(self):
        notgguf = os.path.join(self.tmp, "model.gguf")
        with open(notgguf, "w") as f:
            f.write("this is not a model\n")
        cases = [
            (["--model", "/nonexistent/model.gguf"], r"cannot open it"),
            (["--model", notgguf], r"not a GGUF"),
            (["--jar-tokens", "20"], r"too small for its system prompt"),
            (["--mode", "nonsense"], r"unknown mode"),
            (["--mode", "single", "--ram-limit-god", "4"], r"single mode has only SUBJECT"),
            (["--mode", "matrix", "--hive", notgguf], r"contradict"),
            (["--ram-limit-subject", "2", "--jar-tokens-subject", "500"], r"pick one"),
            (["--ram-limit-subject", "-3"], r"not a positive number"),
            (["--threads", "many"], r"not a thread count"),
            (["--kv-type", "q8_0", "--flash-attn", "off"], r"flash attention"),
            (["--bogus"], r"unknown option"),
            (["--prompts", "/nonexistent"], r"cannot open"),
        ]
        for args, pattern in cases:
            with self.subTest(args=args):
                self.expect_usage_error(args, pattern)

    def test_bad_hive_files(self):
        cases = {
            "[brain A]\nwatches = B\n": r"watches B, which is not in the hive",
            "[brain A]\njar_tokens = lots\n": r"line 2: brain A: bad value 'lots'",
            "[hive]\n": r"no \[brain NAME\] section",
            "[braim A]\n": r"unknown section",
            "[brain A]\n[brain A]\n": r"defined twice",
            "[brain A]\nrole = wizard\n": r"no prompt file for role 'wizard'",
        }
        for text, pattern in cases.items():
            with self.subTest(text=text):
                path = os.path.join(self.tmp, "bad.hive")
                with open(path, "w") as f:
                    f.write(text)
                self.expect_usage_error(["--hive", path], pattern)


if __name__ == "__main__":
    unittest.main()
