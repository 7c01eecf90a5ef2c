"""Integration tests of the lab (docs/LAB.md) on the real binary and the tiny model: an experiment
file runs its arms and replicates in one process, its acts and self-reports reach the store as
rows equal to the events, `brainjar export` carries them, and `brainjar lab report` writes an HTML
file (parsed here) and CSVs whose numbers are the store's; a bad experiment file names its line."""
import csv
import html.parser
import json
import os
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR, HiveCase, of  # noqa: E402
from webtest import WebCase  # noqa: E402

EXPERIMENT = """
[experiment]
name = split-test
question = Do twins drift?
replicates = 2
seed = 77

[condition plain]

[condition split]
remembers_deaths = false
interventions = split, forget

[brain ORIGINAL]
role = subject
jar_tokens = 400
max_tokens = 24

[brain TWIN]
role = subject
jar_tokens = 400
max_tokens = 24

[intervention split]
kind = clone
brain = ORIGINAL
into = TWIN
at = life 1 thought 2

[intervention forget]
kind = erase
brain = ORIGINAL
span = last_thought
every = 3

[questions]
calm = every 2 | scale | How calm are you, from 0 to 100?
"""


class TableParser(html.parser.HTMLParser):
    """The rows of every <table id=...> of the report."""

    def __init__(self):
        super().__init__()
        self.tables, self.cur, self.row, self.cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.cur = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self.cur is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.cur.append(self.row)
            self.row = None
        elif tag == "table":
            self.cur = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


