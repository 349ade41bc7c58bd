"""A tiny stdlib-only driver for headless Chromium over the DevTools protocol (``--remote-debugging-pipe``).

Chromium reads NUL-terminated JSON messages from its fd 3 and writes replies and events to its fd 4.
The pipe ends are handed over with ``pass_fds`` and moved onto 3 and 4 by a tiny Python trampoline
that then forks Chromium (no ``preexec_fn``, so launching is safe with threads around; a ``sh``
wrapper would not do, as dash cannot redirect fds above 9). Everything runs in its own session
(process group), so closing kills the whole tree (zygote, renderers, GPU process) at once, and the
trampoline is a child subreaper that reaps that tree, so nothing, not even a zombie, outlives ``close()``.

Usage::

    with Browser() as b:
        b.goto("http://127.0.0.1:8000/")
        b.eval("document.title")
        b.wait_for("document.querySelector('#out').textContent")
        b.screenshot(tmp_path / "page.png")
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]
# fds the pipe ends are parked on before the trampoline moves them onto 3 and 4; being >= 10 they never
# collide with 3/4 themselves, and F_DUPFD picks free numbers so nothing in this process is clobbered.
_PARK = 10
# The trampoline moves the pipe ends onto 3/4, makes itself a child subreaper, and runs Chromium as its
# child. Chromium's orphaned helpers (zygote, renderers) are then reparented to it and reaped by it, so
# once the trampoline has exited the whole tree is gone -- no zombies left waiting on a lazy init. It
# ignores SIGTERM (Chromium gets the default back) so that a group-wide SIGTERM lets it finish reaping.
_TRAMPOLINE = """
import os, signal, sys
i, o = int(sys.argv[1]), int(sys.argv[2])
os.dup2(i, 3)
os.dup2(o, 4)
os.close(i)
os.close(o)
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except Exception:
    pass
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(sys.argv[3], sys.argv[3:])
os.close(3)
os.close(4)
code = 1
while True:
    try:
        p, status = os.wait()
    except ChildProcessError:
        break
    if p == pid:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _executable() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


