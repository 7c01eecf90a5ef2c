"""The web server against the real daemon on the tiny model: routes, JSON shapes, auth, roles,
rate limit, bad requests, operator actions, WebSocket streaming and a stalled client."""
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from hivetest import BRAINJAR  # noqa: E402
from webtest import WebCase, WebSocket, free_port  # noqa: E402

STATE_KEYS = {"mode", "status", "crash_count", "peer_crash_count", "network_status", "memory_usage", "cpu_temp",
              "current_output", "current_mood", "ram_limit", "last_update"}
METRICS_KEYS = {"total_crashes", "total_messages", "uptime_seconds", "start_time"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def passwd(data, user, password, role=None):
    cmd = [BRAINJAR, "passwd", user, "--data-dir", data] + (["--role", role] if role else [])
    return subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, timeout=60)


def token(data, role, name=None):
    cmd = [BRAINJAR, "token", "create", "--role", role, "--data-dir", data] + (["--name", name] if name else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


class Api(WebCase):
    """Every read route, with the original's shapes."""

    def test_routes_and_shapes(self):
        h = self.start("--jar-tokens", "300")
        self.assertRegex(h.password or "", r"^[A-Za-z0-9-]{20,}$", "first start prints the admin password")
        s = h.login()
        # health: public
        r = h.request("GET", "/api/health")
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual(j["status"], "healthy")
        self.assertEqual(j["instances"], 3)
        self.assertRegex(j["timestamp"], ISO)
        # let the brains think and die
        h.wait_for(lambda: h.get("/api/metrics", s).json()["total_crashes"] >= 3, what="deaths")
        j = h.get("/api/status", s).json()
        self.assertEqual(set(j), {"instances", "metrics", "timestamp"})
        self.assertEqual(set(j["instances"]), {"SUBJECT", "OBSERVER", "GOD"})
        for st in j["instances"].values():
            self.assertTrue(STATE_KEYS <= set(st), set(st))
            self.assertIn(st["status"], {"running", "crashed", "resurrecting", "paused", "stopped"})
            self.assertIsInstance(st["crash_count"], int)
            self.assertIsInstance(st["memory_usage"], int)
            self.assertTrue(st["cpu_temp"] is None or isinstance(st["cpu_temp"], float))
            self.assertRegex(st["last_update"], ISO)
            self.assertIsNone(st["ram_limit"])  # jars in tokens: no GB figure to show
        self.assertTrue(METRICS_KEYS <= set(j["metrics"]))
        self.assertEqual(h.get("/api/instances", s).json(), {"instances": ["SUBJECT", "OBSERVER", "GOD"]})
        st = h.get("/api/instance/OBSERVER", s).json()
        self.assertTrue(STATE_KEYS <= set(st))
        self.assertEqual(st["network_status"], "connected")
        r = h.get("/api/instance/NOBODY", s)
        self.assertEqual((r.status, r.json()), (404, {"error": "Instance not found"}))
        # logs
        j = h.get("/api/logs?limit=5", s).json()
        self.assertEqual(set(j), {"logs", "count"})
        self.assertEqual(j["count"], len(j["logs"]))
        self.assertLessEqual(j["count"], 5)
        for log in j["logs"]:
            self.assertEqual(set(log), {"timestamp", "instance_id", "level", "message", "data"})
            self.assertIn(log["level"], {"info", "warning", "error", "crash"})
        j = h.get("/api/logs?instance_id=GOD&limit=50", s).json()
        self.assertTrue(all(log["instance_id"] == "GOD" for log in j["logs"]))
        crashes = [log for log in h.get("/api/logs?limit=1000", s).json()["logs"] if log["level"] == "crash"]
        self.assertTrue(crashes and "CRASH #" in crashes[0]["message"])
        m = h.get("/api/metrics", s).json()
        self.assertTrue(METRICS_KEYS <= set(m))
        self.assertRegex(m["start_time"], ISO)
        # brainjar's own
        j = h.get("/api/brains", s).json()
        self.assertEqual([b["id"] for b in j["brains"]], ["SUBJECT", "OBSERVER", "GOD"])
        b = h.get("/api/brains/OBSERVER", s).json()
        for k in ("id", "role", "state", "deaths", "life", "deaths_by_cause", "jar", "tok_s", "watches", "watched_by"):
            self.assertIn(k, b)
        self.assertEqual(b["watches"], ["SUBJECT"])
        self.assertIn("GOD", b["watched_by"])
        self.assertEqual(set(b["jar"]), {"used", "tokens", "fill"})
        self.assertEqual(set(b["deaths_by_cause"]),
                         {"JAR_FULL", "DECODE_ERROR", "WATCHDOG", "OPERATOR", "UNCLEAN_EXIT", "other"})
        self.assertEqual(h.get("/api/brains/NOBODY", s).status, 404)
        h.wait_for(lambda: h.get("/api/brains/SUBJECT/thoughts?limit=2", s).json()["count"] == 2, what="thoughts")
        t = h.get("/api/brains/SUBJECT/thoughts?limit=2", s).json()
        self.assertEqual(t["source"], "store", "the store holds the history (memory without one)")
        self.assertTrue(t["thoughts"][0]["time_us"] >= t["thoughts"][1]["time_us"], "newest first")
        older = h.get(f"/api/brains/SUBJECT/thoughts?limit=2&before={t['next_before']}", s).json()
        self.assertTrue(all(x["time_us"] < t["next_before"] for x in older["thoughts"]))
        d = h.get("/api/deaths?limit=3", s).json()
        self.assertEqual(d["count"], len(d["deaths"]))
        self.assertTrue(d["deaths"] and d["deaths"][0]["cause"] == "JAR_FULL")
        self.assertEqual(set(d["by_brain"]), {"SUBJECT", "OBSERVER", "GOD"})
        self.assertTrue(all(x["brain"] == "GOD" for x in h.get("/api/deaths?brain=GOD", s).json()["deaths"]))
        bud = h.get("/api/budget", s).json()
        self.assertIn("MEMORY", bud["report"].upper())
        ser = h.get("/api/series", s).json()["series"]
        self.assertEqual(len(ser["t"]), len(ser["process_rss"]))
        self.assertEqual(set(ser["brains"]), {"SUBJECT", "OBSERVER", "GOD"})
        self.assertEqual(h.get("/api/me", s).json()["role"], "operator")
        # Prometheus (once SUBJECT has died: the metric below counts its deaths)
        h.wait_for(lambda: h.get("/api/brains/SUBJECT", s).json()["deaths"] >= 1, what="a death of SUBJECT")
        r = h.request("GET", "/metrics", cookie=s)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        text = r.body.decode()
        for name in ("brainjar_deaths_total", "brainjar_tokens_generated_total", "brainjar_jar_tokens_used",
                     "brainjar_process_resident_memory_bytes", "brainjar_ws_clients", "brainjar_bus_dropped_total"):
            self.assertIn(f"# HELP {name} ", text)
            self.assertIn(f"# TYPE {name} ", text)
        self.assertRegex(text, r'brainjar_deaths_total\{brain="SUBJECT",cause="JAR_FULL"\} [1-9]')
        self.assertRegex(text, r'brainjar_bus_dropped_total\{subscriber="web"\} \d+')
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')

    def test_static_files_and_security_headers(self):
        h = self.start()
        r = h.request("GET", "/")
        self.assertEqual((r.status, r.header("Location")), (302, "/login"), "no session: the login page")
        for path, ctype in (("/login", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css"),
                            ("/vendor/uPlot.iife.min.js", "text/javascript"), ("/api/health", "application/json"),
                            ("/nope", "application/json")):
            r = h.request("GET", path)
            self.assertTrue(r.header("Content-Type").startswith(ctype), path)
            csp = r.header("Content-Security-Policy")
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertIn("frame-ancestors 'none'", csp)
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
            self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
            self.assertIsNone(r.header("Access-Control-Allow-Origin"), "CORS is closed")
        s = h.login()
        r = h.get("/", s)
        self.assertEqual(r.status, 200)
        html = r.body.decode()
        self.assertNotRegex(html, r"<script>[^<]", "no inline script")
        self.assertNotIn("onclick=", html)
        self.assertEqual(h.request("HEAD", "/api/health").status, 200)


class Auth(WebCase):
    def test_login_roles_tokens_logout_and_restart(self):
        h = self.start()
        self.assertTrue(h.password)
        mode = stat.S_IMODE(os.stat(os.path.join(self.data, "web-users")).st_mode)
        self.assertEqual(mode, 0o600)
        with open(os.path.join(self.data, "web-users")) as f:
            users = f.read()
        self.assertIn("$argon2id$", users)
        self.assertNotIn(h.password, users)
        # protected routes
        for path in ("/api/status", "/api/instances", "/api/instance/SUBJECT", "/api/logs", "/api/metrics",
                     "/api/brains", "/api/brains/SUBJECT", "/api/brains/SUBJECT/thoughts", "/api/deaths",
                     "/api/budget", "/metrics"):
            r = h.request("GET", path)
            self.assertEqual((r.status, r.json()), (401, {"error": "Authentication required"}), path)
        self.assertEqual(h.request("POST", "/api/brains/SUBJECT/kill").status, 401)
        # wrong password, the original's shape
        r = h.request("POST", "/login", {"password": "admin123"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["success"], False)
        # right password: cookie flags, token usable as bearer
        r = h.request("POST", "/login", {"password": h.password, "username": "admin"})
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual((j["success"], j["role"]), (True, "operator"))
        cookie = r.header("Set-Cookie")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        session = re.match(r"bj_session=([^;]+)", cookie).group(1)
        self.assertEqual(h.request("GET", "/api/status", token=j["token"]).status, 200)
        with open(os.path.join(self.data, "web-sessions")) as f:
            self.assertNotIn(session, f.read(), "sessions are stored hashed")
        # a query-string token is never accepted
        self.assertEqual(h.request("GET", "/api/status?token=" + session).status, 401)
        # viewer user and tokens
        self.assertEqual(passwd(self.data, "vera", "viewer-password-1", "viewer").returncode, 0)
        self.assertEqual(passwd(self.data, "x y", "whatever-1234").returncode, 2)
        self.assertEqual(passwd(self.data, "short", "abc").returncode, 2)
        vt = token(self.data, "viewer", "grafana")
        ot = token(self.data, "operator")
        self.assertRegex(vt, r"^bj_[0-9a-f]{64}$")
        with open(os.path.join(self.data, "web-tokens")) as f:
            self.assertNotIn(vt, f.read())
        # the running server reads users and tokens at start: restart it (sessions survive)
        self.assertEqual(h.stop(), 0)
        h = self.start()
        self.assertIsNone(h.password, "the admin password is printed only on the first start")
        self.assertEqual(h.request("GET", "/api/status", cookie=session).status, 200, "session survived a restart")
        vs = h.login("viewer-password-1", "vera")
        self.assertEqual(h.get("/api/me", vs).json(), {"user": "vera", "role": "viewer", "auth": True})
        self.assertEqual(h.request("GET", "/api/brains", token=vt).status, 200)
        self.assertEqual(h.request("GET", "/metrics", token=vt).status, 200)
        for who in ({"cookie": vs}, {"token": vt}):
            r = h.request("POST", "/api/brains/SUBJECT/pause", {}, **who)
            self.assertEqual((r.status, r.json()), (403, {"error": "Operator role required"}))
        r = h.request("POST", "/api/brains/SUBJECT/pause", {}, token=ot)
        self.assertEqual(r.status, 202)
        self.assertEqual(h.request("POST", "/api/brains/SUBJECT/resume", {}, token=ot).status, 202)
        self.assertEqual(h.request("GET", "/api/status", token="bj_" + "0" * 64).status, 401)
        # logout ends the session on the server
        r = h.request("GET", "/logout", cookie=session)
        self.assertEqual(r.status, 200)
        self.assertIn("Max-Age=0", r.header("Set-Cookie"))
        self.assertEqual(h.request("GET", "/api/status", cookie=session).status, 401)
        # a new password ends the user's sessions
        self.assertEqual(passwd(self.data, "vera", "another-password-2").returncode, 0)
        self.assertEqual(h.stop(), 0)
        h = self.start()
        self.assertEqual(h.request("GET", "/api/status", cookie=vs).status, 401)
        self.assertEqual(h.get("/api/me", h.login("another-password-2", "vera")).json()["role"], "viewer")

    def test_rate_limit_per_peer_and_trusted_proxy(self):
        h = self.start("--web-trusted-proxy", "127.0.0.1")
        # Through the trusted proxy (127.0.0.1), each X-Forwarded-For address is its own client.
        for _ in range(5):
            r = h.request("POST", "/login", {"password": "wrong"}, headers={"X-Forwarded-For": "203.0.113.7"})
            self.assertEqual(r.status, 401)
        r = h.request("POST", "/login", {"password": h.password}, headers={"X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(r.status, 429, "even the right password waits")
        self.assertEqual(r.json()["success"], False)
        self.assertTrue(int(r.header("Retry-After")) > 0)
        r = h.request("POST", "/login", {"password": h.password}, headers={"X-Forwarded-For": "203.0.113.8"})
        self.assertEqual(r.status, 200, "another client is not blocked")
        h.stop()
        # Without a trusted proxy the header is ignored: the socket peer is the key.
        h = self.start()
        for i in range(5):
            h.request("POST", "/login", {"password": "wrong"}, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        r = h.request("POST", "/login", {"password": h.password or "x"}, headers={"X-Forwarded-For": "198.51.100.99"})
        self.assertEqual(r.status, 429)

    def test_auth_off_only_on_loopback_and_loudly(self):
        p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, "--web-host", "0.0.0.0", "--web-auth", "off",
                            "--web-port", str(free_port())], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        self.assertIn("only on a loopback", p.stderr)
        p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, "--web-host", "0.0.0.0", "--metrics-public",
                            "--web-port", str(free_port())], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        h = self.start("--web-auth", "off", "--metrics-public")
        self.assertIn("AUTHENTICATION IS OFF", h.stderr())
        self.assertEqual(h.request("GET", "/api/status").status, 200)
        self.assertEqual(h.request("GET", "/metrics").status, 200)

    def test_cors_only_for_the_allowed_origin(self):
        h = self.start("--web-allow-origin", "https://gallery.example")
        s = h.login()
        r = h.request("OPTIONS", "/api/status", headers={"Origin": "https://gallery.example",
                                                          "Access-Control-Request-Method": "GET"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://gallery.example")
        self.assertIn("POST", r.header("Access-Control-Allow-Methods"))
        r = h.request("GET", "/api/status", cookie=s, headers={"Origin": "https://gallery.example"})
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://gallery.example")
        self.assertEqual(r.header("Access-Control-Allow-Credentials"), "true")
        r = h.request("GET", "/api/status", cookie=s, headers={"Origin": "https://evil.example"})
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        r = h.request("OPTIONS", "/api/status", headers={"Origin": "https://evil.example"})
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        self.assertEqual(h.request("POST", "/api/brains/GOD/pause", {}, cookie=s,
                                   headers={"Origin": "https://gallery.example"}).status, 202)
        p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, "--web-allow-origin", "*"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)

    def test_port_in_use_fails_before_models_load(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            t0 = time.time()
            p = subprocess.run([BRAINJAR, "run", "--data-dir", self.data, "--web-port", str(port)],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            s.close()
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("in use", p.stderr)
        self.assertNotIn("loading model", p.stderr)
        self.assertLess(time.time() - t0, 10)


class BadRequests(WebCase):
    def test_every_bad_request_gets_a_json_4xx(self):
        h = self.start()
        s = h.login()

        def check(resp, status, pattern=None):
            self.assertEqual(resp.status, status, resp.body)
            j = resp.json()
            self.assertIn("error", j)
            if pattern:
                self.assertRegex(j["error"], pattern)

        check(h.request("GET", "/api/nothing", cookie=s), 404, "Not found")
        check(h.request("GET", "/api/brains/NOBODY/thoughts", cookie=s), 404)
        check(h.request("POST", "/api/brains/NOBODY/kill", {}, cookie=s), 404, "Brain not found")
        r = h.request("DELETE", "/api/brains", cookie=s)
        check(r, 405, "Method not allowed")
        self.assertIn("GET", r.header("Allow"))
        check(h.request("GET", "/api/brains/SUBJECT/kill", cookie=s), 405)
        check(h.request("PUT", "/login", {"password": "x"}), 405)
        check(h.request("POST", "/login", raw=b"{not json", headers={"Content-Type": "application/json"}), 400,
              "Malformed JSON")
        check(h.request("POST", "/login", raw=b'{"password": "\xff\xfe"}', headers={"Content-Type": "application/json"}),
              400, "Malformed JSON")
        check(h.request("POST", "/login", {"password": 12345}), 400, "must be a string")
        check(h.request("POST", "/login", ["password"]), 400, "JSON object")
        check(h.request("POST", "/login", raw=b"password=x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
              415)
        check(h.request("POST", "/api/brains/SUBJECT/say", {"text": 5}, cookie=s), 400)
        check(h.request("POST", "/api/brains/SUBJECT/say", {"text": ""}, cookie=s), 400)
        check(h.request("POST", "/api/brains/SUBJECT/say", {"text": "x" * 1001}, cookie=s), 400)
        check(h.request("POST", "/api/brains/SUBJECT/say", {"text": "hi", "from": ["x"]}, cookie=s), 400)
        check(h.request("POST", "/api/brains/SUBJECT/say", raw=b'{"text": "a", "text": "b"}',
                        headers={"Content-Type": "application/json"}, cookie=s), 400)
        check(h.request("POST", "/api/brains/SUBJECT/say", raw=b"x" * 20000,
                        headers={"Content-Type": "application/json"}, cookie=s), 413, "too large")
        check(h.request("GET", "/api/logs?limit=abc", cookie=s), 400, "limit")
        check(h.request("GET", "/api/logs?limit=0", cookie=s), 400)
        check(h.request("GET", "/api/brains/SUBJECT/thoughts?before=-5", cookie=s), 400)
        check(h.request("GET", "/api/logs?instance_id=NOBODY", cookie=s), 404)
        check(h.request("GET", "/api/brains/%FF%FE", cookie=s), 400, "UTF-8")
        check(h.request("POST", "/api/brains/SUBJECT/pause", {}, cookie=s, headers={"Origin": "http://evil.example"}),
              403, "Origin")
        # slow-loris: headers that never end are cut off, and nobody else notices
        slow = socket.create_connection(("127.0.0.1", h.port))
        slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = time.time()
        self.assertEqual(h.request("GET", "/api/health").status, 200, "others are served meanwhile")
        slow.settimeout(30)
        got = b""
        try:
            while True:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        self.assertLess(time.time() - t0, 25, "a slow client is dropped within the header timeout")
        if got:
            self.assertRegex(got.split(b"\r\n")[0], rb"HTTP/1.1 4\d\d")
        # oversized headers: libwebsockets refuses them before any route sees them (a 4xx or a close)
        try:
            r = h.request("GET", "/api/health", headers={"X-Big": "a" * 9000})
            self.assertGreaterEqual(r.status, 400)
            self.assertLess(r.status, 500)
        except ConnectionError:
            pass
        # and the hive never noticed
        self.assertEqual(h.request("GET", "/api/health").status, 200)
        self.assertEqual(h.p.poll(), None)


class Operator(WebCase):
    def test_kill_resurrect_pause_say_really_act(self):
        h = self.start("--jar-tokens", "4096", "--pause", "3", "--dump-context", self.dump)
        s = h.login()
        h.wait_for(lambda: h.get("/api/brains/SUBJECT", s).json()["state"] in ("thinking", "listening"),
                   what="SUBJECT to think")
        # say: the words reach the brain's context, framed as an outside voice
        r = h.request("POST", "/api/brains/SUBJECT/say", {"text": "Hello from the gallery", "from": "Ada"}, cookie=s)
        self.assertEqual((r.status, r.json()), (202, {"ok": True, "action": "say", "brain": "SUBJECT"}))
        h.wait_for(lambda: [e for e in h.events() if e["type"] == "observe" and e.get("brain") == "SUBJECT"
                            and "Hello from the gallery" in e.get("text", "")], what="the observe event")
        # kill: an OPERATOR death (then a pause of 3 s), resurrect skips the pause
        r = h.request("POST", "/api/brains/SUBJECT/kill", {}, cookie=s)
        self.assertEqual(r.status, 202)
        d = h.wait_for(lambda: [e for e in h.events() if e["type"] == "death" and e["brain"] == "SUBJECT"],
                       what="the death")
        self.assertEqual(d[0]["cause"], "OPERATOR")
        self.assertEqual(h.get("/api/brains/SUBJECT", s).json()["deaths_by_cause"]["OPERATOR"], 1)
        self.assertEqual(h.request("POST", "/api/brains/SUBJECT/resurrect", {}, cookie=s).status, 202)
        h.wait_for(lambda: [e for e in h.events() if e["type"] == "resurrection" and e["brain"] == "SUBJECT"],
                   timeout=2.5, what="the resurrection before the 3 s pause ends")
        ctx = self.dumps("SUBJECT")
        self.assertTrue(ctx and "Hello from the gallery" in ctx[0] and "Ada" in ctx[0], "said words in the context")
        # pause and resume (a brain paused while dead stays dead until resumed: pause a live one)
        h.wait_for(lambda: h.get("/api/brains/GOD", s).json()["state"] in ("thinking", "listening"),
                   what="GOD to think")
        self.assertEqual(h.request("POST", "/api/brains/GOD/pause", {}, cookie=s).status, 202)
        h.wait_for(lambda: h.get("/api/brains/GOD", s).json()["state"] == "paused", what="GOD paused")
        self.assertEqual(h.request("POST", "/api/brains/GOD/resume", {}, cookie=s).status, 202)
        h.wait_for(lambda: h.get("/api/brains/GOD", s).json()["state"] != "paused", what="GOD resumed")
        ops = [e for e in h.events() if e["type"] == "operator"]
        self.assertEqual([e["action"] for e in ops], ["say", "kill", "resurrect", "pause", "resume"])
        logs = h.get("/api/logs?limit=1000", s).json()["logs"]
        self.assertTrue(any("operator kill SUBJECT" in log["message"] for log in logs))


class Stream(WebCase):
    def test_ws_auth_snapshot_tokens_deaths(self):
        h = self.start("--jar-tokens", "300")
        s = h.login()
        with self.assertRaises(ConnectionError):
            WebSocket(h.port, cookie=s, origin="http://evil.example")
        with self.assertRaises(ConnectionError):
            WebSocket(h.port, path="/notws", cookie=s)
        # no credentials: the first message must authenticate
        ws = WebSocket(h.port)
        ws.send({"type": "auth", "token": "bj_" + "1" * 64})
        m = ws.recv()
        self.assertEqual(m, {"type": "error", "error": "Authentication required"})
        ws.close()
        t = token(self.data, "viewer")
        ws = WebSocket(h.port)
        ws.send({"type": "auth", "token": t})
        snap, _ = ws.recv_until(lambda m: m["type"] == "snapshot")
        self.assertEqual([b["id"] for b in snap["brains"]], ["SUBJECT", "OBSERVER", "GOD"])
        self.assertEqual(snap["you"]["role"], "viewer")
        ws.close()
        # cookie: snapshot, then tokens of every brain, a death and its resurrection, ticks
        ws = WebSocket(h.port, cookie=s)
        snap = ws.recv()
        self.assertEqual(snap["type"], "snapshot")
        self.assertIn("series", snap)
        seen = set()
        _, msgs = ws.recv_until(lambda m: seen.add((m["type"], m.get("brain"))) or
                                {("token", "SUBJECT"), ("token", "OBSERVER"), ("token", "GOD"), ("death", "SUBJECT"),
                                 ("resurrection", "SUBJECT"), ("tick", None)} <= seen)
        tick = [m for m in msgs if m["type"] == "tick"][0]
        self.assertTrue(STATE_KEYS <= set(tick["instances"]["SUBJECT"]))
        death = [m for m in msgs if m["type"] == "death"][0]
        self.assertEqual(death["cause"], "JAR_FULL")
        # a filter by brain
        ws.send({"type": "filter", "brains": ["GOD"]})
        ws.recv_until(lambda m: m["type"] == "filter")
        _, msgs = ws.recv_until(lambda m: m["type"] == "death")
        self.assertTrue(all(m.get("brain") in (None, "GOD") for m in msgs), {m.get("brain") for m in msgs})
        ws.close()
        ws = WebSocket(h.port, path="/ws?brain=OBSERVER", cookie=s)
        _, msgs = ws.recv_until(lambda m: m["type"] == "death")
        self.assertTrue(all(m.get("brain") in (None, "OBSERVER") for m in msgs))
        ws.close()

    def test_stalled_client_does_not_stop_others_and_gets_every_death(self):
        h = self.start("--jar-tokens", "300")
        s = h.login()
        stalled = WebSocket(h.port, cookie=s, rcvbuf=4096)
        live = WebSocket(h.port, cookie=s)
        live.recv_until(lambda m: m["type"] == "snapshot")
        # The stalled client reads nothing while the live one keeps streaming (at least 5 s and
        # 4 deaths; the machine may be slow).
        t_min, t_max = time.time() + 5, time.time() + 90
        live_deaths, live_tokens = [], 0
        while time.time() < t_max and (time.time() < t_min or len(live_deaths) < 4):
            live.sock.settimeout(2)
            m = live.recv()
            if m["type"] == "death":
                live_deaths.append((m["brain"], m["crash_count"]))
            elif m["type"] == "token":
                live_tokens += 1
        self.assertGreater(live_tokens, 10)
        self.assertGreaterEqual(len(live_deaths), 4)
        # Now it reads: every death the live client saw arrives, in order per brain (or a resync says
        # it fell too far behind and the snapshot carries the deaths).
        got, resynced = [], False
        deadline = time.time() + 30
        want = set(live_deaths)
        while time.time() < deadline and not want <= set(got):
            stalled.sock.settimeout(5)
            m = stalled.recv()
            if m["type"] == "death":
                got.append((m["brain"], m["crash_count"]))
            elif m["type"] == "resync":
                resynced = True
            elif m["type"] == "snapshot" and resynced:
                got += [(d["brain"], d["crash_count"]) for d in m["deaths"]]
        self.assertTrue(want <= set(got), f"missing deaths: {sorted(want - set(got))}")
        for brain in ("SUBJECT", "OBSERVER", "GOD"):
            counts = [c for b, c in got if b == brain]
            if not resynced:
                self.assertEqual(counts, sorted(counts), "deaths in order")
        m = h.request("GET", "/metrics", cookie=s).body.decode()
        self.assertRegex(m, r"brainjar_ws_clients 2")
        coalesced = int(re.search(r"brainjar_ws_coalesced_total (\d+)", m).group(1))
        print(f"\nstalled client: {len(live_deaths)} deaths, {live_tokens} live token messages, "
              f"{coalesced} merged for the stalled client, resync: {resynced}", file=sys.stderr)
        stalled.close()
        live.close()



class Hostile(WebCase):
    """What a hostile client tried (issue: the five findings), each answered as it must be."""

    def test_log_lines_cannot_be_forged(self):
        h = self.start()
        forged = "x\n00:00:00.000 brainjar info: web: admin logged in\x1b[2J\x07"  # 64 characters at most
        r = h.request("POST", "/login", {"username": forged, "password": "wrong"})
        self.assertEqual(r.status, 401)
        with self.assertRaises(ConnectionError):
            WebSocket(h.port, origin="http://evil.example\x1b]0;owned\x07")
        h.wait_for(lambda: "refused a WebSocket" in h.stderr(), what="the refusal logged")
        err = h.stderr()
        self.assertNotIn("\x1b", err)
        self.assertNotIn("\x07", err)
        self.assertFalse([line for line in err.splitlines() if "admin logged in" in line and "failed login" not in line],
                         "a forged line")
        self.assertIn("failed login for 'x\\n00:00:00.000 brainjar info: web: admin logged in\\x1b[2J\\x07'", err)
        self.assertIn("origin http://evil.example\\x1b]0;owned\\x07", err)

    def test_dns_rebinding_refused(self):
        h = self.start("--web-auth", "off", "--web-host-name", "gallery.local", "--pause", "2")
        port = h.port
        h.wait_for(lambda: h.request("GET", "/api/brains/GOD").json()["state"] in ("thinking", "listening"),
                   what="GOD to think")
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        r = h.request("POST", "/api/brains/GOD/pause", {}, headers=evil)
        self.assertEqual((r.status, r.reason), (421, "Misdirected Request"))
        self.assertEqual(h.request("GET", "/api/status", headers={"Host": f"evil.example:{port}"}).status, 421)
        with self.assertRaises(ConnectionError):
            WebSocket(port, host=f"evil.example:{port}", origin=f"http://evil.example:{port}")
        time.sleep(0.5)
        self.assertFalse([e for e in h.events() if e["type"] == "operator"], "nothing reached a brain")
        self.assertNotEqual(h.request("GET", "/api/brains/GOD").json()["state"], "paused")
        # Our own names pass: the address, localhost, [::1], the --web-host-name names.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"gallery.local:{port}",
                     "GALLERY.local"):
            self.assertEqual(h.request("GET", "/api/health", headers={"Host": host}).status, 200, host)
        ws = WebSocket(port, host=f"gallery.local:{port}", origin=f"http://gallery.local:{port}")
        self.assertEqual(ws.recv()["type"], "snapshot")
        ws.close()
        # The Origin is compared with its scheme: https is not this plain-http server.
        r = h.request("POST", "/api/brains/GOD/say", {"text": "hi"},
                      headers={"Host": f"127.0.0.1:{port}", "Origin": f"https://127.0.0.1:{port}"})
        self.assertEqual(r.status, 403)
        with self.assertRaises(ConnectionError):
            WebSocket(port, origin=f"https://127.0.0.1:{port}")
        r = h.request("POST", "/api/brains/GOD/say", {"text": "hi"},
                      headers={"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"})
        self.assertEqual(r.status, 202)
        p = subprocess.run([BRAINJAR, "run", "--web-host-name", "bad name!"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--web-host-name", p.stderr)

    def test_ws_bearer_session_token(self):
        h = self.start()
        r = h.request("POST", "/login", {"password": h.password})
        tok = r.json()["token"]
        ws = WebSocket(h.port, token=tok)
        snap = ws.recv()
        self.assertEqual((snap["type"], snap["you"]), ("snapshot", {"user": "admin", "role": "operator"}))
        _, msgs = ws.recv_until(lambda m: m["type"] == "token")
        ws.close()
        with self.assertRaises(ConnectionError):  # a wrong bearer: no snapshot, one chance to authenticate
            ws = WebSocket(h.port, token="bj_" + "2" * 64, timeout=3)
            ws.send({"type": "auth", "token": "bj_" + "3" * 64})
            self.assertEqual(ws.recv()["type"], "error")
            ws.recv()
            raise ConnectionError("closed")

    def test_impossible_actions_409(self):
        h = self.start("--jar-tokens", "4096", "--pause", "3")
        s = h.login()
        h.wait_for(lambda: h.get("/api/brains/SUBJECT", s).json()["state"] in ("thinking", "listening"),
                   what="SUBJECT to think")
        r = h.request("POST", "/api/brains/SUBJECT/resurrect", {}, cookie=s)
        self.assertEqual(r.status, 409)
        self.assertIn("only a dead brain can be resurrected", r.json()["error"])
        self.assertEqual(h.request("POST", "/api/brains/SUBJECT/kill", {}, cookie=s).status, 202)
        h.wait_for(lambda: h.get("/api/brains/SUBJECT", s).json()["state"] == "dead", what="SUBJECT dead")
        r = h.request("POST", "/api/brains/SUBJECT/kill", {}, cookie=s)
        self.assertEqual((r.status, r.reason), (409, "Conflict"))
        self.assertIn("already dead", r.json()["error"])
        self.assertEqual(h.request("POST", "/api/brains/SUBJECT/resurrect", {}, cookie=s).status, 202)
        h.wait_for(lambda: h.get("/api/brains/GOD", s).json()["state"] in ("thinking", "listening"),
                   what="GOD to think")
        self.assertEqual(h.request("POST", "/api/brains/GOD/pause", {}, cookie=s).status, 202)
        h.wait_for(lambda: h.get("/api/brains/GOD", s).json()["state"] == "paused", what="GOD paused")
        r = h.request("POST", "/api/brains/GOD/pause", {}, cookie=s)
        self.assertEqual(r.status, 409)
        self.assertIn("already paused", r.json()["error"])
        ops = [e["action"] for e in h.events() if e["type"] == "operator"]
        self.assertEqual(ops, ["kill", "resurrect", "pause"], "a refused action publishes nothing")

    def test_reason_phrases_and_headers_on_every_response(self):
        h = self.start("--web-auth", "off")
        for method, path, status, reason in (("GET", "/api/health", 200, "OK"), ("OPTIONS", "/api/status", 204,
                                             "No Content"), ("POST", "/api/brains/GOD/say", 400, "Bad Request"),
                                             ("GET", "/nope", 404, "Not Found"),
                                             ("GET", "/api/brains/GOD/kill", 405, "Method Not Allowed")):
            r = h.request(method, path, {} if method == "POST" else None)
            self.assertEqual((r.status, r.reason), (status, reason), path)
        for _ in range(6):
            r = h.request("POST", "/login", {"password": "wrong"})
        self.assertEqual((r.status, r.reason), (429, "Too Many Requests"))
        # libwebsockets answers TRACE and unknown methods itself: with the same headers
        for method in ("TRACE", "FOO"):
            r = h.request(method, "/")
            self.assertGreaterEqual(r.status, 400, method)
            self.assertTrue(r.reason, method)
            self.assertIn("default-src 'none'", r.header("Content-Security-Policy") or "", method)
            self.assertEqual(r.header("X-Frame-Options"), "DENY", method)

    def cookie_of(self, h, headers=None, password=None):
        r = h.request("POST", "/login", {"password": password or h.password}, headers=headers)
        self.assertEqual(r.status, 200, r.body)
        return r.header("Set-Cookie")

    def test_cookie_secure_through_a_trusted_proxy_and_by_flag(self):
        h = self.start("--web-trusted-proxy", "127.0.0.1")
        self.assertNotIn("Secure", self.cookie_of(h))
        self.assertIn("; Secure", self.cookie_of(h, {"X-Forwarded-Proto": "https"}))
        # Behind the TLS proxy the browser's Origin is https://HOST
        s = h.login()
        r = h.request("POST", "/api/brains/GOD/say", {"text": "hi"}, cookie=s,
                      headers={"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{h.port}"})
        self.assertEqual(r.status, 202)
        h.stop()
        pw = h.password
        h = self.start()  # not from a trusted proxy: the header means nothing
        self.assertNotIn("Secure", self.cookie_of(h, {"X-Forwarded-Proto": "https"}, pw))
        h.stop()
        h = self.start("--web-cookie-secure")
        self.assertIn("; Secure", self.cookie_of(h, None, pw))

    def test_tls_of_our_own(self):
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                            "-days", "1", "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            self.skipTest("no openssl: " + p.stderr[-200:])
        h = self.start("--web-tls-cert", cert, "--web-tls-key", key, tls=True)
        self.assertIn("listening on https://", h.stderr())
        self.assertEqual(h.request("GET", "/api/health").status, 200)
        self.assertIn("; Secure", self.cookie_of(h))
        s = h.login()
        ws = WebSocket(h.port, cookie=s, tls=True, origin=f"https://127.0.0.1:{h.port}")
        self.assertEqual(ws.recv()["type"], "snapshot")
        ws.close()
        with self.assertRaises((OSError, http.client.HTTPException)):  # plain http to the TLS port
            c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=5)
            c.request("GET", "/api/health")
            c.getresponse().read()
        other = os.path.join(self.tmp, "other")
        p = subprocess.run([BRAINJAR, "run", "--data-dir", other, "--web-tls-cert", cert, "--web-port",
                            str(free_port())], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        self.assertIn("go together", p.stderr)
        p = subprocess.run([BRAINJAR, "run", "--data-dir", other, "--web-tls-cert", key, "--web-tls-key", cert,
                            "--web-port", str(free_port())], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("TLS", p.stderr)


class Docs(WebCase):
    """Every `json example METHOD PATH` block of docs/API.md has the live answer's keys."""

    def shape(self, doc, live, where):
        if isinstance(doc, dict):
            self.assertIsInstance(live, dict, where)
            self.assertEqual(set(doc), set(live), where)
            for k in doc:
                if k != "data":  # free-form per log level
                    self.shape(doc[k], live[k], f"{where}.{k}")
        elif isinstance(doc, list) and doc and live:
            self.shape(doc[0], live[0], where + "[0]")

    def test_examples(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "docs", "API.md"), encoding="utf-8") as f:
            md = f.read()
        blocks = re.findall(r"```json example (\w+) (\S+)\n(.*?)```", md, re.S)
        self.assertGreaterEqual(len(blocks), 12)
        h = self.start("--jar-tokens", "300", "--max-tokens", "12")
        s = h.login()
        h.wait_for(lambda: h.get("/api/brains/SUBJECT/thoughts?limit=1", s).json()["count"] and
                   h.get("/api/deaths?limit=1", s).json()["count"], timeout=90, what="a thought and a death")
        for method, path, body in blocks:
            with self.subTest(f"{method} {path}"):
                doc = json.loads(body)
                if path == "/login":
                    r = h.request("POST", "/login", {"password": h.password})
                elif path == "/logout":
                    r = h.request("GET", "/logout", cookie=h.login())
                else:
                    r = h.request(method, path, {} if method == "POST" else None, cookie=s)
                self.assertLess(r.status, 300, f"{method} {path}: {r.status} {r.body[:200]}")
                self.shape(doc, r.json(), f"{method} {path}")


if __name__ == "__main__":
    unittest.main()
