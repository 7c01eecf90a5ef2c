"""A stand-in for an original Python node, written from the wire description (docs/PEERS.md).

It speaks exactly as the original did: one JSON object per send() with Python's default
separators (", " and ": "), non-ASCII escaped, no delimiter; its receiver parses each
recv(4096) as one message; a socket it dialed times out after 5 s without data.

Used by the integration tests; also runnable by hand against a brainjar node:
    python3 oldnode.py listen PORT          print what arrives, as the original would parse it
    python3 oldnode.py dial HOST PORT N     send N thoughts, print what comes back
"""
import datetime
import json
import socket
import sys
import threading
import time


def timestamp():
    # isoformat() drops the fraction when the microseconds are 0, as the original's did
    return datetime.datetime.utcnow().isoformat() + "Z"


def message(type_, sender, content="", crash_count=0, sequence=0, memory_usage=42, **extra):
    m = {"type": type_, "timestamp": timestamp(), "sender_id": sender, "content": content,
         "crash_count": crash_count, "sequence": sequence, "memory_usage": memory_usage}
    m.update(extra)
    return json.dumps(m).encode("ascii")


class Receiver:
    """The original's listening side: each recv(4096) is parsed as one message."""

    def __init__(self, host="127.0.0.1", port=0):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, port))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.parsed, self.failed, self.chunks = [], [], []
        self.raw = b""
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.raw += data
                    self.chunks.append(data)
                    try:
                        self.parsed.append(json.loads(data.decode("utf-8")))
                    except ValueError:
                        self.failed.append(data)

    def close(self):
        self.stopped = True
        self.srv.close()


class Sender:
    """The original's dialing side: one object per send, a 5 s timeout on the socket."""

    def __init__(self, host, port, sender="NEURAL_NODE_4821"):
        self.sender = sender
        self.seq = 0
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.settimeout(5)
        self.received, self.failed = [], []
        self.timed_out = False
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, type_, content="", crash_count=0, **extra):
        self.sock.send(message(type_, self.sender, content, crash_count, self.seq, **extra))
        self.seq += 1

    def send_raw(self, data):
        self.sock.send(data)

    def _read(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                self.timed_out = True
                return
            except OSError:
                return
            if not data:
                self.closed = True
                return
            try:
                self.received.append(json.loads(data.decode("utf-8")))
            except ValueError:
                self.failed.append(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def main(argv):
    if len(argv) >= 3 and argv[1] == "listen":
        r = Receiver(port=int(argv[2]))
        print(f"listening on {r.port}", flush=True)
        seen = 0
        while True:
            time.sleep(0.5)
            with r.lock:
                for m in r.parsed[seen:]:
                    print(m.get("type"), m.get("sender_id"), repr(m.get("content", ""))[:80], flush=True)
                seen = len(r.parsed)
    elif len(argv) >= 5 and argv[1] == "dial":
        s = Sender(argv[2], int(argv[3]))
        for i in range(int(argv[4])):
            s.send("THOUGHT", f"old thought {i}, caf\u00e9")
            time.sleep(0.5)
        time.sleep(2)
        for m in s.received:
            print(m.get("type"), m.get("sender_id"), repr(m.get("content", ""))[:80])
        print(f"{len(s.received)} parsed, {len(s.failed)} unparsable, timed out: {s.timed_out}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
