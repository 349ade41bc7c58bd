"""The live viewer in a real headless Chromium: type a prompt, start, watch frames arrive with FPS and
latency, change the prompt mid-stream, stop; leaving the page stops the work.

Playwright drives Debian's Chromium (``apt-get install chromium``) through ``executable_path``: no browser
download. Without Chromium or Playwright the test is skipped, except in CI, where it must run.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from serve_fixtures import running_server

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000


def chromium_or_skip() -> str:
    """The Chromium to drive; skip where it (or Playwright) is missing, fail in CI."""
    executable = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    missing = None if executable else "chromium not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = missing or 'playwright not installed (pip install -e ".[test]")'
    if missing and os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {missing}")
    if missing:
        pytest.skip(missing)
    return executable


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


@pytest.mark.slow
def test_viewer_start_switch_stop_in_chromium(tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with (
        running_server(latent_size=(18, 32)) as srv,
        sync_playwright() as pw,
        pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"]) as browser,
    ):
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(srv.url)
        assert page.text_content("#status") == "idle"
        page.fill("#prompt", "a small red ball bouncing")
        page.click("#start")
        # frames arrive in the <img> (MJPEG) and the stats fill in
        page.wait_for_function("document.getElementById('video').naturalWidth > 0")
        assert page.evaluate("document.getElementById('video').naturalWidth") == 256
        page.wait_for_function(
            "document.getElementById('status').textContent === 'streaming' && "
            "document.getElementById('fps').textContent !== '-'"
        )
        assert float(page.text_content("#fps")) > 0
        assert page.text_content("#latency").endswith(" ms")
        assert page.text_content("#current") == "a small red ball bouncing"
        (streams,) = srv.running()
        page.screenshot(path=str(tmp_path / "viewer.png"))

        page.fill("#prompt", "a big blue square")
        page.click("#switch")
        page.wait_for_function("document.getElementById('current').textContent === 'a big blue square'")
        assert srv.running() == [streams]  # the same stream, a new prompt

        page.click("#stop")
        page.wait_for_function("document.getElementById('status').textContent === 'stopped'")
        wait_until(lambda: not srv.running())
        assert page.is_disabled("#stop")

        # a malformed request from the page shows its error instead of failing silently
        page.fill("#prompt", "   ")
        page.click("#start")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('error: ')", timeout=10_000
        )
        assert "prompt" in page.text_content("#status")

        # leaving the page stops its stream
        page.fill("#prompt", "a green triangle")
        page.click("#start")
        page.wait_for_function("document.getElementById('status').textContent === 'streaming'")
        assert len(srv.running()) == 1
        page.goto("about:blank")
        wait_until(lambda: not srv.running())
