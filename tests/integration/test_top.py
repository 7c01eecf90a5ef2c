"""Integration tests of `brainjar top` (issue 26): the full-screen view of a daemon already running,
attached over its WebSocket API, in a real terminal (tmux). The daemon runs with --tui off on the
tiny model; top shows its three brains streaming, says "reconnecting" while the daemon restarts
and shows them again after, refuses an operator key with a viewer token (the daemon's API says
nobody was killed), and q ends it with status 0. Bad URLs, a refused connection and a refused
token end it with a clear error and the documented status (1, 2, 3)."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, with_model  # noqa: E402
from tmuxtest import Tmux  # noqa: E402
from webtest import WebCase, free_port  # noqa: E402

BRAINS = ("SUBJECT", "OBSERVER", "GOD")
SMALL_JARS = ("--jar-tokens-subject", "300", "--jar-tokens-observer", "350", "--jar-tokens-god", "400")
DAEMON = ("--tui", "off", "--pause", "1", *with_model(["--mode", "matrix", *SMALL_JARS]))


def token(data, role):
    p = subprocess.run([BRAINJAR, "token", "create", "--role", role, "--data-dir", data],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def body(screen):
    """The panels' text: the screen without its header and its last lines (timeline, keys)."""
    lines = screen.splitlines()
    return "\n".join(lines[1:-4])


def in_a_terminal(cmd, timeout=60):
    """Runs cmd with a pseudo-terminal as stdin and stdout (script): (status, what it wrote)."""
    line = " ".join(f"'{a}'" for a in cmd)
    p = subprocess.run(["script", "-eqc", line, "/dev/null"], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, TERM="xterm-256color"))
    return p.returncode, p.stdout + p.stderr


class Top(WebCase):
    def test_attach_stream_restart_viewer_quit(self):
        viewer = token(self.data, "viewer")
        operator = token(self.data, "operator")
        hive = self.start(*DAEMON)
        url = f"http://127.0.0.1:{hive.port}"
        t = Tmux("bjtop", os.path.join(self.tmp, "status"))
        t.start([BRAINJAR, "top", url, "--token", viewer])
        try:
            # "connected ... as viewer" at the foot for 5 s, then the keys line of a viewer
            s = t.wait(self, lambda s: all(b in s for b in BRAINS) and ("as viewer" in s or "(read-only)" in s),
                       "three panels, as viewer")
            self.assertIn("OBSERVER watches SUBJECT", s)
            t.wait(self, lambda s: "(read-only)" in s, "the keys line of a viewer (once the notice is gone)")
            # streaming: the panels' text changes
            first = body(s)
            t.wait(self, lambda s: body(s) != first and all(b in s for b in BRAINS), "the text changing")
            t.save("top-normal", t.screen())
            # a viewer's kill key is refused on screen, and the daemon killed nobody
            t.keys("k")
            t.wait(self, lambda s: "viewer token: read-only" in s, "the viewer's refusal")
            for b in BRAINS:
                r = hive.request("GET", f"/api/brains/{b}", token=operator)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["deaths_by_cause"]["OPERATOR"], 0, f"{b} was killed by a viewer")
            # the daemon restarts: top says so and shows the brains again, the focused one still zoomed
            t.keys("Tab", "Enter")
            t.wait(self, lambda s: "\u250c\u2500 OBSERVER" in s and "\u250c\u2500 SUBJECT" not in s, "OBSERVER zoomed")
            port = hive.port
            self.assertEqual(hive.stop(), 0)
            t.save("top-reconnecting", t.wait(self, lambda s: "reconnecting" in s, "reconnecting"))
            again = self.start(*DAEMON, port=port)
            s = t.wait(self, lambda s: "reconnecting" not in s and ("as viewer" in s or "(read-only)" in s)
                       and all(b in s for b in BRAINS), "the brains again after the restart")
            self.assertIn("\u250c\u2500 OBSERVER", s)
            self.assertNotIn("\u250c\u2500 SUBJECT", s)
            t.keys("Enter")
            s = t.wait(self, lambda s: all(f"\u250c\u2500 {b}" in s for b in BRAINS), "the three panels again")
            first = body(s)
            t.wait(self, lambda s: body(s) != first, "the text changing after the restart")
            self.assertEqual(again.request("GET", "/api/health").status, 200)
            t.keys("q")
            self.assertEqual(t.exit_status(), 0)
        finally:
            t.kill()

    def test_errors(self):
        refused = free_port()  # nothing listens there
        rc, out = in_a_terminal([BRAINJAR, "top", f"http://127.0.0.1:{refused}", "--token", "x"])
        self.assertEqual(rc, 1, out)
        self.assertIn("is brainjar running there?", out)
        for bad in ("nonsense", "ftp://127.0.0.1:8095", "http://127.0.0.1:99999"):
            rc, out = in_a_terminal([BRAINJAR, "top", bad])
            self.assertEqual(rc, 2, out)
            self.assertIn("bad URL", out)
        hive = self.start(*DAEMON)
        url = f"http://127.0.0.1:{hive.port}"
        rc, out = in_a_terminal([BRAINJAR, "top", url, "--token", "bj_wrong"])
        self.assertEqual(rc, 3, out)
        self.assertIn("refused the token", out)
        env_less = dict(os.environ)
        env_less.pop("BRAINJAR_TOKEN", None)
        rc, out = in_a_terminal([BRAINJAR, "top", url, "--token-file", os.path.join(self.tmp, "none")])
        self.assertEqual(rc, 2, out)
        self.assertIn("does not exist", out)
        # https with a self-signed certificate: refused with a hint, accepted with --insecure
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                            "-days", "1", "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            tls = self.start(*DAEMON, "--web-tls-cert", cert, "--web-tls-key", key, tls=True,
                             data=os.path.join(self.tmp, "tls"))
            viewer = token(tls.data, "viewer")
            rc, out = in_a_terminal([BRAINJAR, "top", f"https://127.0.0.1:{tls.port}", "--token", viewer])
            self.assertEqual(rc, 1, out)
            self.assertIn("--insecure", out)
            t = Tmux("bjtls", os.path.join(self.tmp, "tls-status"))
            t.start([BRAINJAR, "top", f"https://127.0.0.1:{tls.port}", "--token", viewer, "--insecure"], x=120, y=30)
            try:
                t.wait(self, lambda s: all(b in s for b in BRAINS) and "https://" in s, "the brains over https")
                t.keys("q")
                self.assertEqual(t.exit_status(), 0)
            finally:
                t.kill()
        # not on a terminal: said, status 2, no escape sequences
        p = subprocess.run([BRAINJAR, "top", url, "--token", "x"], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        self.assertNotIn(b"\x1b", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
