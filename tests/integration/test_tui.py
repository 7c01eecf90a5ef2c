"""Integration tests of the terminal output of `brainjar run` (issue 26): what goes to a pipe.
Pipes, files, the journal and CI must never get escape sequences, in either --events mode."""
import http.client
import json
import os
import pty
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, HiveCase, with_model  # noqa: E402
from tmuxtest import Tmux  # noqa: E402

BRAINS = ("SUBJECT", "OBSERVER", "GOD")
SMALL_JARS = ("--jar-tokens-subject", "300", "--jar-tokens-observer", "350", "--jar-tokens-god", "400")


class Pipe(HiveCase):
    def run_to_pipe(self, mode):
        cmd = [BRAINJAR, "run", "--events", mode, "--data-dir", self.data, "--pause", "0", "--no-web"]
        cmd += with_model(["--mode", "matrix", *SMALL_JARS, "--steps", "900", "--seed", "5"])
        p = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout, p.stderr

    def test_no_escape_sequences(self):
        for mode in ("text", "jsonl"):
            with self.subTest(mode=mode):
                out, err = self.run_to_pipe(mode)
                self.assertNotIn(b"\x1b", out, f"ESC on stdout with --events {mode}")
                self.assertNotIn(b"\x1b", err, f"ESC on stderr with --events {mode}")
                text = out.decode("utf-8")
                for b in BRAINS:
                    self.assertIn(b, text, f"{b} missing from --events {mode}")


class Terminal(HiveCase):
    def test_hangup_on_a_terminal_stops_the_run(self):
        """A run started on a terminal stops cleanly (status 0) when the terminal goes away; it
        does not live on headless holding the data directory's lock (test_supervise's Hangup
        checks that without a terminal SIGHUP still reloads)."""
        cmd = [BRAINJAR, "run", "--events", "text", "--data-dir", self.data, "--pause", "0", "--no-web"]
        cmd += with_model(["--mode", "matrix", *SMALL_JARS])
        pid, master = pty.fork()
        if pid == 0:
            os.execv(cmd[0], cmd)
        seen, deadline = b"", time.time() + 60
        try:
            while time.time() < deadline and b"SUBJECT" not in seen:
                r, _, _ = select.select([master], [], [], 1)
                if r:
                    seen += os.read(master, 65536)
        finally:
            os.close(master)  # the terminal goes away: the kernel sends SIGHUP
        self.assertIn(b"SUBJECT", seen)
        status, deadline = None, time.time() + 60
        while time.time() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.2)
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        self.assertIsNotNone(status, "brainjar outlived its terminal")
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"status {status}")
        # The lock is free: another run on the same data directory starts and ends.
        p = subprocess.run([BRAINJAR, "run", "--events", "jsonl", "--data-dir", self.data, "--pause", "0", "--no-web"]
                           + with_model(["--mode", "single", "--steps", "50"]),
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))


class Screen(HiveCase):
    """The full-screen view in a real terminal (tmux): three panels with their names, deaths in the
    timeline, who watches whom, a resize to 80x24 survives, q ends the run with status 0."""

    def test_panels_deaths_resize_quit(self):
        t = Tmux("bjtui", os.path.join(self.data, "status"))
        cmd = [BRAINJAR, "run", "--tui", "on", "--data-dir", self.data, "--pause", "1", "--no-web", "--pace", "0"]
        t.start(cmd + with_model(["--mode", "matrix", *SMALL_JARS]))
        try:
            s = t.wait(self, lambda s: all(b in s for b in BRAINS) and "watching" in s, "three panels")
            self.assertIn("OBSERVER \u2192 SUBJECT", s)
            t.wait(self, lambda s: "JAR_FULL #" in s, "a death in the timeline")
            t.resize(80, 24)
            s = t.wait(self, lambda s: len(s.splitlines()[0]) <= 80 and "brainjar" in s, "the header at 80 columns")
            self.assertTrue(all(len(l) <= 80 for l in s.splitlines()), s)
            t.keys("q")
            self.assertEqual(t.exit_status(), 0)
        finally:
            t.kill()


def width(line):
    """A line's width in terminal columns, as wcwidth counts them: wide characters take two, marks
    that draw on the character before them (Mn, Me: also those with combining class 0, such as
    Devanagari's vowel signs) and format characters (Cf) none."""
    import unicodedata

    def cols(c):
        if unicodedata.east_asian_width(c) in "WF":
            return 2
        return 0 if unicodedata.category(c) in ("Mn", "Me", "Cf") else 1
    return sum(cols(c) for c in line)


