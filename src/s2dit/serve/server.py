"""``s2dit serve``: a local web page that streams video from a prompt, with live prompt switching.

The HTTP API (JSON in, JSON out; errors are ``{"error": "..."}`` with status 400, 403, 404, 409, 411, 413,
415 or 503):

* ``GET /`` - the viewer page (for a micro-world model, with what the micro world can draw);
* ``POST /api/start {"prompt", "client"?, "seed"?}`` -> ``{"stream": id}``. A client (an id the page keeps
  for its tab) has one stream at a time: starting again stops its previous stream;
* ``POST /api/prompt {"stream", "prompt"}`` - switch the prompt at the next chunk boundary;
* ``POST /api/stop {"stream"}`` - stop the stream and free its state;
* ``GET /api/video?stream=ID`` - the frames as an MJPEG stream (``multipart/x-mixed-replace``), paced at
  the video's frame rate. One viewer per stream; when the viewer goes away the stream stops;
* ``GET /api/stats?stream=ID`` - ``{"running", "chunks", "frames", "fps", "first_chunk_latency_s", ...}``:
  ``fps`` is the rate the model sustains (frames per second of work), ``playback_fps`` the rate shown;
* ``GET /api/streams`` - the running streams.

POSTs must say ``Content-Type: application/json`` (415 otherwise: an HTML form cannot), and a browser's
``Origin`` must be this server itself (403 otherwise), so a web page on another site cannot start or steer
streams. On a loopback address the ``Host`` must be a loopback name too (DNS rebinding). Sockets time out
after :data:`SOCKET_TIMEOUT_S`, so an idle, half-open or never-reading client does not hold a thread (the
MJPEG socket's send buffer is small, so a viewer that reads nothing stalls soon). A body comes with
``Content-Length`` (``Transfer-Encoding: chunked``: 411), and a connection whose body was not read is
closed after the reply, so no body is ever taken for a request. A client that resets its connection costs
nothing but the connection.

With ``check_prompts`` (micro-world models), the replies to start and prompt carry ``"warning"``, one line
naming what of the prompt the micro world cannot draw (also printed on stderr).

Each stream is a worker thread running :class:`~s2dit.diffusion.stream_pipeline.LiveStream`; it stays at
most two chunks ahead of its viewer, so an idle page costs nothing. The model is loaded once and shared.
"""

from __future__ import annotations

import html
import io
import ipaddress
import json
import secrets
import socket
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch

from s2dit.diffusion.stream_pipeline import LiveStream, StreamModel

