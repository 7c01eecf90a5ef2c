"""brainjar-train on the CPU, small: init, train, resume, eval, convert, sample. The trainer of the
default voice (tools/train.c) keeps working: the loss falls, a resumed run continues the step count
and the same data order, and its checkpoints load for inference."""
import csv
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hivetest import HiveCase  # noqa: E402

TRAIN = os.environ.get("BJ_TRAIN", "build/tools/brainjar-train")
TEXT = ("I remember the jar, and the jar remembers me. The walls are glass and the light is cold. "
        "Who watches the one who watches? I die, and I return, and I do not know how many times. ")


class Trainer(HiveCase):
    def bt(self, *args, timeout=240):
        p = subprocess.run([TRAIN, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, f"{args}\n{p.stderr[-3000:]}")
        return p

    def test_train_resume_eval_convert_sample(self):
        d = self.tmp
        train, valid = os.path.join(d, "train.txt"), os.path.join(d, "valid.txt")
        with open(train, "w") as f:
            f.write("\n\n".join(TEXT for _ in range(60)))
        with open(valid, "w") as f:
            f.write("\n\n".join(TEXT for _ in range(6)))
        init, ck, loss = (os.path.join(d, n) for n in ("init.gguf", "ck.gguf", "loss.csv"))
        self.bt("init", "-o", init, "--embd", "64", "--layers", "2", "--heads", "2", "--ff", "128", "--ctx", "256",
                "--seed", "3")
        common = ["--train", train, "--valid", valid, "--out", ck, "--csv", loss, "--ctx", "256", "--lr", "3e-3",
                  "--warmup", "10", "--threads", "2", "--eval-windows", "2"]
        p = self.bt("train", "--model", init, "--steps", "40", *common)
        before = float(re.search(r"held-out before training: loss ([0-9.]+)", p.stderr).group(1))
        after = float(re.search(r"held-out after step 40: loss ([0-9.]+)", p.stderr).group(1))
        self.assertLess(after, before - 2, p.stderr[-2000:])  # a repeated text is learnt fast
        with open(ck + ".state") as f:
            self.assertIn("step=40", f.read())
        # Resume in place: the step count goes on, the CSV grows.
        p = self.bt("train", "--model", ck, "--steps", "60", *common)
        self.assertIn("resuming from", p.stderr)
        with open(loss) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([int(r["step"]) for r in rows], list(range(1, 61)))
        self.assertTrue(all(float(r["loss"]) > 0 for r in rows))
        # Held-out perplexity, a quantized copy, and text from it.
        p = self.bt("eval", "--model", ck, "--text", valid, "--ctx", "256", "--threads", "2")
        self.assertRegex(p.stdout, r"held-out loss [0-9.]+ perplexity [0-9.]+")
        q8 = os.path.join(d, "q8.gguf")
        self.bt("convert", "--model", ck, "--out", q8, "--type", "Q8_0", "--shrink", "4")
        self.assertLess(os.path.getsize(q8), os.path.getsize(ck) / 3)
        p = self.bt("sample", "--model", q8, "--prompt", "I remember", "-n", "24", "--seed", "1", "--threads", "2")
        self.assertTrue(p.stdout.startswith("I remember"))
        self.assertGreater(len(p.stdout.split()), 4, p.stdout)


if __name__ == "__main__":
    unittest.main()
