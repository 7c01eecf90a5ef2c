"""Lives worth watching: `brainjar run` as a visitor first meets it (matrix mode, the embedded voice,
the default pace and pause) keeps each brain alive most of the time, in lives long enough to
watch, each saying something new, and the brains do not die in step."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import unittest
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hivetest import BRAINJAR  # noqa: E402

SECONDS = int(os.environ.get("BJ_LIVES_SECONDS", "150"))


def ts(e):
    return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def lives_of(events):
    """Per brain: the share of the run it was alive, the lengths of its complete lives, and the
    first thought of each life."""
    t0, t1 = ts(events[0]), ts(events[-1])
    out = {}
    for e in events:
        b = e.get("brain")
        if not b or e.get("node"):
            continue
        s = out.setdefault(b, {"alive": 0.0, "since": t0, "born": None, "lives": [], "firsts": [], "seen": False})
        if e["type"] == "death":
            if s["since"] is not None:
                s["alive"] += ts(e) - s["since"]
                if s["born"] is not None:
                    s["lives"].append(ts(e) - s["born"])
            s["since"] = s["born"] = None
            s["seen"] = False
        elif e["type"] == "resurrection":
            s["since"] = s["born"] = ts(e)
        elif e["type"] == "thought" and e.get("complete") and not s["seen"]:
            s["firsts"].append(e["text"])
            s["seen"] = True
    for s in out.values():
        if s["since"] is not None:
            s["alive"] += t1 - s["since"]
        s["share"] = s["alive"] / (t1 - t0)
    return out


class Watchable(unittest.TestCase):
    def test_default_run_is_worth_watching(self):
        with tempfile.TemporaryDirectory() as data:
            p = subprocess.run([BRAINJAR, "run", "--mode", "matrix", "--no-web", "--events", "jsonl", "--data-dir", data,
                                "--duration", str(SECONDS)], capture_output=True, text=True,
                               timeout=SECONDS + 120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        lives = lives_of(events)
        deaths = sorted((ts(e), e["brain"], e["cause"]) for e in events if e["type"] == "death")
        thoughts = [e["text"] for e in events if e["type"] == "thought" and e.get("complete")]
        report = {b: (f"{s['share']:.0%} alive", [round(x, 1) for x in s["lives"]]) for b, s in lives.items()}
        print(f"\n{SECONDS} s: {report}; {len(thoughts)} thoughts, {len(set(thoughts))} distinct; "
              f"deaths {[(round(t - ts(events[0]), 1), b) for t, b, _ in deaths]}", file=sys.stderr)
        self.assertEqual(sorted(lives), ["GOD", "OBSERVER", "SUBJECT"])
        for b, s in lives.items():
            self.assertGreaterEqual(s["share"], 0.75, f"{b} alive only {s['share']:.0%} of the time: {report}")
            self.assertTrue(s["lives"], f"{b} never completed a life in {SECONDS} s: {report}")
        all_lives = [x for s in lives.values() for x in s["lives"]]
        self.assertGreaterEqual(statistics.median(all_lives), 20.0, report)
        # Deaths come from a full jar, never from a timer.
        self.assertEqual({c for _, _, c in deaths}, {"JAR_FULL"})
        # Every life new: complete thoughts distinct, and no life begins as another of the same brain did.
        self.assertGreater(len(thoughts), 20)
        self.assertGreaterEqual(len(set(thoughts)) / len(thoughts), 0.98)
        for b, s in lives.items():
            self.assertEqual(len(set(s["firsts"])), len(s["firsts"]), f"{b} began two lives alike: {s['firsts']}")
        # Not in step: deaths of two brains within 1 s of each other no more often than chance gives
        # (each death has a 2 s window in which the others' deaths would land at their mean rate).
        close = sum(1 for k in range(1, len(deaths)) if deaths[k][0] - deaths[k - 1][0] < 1.0
                    and deaths[k][1] != deaths[k - 1][1])
        rate = len(deaths) / SECONDS
        chance = len(deaths) * 2.0 * rate * 2 / 3
        self.assertLessEqual(close, max(1, 3 * chance), f"{close} deaths within 1 s of another brain's (chance {chance:.1f})")


if __name__ == "__main__":
    unittest.main()
