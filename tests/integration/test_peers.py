"""Integration tests of neural links: real brainjar processes on the tiny model, linked over TCP.

TwoNodes: two nodes in peer mode, thoughts both ways for a sustained run, kill -9 of one side and
a restart: the other reconnects and the flow resumes; remote deaths arrive as remote deaths and
never change a local count.
OldNode: a stand-in for an original Python node (oldnode.py): brainjar reads its glued messages,
and it parses every message brainjar sends.
ThreeHosts: three network namespaces (as root; skipped otherwise): an observer on one watches a
subject on another while a third is a peer of the subject; a cable is cut and restored."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR  # noqa: E402
import oldnode  # noqa: E402

FAST = ("--events", "jsonl", "--pause", "0", "--pace", "0", "--threads", "1", "--max-tokens", "24", "--jar-tokens", "200",
        "--log-level", "info")


class Node:
    """One brainjar process; its JSON events are read back from a file while it runs."""

    def __init__(self, case, name, *args, netns=None):
        self.case, self.name, self.args, self.netns = case, name, args, netns
        self.dir = os.path.join(case.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.runs = 0
        self.start()

    def start(self, *extra):
        self.runs += 1
        self.out = os.path.join(self.dir, f"events{self.runs}.jsonl")
        self.err = os.path.join(self.dir, f"stderr{self.runs}.txt")
        cmd = [BRAINJAR, "run", "--no-web", *FAST, "--data-dir", os.path.join(self.dir, "data"), "--node-id", self.name,
               "--dump-context", self.dir, *self.args, *extra]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)

    def port(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            with open(self.err) as f:
                m = re.search(r"listening on \S+:(\d+)", f.read())
            if m:
                return int(m.group(1))
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} is not listening: {self.stderr()}")

    def stderr(self):
        with open(self.err) as f:
            return f.read()

    def events(self, run=None):
        out = []
        runs = [run] if run else range(1, self.runs + 1)
        for r in runs:
            with open(os.path.join(self.dir, f"events{r}.jsonl")) as f:
                for line in f:
                    if line.endswith("\n"):
                        out.append(json.loads(line))
        return out

    def wait_for(self, pred, timeout=60, what="an event"):
        end = time.time() + timeout
        while time.time() < end:
            if any(pred(e) for e in self.events(self.runs)):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no {what} within {timeout} s\n{self.stderr()[-3000:]}")

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def contexts(self, brain):
        """Every dumped life context of brain, joined."""
        text = ""
        for name in sorted(os.listdir(self.dir)):
            if name.startswith(f"{brain}-life") and name.endswith(".txt"):
                with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()
        return text

    def crash_log(self):
        path = os.path.join(self.dir, "data", "crash_reports.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().splitlines()


def remote(e, type_, node=None):
    return e["type"] == type_ and e.get("node") and (node is None or e["node"] == node)


def local(e, type_):
    return e["type"] == type_ and not e.get("node")


class LinkCase(unittest.TestCase):
    def setUp(self):
        base = os.environ.get("BJ_TEST_TMP", tempfile.gettempdir())
        os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + "-", dir=base)
        self.nodes = []

    def node(self, name, *args, netns=None):
        n = Node(self, name, *args, netns=netns)
        self.nodes.append(n)
        return n

    def tearDown(self):
        for n in self.nodes:
            if n.p.poll() is None:
                n.p.kill()
                n.p.wait()
        if not os.environ.get("BJ_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def check_local_counts(self, n, events):
        """Local deaths count 1, 2, 3... per local brain whatever arrives from peers, and the crash
        log holds exactly the local deaths."""
        deaths = [e for e in events if local(e, "death")]
        by_brain = {}
        for d in deaths:
            by_brain.setdefault(d["brain"], []).append(d["crash_count"])
        for brain, counts in by_brain.items():
            self.assertEqual(counts, list(range(counts[0], counts[0] + len(counts))), f"{n.name} {brain}")
        return deaths


class TwoNodes(LinkCase):
    def test_flow_kill_restart(self):
        a = self.node("ALPHA", "--mode", "peer", "--port", "0")
        port_a = a.port()
        b = self.node("BETA", "--mode", "peer", "--port", "0", "--peer", f"127.0.0.1:{port_a}")
        # thoughts both ways, for a sustained run
        t0 = time.time()
        a.wait_for(lambda e: remote(e, "thought", "BETA"), what="thought from BETA")
        b.wait_for(lambda e: remote(e, "thought", "ALPHA"), what="thought from ALPHA")
        b.wait_for(lambda e: remote(e, "death", "ALPHA"), what="death from ALPHA")
        time.sleep(max(0, 15 - (time.time() - t0)))
        ev_a, ev_b = a.events(1), b.events(1)
        n_ab = len([e for e in ev_b if remote(e, "thought", "ALPHA")])
        n_ba = len([e for e in ev_a if remote(e, "thought", "BETA")])
        print(f"\nsustained run: {n_ab} thoughts ALPHA->BETA, {n_ba} BETA->ALPHA in {time.time() - t0:.0f} s")
        self.assertGreaterEqual(n_ab, 5)
        self.assertGreaterEqual(n_ba, 5)
        # each side's brain took the other's words in (framed as another mind's)
        self.assertIn("[Another mind, SUBJECT@ALPHA, far away, thinks:]", b.contexts("SUBJECT"))

        # kill -9 one side, restart it on the same port: the other redials, flow resumes
        a.kill9()
        b.wait_for(lambda e: e["type"] == "link" and e.get("state") == "down", what="link down")
        a.start("--port", str(port_a))
        self.assertEqual(a.port(), port_a)
        b.wait_for(lambda e: e["type"] == "link" and e.get("state") == "hello" and a.runs == 2
                   and e["seq"] > max(x["seq"] for x in ev_b), timeout=60, what="link back")
        seen_b = len(b.events(1))
        b.wait_for(lambda e: remote(e, "thought", "ALPHA") and len(b.events(1)) > seen_b, what="thought after restart")
        a.wait_for(lambda e: remote(e, "thought", "BETA"), what="thought from BETA after restart")

        self.assertEqual(b.stop(), 0)
        self.assertEqual(a.stop(), 0)
        ev_b = b.events(1)
        # remote deaths appear as remote deaths...
        rd = [e for e in ev_b if remote(e, "death", "ALPHA")]
        self.assertTrue(rd)
        self.assertTrue(all(e["brain"] == "SUBJECT" and e["cause"] for e in rd))
        # ...and never change a local count
        ld = self.check_local_counts(b, ev_b)
        self.assertEqual(len(b.crash_log()), len(ld), "BETA's crash log has only its own deaths")
        self.check_local_counts(a, a.events(2))


    def test_authenticated(self):
        key = os.path.join(self.tmp, "peer.key")
        with open(key, "w") as f:
            f.write("a shared secret for the test\n")
        a = self.node("ALPHA", "--mode", "peer", "--port", "0", "--peer-key", key)
        port = a.port()
        b = self.node("BETA", "--mode", "peer", "--no-listen", "--peer", f"127.0.0.1:{port}", "--peer-key", key)
        c = self.node("GAMMA", "--mode", "peer", "--no-listen", "--peer", f"127.0.0.1:{port}")  # no key
        a.wait_for(lambda e: remote(e, "thought", "BETA"), what="a signed thought from BETA")
        b.wait_for(lambda e: remote(e, "thought", "ALPHA"), what="a signed thought from ALPHA")
        time.sleep(2)
        for n in (c, b, a):
            self.assertEqual(n.stop(), 0)
        self.assertFalse([e for e in a.events() if e.get("node") == "GAMMA" and e["type"] == "thought"])
        self.assertFalse([e for e in c.events() if remote(e, "thought")], "GAMMA got thoughts without the key")
        m = re.search(r"(\d+) failed authentication", a.stderr())
        self.assertTrue(m and int(m.group(1)) >= 1, a.stderr()[-1500:])


class OldNode(LinkCase):
    def test_reads_glued_messages(self):
        n = self.node("BJ", "--mode", "peer", "--port", "0")
        port = n.port()
        old = oldnode.Sender("127.0.0.1", port)
        # the original sends one object per send(), no delimiter: back to back they arrive glued
        for i in range(20):
            old.send("THOUGHT", f"old thought {i}: I am the h\u00e9artbeat", crash_count=3)
        old.send("DEATH", "the jar broke", crash_count=4, error="OUT_OF_MEMORY")
        old.send("RESURRECTION", "back", crash_count=4)
        # what the original got wrong: a message without sender_id counted as a death
        old.send_raw(json.dumps({"type": "DEATH", "crash_count": 99, "error": "OUT_OF_MEMORY"}).encode())
        old.send("THOUGHT", "last one", crash_count=4)
        n.wait_for(lambda e: remote(e, "thought") and e.get("text") == "last one", what="the last old thought")
        # its socket (5 s timeout) keeps getting our thoughts: the link outlives the original's timeout
        time.sleep(8)
        self.assertFalse(old.timed_out, "the old node's dialing socket timed out")
        self.assertFalse(old.closed)
        old.close()
        self.assertEqual(n.stop(), 0)
        ev = n.events()
        thoughts = [e for e in ev if remote(e, "thought")]
        self.assertEqual([e["text"] for e in thoughts][:20], [f"old thought {i}: I am the h\u00e9artbeat" for i in range(20)])
        self.assertEqual(len(thoughts), 21)
        for e in thoughts:
            self.assertEqual((e["node"], e["brain"]), ("NEURAL_NODE_4821", "PEER"))
        deaths = [e for e in ev if remote(e, "death")]
        self.assertEqual([(d["cause"], d["crash_count"]) for d in deaths], [("OUT_OF_MEMORY", 4)])
        # ... here it is no death of ours: none has its error, and (check_local_counts) our counts
        # go 1, 2, 3 with no jump (our SUBJECT may reach death 99 by itself: its jar is small)
        self.assertFalse([e for e in ev if local(e, "death") and e["cause"] == "OUT_OF_MEMORY"])
        self.check_local_counts(n, ev)
        self.assertIn("1 bad", n.stderr())
        self.assertTrue(old.received, "the old node parsed nothing")
        print(f"\nold node (dialing side) parsed {len(old.received)} of {len(old.received) + len(old.failed)} recv()s")
        self.assertIn("[Another mind, PEER@NEURAL_NODE_4821, far away, thinks:] old thought", n.contexts("SUBJECT"))

    def test_parses_what_brainjar_sends(self):
        r = oldnode.Receiver()
        n = self.node("BJ", "--mode", "peer", "--no-listen", "--peer-ip", "127.0.0.1", "--peer-port", str(r.port))
        n.wait_for(lambda e: local(e, "death"), what="a local death")
        time.sleep(3)
        self.assertEqual(n.stop(), 0)
        time.sleep(0.5)
        r.close()
        order = ["type", "timestamp", "sender_id", "content", "crash_count", "sequence", "memory_usage"]
        lines = r.raw.split(b"\n")
        self.assertEqual(lines[-1], b"", "every message ends with a newline")
        msgs = []
        for line in lines[:-1]:
            self.assertLessEqual(len(line) + 1, 4096)
            line.decode("ascii")  # ASCII only
            m = json.loads(line)
            self.assertEqual(list(m)[:7], order)
            self.assertTrue(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", m["timestamp"]))
            msgs.append(m)
        types = [m["type"] for m in msgs]
        self.assertEqual(types[0], "NEURAL_HANDSHAKE")
        self.assertEqual(types[-1], "NEURAL_DISCONNECT")
        self.assertIn("THOUGHT", types)
        self.assertIn("DEATH", types)
        self.assertNotIn("STATUS", types, "no keepalives to an old node")
        self.assertTrue(all(m["error"] for m in msgs if m["type"] == "DEATH"))
        # the original's way: each recv() parsed as one message
        ok = len(r.parsed)
        print(f"\nold node (listening side): {len(msgs)} messages, {ok} of {len(r.chunks)} recv()s parsed whole "
              f"as the original does")
        self.assertGreaterEqual(ok, 0.8 * len(r.chunks))


def store(n):
    import sqlite3
    return sqlite3.connect(os.path.join(n.dir, "data", "brainjar.db"), timeout=10)


class Store(LinkCase):
    """What peers send lands in the store as the remote brains' own rows, keyed by (node, brain):
    it never changes a local brain's row or count and never makes a commit fail."""

    def check_local_rows(self, n, ev):
        """The store holds exactly the node's own deaths and thoughts, and its run lost nothing."""
        c = store(n)
        deaths = {(e["brain"], e["crash_count"]): e["cause"] for e in ev if local(e, "death")}
        rows = {(b, k): cause for b, k, cause in c.execute("SELECT brain, count, cause FROM deaths")}
        self.assertEqual(rows, deaths, f"{n.name}: local deaths in the store")
        for b, k in c.execute("SELECT id, deaths FROM brains"):
            self.assertEqual(k, max([d[1] for d in deaths if d[0] == b] or [0]), f"{n.name} {b}")
        thoughts = [e for e in ev if local(e, "thought")]
        self.assertEqual(c.execute("SELECT COUNT(*) FROM thoughts").fetchone()[0], len(thoughts))
        self.assertEqual(c.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0], 0)
        self.assertEqual(c.execute("SELECT clean, lost FROM runs ORDER BY id DESC LIMIT 1").fetchone(), (1, 0))
        self.assertNotIn("commit of", n.stderr())
        return c

    def test_old_node_rows(self):
        n = self.node("BJ", "--mode", "peer", "--port", "0")
        old = oldnode.Sender("127.0.0.1", n.port())
        old.send("THOUGHT", "a thought from the old world", crash_count=3)
        old.send("DEATH", "the jar broke", crash_count=4, error="OUT_OF_MEMORY")
        old.send("RESURRECTION", "back", crash_count=4)
        n.wait_for(lambda e: remote(e, "resurrection"), what="the old node's resurrection")
        n.wait_for(lambda e: local(e, "death"), what="a local death")
        old.close()
        self.assertEqual(n.stop(), 0)
        ev = n.events()
        c = self.check_local_rows(n, ev)
        node = "NEURAL_NODE_4821"
        self.assertEqual(c.execute("SELECT node, brain, crash_count, text FROM remote_thoughts").fetchall(),
                         [(node, "PEER", 3, "a thought from the old world")])
        self.assertEqual(c.execute("SELECT node, brain, count, cause, text FROM remote_deaths").fetchall(),
                         [(node, "PEER", 4, "OUT_OF_MEMORY", "the jar broke")])
        self.assertEqual(c.execute("SELECT node, brain, crash_count, text FROM remote_resurrections").fetchall(),
                         [(node, "PEER", 4, "back")])
        self.assertEqual(c.execute("SELECT node, brain, deaths FROM remote_brains").fetchall(), [(node, "PEER", 4)])
        self.assertEqual(c.execute("SELECT COUNT(*) FROM brains WHERE id='PEER'").fetchone()[0], 0)

    def test_forged_count(self):
        n = self.node("BJ", "--mode", "peer", "--port", "0")
        port = n.port()
        old = oldnode.Sender("127.0.0.1", port)
        old.send("DEATH", "forged", crash_count=100000, brain="SUBJECT", error="JAR_FULL")
        old.send("RESURRECTION", "forged", crash_count=100000, brain="SUBJECT")
        n.wait_for(lambda e: remote(e, "resurrection"), what="the forged resurrection")
        n.wait_for(lambda e: local(e, "death") and e["brain"] == "SUBJECT", what="a local SUBJECT death")
        old.close()
        self.assertEqual(n.stop(), 0)
        ev = n.events()
        c = self.check_local_rows(n, ev)
        last = max(e["crash_count"] for e in ev if local(e, "death") and e["brain"] == "SUBJECT")
        self.assertLess(last, 1000)
        self.assertEqual(c.execute("SELECT deaths FROM remote_brains WHERE brain='SUBJECT'").fetchone()[0], 100000)
        c.close()
        # after a restart the local SUBJECT goes on from its own count
        n.start("--port", "0")
        n.wait_for(lambda e: local(e, "death") and e["brain"] == "SUBJECT", what="SUBJECT's death after restart")
        self.assertEqual(n.stop(), 0)
        first = next(e for e in n.events(2) if local(e, "death") and e["brain"] == "SUBJECT")
        self.assertEqual(first["crash_count"], last + 1)

    def test_two_nodes_same_names(self):
        a = self.node("ALPHA", "--mode", "peer", "--port", "0")
        b = self.node("BETA", "--mode", "peer", "--port", "0", "--peer", f"127.0.0.1:{a.port()}")
        for x, y in ((a, "BETA"), (b, "ALPHA")):
            x.wait_for(lambda e, y=y: remote(e, "death", y), timeout=90, what=f"a death from {y}")
        self.assertEqual(b.stop(), 0)
        self.assertEqual(a.stop(), 0)
        for x, y in ((a, "BETA"), (b, "ALPHA")):
            ev = x.events()
            c = self.check_local_rows(x, ev)
            rt = [e for e in ev if remote(e, "thought", y)]
            rd = [e for e in ev if remote(e, "death", y)]
            self.assertEqual(c.execute("SELECT COUNT(*) FROM remote_thoughts WHERE node=?", (y,)).fetchone()[0], len(rt))
            self.assertEqual(sorted(c.execute("SELECT brain, count FROM remote_deaths WHERE node=?", (y,)).fetchall()),
                             sorted((e["brain"], e["crash_count"]) for e in rd))
            # the same names, in rows of their own
            self.assertTrue({r[0] for r in c.execute("SELECT brain FROM remote_brains")} & {"SUBJECT", "OBSERVER", "GOD"})


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Idle(LinkCase):
    def test_250_idle_peers_cost_kilobytes(self):
        import socket
        if os.environ.get("BJ_SANITIZE") == "ON":
            # ASan keeps freed memory in a quarantine (256 MB by default): RSS would measure ASan
            old = os.environ.get("ASAN_OPTIONS")
            os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [old, "quarantine_size_mb=4"]))
            self.addCleanup(lambda: os.environ.__setitem__("ASAN_OPTIONS", old) if old is not None
                            else os.environ.pop("ASAN_OPTIONS", None))
        n = self.node("BJ", "--mode", "peer", "--port", "0")
        port = n.port()
        n.wait_for(lambda e: local(e, "thought"), what="a local thought")
        time.sleep(1)
        before = rss_kb(n.p.pid)
        socks = []
        for i in range(250):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a peer that never reads
            s.connect(("127.0.0.1", port))
            s.send(oldnode.message("NEURAL_HANDSHAKE", f"IDLE_{i}", "hello"))
            socks.append(s)
            time.sleep(0.01)
        time.sleep(45)  # thoughts pile up for the peers that never read (about 7 KB/s for each)
        during = rss_kb(n.p.pid)
        for s in socks:
            s.close()
        time.sleep(2)
        after = rss_kb(n.p.pid)
        self.assertIsNone(n.p.poll(), "the node died")
        self.assertEqual(n.stop(), 0)
        print(f"\n250 idle peers: RSS {before // 1024} MB before, {during // 1024} MB with them, "
              f"{after // 1024} MB after they closed")
        self.assertLess(during - before, 30 * 1024, "idle peers cost more than 120 KB each")


    def test_silent_links_are_capped(self):
        import socket
        n = self.node("BJ", "--mode", "peer", "--port", "0")
        port = n.port()
        socks = []
        for _ in range(40):  # connect and say nothing
            socks.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.02)
        time.sleep(1)
        closed = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                closed += s.recv(4096) == b""
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
        self.assertEqual(n.stop(), 0)
        self.assertIn("that have not said who they are (max)", n.stderr())
        self.assertGreaterEqual(closed, 8, "more than 32 silent links were kept")


