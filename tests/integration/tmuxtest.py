"""A program in a real terminal for the tests: a detached tmux server of its own, its screen read
with capture-pane, keys sent with send-keys. Waits are for what the screen shows, never for time."""
import os
import subprocess
import time

ARTIFACTS = os.path.join(os.path.dirname(os.environ.get("BJ_TEST_TMP", "build/tmp")) or ".", "artifacts")


class Tmux:
    def __init__(self, name, status_path):
        self.sock = f"{name}{os.getpid()}"
        self.status = status_path

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=20)

    def start(self, cmd, x=160, y=48, env="TERM=xterm-256color LANG=C.UTF-8"):
        """Runs cmd (a list) in a new window of x columns and y rows; its exit status goes to the
        status file, and the pane stays (sleep) so that the screen can still be read."""
        line = " ".join(f"'{a}'" for a in cmd) + f"; echo $? > '{self.status}'; sleep 120"
        self.tmux("new-session", "-d", "-x", str(x), "-y", str(y), f"env {env} {line}")

    def screen(self):
        return self.tmux("capture-pane", "-p").stdout

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def resize(self, x, y):
        self.tmux("resize-window", "-x", str(x), "-y", str(y))

    def wait(self, case, pred, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.2)
        case.fail(f"the screen never showed {what}:\n{self.screen()}")

    def exit_status(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.status):
                with open(self.status) as f:
                    s = f.read().strip()
                if s:
                    return int(s)
            time.sleep(0.2)
        return None

    def save(self, name, text):
        """Keeps a captured screen as a test artefact: build/artifacts/NAME.txt."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        with open(os.path.join(ARTIFACTS, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)

    def kill(self):
        self.tmux("kill-server")
