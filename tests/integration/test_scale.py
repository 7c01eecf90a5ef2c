"""--brains N: the matrix pattern for many brains, its errors, the profile and its fairness figures."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hivetest import BRAINJAR, HiveCase, of  # noqa: E402


class Brains(HiveCase):
    def test_pattern_watching_and_profile(self):
        # 7 brains: 5 SUBJECTs, 1 OBSERVER watching all of them, 1 GOD; small jars: many deaths.
        rc, ev, err = self.run_hive("--brains", "7", "--jar-tokens", "200", "--steps", "160", "--max-tokens", "12",
                                    "--profile", dump=False, timeout=240)
        self.assertEqual(rc, 0, err)
        brains = {e["brain"] for e in ev if e.get("brain")}
        self.assertEqual(brains, {f"SUBJECT-{k}" for k in range(1, 6)} | {"OBSERVER", "GOD"})
        seen = {e["from"] for e in of(ev, "observe", "OBSERVER")}
        self.assertTrue(seen and seen <= {f"SUBJECT-{k}" for k in range(1, 6)}, seen)
        self.assertTrue(of(ev, "death"), "small jars: brains die")
        m = re.search(r"profile-summary: brains=7 steps=(\d+) .*max_wait_steps=(\d+) resurrections=(\d+) "
                      r"first_token_p50_ms=([\d.]+) first_token_p99_ms=([\d.]+)", err)
        self.assertIsNotNone(m, err[-2000:])
        self.assertEqual(int(m.group(1)), 160)
        # a watcher's reading yields one step to a new life's opening, never two in a row; nobody
        # else waits
        self.assertLessEqual(int(m.group(2)), 1, "a live brain waited for more than a step")
        self.assertGreater(int(m.group(3)), 0)
        self.assertLessEqual(float(m.group(4)), float(m.group(5)))
        # a new life's opening goes ahead of what the watchers have to read: it speaks in the step
        # it begins in
        m = re.search(r"profile-summary: brains=7 .*first_token_max_steps=(\d+)", err)
        self.assertIsNotNone(m, err[-2000:])
        self.assertEqual(int(m.group(1)), 1, "a resurrection waited a step for its first token")
        # equal jars: a stream per brain; the batch's layout keeps every generation-only step to
        # one ubatch (one pass over the weights), the idle brains between busy ones filled
        m = re.search(r"profile-summary: brains=7 .*tg_ubatches_per_step=([\d.]+) opening_ubatches_per_step=([\d.]+)",
                      err)
        self.assertIsNotNone(m, err[-2000:])
        self.assertEqual(float(m.group(1)), 1.0)
        self.assertGreaterEqual(float(m.group(2)), 2.0, "an opening takes a ubatch of its own")
        for phase in ("batch assembly", "llama_decode", "sampling", "token-to-text", "event publishing"):
            self.assertIn(phase, err)

    def test_resurrection_speaks_within_two_steps_at_16(self):
        # 16 brains, small jars, no pause: deaths in most steps. Every new life's first token comes
        # within 2 steps of the end of its pause (counted in steps, not ms: any machine).
        rc, ev, err = self.run_hive("--brains", "16", "--jar-tokens", "200", "--steps", "200", "--max-tokens", "12",
                                    "--profile", dump=False, timeout=300)
        self.assertEqual(rc, 0, err)
        m = re.search(r"profile-summary: brains=16 .*resurrections=(\d+) .*first_token_max_steps=(\d+)", err)
        self.assertIsNotNone(m, err[-2000:])
        self.assertGreater(int(m.group(1)), 10, "small jars: many resurrections")
        self.assertLessEqual(int(m.group(2)), 2, "a resurrection waited more than 2 steps for its first token")

    def test_prompt_budget_bounds_waits(self):
        # 16 system prompts, each decoded whole (--share-openings off), share about 512 prompt
        # tokens a step: some brains wait for their turn at the start, none longer than the
        # prompt work ahead of it takes.
        rc, ev, err = self.run_hive("--brains", "16", "--jar-tokens", "400", "--steps", "12", "--profile",
                                    "--events", "none", "--share-openings", "off",
                                    dump=False, timeout=240)
        self.assertEqual(rc, 0, err)
        m = re.search(r"profile-summary: brains=16 .*max_wait_steps=(\d+)", err)
        self.assertIsNotNone(m, err[-2000:])
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertLessEqual(int(m.group(1)), 16 * 140 // 500)

    def test_openings_shared(self):
        # 13 SUBJECTs' prompts differ only at the end (the name): the first decodes its opening,
        # the others copy the common part from its memory and decode only the rest. The same
        # openings cost the same tokens, decoded or copied; nobody waits for the budget.
        total = {}
        for share in ("on", "off"):
            rc, ev, err = self.run_hive("--brains", "16", "--jar-tokens", "400", "--steps", "12", "--profile",
                                        "--events", "none", "--share-openings", share, dump=False, timeout=240)
            self.assertEqual(rc, 0, err)
            m = re.search(r"profile-summary: brains=16 .*max_wait_steps=(\d+) .*opening_steps=(\d+) "
                          r"opening_step_us=[\d.]+ opening_tokens_per_step=([\d.]+) shared_tokens=(\d+)", err)
            self.assertIsNotNone(m, err[-2000:])
            shared, decoded = int(m.group(4)), int(m.group(2)) * float(m.group(3))
            total[share] = (shared, decoded, int(m.group(1)))
        on, off = total["on"], total["off"]
        self.assertEqual(off[0], 0)
        self.assertGreaterEqual(on[0], 12 * 40, "13 SUBJECTs share at least 40 tokens each")
        self.assertAlmostEqual(on[0] + on[1], off[1], delta=0.02 * off[1])
        self.assertEqual(on[2], 0, "with the common parts copied, every opening fits the first steps' budget")

    def test_round_robin_and_roles(self):
        # validate builds the same brains without running: 1 GOD, 2 OBSERVERs, 7 SUBJECTs.
        p = subprocess.run([BRAINJAR, "validate", "--brains", "10:observers=2", "--jar-tokens-god", "300",
                            "--jar-tokens", "200"], capture_output=True, text=True, timeout=60)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        rows = dict(re.findall(r"^\s+((?:SUBJECT|OBSERVER|GOD)\S*)\s+(\d+) tokens", p.stdout, re.M))
        self.assertEqual(sorted(rows), sorted([f"SUBJECT-{k}" for k in range(1, 8)] +
                                              ["OBSERVER-1", "OBSERVER-2", "GOD"]))
        self.assertEqual(rows["GOD"], "300", "a per-role flag applies to every brain of that role")
        self.assertEqual(rows["SUBJECT-3"], "200")

    def expect_usage_error(self, args, pattern):
        p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, *args], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, f"{args}: rc {p.returncode}\n{p.stderr}")
        self.assertRegex(p.stderr, pattern)

    def test_bad_brains(self):
        cases = [
            (["--brains", "0"], r"not a brain count"),
            (["--brains", "257"], r"not a brain count"),
            (["--brains", "many"], r"not a brain count"),
            (["--brains", "64:observers=2"], r"need at least 4 observers"),
            (["--brains", "3:gods=2,observers=1"], r"leave no SUBJECT"),
            (["--brains", "8:wizards=1"], r"unknown key"),
            (["--brains", "8", "--mode", "matrix"], r"contradicts --mode"),
        ]
        for args, pattern in cases:
            with self.subTest(args=args):
                self.expect_usage_error(args, pattern)

    def test_hive_file_errors_name_the_real_line(self):
        path = os.path.join(self.tmp, "bad.hive")
        with open(path, "w") as f:
            f.write("# a comment\n\n[brain A]\n\njar_tokens = lots\n")
        self.expect_usage_error(["--hive", path], r"line 5: brain A: bad value 'lots'")


if __name__ == "__main__":
    unittest.main()