MAX_BODY = 16 * 1024
MAX_PROMPT = 1000
BOUNDARY = "s2dit-frame"
VIEWER_WAIT_S = 30.0  # a stream nobody watches within this time stops
SOCKET_TIMEOUT_S = 30.0  # an idle or stalled connection (either way) is dropped after this long
KEEP_FINISHED = 32  # stopped streams whose stats can still be read (their state is freed at once)


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class StreamWorker(threading.Thread):
    """Makes one stream's chunks in the background and hands out its frames in order (as JPEG).

    When it finishes it lets go of the :class:`LiveStream` (K/V caches, text K/V, decoder tail: ~6 MB for
    the shipped micro model) and of unsent frames; what :meth:`stats` reports stays."""

    def __init__(self, stream_id: str, client: str, live: LiveStream, fps: float, ahead_chunks: int = 2):
        super().__init__(name=f"stream-{stream_id}", daemon=True)
        self.stream_id, self.client, self.fps = stream_id, client, fps
        self.live: LiveStream | None = live  # None once the stream has finished
        self.prompt = live.prompt  # the prompt of the last chunk made
        self.chunks = 0
        self.ahead_frames = ahead_chunks * 4 * live.parts.settings.chunk_frames
        self.cond = threading.Condition()
        self.frames: deque[bytes] = deque()
        self.made = 0  # frames made so far
        self.sent = 0  # frames handed to the viewer
        self.started = time.perf_counter()
        self.first_chunk_latency_s: float | None = None
        self.busy_s = 0.0  # time spent making frames (sampling, decoding, JPEG)
        self.first_sent: float | None = None
        self.error: str | None = None
        self.stopped = threading.Event()
        self.viewer = threading.Lock()  # held by the one viewer

    def stop(self) -> None:
        self.stopped.set()
        with self.cond:
            self.cond.notify_all()

    def set_prompt(self, prompt: str) -> bool:
        """Switch to ``prompt`` at the next chunk boundary; False when the stream has stopped."""
        with self.cond:
            if self.live is None or self.stopped.is_set():
                return False
            self.live.set_prompt(prompt)
            return True

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                with self.cond:
                    self.cond.wait_for(lambda: self.stopped.is_set() or len(self.frames) < self.ahead_frames)
                if self.stopped.is_set():
                    break
                began = time.perf_counter()
                chunk = self.live.next()
                jpegs = [encode_jpeg(f) for f in chunk.frames]
                with self.cond:
                    self.busy_s += time.perf_counter() - began
                    if self.first_chunk_latency_s is None:
                        self.first_chunk_latency_s = time.perf_counter() - self.started
                    self.frames.extend(jpegs)
                    self.made += len(jpegs)
                    self.prompt, self.chunks = chunk.prompt, chunk.index + 1
                    self.cond.notify_all()
        except Exception as e:  # a failed stream reports its error to the page instead of dying silently
            self.error = f"{type(e).__name__}: {e}"
        finally:
            with self.cond:
                self.stopped.set()
                # the server keeps KEEP_FINISHED finished streams for their stats: not their state
                self.live = None
                self.frames.clear()
                self.cond.notify_all()

    def next_frame(self, timeout: float) -> bytes | None:
        """The next frame, or None when the stream has stopped (or nothing came within ``timeout``)."""
        with self.cond:
            self.cond.wait_for(lambda: self.frames or self.stopped.is_set(), timeout)
            if not self.frames:
                return None
            self.sent += 1
            self.first_sent = self.first_sent or time.perf_counter()
            frame = self.frames.popleft()
            self.cond.notify_all()
            return frame

    def stats(self) -> dict:
        playing = time.perf_counter() - self.first_sent if self.first_sent else 0.0
        return {
            "stream": self.stream_id,
            "running": not self.stopped.is_set(),
            "prompt": self.prompt,
            "chunks": self.chunks,
            "frames": self.made,
            "frames_sent": self.sent,
            "fps": self.made / self.busy_s if self.busy_s > 0 else 0.0,  # what the model sustains
            "playback_fps": self.sent / playing if playing > 0 else 0.0,
            "first_chunk_latency_s": self.first_chunk_latency_s,
            "error": self.error,
        }


class StreamServer(ThreadingHTTPServer):
    """The HTTP server and its streams. ``parts`` is loaded once; each stream has its own state."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: 5 (the default) resets connections under a burst
    socket_timeout_s = SOCKET_TIMEOUT_S
    # SO_SNDBUF of an MJPEG connection (Linux doubles it). Left to autotuning, the kernel buffers megabytes
    # for a viewer that reads nothing, and its stream runs long before a write stalls and times out.
    # Measured on loopback with 1 KB frames and a 1 s timeout: autotuned, ~3 MB (3020 frames, 66 s) went out
    # before the stream stopped; at 128 KiB, 0.36 MB (9.5 s). At 100 ms round trip it still passes ~2.5 MB/s.
    video_send_buffer = 128 * 1024

    def __init__(
        self,
        parts: StreamModel,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_streams: int = 2,
        check_prompts: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__((host, port), Handler)
        self.parts = parts
        self.dtype = dtype  # what each stream's denoiser computes in (bf16: autocast, bf16 K/V caches)
        self.max_streams = max_streams
        self.check_prompts = check_prompts  # warn when the micro world cannot draw all of a prompt
        self.streams: dict[str, StreamWorker] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def running(self) -> list[StreamWorker]:
        with self.lock:
            return [w for w in self.streams.values() if not w.stopped.is_set()]

    def start_stream(self, prompt: str, client: str, seed: int) -> StreamWorker:
        with self.lock:
            for w in self.streams.values():
                if w.client == client:
                    w.stop()
            running = sum(not w.stopped.is_set() for w in self.streams.values())
            if running >= self.max_streams:
                raise RequestError(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"busy: {running} streams are running (the limit); stop one first",
                )
            finished = [k for k, w in self.streams.items() if w.stopped.is_set()]
            for k in finished[: max(0, len(finished) - KEEP_FINISHED)]:  # stats of recent ones stay
                del self.streams[k]
            stream_id = secrets.token_hex(8)
            live = LiveStream(self.parts, prompt, seed, self.dtype)
            worker = StreamWorker(stream_id, client, live, self.parts.fps)
            self.streams[stream_id] = worker
        worker.start()
        threading.Thread(target=self._drop_if_unwatched, args=(worker,), daemon=True).start()
        return worker

    def _drop_if_unwatched(self, worker: StreamWorker) -> None:
        worker.stopped.wait(VIEWER_WAIT_S)
        if worker.sent == 0 and not worker.viewer.locked():
            worker.stop()

    def stream(self, stream_id: object) -> StreamWorker:
        with self.lock:
            worker = self.streams.get(stream_id) if isinstance(stream_id, str) else None
        if worker is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no stream {stream_id!r}")
        return worker

    def server_close(self) -> None:
        for w in list(self.streams.values()):
            w.stop()
        super().server_close()

    def handle_error(self, request, client_address) -> None:
        """What escaped a handler (socketserver prints a traceback): a dropped connection is normal; anything
        else gets one line on stderr."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            return
        print(f"error: a request from {client_address[0]}: {type(e).__name__}: {e}", file=sys.stderr)