class Browser:
    """One headless Chromium with one page attached through a flattened CDP session."""

    @staticmethod
    def available() -> bool:
        return _executable() is not None

    def __init__(self, timeout: float = 30.0, executable: str | None = None, extra_args: Sequence[str] = ()):
        self.timeout = timeout
        self.events: list[dict] = []
        self.session_id: str | None = None
        self.target_id: str | None = None
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._eof = False
        self._send_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._to_child = self._from_child = -1
        self._root = Path(tempfile.mkdtemp(prefix="s2dit-chromium-"))
        self.profile = self._root / "profile"
        self.log_path = self._root / "chromium.log"
        try:
            self._launch(executable or _executable(), list(extra_args))
            self._attach()
        except BaseException:
            self.close()
            raise

    # -- process and transport ------------------------------------------------------------------

    def _launch(self, exe: str | None, extra: list[str]) -> None:
        if exe is None:
            raise FileNotFoundError(f"chromium not found ({CHROMIUM} or on PATH)")
        self.profile.mkdir()
        cmd_r, cmd_w = os.pipe()  # we write commands -> chromium's fd 3
        ev_r, ev_w = os.pipe()  # chromium's fd 4 -> we read replies/events
        try:
            child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, _PARK)
            child_out = fcntl.fcntl(ev_w, fcntl.F_DUPFD_CLOEXEC, _PARK)
        finally:
            os.close(cmd_r)
            os.close(ev_w)
        self._to_child, self._from_child = cmd_w, ev_r
        args = [exe, *FLAGS, f"--user-data-dir={self.profile}", *extra, "about:blank"]
        try:
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(child_in), str(child_out), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(child_in, child_out),
                    start_new_session=True,
                )
        finally:
            # Only the child keeps its ends: we then see EOF on fd 4 when chromium exits.
            os.close(child_in)
            os.close(child_out)
        self._reader = threading.Thread(target=self._read_loop, name="cdp-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buf = b""
        try:
            while True:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for raw in messages:
                    if raw:
                        self._dispatch(json.loads(raw))
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _dispatch(self, msg: dict) -> None:
        with self._cond:
            if "id" in msg:
                self._replies[msg["id"]] = msg
            else:
                self.events.append(msg)
            self._cond.notify_all()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- protocol -------------------------------------------------------------------------------

    def send(
        self, method: str, params: dict | None = None, session: bool = True, timeout: float | None = None
    ):
        """Send one command and return its ``result``; page-level unless ``session=False``."""
        if self._to_child < 0:
            raise RuntimeError("browser is closed")
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session and self.session_id is not None:
            msg["sessionId"] = self.session_id
        data = json.dumps(msg).encode() + b"\0"
        with self._send_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._to_child, view) :]
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while msg_id not in self._replies:
                if self._eof:
                    raise RuntimeError(f"chromium exited while waiting for {method}: {self.log_tail(500)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no reply to {method} within {self.timeout if timeout is None else timeout}s"
                    )
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            err = reply["error"]
            raise RuntimeError(f"{method} failed: {err.get('message')} {err.get('data', '')}".rstrip())
        return reply.get("result", {})

    def wait_event(self, method: str, since: int = 0, timeout: float | None = None) -> dict:
        """Return the first event named ``method`` (of this page's session) at index >= ``since``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    i += 1
                    if ev.get("method") == method and ev.get("sessionId") in (None, self.session_id):
                        return ev
                if self._eof:
                    raise RuntimeError(f"chromium exited while waiting for {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {method} event within {self.timeout if timeout is None else timeout}s"
                    )
                self._cond.wait(left)

    def _attach(self) -> None:
        try:
            self.target_id = self.send("Target.createTarget", {"url": "about:blank"}, session=False)[
                "targetId"
            ]
        except TimeoutError as e:
            raise TimeoutError(f"{e}; chromium log: {self.log_tail(1000)}") from None
        res = self.send("Target.attachToTarget", {"targetId": self.target_id, "flatten": True}, session=False)
        self.session_id = res["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")

    # -- page helpers ---------------------------------------------------------------------------

    def goto(self, url: str, timeout: float | None = None) -> None:
        """Navigate and wait for the page's load event."""
        with self._cond:
            since = len(self.events)
        res = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if res.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {res['errorText']}")
        self.wait_event("Page.loadEventFired", since=since, timeout=timeout)

    def eval(self, expression: str, timeout: float | None = None):
        """Evaluate a JS expression in the page (promises awaited); return its JSON value."""
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in res:
            det = res["exceptionDetails"]
            text = det.get("exception", {}).get("description") or det.get("text", "exception")
            raise RuntimeError(f"JS error in {expression!r}: {text}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.1):
        """Poll ``eval(expression)`` until truthy and return that value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.eval(expression)
            if last:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{expression!r} not truthy within {timeout}s (last value {last!r})")
            time.sleep(interval)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """Write a PNG of the viewport to ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the browser (politely, then by force), stop the reader and delete the profile."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if self._to_child >= 0 and not self._eof:
                with contextlib.suppress(Exception):
                    self.send("Browser.close", session=False, timeout=2.0)
                    proc.wait(timeout=3.0)
            # Kill the whole process group: renderers/zygote may outlive the main process.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                if sig == signal.SIGTERM:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=2.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        if self._to_child >= 0:
            os.close(self._to_child)
            self._to_child = -1
        if self._reader is not None:
            self._reader.join(timeout=5.0)
            if not self._reader.is_alive():
                self._reader = None
        if self._from_child >= 0 and self._reader is None:  # never close under a blocked read
            os.close(self._from_child)
            self._from_child = -1
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._proc is not None:
                self.close()


def require_chromium() -> None:
    """Skip a browser test where Chromium is missing, except in CI (there it must run: fail instead)."""
    import pytest

    if Browser.available():
        return
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (install it: apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)")
