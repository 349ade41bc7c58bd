"""Property test of the HTTP API: any body, to any route, with any of the headers a client may send, gets a
clean answer (a JSON error with a 4xx/503 status, or a success) and never a 500 or a hang; the server keeps
serving after every one of them."""

from __future__ import annotations

import http.client
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_fixtures import running_server

ROUTES = ["/api/start", "/api/prompt", "/api/stop", "/api/stats", "/api/streams", "/api/video", "/nowhere"]
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.fixed_dictionaries(
        {},
        optional={"prompt": values, "client": values, "seed": values, "stream": values},
    ).map(lambda d: json.dumps(d).encode()),
    values.map(lambda v: json.dumps(v).encode()),
)
content_types = st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"])
queries = st.one_of(
    st.just(""), st.text(max_size=12).map(lambda s: "?stream=" + s.encode("utf-8", "replace").hex())
)


def send(srv, method: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=15)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request(method, path, body=body if method == "POST" else None, headers=headers)
    resp = conn.getresponse()
    payload = resp.read() if "multipart" not in (resp.getheader("Content-Type") or "") else b""
    conn.close()
    return resp.status, payload, resp.getheader("Content-Type")


def test_any_request_gets_a_clean_answer_and_the_server_keeps_serving():
    with running_server(max_streams=2) as srv:

        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.sampled_from(["GET", "POST"]), st.sampled_from(ROUTES), queries, bodies, content_types)
        def check(method, route, query, body, content_type):
            if route == "/api/video" and not query:
                query = "?stream=none"
            status, payload, kind = send(srv, method, route + query, body, content_type)
            assert status < 500 or status == 503, (status, payload)
            if status >= 400:
                assert kind == "application/json" and "error" in json.loads(payload)
            for worker in srv.running():  # keep the stream limit free for the next example
                worker.stop()

        check()
        status, _, _ = send(srv, "GET", "/api/streams", b"", "")
        assert status == 200
