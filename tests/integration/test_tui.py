"""Integration tests of the terminal output of `brainjar run` (issue 26): what goes to a pipe.
Pipes, files, the journal and CI must never get escape sequences, in either --events mode."""
import os
import subprocess
import sys
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


if __name__ == "__main__":
    unittest.main()
