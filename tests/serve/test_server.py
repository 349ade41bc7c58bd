"""The live viewer's HTTP API: start, switch, stop, MJPEG frames, one stream per client, and clear errors
for malformed requests. A real server on 127.0.0.1 with a tiny random model."""

from __future__ import annotations

import http.client
import json
import time

import pytest
import torch
from serve_fixtures import running_server

from s2dit.serve.server import BOUNDARY


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


def request(srv, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict | str]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, json.loads(text) if resp.getheader("Content-Type") == "application/json" else text


class Viewer:
    """Reads the MJPEG stream of one stream, frame by frame."""

    def __init__(self, srv, stream: str):
        self.conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=20)
        self.conn.request("GET", f"/api/video?stream={stream}")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"

    def frame(self) -> bytes:
        assert self.resp.readline().strip() == f"--{BOUNDARY}".encode()
        headers = {}
        while (line := self.resp.readline().strip()) != b"":
            key, value = line.decode().split(":", 1)
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        frame = self.resp.read(int(headers["content-length"]))
        assert self.resp.read(2) == b"\r\n"
        return frame

    def frames(self, n: int) -> list[bytes]:
        return [self.frame() for _ in range(n)]

    def close(self) -> None:
        self.resp.close()  # the response holds the socket open, too
        self.conn.close()


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_page_has_the_controls(server):
    status, page = request(server, "GET", "/")
    assert status == 200
    for element in ('id="prompt"', 'id="start"', 'id="switch"', 'id="stop"', 'id="video"', 'id="fps"'):
        assert element in page


def test_page_says_what_a_micro_world_model_draws():
    from s2dit.data.micro.guide import EXAMPLE_PROMPTS

    with running_server(check_prompts=True) as micro:
        _, page = request(micro, "GET", "/")
    assert "The micro world, which the shipped models draw" in page and "diamond" in page
    assert all(p in page for p in EXAMPLE_PROMPTS)
    with running_server() as other:  # not a micro-world model: no guide
        _, page = request(other, "GET", "/")
    assert "micro world" not in page and 'id="guide"></p>' in page


def test_start_watch_switch_stop(server):
    status, started = request(server, "POST", "/api/start", {"prompt": "a red ball", "client": "tab1"})
    assert status == 200
    sid = started["stream"]
    viewer = Viewer(server, sid)
    frames = viewer.frames(6)
    assert all(f[:2] == b"\xff\xd8" and f[-2:] == b"\xff\xd9" for f in frames)  # whole JPEGs
    _, stats = request(server, "GET", f"/api/stats?stream={sid}")
    assert stats["running"] and stats["frames"] >= 6 and stats["first_chunk_latency_s"] > 0
    assert stats["prompt"] == "a red ball"

    status, _ = request(server, "POST", "/api/prompt", {"stream": sid, "prompt": "a blue cube"})
    assert status == 200
    read_frames_more = wait_for(
        lambda: request(server, "GET", f"/api/stats?stream={sid}")[1]["prompt"] == "a blue cube"
    )
    assert read_frames_more

    status, stopped = request(server, "POST", "/api/stop", {"stream": sid})
    assert status == 200 and not stopped["running"]
    viewer.close()
    assert wait_for(lambda: request(server, "GET", "/api/streams")[1] == [])
    status, err = request(server, "POST", "/api/prompt", {"stream": sid, "prompt": "too late"})
    assert status == 409 and "stopped" in err["error"]


def test_a_bf16_server_streams_in_bf16():
    with running_server(dtype=torch.bfloat16) as srv:
        sid = request(srv, "POST", "/api/start", {"prompt": "a red ball", "client": "tab"})[1]["stream"]
        viewer = Viewer(srv, sid)
        assert all(f[:2] == b"\xff\xd8" for f in viewer.frames(3))
        live = srv.streams[sid].live
        assert live.dtype == torch.bfloat16
        state = live.sampler.state.tensors()
        assert state["block1.k"].dtype == torch.bfloat16  # the stride block's K/V cache ("LSSL")
        assert state["block0.kv"].dtype == torch.float32  # the linear-attention sums stay float32
        request(srv, "POST", "/api/stop", {"stream": sid})
        viewer.close()


def test_a_micro_world_server_warns_about_what_it_cannot_draw(capsys):
    with running_server(check_prompts=True) as srv:
        _, started = request(srv, "POST", "/api/start", {"prompt": "a brown hexagon", "client": "tab"})
        assert "'brown', 'hexagon'" in started["warning"]
        _, switched = request(
            srv, "POST", "/api/prompt", {"stream": started["stream"], "prompt": "a red ball"}
        )
        assert "warning" not in switched
        request(srv, "POST", "/api/stop", {"stream": started["stream"]})
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("warning:")] == [f"warning: {started['warning']}"]


def test_one_stream_per_client_and_a_limit(server):
    first = request(server, "POST", "/api/start", {"prompt": "one", "client": "tab"})[1]["stream"]
    second = request(server, "POST", "/api/start", {"prompt": "two", "client": "tab"})[1]["stream"]
    assert first != second
    assert request(server, "GET", f"/api/stats?stream={first}")[1]["running"] is False
    request(server, "POST", "/api/start", {"prompt": "three", "client": "other"})
    status, err = request(server, "POST", "/api/start", {"prompt": "four", "client": "third"})
    assert status == 503 and "busy" in err["error"]


def test_a_closed_viewer_stops_the_work(server):
    sid = request(server, "POST", "/api/start", {"prompt": "a red ball"})[1]["stream"]
    viewer = Viewer(server, sid)
    viewer.frames(2)
    status, err = request(server, "GET", f"/api/video?stream={sid}")
    assert status == 409 and "viewer" in err["error"]  # one viewer per stream
    viewer.close()
    assert wait_for(lambda: not request(server, "GET", f"/api/stats?stream={sid}")[1]["running"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/api/start", b"not json", 400, "JSON object"),
        ("POST", "/api/start", b"[1, 2]", 400, "JSON object"),
        ("POST", "/api/start", b"{}", 400, "prompt"),
        ("POST", "/api/start", b'{"prompt": "   "}', 400, "prompt"),
        ("POST", "/api/start", json.dumps({"prompt": "x" * 1001}).encode(), 400, "longer"),
        ("POST", "/api/start", b'{"prompt": "a", "seed": "zero"}', 400, "seed"),
        ("POST", "/api/start", b'{"prompt": "a", "client": 5}', 400, "client"),
        ("POST", "/api/prompt", b'{"stream": "nope", "prompt": "a"}', 404, "no stream"),
        ("POST", "/api/stop", b'{"stream": 3}', 404, "no stream"),
        ("GET", "/api/stats?stream=nope", None, 404, "no stream"),
        ("GET", "/api/video", None, 404, "no stream"),
        ("GET", "/api/nothing", None, 404, "no such endpoint"),
        ("POST", "/", b"{}", 404, "no such endpoint"),
    ],
)
def test_malformed_requests_get_clear_errors(server, method, path, body, status, message):
    got, payload = request(server, method, path, raw=body)
    assert got == status
    assert message in payload["error"]
