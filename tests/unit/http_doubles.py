"""Real local HTTP servers for the HTTP self-tests: a recording proxy, a Qdrant-like REST server,
and a server that answers from a handler function.

Guarantees: every server listens on 127.0.0.1 on a free port, in daemon threads, and is shut
down by its context manager without waiting for a handler that still trickles bytes; the proxy
records the request line of every request it receives (CONNECT included) and answers 502, so
a call routed through it both shows up and fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still trickling bytes must not hold the test's teardown


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], server_cls: type[socketserver.TCPServer] = _Server) -> Iterator[str]:
    """`http://127.0.0.1:<port>` served by `handler` until the block ends."""
    server = server_cls(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: Every variable requests reads a proxy from.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def answer(h: BaseHTTPRequestHandler, status: int, body: Any, ctype: str = "application/json",
           headers: dict[str, str] | None = None) -> None:
    """Send one whole response: `body` as given when bytes, else as JSON, with its length."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class RecordingProxy:
    """A forward proxy that forwards nothing: it records each request line and answers 502."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[str]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                with proxy._lock:
                    proxy.lines.append(self.requestline)
                    proxy.headers.append(dict(self.headers.items()))
                self.send_response(502, "recording proxy: not forwarded")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_CONNECT = _record

        with serving(Handler) as url:
            yield url


@contextmanager
def proxied(monkeypatch: Any, no_proxy: str | None) -> Iterator[RecordingProxy]:
    """A RecordingProxy named by every proxy variable; NO_PROXY set to `no_proxy`, or unset."""
    recorder = RecordingProxy()
    with recorder.running() as url:
        for var in PROXY_VARS:
            monkeypatch.setenv(var, url)
        for var in ("NO_PROXY", "no_proxy"):
            if no_proxy is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, no_proxy)
        yield recorder


class FakeQdrant:
    """The slice of Qdrant's REST API the gate's backup, restore and probes use, kept in memory.

    Every request must carry `api-key: <key>` (else 401, as Qdrant answers); `seen` lists
    (method, path, api-key) of each request. `snapshot_body` and `listed_size` let a test send
    more bytes than the listing promises.
    """

    def __init__(self, key: str = "k1", points: int = 3) -> None:
        self.key = key
        self.seen: list[tuple[str, str, str | None]] = []
        self.collections: dict[str, list[dict[str, Any]]] = {
            "docs": [{"id": i, "payload": {"n": i, "text": f"doc {i} ✓"}, "vector": [0.5, 0.5, float(i)]}
                     for i in range(points)]}
        self.snapshot_body = b"snapshot bytes " * 1000
        self.listed_size: int | None = None
        self.uploads: list[tuple[str, int, str]] = []

    def _snapshot_entry(self, name: str) -> dict[str, Any]:
        size = self.listed_size if self.listed_size is not None else len(self.snapshot_body)
        return {"name": name, "size": size, "checksum": hashlib.sha256(self.snapshot_body).hexdigest(),
                "creation_time": "2024-01-01T00:00:00"}

    @contextmanager
    def running(self) -> Iterator[str]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
                answer(self, status, body, ctype)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                path = urlsplit(self.path).path
                fake.seen.append((self.command, path, self.headers.get("api-key")))
                raw = self._body()
                if path == "/readyz":
                    return self._send(200, b"all shards are ready", "text/plain")
                if self.headers.get("api-key") != fake.key:
                    return self._send(401, b"Invalid api-key", "text/plain")
                ok = {"status": "ok", "time": 0.001}
                if path == "/":
                    return self._send(200, {"title": "qdrant - vector search engine", "version": "1.12.6"})
                if path == "/collections":
                    return self._send(200, {**ok, "result": {"collections": [{"name": n} for n in fake.collections]}})
                found = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
                if not found:
                    return self._send(404, {"status": {"error": f"Not found: {path}"}})
                name, rest = unquote(found.group(1)), found.group(2) or ""
                points = fake.collections.get(name)
                if rest == "/snapshots/upload" and self.command == "POST":
                    fake.uploads.append((name, len(raw), self.headers.get("Content-Type", "")))
                    fake.collections[name] = list(fake.collections.get("docs", []))
                    return self._send(200, {**ok, "result": True})
                if points is None:
                    return self._send(404, {"status": {"error": f"Not found: Collection `{name}` doesn't exist!"}})
                if rest == "":
                    return self._send(200, {**ok, "result": {"config": {"params": {"vectors": {
                        "size": 3, "distance": "Cosine"}}}, "points_count": len(points)}})
                if rest == "/points/count":
                    return self._send(200, {**ok, "result": {"count": len(points)}})
                if rest == "/points/scroll":
                    return self._send(200, {**ok, "result": {"points": points, "next_page_offset": None}})
                if rest == "/snapshots" and self.command == "POST":
                    return self._send(200, {**ok, "result": fake._snapshot_entry(f"{name}-1.snapshot")})
                if rest == "/snapshots" and self.command == "GET":
                    return self._send(200, {**ok, "result": [fake._snapshot_entry(f"{name}-1.snapshot")]})
                if rest.startswith("/snapshots/") and self.command == "GET":
                    return self._send(200, fake.snapshot_body, "application/octet-stream")
                if rest.startswith("/snapshots/") and self.command == "DELETE":
                    return self._send(200, {**ok, "result": True})
                return self._send(404, {"status": {"error": f"Not found: {self.command} {path}"}})

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        with serving(Handler) as url:
            yield url


def handler_from(respond: Callable[[BaseHTTPRequestHandler], None]) -> type[BaseHTTPRequestHandler]:
    """A handler class whose every method runs `respond(self)` (errors from a closed client ignored)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            with suppress(BrokenPipeError, ConnectionResetError):
                respond(self)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


