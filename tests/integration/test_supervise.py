"""Integration tests of the supervisor: an engine stalled on purpose (--inject-stall) is noticed
within the stall timeout, its brains die with cause WATCHDOG (journaled), a new engine on the same
loaded model resurrects them, and the hive goes on; the abandoned engine's late events are never
published."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import HiveCase, of  # noqa: E402

BRAINS = ("SUBJECT", "OBSERVER", "GOD")


class Supervisor(HiveCase):
    def test_stalled_engine_is_rebuilt(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--inject-stall", "SUBJECT:20:4000", "--stall-timeout", "1",
                                    "--duration", "8", dump=False)
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


if __name__ == "__main__":
    unittest.main()
