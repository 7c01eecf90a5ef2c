"""Integration tests of the terminal output of `brainjar run` (issue 26): what goes to a pipe.
Pipes, files, the journal and CI must never get escape sequences, in either --events mode."""
import os
import pty
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, HiveCase, with_model  # noqa: E402

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

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=20)

    def screen(self):
        return self.tmux("capture-pane", "-p").stdout

    def wait_screen(self, pred, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.2)
        self.fail(f"the screen never showed {what}:\n{self.screen()}")

    def test_panels_deaths_resize_quit(self):
        self.sock = f"bjtui{os.getpid()}"
        status = os.path.join(self.data, "status")
        cmd = [BRAINJAR, "run", "--tui", "on", "--data-dir", self.data, "--pause", "1", "--no-web", "--pace", "0"]
        cmd += with_model(["--mode", "matrix", *SMALL_JARS])
        line = " ".join(f"'{a}'" for a in cmd) + f"; echo $? > '{status}'; sleep 60"
        self.tmux("new-session", "-d", "-x", "160", "-y", "48", "env TERM=xterm-256color LANG=C.UTF-8 " + line)
        try:
            s = self.wait_screen(lambda s: all(b in s for b in BRAINS) and "watching" in s, "three panels")
            self.assertIn("OBSERVER \u2192 SUBJECT", s)
            self.wait_screen(lambda s: "JAR_FULL #" in s, "a death in the timeline")
            self.tmux("resize-window", "-x", "80", "-y", "24")
            s = self.wait_screen(lambda s: len(s.splitlines()[0]) <= 80 and "brainjar" in s, "the header at 80 columns")
            self.assertTrue(all(len(l) <= 80 for l in s.splitlines()), s)
            self.tmux("send-keys", "q")
            end = time.time() + 60
            while not os.path.exists(status) and time.time() < end:
                time.sleep(0.2)
            with open(status) as f:
                self.assertEqual(f.read().strip(), "0")
        finally:
            self.tmux("kill-server")


if __name__ == "__main__":
    unittest.main()