class HiveFile(LinkCase):
    def test_watch_a_named_remote_brain(self):
        pi = self.node("PI", "--mode", "observed", "--port", "0")
        port = pi.port()
        hive = os.path.join(self.tmp, "lab.hive")
        with open(hive, "w") as f:
            f.write(f"""[links]
listen = off
[peer pi]
address = 127.0.0.1:{port}
[brain WATCHER]
role = observer
watches = SUBJECT@pi
sees_deaths = true
[brain LONER]
role = single
""")
        lab = self.node("LAB", "--hive", hive)
        lab.wait_for(lambda e: remote(e, "death", "pi"), what="a death on the Pi")
        lab.wait_for(lambda e: remote(e, "thought", "pi") and e["seq"] > 0 and
                     [x for x in lab.events() if remote(x, "death", "pi")][0]["seq"] < e["seq"],
                     what="a thought after that death")
        time.sleep(2)
        self.assertEqual(lab.stop(), 0)
        self.assertEqual(pi.stop(), 0)
        w = lab.contexts("WATCHER")
        self.assertIn("[Another mind, SUBJECT@pi, far away, thinks:]", w)
        self.assertIn("[SUBJECT@pi, a mind far away, has died (JAR_FULL)", w)
        self.assertNotIn("SUBJECT@pi", lab.contexts("LONER"))
        # the observed subject believes it is alone: what LAB sends reaches PI's bus, not its brain
        self.assertNotIn("Another mind", pi.contexts("SUBJECT"))
        for n in (lab, pi):
            self.check_local_counts(n, n.events())


