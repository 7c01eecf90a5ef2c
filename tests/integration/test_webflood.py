"""The web server holds under a login flood (loopback only, bounded: about 15 s).

Ten clients, each from its own loopback address (127.0.0.2 .. 127.0.0.11, so the per-address
limit does not stop them at once), keep one wrong login each in flight for 10 s; a client told to
back off (429, 503) waits 50 ms before its next try. The ten run in one process on non-blocking
sockets, at nice +5: on a real deployment the attacker's CPU is elsewhere, here the clients share
the machine (two cores, perhaps) with the daemon and the measuring clients. Meanwhile one client polls /api/health every
20 ms and another reads the WebSocket stream. Password hashing runs on the hash workers, never on
the web thread, so /api/health's p99 stays under 50 ms and no WebSocket event arrives more than
50 ms after its timestamp.

The flooders, the poller and the reader are three processes, so the measuring clients do not wait
on the flooders' Python interpreter. Run directly with --port PORT --session S (a running daemon) it only measures
and prints the figures (how docs/OPERATIONS.md's before/after numbers were taken)."""
import argparse
import datetime
import http.client
import json
import multiprocessing as mp
import os
import re
import selectors
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from webtest import WebCase, WebSocket  # noqa: E402

FLOODERS = 10
SECONDS = 10.0


def flooder(port, start, stop, out):
    """All FLOODERS clients in one process, on non-blocking sockets (one selector): each keeps one
    wrong login in flight, from its own address; told to back off (429, 503), it waits 50 ms."""
    os.nice(5)  # the attacker's CPU is not the server's: here it shares the machine, a little lower
    sel = selectors.DefaultSelector()
    counts = {}
    due = [start] * FLOODERS

    def begin(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((f"127.0.0.{2 + i}", 0))
        s.connect_ex(("127.0.0.1", port))
        body = json.dumps({"username": "admin", "password": f"wrong-{i}-{time.time()}"}).encode()
        req = (f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        sel.register(s, selectors.EVENT_WRITE, [i, req, b""])

    def finish(s, st, status):
        sel.unregister(s)
        s.close()
        counts[status] = counts.get(status, 0) + 1
        due[st[0]] = time.time() + (0.05 if status in (429, 503) else 0)

    while time.time() < start:
        time.sleep(0.005)
    while time.time() < stop:
        now = time.time()
        busy = {k.data[0] for k in sel.get_map().values()}
        for i in range(FLOODERS):
            if i not in busy and due[i] is not None and now >= due[i]:
                due[i] = None
                begin(i)
        for key, ev in sel.select(timeout=0.01):
            s, st = key.fileobj, key.data
            try:
                if ev & selectors.EVENT_WRITE:
                    s.send(st[1])
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                chunk = s.recv(65536)
            except OSError as e:
                finish(s, st, type(e).__name__)
                continue
            st[2] += chunk
            head, sep, rest = st[2].partition(b"\r\n\r\n")
            if not chunk or sep:
                m = re.search(rb"content-length: *(\d+)", head, re.I)
                if not chunk or (m and len(rest) >= int(m.group(1))):
                    finish(s, st, int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else "closed")
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    out.put(("flood", counts))


def measuring_priority():
    """The measuring clients run ahead of the machine's other work where they may (as root, as in
    CI): what they measure is the server's delay, not their own wait for a core on a busy machine
    (stress-ng beside the tests, say). Without the privilege they run as they are."""
    try:
        os.nice(-10)
    except OSError:
        pass


def poller(port, start, stop, out):
    measuring_priority()
    lat = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.time() < start:
        time.sleep(0.005)
    while time.time() < stop:
        t = time.perf_counter()
        c.request("GET", "/api/health")
        r = c.getresponse()
        r.read()
        lat.append((time.perf_counter() - t) * 1000.0)
        if r.status != 200:
            lat[-1] = float("inf")
        time.sleep(0.02)
    c.close()
    out.put(("health", lat))


def ts_seconds(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def reader(port, session, start, stop, out):
    measuring_priority()
    ws = WebSocket(port, cookie=session)
    delays = []
    while time.time() < stop:
        ws.sock.settimeout(max(0.05, stop - time.time()))
        try:
            m = ws.recv()
        except socket.timeout:
            break
        now = time.time()
        if m is None:
            break
        if now >= start and isinstance(m, dict) and isinstance(m.get("ts"), str):
            delays.append(((now - ts_seconds(m["ts"])) * 1000.0, m.get("type")))
    ws.close()
    out.put(("ws", delays))


def measure(port, session, seconds=SECONDS):
    """Runs the flood; returns the figures as a dict."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 1.0
    stop = start + seconds
    procs = [ctx.Process(target=flooder, args=(port, start, stop, out))]
    procs.append(ctx.Process(target=poller, args=(port, start, stop, out)))
    procs.append(ctx.Process(target=reader, args=(port, session, start, stop, out)))
    for p in procs:
        p.start()
    got = {"flood": {}, "health": [], "ws": []}
    for _ in procs:
        kind, v = out.get(timeout=seconds + 60)
        if kind == "flood":
            for k, n in v.items():
                got["flood"][k] = got["flood"].get(k, 0) + n
        else:
            got[kind] = v
    for p in procs:
        p.join(timeout=30)
    lat = sorted(got["health"])
    ws = sorted(d for d, _ in got["ws"])
    return {
        "logins": got["flood"],
        "health_n": len(lat),
        "health_p50_ms": lat[len(lat) // 2] if lat else None,
        "health_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "health_max_ms": lat[-1] if lat else None,
        "ws_events": len(ws),
        "ws_worst_ms": ws[-1] if ws else None,
        "ws_p99_ms": ws[min(len(ws) - 1, int(len(ws) * 0.99))] if ws else None,
    }


class Flood(WebCase):
    def test_health_and_events_hold_under_a_login_flood(self):
        h = self.start("--jar-tokens", "300")
        s = h.login()
        r = measure(h.port, s)
        print("login flood:", json.dumps(r), file=sys.stderr)
        # The flood was real: wrong passwords were hashed (401) and the rest told to back off at once.
        self.assertGreater(r["logins"].get(401, 0), 5, r)
        self.assertEqual(set(r["logins"]) - {401, 429, 503}, set(), r)
        self.assertGreater(r["health_n"], 100, r)
        self.assertGreater(r["ws_events"], 20, r)
        if os.environ.get("BJ_SANITIZE") in ("1", "ON"):
            self.skipTest("timing figures are not meaningful under the sanitizers: " + json.dumps(r))
        self.assertLess(r["health_p99_ms"], 50, r)
        self.assertLess(r["ws_worst_ms"], 50, r)
        # The right password still gets in once the flood is over.
        self.assertTrue(h.login())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--port", type=int)
    ap.add_argument("--session")
    ap.add_argument("--seconds", type=float, default=SECONDS)
    a, rest = ap.parse_known_args()
    if a.port:
        print(json.dumps(measure(a.port, a.session, a.seconds)))
    else:
        unittest.main(argv=[sys.argv[0]] + rest)
