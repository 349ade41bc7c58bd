"""Self-test of the CDP helper: a real headless Chromium fills a form served from a local HTTP server."""

from __future__ import annotations

import http.server
import threading

import pytest
from cdp import Browser, require_chromium

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cdp self-test</title></head>
<body>
<input id="name" type="text">
<button id="go">go</button>
<div id="out"></div>
<script>
document.getElementById("go").addEventListener("click", () => {
  document.getElementById("out").textContent = document.getElementById("name").value;
});
</script>
</body></html>
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.slow
def test_browser_drives_a_page(server, tmp_path):
    require_chromium()
    with Browser(timeout=20.0) as b:
        b.goto(server)
        assert b.eval("document.title") == "cdp self-test"
        assert b.eval("1 + 1") == 2
        assert b.eval("Promise.resolve('later')") == "later"
        b.eval("document.getElementById('name').value = 'hello cdp'")
        b.eval("document.getElementById('go').click()")
        assert b.wait_for("document.getElementById('out').textContent", timeout=10) == "hello cdp"
        with pytest.raises(RuntimeError, match="boom"):
            b.eval("(() => { throw new Error('boom'); })()")
        with pytest.raises(TimeoutError, match="nothing"):
            b.wait_for("window.nothing", timeout=0.3)
        with pytest.raises(RuntimeError, match="wasn't found"):
            b.send("No.suchMethod")
        png = b.screenshot(tmp_path / "page.png")
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        profile = b.profile
        assert profile.is_dir()
    assert not profile.exists()
