"""The dashboard in a real browser: Debian's chromium driven by playwright-core (npm, pinned).
Skipped, with the reason, when chromium or playwright-core is missing. Screenshots are kept in
build/ (BJ_ARTEFACTS) as test artefacts."""
import json
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from hivetest import BRAINJAR  # noqa: E402
from webtest import WebCase  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(ROOT, "node_modules", "playwright-core")


LAB = """
[experiment]
name = browser-lab
question = Does a wiped thought matter?
replicates = 1
seed = 3

[condition wiped]
interventions = wipe

[condition control]

[brain SUBJECT]
role = subject
jar_tokens = 400
max_tokens = 24

[intervention wipe]
kind = erase
brain = SUBJECT
span = oldest 8
at = life 50 thought 1
"""


class Dashboard(WebCase):
    def setUp(self):
        if not os.path.exists(CHROMIUM):
            self.skipTest(f"{CHROMIUM} is missing (apt-get install chromium; scripts/bootstrap does)")
        if not os.path.isdir(PLAYWRIGHT) or not shutil.which("node"):
            self.skipTest("playwright-core is missing (scripts/bootstrap runs npm ci)")
        super().setUp()

    def test_lab_page(self):
        path = os.path.join(self.tmp, "lab.hive")
        with open(path, "w") as f:
            f.write(LAB)
        h = self.start("--hive", path, "--threads", "2")
        out = os.environ.get("BJ_ARTEFACTS", os.path.join(ROOT, "build", "artefacts"))
        os.makedirs(out, exist_ok=True)
        p = subprocess.run(["node", os.path.join(HERE, "lab.mjs"), f"http://127.0.0.1:{h.port}", h.password, out],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        f = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertNotIn("failure", f, f.get("failure"))
        self.assertEqual(f["errors"], [])
        self.assertEqual(f["name"], "browser-lab")
        self.assertEqual(f["arms"], ["wiped", "control"])
        self.assertIn("erase wipe on wiped/1/SUBJECT", f["event"])
        self.assertTrue(f["marked"], "the intervention is not on the death timeline")

    def test_login_stream_death_operator_logout(self):
        # Paced (as a visitor sees it), so brains are alive most of the time and die within the
        # test's waits (the matrix's clamped 512-token jars last 20-60 s at 8 tokens/s).
        h = self.start("--jar-tokens", "1000", "--pause", "2.5", "--pace", "8")
        out = os.environ.get("BJ_ARTEFACTS", os.path.join(ROOT, "build", "artefacts"))
        os.makedirs(out, exist_ok=True)
        viewer = subprocess.run([BRAINJAR, "passwd", "vera", "--role", "viewer", "--data-dir", self.data],
                                input="viewer-password-1\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(viewer.returncode, 0, viewer.stderr)
        p = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs"), f"http://127.0.0.1:{h.port}", h.password, out,
                            "viewer-password-1"],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        self.assertEqual(p.returncode, 0, p.stderr)
        f = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertNotIn("failure", f, f.get("failure"))
        self.assertEqual(f["login_redirect"], "/login")
        self.assertIn("Invalid credentials", f["wrong_password_message"])
        self.assertEqual(f["panels"], ["SUBJECT", "OBSERVER", "GOD"])
        self.assertEqual(set(f["stream_changes"]), {"SUBJECT", "OBSERVER", "GOD"}, f["stream_changes"])
        self.assertTrue(all(n >= 3 for n in f["stream_changes"].values()), f["stream_changes"])
        self.assertEqual(f["death"]["veil"], "DEAD")
        # The dashboard tells the truth in time: a living brain's jar and speed are not zero
        # while it streams, a dead one reads zero, boxes stay where they belong.
        for brain, state, jar, speed in f["alive_readings"]:
            if state == "thinking":
                self.assertNotRegex(jar, r"jar 0 /", f"{brain} streams but its jar reads empty: {f['alive_readings']}")
        if f["dead_readings"]:
            self.assertRegex(f["dead_readings"][0], r"^jar 0 /")
            self.assertEqual(f["dead_readings"][1], "0.0 tok/s")
        self.assertEqual(f["panel_faults"] + f["death_faults"] + f["reborn_faults"], [])
        for view in ("charts_1600", "charts_1400", "kiosk_charts", "kiosk_4k_charts"):
            self.assertEqual(f[view]["faults"], [], view)
            if not os.path.exists("/dev/nvidia0"):
                self.assertFalse([s for s in f[view]["legend"] if "GPU" in s], f"{view}: a GPU legend without a GPU")
        self.assertRegex(f["resurrected"]["life"], r"life \d+")
        self.assertTrue(f["ops_visible"] and f["paused"] and f["resumed"] and f["said"])
        self.assertEqual(f["html_injected"], 0, "brain and user text is inserted as text")
        self.assertEqual(f["charts"], 3)
        self.assertFalse(f["phone_overflow"], "no sideways scrolling on a phone")
        self.assertFalse(f["kiosk_controls_visible"])
        self.assertEqual(f["after_logout"], "/login")
        self.assertEqual(f["me_after_logout"], 401)
        self.assertEqual(f["viewer_role"], "vera · viewer")
        self.assertFalse(f["viewer_controls_visible"], "operator controls only for operators")
        self.assertFalse(f["kiosk_4k_overflow"], "the kiosk view fits a 4K screen")
        self.assertEqual(f["errors"], [])
        for name in ("dashboard.png", "dashboard-1400.png", "dashboard-death.png", "dashboard-phone.png", "dashboard-kiosk.png",
                     "dashboard-kiosk-4k.png"):
            self.assertGreater(os.path.getsize(os.path.join(out, name)), 10000)


if __name__ == "__main__":
    unittest.main()
