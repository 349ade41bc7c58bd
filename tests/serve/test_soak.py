"""The viewer's memory over many streams: start, watch, stop, again and again, with nothing running in
between. A finished stream keeps its stats, not its state (K/V caches, decoder tail, unsent frames), so
neither the tensors the process holds nor its RSS grow with the number of streams served."""

from __future__ import annotations

import gc
import http.client
import json
from pathlib import Path

import pytest
import torch
from serve_fixtures import running_server

from s2dit.serve.server import BOUNDARY, KEEP_FINISHED

STATUS = Path("/proc/self/status")


def rss_mb() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def held_tensor_bytes() -> int:
    """Bytes of every real tensor storage Python can reach (each storage once; the model's weights included).

    Only plain tensors and parameters count: fake and functional tensors that an earlier ``torch.compile``
    test left for the collector hold no memory and have no data pointer."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if type(obj) in (torch.Tensor, torch.nn.Parameter):  # type(): isinstance asks proxies for __class__
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def post(srv, path: str, body: dict) -> dict:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    payload = json.loads(conn.getresponse().read())
    conn.close()
    return payload


def watch(srv, stream: str, frames: int) -> None:
    """Read ``frames`` MJPEG frames of ``stream``, then hang up."""
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.request("GET", f"/api/video?stream={stream}")
    resp = conn.getresponse()
    for _ in range(frames):
        assert resp.readline().strip() == f"--{BOUNDARY}".encode()
        length = 0
        while (line := resp.readline().strip()) != b"":
            key, value = line.decode().split(":", 1)
            length = int(value) if key.lower() == "content-length" else length
        resp.read(length + 2)
    resp.close()
    conn.close()


def cycle(srv, i: int) -> None:
    sid = post(srv, "/api/start", {"prompt": f"a red ball {i}", "client": "tab"})["stream"]
    watch(srv, sid, 5)  # two chunks, so the stream's caches and decoder tail are in use
    post(srv, "/api/stop", {"stream": sid})
    worker = srv.stream(sid)
    worker.join(timeout=30)  # it has finished (and let go of what it held)
    assert not worker.is_alive()


@pytest.mark.skipif(not STATUS.exists(), reason="reads RSS from /proc")
@pytest.mark.slow
def test_memory_holds_over_many_streams():
    with running_server() as srv:
        for i in range(8):  # warm-up: allocator pools, lazy imports, the JPEG encoder
            cycle(srv, i)
        tensors, rss = held_tensor_bytes(), rss_mb()
        for i in range(8, 8 + KEEP_FINISHED + 8):  # past the finished streams the server keeps stats of
            cycle(srv, i)
        assert len(srv.streams) <= KEEP_FINISHED + 1
        grown_tensors, grown_rss = held_tensor_bytes() - tensors, rss_mb() - rss
    # Before the fix every kept stream held its whole state: 32 x ~50 KB here (6 MB each for the shipped
    # micro model). Now nothing is held once a stream stops.
    assert grown_tensors <= 64 * 1024, f"tensors grew by {grown_tensors / 1024:.0f} KB"
    # RSS moves with the allocator (fragmentation, pools); a leak per stream shows as steady growth
    assert grown_rss < 32, f"RSS grew by {grown_rss:.1f} MB over {KEEP_FINISHED + 8} streams"
