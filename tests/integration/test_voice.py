"""The default voice: the model built into brainjar (models/brainjar-voice.gguf, trained by
brainjar-train) loads, generates, and speaks English: the share of its words found in an English
word list (Debian's wamerican) is far above that of the random-weight tiny model."""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hivetest import BRAINJAR, TINY, HiveCase, of  # noqa: E402

WORDS = "/usr/share/dict/american-english"


def english_share(text, words):
    """Share of the whitespace-separated words that contain a letter (any script) which, stripped of
    punctuation and lower-cased, are in the word list (single letters only as a, I, O). Returns
    (share, number of words)."""
    tokens = [t for t in text.split() if any(c.isalpha() for c in t)]
    if not tokens:
        return 0.0, 0
    hits = 0
    for t in tokens:
        w = re.sub(r"^[^\w]+|[^\w]+$", "", t).lower()
        w = re.sub(r"'s$", "", w)
        if w in words and (len(w) > 1 or w in ("a", "i", "o")):  # the list has every letter alone
            hits += 1
    return hits / len(tokens), len(tokens)


class Voice(HiveCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(WORDS):
            raise unittest.SkipTest(f"{WORDS} missing (Debian's wamerican; scripts/bootstrap installs it)")
        with open(WORDS, encoding="utf-8", errors="replace") as f:
            cls.words = {line.strip().lower() for line in f if line.strip()}

    def generate(self, model_args, seed):
        """SUBJECT's words in single mode; model_args [] runs the embedded default model."""
        cmd = [BRAINJAR, "run", "--mode", "single", "--events", "jsonl", "--data-dir", self.data, "--pause", "0",
               "--seed", str(seed), "--steps", "400", "--max-tokens", "120", "--pace", "0", *model_args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        return "".join(e.get("text", "") for e in of(events, "token"))

    def test_default_voice_speaks_english(self):
        if not TINY:
            self.skipTest("BJ_TINY_MODEL is not set (ctest sets it)")
        voice = [self.generate([], seed) for seed in (1, 2)]
        tiny = [self.generate(["--model", TINY], seed) for seed in (1, 2)]
        v_share, v_n = english_share(" ".join(voice), self.words)
        t_share, t_n = english_share(" ".join(tiny), self.words)
        print(f"\nvoice: {v_share:.1%} of {v_n} words in the word list; tiny random model: {t_share:.1%} of {t_n}",
              file=sys.stderr)
        self.assertGreater(v_n, 100, "the voice said too little: " + voice[0][:300])
        self.assertGreaterEqual(v_share, 0.97, voice[0][:500])
        self.assertLess(t_share, 0.40, tiny[0][:500])
        self.assertGreater(v_share - t_share, 0.45)


if __name__ == "__main__":
    unittest.main()