class Keys(HiveCase):
    """The run view's keys beyond q: ? shows the help and any key closes it, Tab and the arrows move
    the focus and Enter zooms the focused brain (its panel alone, the others' gone) and back, and
    operator keys act: k kills the focused brain (an OPERATOR death in the timeline), p and u pause
    and resume it. Saves the normal and the death views as artefacts."""

    def test_help_focus_zoom_operator(self):
        from webtest import free_port
        from test_top import token
        operator = token(self.data, "operator")
        port = free_port()
        t = Tmux("bjkeys", os.path.join(self.tmp, "status"))
        # paced so that a life lasts seconds: a screen with the three alive, and a kill that lands
        # before the jar fills, are states that last long enough to be seen (at --pace 0 the three
        # live and die in step within a few frames)
        cmd = [BRAINJAR, "run", "--tui", "on", "--data-dir", self.data, "--pause", "1", "--web-port", str(port),
               "--pace", "40"]
        t.start(cmd + with_model(["--mode", "matrix", *SMALL_JARS]))
        try:
            t.wait(self, lambda s: all(f"\u250c\u2500 {b}" in s for b in BRAINS), "three panels")
            s = t.wait(self, lambda s: s.count("thinking") == 3 and "\u25020/" not in s,
                       "every brain thinking, with text in its jar")
            t.save("tui-normal", s)
            s = t.wait(self, lambda s: "\u2620 DEAD: JAR_FULL" in s, "a death veil")
            t.save("tui-death", s)
            t.keys("?")
            t.wait(self, lambda s: "this help (any key closes it)" in s, "the help")
            t.keys("x")
            t.wait(self, lambda s: "this help" not in s, "the help closed")
            t.keys("Tab", "Enter")  # focus OBSERVER, zoom it
            t.wait(self, lambda s: "\u250c\u2500 OBSERVER" in s and "\u250c\u2500 SUBJECT" not in s
                   and "\u250c\u2500 GOD" not in s, "OBSERVER zoomed")
            t.keys("Enter", "Right", "Enter")  # back, focus GOD, zoom it
            t.wait(self, lambda s: "\u250c\u2500 GOD" in s and "\u250c\u2500 OBSERVER" not in s, "GOD zoomed")
            t.keys("Enter", "Left", "Left", "Enter")  # back, focus SUBJECT, zoom it
            t.wait(self, lambda s: "\u250c\u2500 SUBJECT" in s and "\u250c\u2500 GOD" not in s, "SUBJECT zoomed")
            t.keys("Enter")
            t.wait(self, lambda s: all(f"\u250c\u2500 {b}" in s for b in BRAINS), "the three panels again")
            # p pauses the focused brain (SUBJECT): while the others go on dying of full jars, its
            # deaths stop (a brain paused while dead stays dead); u resumes it and it dies again
            def brain(name):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", f"/api/brains/{name}", headers={"Authorization": "Bearer " + operator})
                r = c.getresponse()
                body = json.loads(r.read())
                c.close()
                self.assertEqual(r.status, 200, body)
                return body

            def wait_api(pred, what):
                end = time.time() + 60
                while time.time() < end:
                    if pred():
                        return
                    time.sleep(0.2)
                self.fail(f"the API never showed {what}: SUBJECT is {brain('SUBJECT')}; the screen:\n{t.screen()}")
            t.keys("p")
            t.wait(self, lambda s: "pause SUBJECT: done" in s, "the pause done")
            wait_api(lambda: brain("SUBJECT")["state"] in ("paused", "dead"), "SUBJECT paused")
            paused_at, god_at = brain("SUBJECT")["deaths"], brain("GOD")["deaths"]
            wait_api(lambda: brain("GOD")["deaths"] >= god_at + 3, "GOD dying on")
            self.assertLessEqual(brain("SUBJECT")["deaths"], paused_at + 1, "SUBJECT went on living while paused")
            t.keys("u")
            t.wait(self, lambda s: "resume SUBJECT: done" in s, "the resume done")
            wait_api(lambda: brain("SUBJECT")["deaths"] >= paused_at + 2, "SUBJECT living (and dying) again")
            # k kills the focused brain; refused while it is dead, so pressed until it is accepted
            end = time.time() + 60
            while time.time() < end and "kill SUBJECT: done" not in t.screen():
                t.keys("k")
                time.sleep(0.3)
            self.assertIn("kill SUBJECT: done", t.screen())
            wait_api(lambda: brain("SUBJECT").get("deaths_by_cause", {}).get("OPERATOR", 0) >= 1,
                     "SUBJECT's OPERATOR death")
            t.keys("q")
            self.assertEqual(t.exit_status(), 0)
        finally:
            t.kill()


class Many(HiveCase):
    """--brains 64: the focused brain large, the others in compact rows, at 160x48 and at 80x24;
    nothing drawn wider than the pane; q exits 0. Saves both screens as artefacts."""

    def test_64_brains(self):
        t = Tmux("bjmany", os.path.join(self.tmp, "status"))
        cmd = [BRAINJAR, "run", "--tui", "on", "--data-dir", self.data, "--pause", "1", "--no-web", "--pace", "0"]
        t.start(cmd + with_model(["--brains", "64", "--jar-tokens", "200"]))
        try:
            def rows_with_text(s):  # compact rows whose thought has come ("NAME  state  dN  jar  tok/s  text")
                return sum(1 for l in s.splitlines() if l.startswith("SUBJECT-") and len(l[:80].rstrip()) > 50)
            s = t.wait(self, lambda s: "brains 64" in s and "SUBJECT-44" in s and rows_with_text(s) >= 10,
                       "64 brains, compact rows streaming", timeout=120)
            self.assertIn("\u250c\u2500 SUBJECT-1 ", s)  # the focused brain's large panel
            self.assertTrue(all(width(l) <= 160 for l in s.splitlines()), s)
            t.save("tui-64-160x48", s)
            t.keys("Tab")
            t.wait(self, lambda s: "\u250c\u2500 SUBJECT-2 " in s, "the focus on SUBJECT-2")
            t.resize(80, 24)
            s = t.wait(self, lambda s: len(s.splitlines()) <= 24 and width(s.splitlines()[0]) <= 80
                       and "\u250c\u2500 SUBJECT-2 " in s and "brains 64" in s, "the 64 brains at 80x24")
            self.assertTrue(all(width(l) <= 80 for l in s.splitlines()), s)
            t.save("tui-64-80x24", s)
            t.keys("q")
            self.assertEqual(t.exit_status(), 0)
        finally:
            t.kill()


if __name__ == "__main__":
    unittest.main()
