"""--rpc: a model run over llama.cpp's own RPC backend. Two rpc-servers (CPU backend) on 127.0.0.1
take the tiny model's layers; brains think and the summary counts their tokens; validate and
estimate say what each server holds and that its free memory is not a measurement; every layer
lands on the device the estimate says, as llama.cpp's own log shows (default split, --tensor-split,
--main-gpu, partial offload). Servers that cannot be used give a one-line error and exit 1, never
an abort: nothing listening, a listener that is not an rpc-server, one that never answers, one of
another protocol version.

The rpc-server is the one scripts/bootstrap builds from the pinned llama.cpp (BJ_RPC_SERVER, set
by CMake). Rpc skips, saying why, only where the bootstrap could not build it (a system llama.cpp
has no build tree); the Unreachable cases need no server and always run."""
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hivetest import BRAINJAR, TINY, HiveCase, of  # noqa: E402

RPC_SERVER = os.environ.get("BJ_RPC_SERVER", "")
if os.environ.get("BJ_SANITIZE") == "ON":
    # llama.cpp's RPC backend never frees its registry of servers (lsan-rpc.supp says what)
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan-rpc.supp")
    os.environ["LSAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("LSAN_OPTIONS"), f"suppressions={supp}",
                                                        "print_suppressions=0"]))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20):
    """Waits until 127.0.0.1:port accepts a connection (the connection is closed at once: an
    rpc-server then serves the next client)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"rpc-server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"rpc-server on port {port} did not listen within {timeout} s")


class Rpc(HiveCase):
    @classmethod
    def setUpClass(cls):
        if not RPC_SERVER:
            raise unittest.SkipTest("no rpc-server: scripts/bootstrap could not build llama.cpp's rpc-server here "
                                    "(a system or installed llama.cpp has no build tree, or its source has no "
                                    "ggml-rpc); `scripts/bootstrap --rpc-server` says why")
        if not os.access(RPC_SERVER, os.X_OK):
            raise AssertionError(f"BJ_RPC_SERVER={RPC_SERVER} is not an executable (the bootstrap built it: rebuild)")
        cls.servers = []
        cls.logs = []
        base = os.environ.get("BJ_TEST_TMP", "/tmp")
        os.makedirs(base, exist_ok=True)
        try:
            for k in range(2):
                port = free_port()
                log = open(os.path.join(base, f"rpc-server-{os.getpid()}-{k}.log"), "w+")
                p = subprocess.Popen([RPC_SERVER, "-H", "127.0.0.1", "-p", str(port), "-t", "1"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                cls.servers.append((p, port))
                cls.logs.append(log)
                wait_listening(port, p)
        except Exception:
            cls.tearDownClass()
            raise
        cls.eps = ",".join(f"127.0.0.1:{port}" for _, port in cls.servers)

    @classmethod
    def tearDownClass(cls):
        for p, _ in getattr(cls, "servers", []):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in getattr(cls, "logs", []):
            log.close()
            os.unlink(log.name)

    def servers_alive(self):
        for p, port in self.servers:
            self.assertIsNone(p.poll(), f"the rpc-server on port {port} died")

    def test_matrix_thinks_over_two_servers(self):
        rc, ev, err = self.run_hive("--mode", "matrix", "--rpc", self.eps, "--steps", "60", "--jar-tokens", "256",
                                    "--max-tokens", "16", timeout=240)
        self.assertEqual(rc, 0, err[-3000:])
        for brain in ("SUBJECT", "OBSERVER", "GOD"):
            self.assertTrue(of(ev, "token", brain), f"{brain} produced no token")
        self.assertTrue(of(ev, "thought"), "no thought was finished")
        m = re.search(r"summary: (\d+) tokens generated", err)
        self.assertIsNotNone(m, err[-3000:])
        self.assertGreater(int(m.group(1)), 0)
        for log in self.logs:
            log.seek(0)
            self.assertIn("Accepted client connection", log.read(), "a server was never used")
        self.servers_alive()

    def test_validate_says_what_each_server_holds(self):
        p = subprocess.run([BRAINJAR, "validate", "--model", TINY, "--jar-tokens", "256", "--rpc", self.eps],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        self.assertIn("Devices (the model is split):", out)
        self.assertIn("On rpc-servers:", out)
        for _, port in self.servers:
            self.assertRegex(out, rf"RPC\d\s+127\.0\.0\.1:{port} \(rpc-server\): needs [\d.]+ [MG]B; free memory not "
                                  r"known \(the rpc-server reports all of its [\d.]+ GB as free")
        self.assertIn("(on rpc-servers)", out)  # the jars: on the servers, not in this host's memory
        self.assertRegex(out, r"Jars \(brains\):\s+0\.0 MB")
        self.servers_alive()

    def placement_of_estimate(self, model, args):
        """Layer -> device name, from `brainjar estimate`'s placement line."""
        p = subprocess.run([BRAINJAR, "estimate", model, "--ctx", "256", "--no-dry-run", "--rpc", self.eps, *args],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        n_layer = int(re.search(r"(\d+) layers, n_embd", p.stdout).group(1))
        where = {il: "CPU" for il in range(n_layer + 1)}
        for name, what in re.findall(r"(RPC\d+) \(127\.0\.0\.1:\d+, rpc-server\): ([^;\n]+)", p.stdout):
            m = re.match(r"layers? (\d+)(?:-(\d+))?", what)
            if m:
                for il in range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1):
                    where[il] = name
            if "output" in what:
                where[n_layer] = name
        return where

    def placement_of_llama(self, model, args):
        """Layer -> device name, from llama.cpp's own log of the load (--log-level debug)."""
        rc, _, err = self.run_hive("--mode", "single", "--model", model, "--rpc", self.eps, "--jar-tokens", "256",
                                   "--steps", "2", "--events", "none", "--log-level", "debug", *args, dump=False,
                                   timeout=180)
        self.assertEqual(rc, 0, err[-3000:])
        where = {}
        for il, dev in re.findall(r"load_tensors: layer\s+(\d+) assigned to device (\S+),", err):
            self.assertEqual(where.get(int(il), dev), dev, f"layer {il} on two devices")
            where[int(il)] = "CPU" if dev == "CPU" else dev
        self.assertTrue(where, err[-3000:])
        return where

    def test_layers_where_llama_puts_them(self):
        model = os.path.join(self.tmp, "eleven.gguf")
        subprocess.run([BRAINJAR, "mkmodel", "--layers", "11", "--quiet", "-o", model], check=True, timeout=120,
                       capture_output=True)
        cases = [[], ["--tensor-split", "1,3"], ["--tensor-split", "3,1"], ["--tensor-split", "0,1"],
                 ["--gpu-layers", "6"], ["--gpu-layers", "6", "--tensor-split", "2,1"], ["--main-gpu", "1"],
                 ["--split-mode", "none"]]
        for args in cases:
            with self.subTest(args=args):
                want = self.placement_of_estimate(model, args)
                got = self.placement_of_llama(model, args)
                self.assertEqual(got, want, f"{args}: llama.cpp put the layers elsewhere than the estimate")
        # the default split: equal free memory on both (the same host), so both take layers
        self.assertEqual(set(self.placement_of_estimate(model, []).values()), {"RPC0", "RPC1"})
        self.assertEqual(set(self.placement_of_estimate(model, ["--main-gpu", "1"]).values()), {"RPC1"})
        self.servers_alive()

    def test_second_server_unreachable(self):
        # the first server is fine, the second is not there: one line about the second, exit 1
        port = free_port()
        p = subprocess.run([BRAINJAR, "run", "--no-web", "--data-dir", self.data, "--model", TINY, "--rpc",
                            f"127.0.0.1:{self.servers[0][1]},127.0.0.1:{port}", "--steps", "5"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, rf"rpc-server 127\.0\.0\.1:{port}: cannot connect: Connection refused")
        self.servers_alive()

    def test_what_the_devices_contradict(self):
        p = subprocess.run([BRAINJAR, "validate", "--model", TINY, "--rpc", self.eps, "--main-gpu", "2"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("--main-gpu 2: there are 2 devices", p.stdout)
        rc, _, err = self.run_hive("--rpc", self.eps, "--tensor-split", "1,1,1", "--steps", "2", dump=False)
        self.assertEqual(rc, 1, err)
        self.assertIn("--tensor-split gives 3 shares for 2 devices", err)
        self.servers_alive()


class FakeServer:
    """A listener on 127.0.0.1 that is not a working rpc-server: `close` accepts and hangs up,
    `silent` accepts and never answers, `old` answers the greeting as a server of protocol 6."""

    def __init__(self, kind):
        self.kind = kind
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.kind == "close":
                c.close()
                continue
            self.conns.append(c)
            if self.kind == "old":
                try:
                    c.recv(1 + 8 + 24)
                    c.sendall(struct.pack("<Q", 28) + bytes([6, 0, 0, 0]) + bytes(24))
                except OSError:
                    pass

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class Unreachable(HiveCase):
    def expect_refusal(self, endpoint, pattern, validate=False):
        if validate:
            p = subprocess.run([BRAINJAR, "validate", "--model", TINY, "--rpc", endpoint], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            out = p.stdout + p.stderr
        else:
            p = subprocess.run([BRAINJAR, "run", "--no-web", "--data-dir", self.data, "--model", TINY, "--rpc",
                                endpoint, "--steps", "5"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            out = p.stderr
            self.assertFalse(os.path.exists(self.data), "a refused run touched its data directory")
        self.assertEqual(p.returncode, 1, out)  # a clear failure, not an abort (SIGABRT: -6)
        self.assertRegex(out, pattern)
        self.assertNotIn("GGML_ASSERT", out)
        self.assertNotIn("Failed to connect", out)  # llama.cpp's own abort message
        self.assertLessEqual(len([ln for ln in out.splitlines() if "rpc-server" in ln]), 2, out)

    def test_nothing_listening(self):
        port = free_port()
        self.expect_refusal(f"127.0.0.1:{port}", rf"rpc-server 127\.0\.0\.1:{port}: cannot connect: Connection refused")
        self.expect_refusal(f"127.0.0.1:{port}", r"VALIDATION FAILED: rpc-server .*: cannot connect", validate=True)

    def test_unknown_host(self):
        self.expect_refusal("no-such-host.invalid:50052", r"rpc-server no-such-host\.invalid:50052: cannot resolve")

    def test_not_an_rpc_server(self):
        fake = FakeServer("close")
        try:
            self.expect_refusal(f"127.0.0.1:{fake.port}", r"closed the connection during the greeting: not an "
                                                           r"rpc-server")
        finally:
            fake.stop()

    def test_silent_server(self):
        fake = FakeServer("silent")
        try:
            t0 = time.monotonic()
            self.expect_refusal(f"127.0.0.1:{fake.port}", r"connected, but no greeting within 5000 ms")
            self.assertLess(time.monotonic() - t0, 30)
        finally:
            fake.stop()

    def test_other_protocol_version(self):
        fake = FakeServer("old")
        try:
            self.expect_refusal(f"127.0.0.1:{fake.port}", r"speaks RPC protocol 6\.0\.0, this llama\.cpp 7\.0")
        finally:
            fake.stop()



if __name__ == "__main__":
    unittest.main()