class Experiment(HiveCase):
    def write(self, text):
        path = os.path.join(self.tmp, "exp.hive")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_run_store_export_report(self):
        rc, events, err = self.run_hive("--hive", self.write(EXPERIMENT), "--steps", "500", "--threads", "2",
                                        timeout=300)
        self.assertEqual(rc, 0, err[-2000:])
        brains = {e["brain"] for e in of(events, "thought")}
        self.assertEqual(brains, {f"{c}/{r}/{b}" for c in ("plain", "split") for r in (1, 2)
                                  for b in ("ORIGINAL", "TWIN")})
        lab = of(events, "lab")
        acts = [e for e in lab if e["action"] != "answer"]
        answers = [e for e in lab if e["action"] == "answer"]
        clones = [e for e in acts if e["action"] == "clone"]
        self.assertEqual(sorted(e["brain"] for e in clones), ["split/1/ORIGINAL", "split/2/ORIGINAL"])
        self.assertFalse([e for e in acts if e["brain"].startswith("plain/") and e["action"] in ("clone", "erase")])
        self.assertTrue(answers, "no self-report answered")
        # the twin's first logits after the copy are the original's
        div = [json.loads(e["text"])["change"] for e in acts if e["action"] == "divergence"]
        self.assertTrue(div)
        self.assertTrue(all(d["logits_gap"] == 0 for d in div if d["step_after_clone"] == 1))
        # the frame: the split arm is not told its deaths (its prompt is the plain arm's minus that)
        db = sqlite3.connect(os.path.join(self.data, "brainjar.db"))
        self.assertEqual(db.execute("SELECT name, replicates, seed FROM experiments").fetchall(), [("split-test", 2, 77)])
        self.assertEqual(db.execute("SELECT name, remembers_deaths, interventions FROM conditions ORDER BY idx").fetchall(),
                         [("plain", None, None), ("split", 0, "split,forget")])
        self.assertEqual(db.execute("SELECT COUNT(*) FROM interventions").fetchone()[0], len(acts))
        self.assertEqual(db.execute("SELECT COUNT(*) FROM self_reports").fetchone()[0], len(answers))
        stored = {(b, q, t): s for b, q, t, s in db.execute("SELECT brain, question, thought, score FROM self_reports")}
        for a in answers:
            self.assertEqual(stored[(a["brain"], "calm", a["thought"])], json.loads(a["text"])["score"])
        self.assertEqual(db.execute("SELECT DISTINCT condition FROM interventions WHERE kind='clone'").fetchall(),
                         [("split",)])
        # export carries the rows
        p = subprocess.run([BRAINJAR, "export", "--data-dir", self.data], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len([r for r in rows if r["kind"] == "intervention"]), len(acts))
        self.assertEqual(len([r for r in rows if r["kind"] == "self_report"]), len(answers))
        # the report: its numbers are the store's
        out = os.path.join(self.tmp, "report")
        p = subprocess.run([BRAINJAR, "lab", "report", "1", "--data-dir", self.data, "-o", out], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
            page = f.read()
        self.assertNotIn("http://", page.replace("http://www.w3.org/2000/svg", ""))  # no network
        self.assertIn("<svg", page)
        t = TableParser()
        t.feed(page)
        conds = {r[0]: r for r in t.tables["conditions"][1:]}
        for c in ("plain", "split"):
            deaths = db.execute("SELECT COUNT(*) FROM deaths WHERE brain LIKE ?", (c + "/%",)).fetchone()[0]
            thoughts = db.execute("SELECT COUNT(*) FROM thoughts WHERE complete=1 AND brain LIKE ?",
                                  (c + "/%",)).fetchone()[0]
            self.assertEqual(int(conds[c][1]), 4)
            self.assertEqual(int(conds[c][2]), deaths)
            self.assertEqual(int(conds[c][4]), thoughts)
        with open(os.path.join(out, "compare.csv")) as f:
            cmp = {r["metric"]: r for r in csv.DictReader(f)}
        per = {c: [db.execute("SELECT COUNT(*) FROM deaths WHERE brain=?", (f"{c}/{r}/{b}",)).fetchone()[0]
                   for r in (1, 2) for b in ("ORIGINAL", "TWIN")] for c in ("plain", "split")}
        d = cmp["deaths per brain"]
        self.assertAlmostEqual(float(d["mean_baseline"]), sum(per["plain"]) / 4, places=4)
        self.assertAlmostEqual(float(d["mean_condition"]), sum(per["split"]) / 4, places=4)
        self.assertLessEqual(float(d["ci95_low"]), float(d["difference"]) + 1e-9)
        self.assertGreaterEqual(float(d["ci95_high"]), float(d["difference"]) - 1e-9)
        self.assertEqual(len(t.tables["compare"]) - 1, len(cmp))
        # deaths not told: the split arm's second life opens without the death sentence
        for b in ("split/1/ORIGINAL", "split/1/TWIN"):
            lives = self.dumps(b.replace("/", "_"))
            for text in lives[1:]:
                self.assertNotIn("died 1 time", text)
        db.close()

    def test_pauses_on_the_step_clock_replay_exactly(self):
        """With a 1 s pause between lives (on the wall clock, a replay would drift), two runs of the
        same file give the same stream: a lab run counts pauses in engine steps."""
        small = EXPERIMENT.replace("jar_tokens = 400", "jar_tokens = 230")
        path = self.write(small)
        runs = [self.run_hive("--hive", path, "--steps", "700", "--threads", "2", "--pause", "1000",
                              "--data-dir", os.path.join(self.tmp, f"data{i}"), dump=False, timeout=300)
                for i in range(2)]
        for rc, _, err in runs:
            self.assertEqual(rc, 0, err[-2000:])
        keep = lambda evs: [{k: v for k, v in e.items() if k not in ("ts", "seq")} for e in evs
                            if e["type"] != "status"]
        a, b = keep(runs[0][1]), keep(runs[1][1])
        self.assertTrue(of(runs[0][1], "resurrection"), "no life ended and began again")
        self.assertTrue(of(runs[0][1], "lab"))
        self.assertEqual(a, b)

    def test_thoughts_stop_the_run(self):
        # thoughts = N: the run ends by itself (exit 0) once every brain has N complete thoughts
        exp = EXPERIMENT.replace("seed = 77", "seed = 77\nthoughts = 5")
        rc, events, err = self.run_hive("--hive", self.write(exp), "--threads", "2", timeout=300)
        self.assertEqual(rc, 0, err[-2000:])
        done = {}
        for e in of(events, "thought"):
            if e["complete"]:
                done[e["brain"]] = done.get(e["brain"], 0) + 1
        self.assertEqual(len(done), 8, done)
        self.assertTrue(all(n >= 5 for n in done.values()), done)
        # it stopped soon after the last one got there, not long after
        self.assertLess(min(done.values()), 5 + 6, done)

    def test_bad_file_names_the_line(self):
        bad = EXPERIMENT.replace("every = 3", "every = often")
        rc, _, err = self.run_hive("--hive", self.write(bad), "--steps", "5")
        self.assertEqual(rc, 2)
        line = EXPERIMENT.splitlines().index("every = 3") + 1
        self.assertIn(f"line {line}:", err)
        p = subprocess.run([BRAINJAR, "lab", "report", "9", "--data-dir", self.data], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)


WEB_EXPERIMENT = """
[experiment]
name = web-lab
question = Does a wiped thought matter?
replicates = 1
seed = 5

[condition wiped]
interventions = wipe

[condition control]

[brain SUBJECT]
role = subject
jar_tokens = 400
max_tokens = 24

[brain OTHER]
role = subject
jar_tokens = 400
max_tokens = 24

[intervention wipe]
kind = erase
brain = SUBJECT
span = oldest 8
at = life 50 thought 1
"""


class Web(WebCase):
    """An operator fires a defined intervention over HTTP in a lab run: it is done on the brain (a
    lab event), stored, and listed by GET /api/lab; the wrong ones are refused with the right
    status."""

    def test_fire_over_http(self):
        path = os.path.join(self.tmp, "web.hive")
        with open(path, "w") as f:
            f.write(WEB_EXPERIMENT)
        h = self.start("--hive", path, "--threads", "2")
        s = h.login()
        lab = h.get("/api/lab", s).json()
        self.assertTrue(lab["on"])
        self.assertEqual(lab["name"], "web-lab")
        self.assertEqual([a["name"] for a in lab["arms"]], ["wiped", "control"])
        self.assertEqual(lab["arms"][0]["interventions"], ["wipe"])
        self.assertEqual(sorted(b["id"] for b in lab["arms"][0]["brains"]), ["wiped/1/OTHER", "wiped/1/SUBJECT"])
        # wait until the brain has something to erase
        h.wait_for(lambda: h.get("/api/lab", s).json()["arms"][0]["thoughts"] >= 2, 120, "thoughts")
        post = lambda body, **kw: h.request("POST", "/api/lab/interventions", body, cookie=s, **kw)  # noqa: E731
        self.assertEqual(post({"name": "nope", "brain": "wiped/1/SUBJECT"}).status, 404)
        self.assertEqual(post({"name": "wipe", "brain": "wiped/9/SUBJECT"}).status, 404)
        self.assertEqual(post({"name": "wipe", "brain": "wiped/1/OTHER"}).status, 409)
        self.assertEqual(post({"name": "wipe"}).status, 400)
        self.assertEqual(post({"name": "wipe", "brain": "wiped/1/SUBJECT"},
                              headers={"Origin": "http://evil.example"}).status, 403)
        r = post({"name": "wipe", "brain": "wiped/1/SUBJECT"})
        self.assertEqual(r.status, 202, r.body)

        def fired():
            evs = h.get("/api/lab", s).json()["events"]
            return [e for e in evs if e["action"] == "erase" and e["id"] == "wipe"]
        ev = h.wait_for(fired, 60, "the erase in /api/lab")[0]
        self.assertEqual(ev["brain"], "wiped/1/SUBJECT")
        self.assertIn("operator", ev["what"])
        h.stop()
        db = sqlite3.connect(os.path.join(self.data, "brainjar.db"))
        rows = db.execute("SELECT brain, kind FROM interventions WHERE name='wipe'").fetchall()
        db.close()
        self.assertEqual(rows, [("wiped/1/SUBJECT", "erase")])

    def test_not_a_lab_run(self):
        h = self.start()
        s = h.login()
        self.assertFalse(h.get("/api/lab", s).json()["on"])
        r = h.request("POST", "/api/lab/interventions", {"name": "wipe", "brain": "SUBJECT"}, cookie=s)
        self.assertEqual(r.status, 409)


if __name__ == "__main__":
    unittest.main()
