"""Helpers for the web tests: a running brainjar with its web server, HTTP calls, and a small
WebSocket client (RFC 6455, Python stdlib only)."""
import base64
import http.client
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time

from hivetest import BRAINJAR, HiveCase, slow


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tls_context():
    """A client context for the test's self-signed certificate: encryption without verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Response:
    def __init__(self, status, headers, body, reason=""):
        self.reason = reason
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def headers_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class WebHive:
    """brainjar run with the web server on a free port, until stop()."""

    def __init__(self, case, *args, port=None, data=None, extra_env=None, tls=False):
        self.case = case
        self.tls = tls
        self.port = port or free_port()
        self.data = data or case.data
        self.errpath = os.path.join(case.tmp, f"stderr-{self.port}.txt")
        self.outpath = os.path.join(case.tmp, f"stdout-{self.port}.txt")
        cmd = [BRAINJAR, "run", "--events", "jsonl", "--data-dir", self.data, "--pause", "0", "--pace", "0",
               "--web-port", str(self.port)] + list(args)
        self.err = open(self.errpath, "w")
        self.out = open(self.outpath, "w")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        self.password = None
        deadline = time.time() + slow(60)
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"brainjar exited {self.p.returncode}: {self.stderr()}")
            try:
                if self.request("GET", "/api/health").status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the web server did not come up: " + self.stderr())
        m = re.search(r"with the password:\s+(\S+)", self.stderr())
        if m:
            self.password = m.group(1)
        elif "its password is in" in self.stderr():  # stderr is no terminal: the file has it
            with open(os.path.join(self.data, "admin-password"), encoding="utf-8") as f:
                self.password = f.read().strip()

    def stderr(self):
        with open(self.errpath, encoding="utf-8", errors="replace") as f:
            return f.read()

    def events(self):
        with open(self.outpath, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=slow(30))
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()
        self.out.close()
        return self.p.returncode

    def request(self, method, path, body=None, headers=None, token=None, cookie=None, raw=None, timeout=None):
        timeout = slow(10) if timeout is None else timeout
        if self.tls:
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=tls_context())
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        if cookie:
            h["Cookie"] = "bj_session=" + cookie
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        resp = Response(r.status, r.getheaders(), r.read(), r.reason)
        c.close()
        return resp

    def login(self, password=None, username=None):
        body = {"password": password or self.password}
        if username:
            body["username"] = username
        r = self.request("POST", "/login", body)
        deadline = time.time() + slow(30)
        while r.status == 503 and time.time() < deadline:  # every hash worker busy: come back as told
            time.sleep(float(r.header("Retry-After") or 1))
            r = self.request("POST", "/login", body)
        if r.status != 200:
            raise AssertionError(f"login failed: {r.status} {r.body}")
        cookie = r.header("Set-Cookie")
        m = re.match(r"bj_session=([^;]+)", cookie)
        return m.group(1)

    def get(self, path, session, **kw):
        r = self.request("GET", path, cookie=session, **kw)
        return r

    def wait_for(self, pred, timeout=None, what="a condition"):
        """Polls pred until it is true; timeout: 30 s scaled by BJ_TEST_SLOW unless given."""
        deadline = time.time() + (slow(30) if timeout is None else timeout)
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


class WebSocket:
    """A minimal WebSocket client: text frames, ping/pong, close."""

    def __init__(self, port, path="/ws", cookie=None, token=None, origin=None, timeout=10, rcvbuf=None, host=None,
                 tls=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
                 "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if cookie:
            lines.append(f"Cookie: bj_session={cookie}")
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if origin:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.pending = []
        self.status = int(head.split(b" ")[1])
        if self.status != 101:
            raise ConnectionRefusedError(f"handshake answered {self.status}")

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next message as JSON (frames holding an array of messages are split); None when
        the server closes."""
        if self.pending:
            return self.pending.pop(0)
        m = self.recv_frame()
        if isinstance(m, list):
            self.pending = m[1:]
            return m[0]
        return m

    def recv_frame(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            if op == 0x8:
                return None
            if op == 0x9:
                continue  # servers do not ping us
            if op in (0x1, 0x0):
                parts.append(payload)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def recv_until(self, pred, timeout=30):
        """Messages until pred(msg) is true; returns (msg, all seen)."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.time()))
            try:
                m = self.recv()
            except socket.timeout:
                break
            if m is None:
                break
            seen.append(m)
            if pred(m):
                return m, seen
        raise AssertionError(f"no matching message in {timeout} s; saw {len(seen)} messages: "
                             f"{[x.get('type') for x in seen[-20:]]}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class WebCase(HiveCase):
    """A test case with helpers to start the web hive; hives are stopped at tearDown."""

    def setUp(self):
        super().setUp()
        self.hives = []

    def tearDown(self):
        for h in self.hives:
            h.stop()
        super().tearDown()

    def start(self, *args, **kw):
        h = WebHive(self, *args, **kw)
        self.hives.append(h)
        return h
