"""The live viewer in a real headless Chromium: type a prompt, start, watch frames arrive with FPS and
latency, change the prompt mid-stream, stop; leaving the page stops the work."""

from __future__ import annotations

import time

import pytest
from cdp import Browser, require_chromium
from serve_fixtures import running_server


def set_prompt(b: Browser, text: str) -> None:
    b.eval(f"document.getElementById('prompt').value = {text!r}")


def click(b: Browser, element: str) -> None:
    b.eval(f"document.getElementById({element!r}).click()")


def text(element: str) -> str:
    return f"document.getElementById({element!r}).textContent"


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


@pytest.mark.slow
def test_viewer_start_switch_stop_in_chromium(tmp_path):
    require_chromium()
    with running_server(latent_size=(18, 32)) as srv, Browser(timeout=30.0) as b:
        b.goto(srv.url)
        assert b.eval(text("status")) == "idle"
        set_prompt(b, "a small red ball bouncing")
        click(b, "start")
        # frames arrive in the <img> (MJPEG) and the stats fill in
        assert b.wait_for("document.getElementById('video').naturalWidth", timeout=30) == 256
        b.wait_for(f"{text('status')} === 'streaming' && {text('fps')} !== '-'", timeout=30)
        assert float(b.eval(text("fps"))) > 0
        assert b.eval(text("latency")).endswith(" ms")
        assert b.eval(text("current")) == "a small red ball bouncing"
        (streams,) = srv.running()
        b.screenshot(tmp_path / "viewer.png")

        set_prompt(b, "a big blue square")
        click(b, "switch")
        b.wait_for(f"{text('current')} === 'a big blue square'", timeout=30)
        assert srv.running() == [streams]  # the same stream, a new prompt

        click(b, "stop")
        b.wait_for(f"{text('status')} === 'stopped'", timeout=30)
        wait_until(lambda: not srv.running())
        assert b.eval("document.getElementById('stop').disabled") is True

        # a malformed request from the page shows its error instead of failing silently
        set_prompt(b, "   ")
        click(b, "start")
        b.wait_for(f"{text('status')}.startsWith('error: ')", timeout=10)
        assert "prompt" in b.eval(text("status"))

        # leaving the page stops its stream
        set_prompt(b, "a green triangle")
        click(b, "start")
        b.wait_for(f"{text('status')} === 'streaming'", timeout=30)
        assert len(srv.running()) == 1
        b.goto("about:blank")
        wait_until(lambda: not srv.running())