def outcome(call: Callable[[], Any], limit_s: float) -> BaseException | None:
    """What `call()` raised (None: it returned), or an AssertionError if it ran past `limit_s`: a
    broken deadline fails the test instead of hanging it."""
    box: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            call()
            box["raised"] = None
        except BaseException as err:
            box["raised"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    if "raised" not in box:
        raise AssertionError(f"the call was still running after {limit_s} s: the deadline did not hold")
    return box["raised"]


def trickle(h: BaseHTTPRequestHandler, size: int, pause_s: float, byte: bytes = b"x") -> None:
    """Answer 200 with a body of `size` bytes sent one at a time, `pause_s` apart: a server the
    total deadline, not the per-read timeout, must stop."""
    h.send_response(200)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(size))
    h.end_headers()
    for _ in range(size):
        h.wfile.write(byte)
        h.wfile.flush()
        time.sleep(pause_s)


# -- hostile servers: redirectors, tricklers, endless bodies (issue 20, items 4 and 5) -----------

class Recorder:
    """A server that records every request it receives - (method, path, headers, body length) in
    `requests` - and answers 200 with a Qdrant-like `{"result": true}`: the "other host" a
    redirect points at, which must never hear from the gate."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], int]] = []
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[str]:
        recorder = self

        def respond(h: BaseHTTPRequestHandler) -> None:
            length = drain(h)
            with recorder._lock:
                recorder.requests.append((h.command, h.path, dict(h.headers.items()), length))
            answer(h, 200, {"status": "ok", "result": True, "time": 0.0})

        with serving(handler_from(respond)) as url:
            yield url


def drain(h: BaseHTTPRequestHandler) -> int:
    """Read the request's body (by its Content-Length) and return its length."""
    length = int(h.headers.get("Content-Length") or 0)
    left = length
    while left > 0:
        got = h.rfile.read(min(left, 1 << 20))
        if not got:
            break
        left -= len(got)
    return length


def redirect(h: BaseHTTPRequestHandler, status: int, location: str, body: bytes = b"") -> None:
    """Answer `status` with `Location: location` (its UTF-8 bytes, unchecked, as a hostile server
    may send them) after reading the request's body."""
    drain(h)
    h.wfile.write(b"HTTP/1.0 %d Redirect\r\nLocation: %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                  % (status, location.encode("utf-8"), len(body), body))
    h.close_connection = True


def endless_redirect(h: BaseHTTPRequestHandler, status: int, location: str, sent: list[int],
                     limit: int = 128 << 20) -> None:
    """Answer `status` with a Location and a body without length that goes on until the client
    hangs up (or `limit` bytes, so a client that reads it all cannot take the test's memory);
    appends the bytes it managed to send to `sent`."""
    drain(h)
    h.send_response(status)
    h.send_header("Location", location)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    chunk = b"<p>this page has moved</p>\n" * 2048
    count = 0
    try:
        while count < limit:
            h.wfile.write(chunk)
            count += len(chunk)
    finally:
        sent.append(count)


def trickle_bytes(h: BaseHTTPRequestHandler, data: bytes, pause_s: float) -> None:
    """Write `data` straight to the socket one byte at a time, `pause_s` apart: each byte comes
    well within any read timeout, so only a deadline on the whole exchange stops the client."""
    for i in range(len(data)):
        h.wfile.write(data[i:i + 1])
        h.wfile.flush()
        time.sleep(pause_s)


def trickle_status_line(h: BaseHTTPRequestHandler, pause_s: float = 0.5) -> None:
    """A status line of ~200 bytes, one byte per `pause_s` (100 s at 0.5 s)."""
    drain(h)
    trickle_bytes(h, b"HTTP/1.1 200 " + b"O" * 190 + b"K\r\n", pause_s)


def trickle_headers(h: BaseHTTPRequestHandler, pause_s: float = 0.5) -> None:
    """A prompt status line, then a header of ~200 bytes one byte per `pause_s`, then a 200's end."""
    drain(h)
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    trickle_bytes(h, b"X-Slow: " + b"a" * 190 + b"\r\n", pause_s)
    h.wfile.write(b'Content-Length: 16\r\n\r\n{"result": true}')