class Flags(LinkCase):
    def run_bj(self, *args):
        p = subprocess.run([BRAINJAR, "run", "--no-web", "--events", "none", "--duration", "1", "--data-dir",
                            os.path.join(self.tmp, "d"), *args], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr

    def test_bad_link_settings(self):
        cases = [
            (("--mode", "observer"), "--target-ip"),
            (("--peer", "nohost"), "HOST:PORT"),
            (("--peer", "1.2.3.4:99999"), "HOST:PORT"),
            (("--peer-port", "9000"), "--peer-ip"),
            (("--mode", "peer", "--allow-unauthenticated"), "--peer-key"),
            (("--mode", "peer", "--no-listen"), "neither listen nor dial"),
        ]
        for args, want in cases:
            rc, err = self.run_bj(*args)
            self.assertEqual(rc, 2, f"{args}: {err}")
            self.assertIn(want, err, args)
        hive = os.path.join(self.tmp, "h.hive")
        with open(hive, "w") as f:
            f.write("[brain A]\nwatches = SUBJECT@far\n")
        rc, err = self.run_bj("--hive", hive)
        self.assertEqual(rc, 2)
        self.assertIn("no peer links", err)
        with open(hive, "w") as f:
            f.write("[peer far]\n[brain A]\nwatches = SUBJECT@far\n")
        rc, err = self.run_bj("--hive", hive)
        self.assertEqual(rc, 2)
        self.assertIn("address", err)
        rc, err = self.run_bj("--mode", "peer", "--port", "0", "--peer-key", os.path.join(self.tmp, "missing.key"))
        self.assertEqual(rc, 1)
        self.assertIn("peer key file", err)

    def test_original_flags(self):
        r = oldnode.Receiver()
        rc, err = self.run_bj("--mode", "peer", "--port", "0", "--peer-ip", "127.0.0.1", "--peer-port", str(r.port),
                              "--duration", "3", "--threads", "1", "--jar-tokens", "200", "--max-tokens", "24")
        r.close()
        self.assertEqual(rc, 0, err)
        self.assertTrue(r.parsed and r.parsed[0]["type"] == "NEURAL_HANDSHAKE", err)


def netns_available():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = f"bjprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


@unittest.skipUnless(netns_available(), "network namespaces need root and `ip netns` (iproute2): skipped")
class ThreeHosts(LinkCase):
    """host1: SUBJECT in peer mode (listens on 10.x.0.1:8888); host2: an OBSERVER watching it;
    host3: a peer of host1. A hub namespace bridges the three veth cables."""

    def sh(self, *cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    def setUp(self):
        super().setUp()
        tag = f"{os.getpid() % 10000}"
        self.ns = [f"bjh{tag}-{i}" for i in range(4)]  # 0: hub
        self.net = f"10.{77 + os.getpid() % 100}.0"
        for ns in self.ns:
            self.sh("ip", "netns", "add", ns)
        hub = self.ns[0]
        self.sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i in (1, 2, 3):
            ns = self.ns[i]
            self.sh("ip", "link", "add", f"bjv{tag}h{i}", "netns", hub, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
            self.sh("ip", "-n", hub, "link", "set", f"bjv{tag}h{i}", "master", "br0", "up")
            self.sh("ip", "-n", ns, "addr", "add", f"{self.net}.{i}/24", "dev", "eth0")
            self.sh("ip", "-n", ns, "link", "set", "eth0", "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.tag = tag

    def tearDown(self):
        super().tearDown()
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def cable(self, host, up):
        self.sh("ip", "-n", self.ns[0], "link", "set", f"bjv{self.tag}h{host}", "up" if up else "down")

    def test_observer_subject_peer(self):
        h1 = self.node("HOST1", "--mode", "peer", "--listen-host", "0.0.0.0", "--port", "8888", netns=self.ns[1])
        h1.port()
        h2 = self.node("HOST2", "--mode", "observer", "--target-ip", f"{self.net}.1", "--target-port", "8888",
                       netns=self.ns[2])
        h3 = self.node("HOST3", "--mode", "peer", "--peer", f"{self.net}.1:8888", "--port", "8888", netns=self.ns[3])
        h2.wait_for(lambda e: remote(e, "thought", "HOST1"), what="HOST1's thought at the observer")
        h1.wait_for(lambda e: remote(e, "thought", "HOST3"), what="HOST3's thought at HOST1")
        h3.wait_for(lambda e: remote(e, "thought", "HOST1"), what="HOST1's thought at HOST3")

        # cut the observer's cable past the dead-link timeout, then restore it
        self.cable(2, False)
        cut = time.time()
        h2.wait_for(lambda e: e["type"] == "link" and e.get("state") == "down", timeout=30, what="link down")
        before = len(h2.events())
        self.cable(2, True)
        h2.wait_for(lambda e: remote(e, "thought", "HOST1") and len(h2.events()) > before, timeout=60,
                    what="thoughts after the cable is back")
        print(f"\nobserver: link down {time.time() - cut:.0f} s after the cut; flow resumed after restoring it")
        time.sleep(2)
        for h in (h2, h3, h1):
            self.assertEqual(h.stop(), 0, h.stderr()[-2000:])
        e1, e2, e3 = h1.events(), h2.events(), h3.events()
        # the observer sees only the subject (no relaying of HOST3), and tells it nothing
        self.assertFalse([e for e in e2 if e.get("node") and e["type"] == "thought" and e["node"] != "HOST1"])
        self.assertFalse([e for e in e1 if remote(e, "thought", "HOST2")])
        self.assertTrue([e for e in e3 if remote(e, "thought", "HOST1")])
        for n, ev in ((h1, e1), (h2, e2), (h3, e3)):
            self.check_local_counts(n, ev)
        self.assertIn("[Another mind, SUBJECT@HOST1, far away, thinks:]", h2.contexts("OBSERVER"))


if __name__ == "__main__":
    unittest.main()