def _check_text(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; nothing downstream can encode it
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"'{name}' is not valid Unicode (a lone surrogate)"
        ) from None


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(HTTPStatus.BAD_REQUEST, "'prompt' must be a non-empty string")
    _check_text(prompt, "prompt")
    if len(prompt) > MAX_PROMPT:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'prompt' is longer than {MAX_PROMPT} characters")
    return prompt.strip()


class Handler(BaseHTTPRequestHandler):
    server: StreamServer
    protocol_version = "HTTP/1.1"
    _unread_body = False  # this request came with a body no route reads (set per request by _dispatch)

    def log_message(self, format, *args) -> None:  # quiet: the CLI prints what matters
        pass

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout_s  # StreamRequestHandler puts it on the socket
        super().setup()

    # ---- helpers --------------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close or self._unread_body:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict | list, close: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", close)

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:  # not JSON, or not UTF-8
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object") from None
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is nested too deeply") from None
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}

    def _check_same_site(self) -> None:
        """Refuse a POST that a page on another site could have sent (see the module docstring).

        A cross-site ``fetch`` with ``Content-Type: application/json`` needs a CORS preflight, which this
        server never grants, and a form cannot send that type; so requiring JSON closes the "simple request"
        hole, and the ``Origin`` check refuses whatever a browser sends anyway. Tools like curl send no
        ``Origin`` and pass."""
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin")
        if origin is not None and (not host or _netloc(origin) != host.lower()):
            raise RequestError(
                HTTPStatus.FORBIDDEN, f"cross-site request refused: Origin {origin!r} is not {host}"
            )
        bound = self.server.server_address[0]
        if _is_loopback(bound) and host and not (_is_loopback(_hostname(host)) or _hostname(host) == bound):
            # a rebound DNS name pointing at 127.0.0.1 makes its page "same origin": refuse the name
            raise RequestError(HTTPStatus.FORBIDDEN, f"request refused: Host {host!r} is not a loopback name")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"POST bodies must be Content-Type: application/json, not {content_type or 'none'!r}",
            )

    def _dispatch(self, routes: dict) -> None:
        path = urlparse(self.path).path
        route = routes.get(path)
        # Only POST routes read a body (exactly Content-Length bytes). Any other body is left in the socket,
        # where the next readline would take it for a request: end such a connection after the reply.
        self._unread_body = self.command != "POST" and self.headers.get("Content-Length", "0").strip() != "0"
        try:
            if "Transfer-Encoding" in self.headers:  # chunked: its body would be read as requests
                raise RequestError(
                    HTTPStatus.LENGTH_REQUIRED,
                    "send the body with a Content-Length (Transfer-Encoding is not supported)",
                )
            if route is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.command} {path}")
            if self.command == "POST":
                self._check_same_site()
            route()
        except RequestError as e:
            self._json(e.status, {"error": str(e)}, close=True)  # the body may be unread: end the connection
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug: one line on stderr and a clean 500, never a traceback or a hang
            print(f"error: {self.command} {path}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}"}, close=True
            )

    # ---- routes ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(
            {
                "/": self._page,
                "/index.html": self._page,
                "/api/video": self._video,
                "/api/stats": lambda: self._json(HTTPStatus.OK, self._worker_from_query().stats()),
                "/api/streams": lambda: self._json(HTTPStatus.OK, [w.stats() for w in self.server.running()]),
            }
        )

    def do_POST(self) -> None:
        self._dispatch({"/api/start": self._start, "/api/prompt": self._switch, "/api/stop": self._stop})

    def _page(self) -> None:
        page = resources.files("s2dit.serve").joinpath("viewer.html").read_text()
        guide = ""
        if self.server.check_prompts:  # a micro-world model: say what it can draw
            from s2dit.data.micro.guide import world_guide

            guide = html.escape(world_guide(), quote=False)
        page = page.replace("<!--world guide-->", guide)
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    def _worker_from_query(self) -> StreamWorker:
        return self.server.stream(self._query().get("stream"))

    def _start(self) -> None:
        body = self._body()
        prompt = _prompt(body)
        client, seed = body.get("client", ""), body.get("seed", 0)
        if not isinstance(client, str) or len(client) > 100:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'client' must be a string of at most 100 characters")
        _check_text(client, "client")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'seed' must be an integer in [0, 2^32)")
        worker = self.server.start_stream(prompt, client or secrets.token_hex(8), seed)
        self._json(HTTPStatus.OK, {"stream": worker.stream_id, "fps": worker.fps, **self._warning(prompt)})

    def _switch(self) -> None:
        body = self._body()
        prompt = _prompt(body)
        worker = self.server.stream(body.get("stream"))
        if not worker.set_prompt(prompt):
            raise RequestError(HTTPStatus.CONFLICT, "the stream has stopped; start a new one")
        self._json(HTTPStatus.OK, {"stream": worker.stream_id, "prompt": prompt, **self._warning(prompt)})

    def _warning(self, prompt: str) -> dict:
        """``{"warning": line}`` (also said on stderr) when the micro world cannot draw all of ``prompt``."""
        if not self.server.check_prompts:
            return {}
        from s2dit.data.micro.captions import unknown_words_warning

        warning = unknown_words_warning(prompt)
        if warning is None:
            return {}
        print(f"warning: {warning}", file=sys.stderr, flush=True)
        return {"warning": warning}

    def _stop(self) -> None:
        worker = self.server.stream(self._body().get("stream"))
        worker.stop()
        self._json(HTTPStatus.OK, worker.stats())

    def _video(self) -> None:
        worker = self._worker_from_query()
        if not worker.viewer.acquire(blocking=False):
            raise RequestError(HTTPStatus.CONFLICT, "this stream already has a viewer")
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.server.video_send_buffer)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            period, due = 1.0 / worker.fps, time.perf_counter()
            while True:
                frame = worker.next_frame(timeout=1.0)
                if frame is None:
                    if worker.stopped.is_set():
                        break
                    continue
                due = max(due + period, time.perf_counter())  # play in real time; late frames go at once
                time.sleep(max(0.0, due - time.perf_counter()))
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
                self.wfile.write(head.encode() + frame + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            worker.stop()  # the viewer went away: stop the work
        finally:
            worker.viewer.release()


def _netloc(origin: str) -> str:
    try:
        return urlparse(origin).netloc.lower()
    except ValueError:
        return ""


def _hostname(host_header: str) -> str:
    """``"127.0.0.1:8000"`` -> ``"127.0.0.1"``, ``"[::1]:80"`` -> ``"::1"``."""
    try:
        return (urlparse(f"//{host_header}").hostname or "").lower()
    except ValueError:  # "[bad": not a host at all
        return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    parts: StreamModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_streams: int = 2,
    check_prompts: bool = False,
    dtype: torch.dtype = torch.float32,
) -> StreamServer:
    """A server bound to ``host:port`` (port 0: any free port); call ``serve_forever()`` to run it.
    ``check_prompts``: say (on stderr and as ``warning`` in the reply) what of a prompt the micro world
    cannot draw. ``dtype``: what the streams' denoiser computes in."""
    try:
        return StreamServer(parts, host, port, max_streams, check_prompts, dtype)
    except OSError as e:
        from s2dit.errors import S2DitError

        raise S2DitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
