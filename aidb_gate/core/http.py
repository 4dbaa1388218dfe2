"""http: the one way the gate speaks HTTP - to the stack it starts and to a Qdrant named by --qdrant-url.

Guarantees:
- `session()` ignores every proxy variable (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, in
  either case) and ~/.netrc: `trust_env` is off and no proxy is set, so an API key or a snapshot
  meant for a container on 127.0.0.1 never travels through a proxy meant for pip;
- no redirect is ever followed: a 3xx answer is returned as the status it is (a health probe
  sees the 302 its service sent), so no header (an `api-key`), no upload and no retried method
  ever reaches the host a `Location` names; `redirect_problem()` turns such an answer into one
  paragraph naming the status and the escaped `Location`, for callers to whom it is an error;
- `request()` bounds every exchange three ways: the connect, each read, and the whole exchange
  (`deadline_s`) - connect, sending, status line, headers and body alike: a watchdog shuts the
  connection's socket down when the deadline passes, so no phase, however the bytes trickle,
  holds the gate past it, and an answer cut short there is a `DeadlineExceeded`, never the
  partial answer it leaves behind;
- a body is never read past its cap: `max_bytes` (`TooLarge`) for a body kept in memory or a 2xx
  written to `into=` (snapshot downloads); a redirect's body, and an error body meant for a file,
  only their first ERROR_BODY_BYTES (enough for a message); a body kept in memory at most
  MAX_BODY_BYTES even when `max_bytes` is None;
- the body is read (or cut and its connection closed) before `request()` returns, so no
  connection is left half-read;
- `json_of()` returns the parsed body or raises one paragraph naming the URL, the status and the
  content type, and what to fix - never a JSONDecodeError.

Failures of the exchange itself are `requests` exceptions (`DeadlineExceeded` is a
`requests.Timeout`, `TooLarge` a `requests.RequestException`), so callers that catch those keep
working. Nothing else in the gate may call `requests.get/post/...` or build a `requests.Session`:
tests/unit/test_http.py fails if one does. Name resolution (getaddrinfo) cannot be interrupted:
the gate's URLs are addresses or local names, and a resolver that hangs is outside this bound.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from aidb_gate.core.names import escape
from aidb_gate.core.text import clip
from aidb_gate.errors import GateError

#: Connect timeout: the stack is local, and a remote Qdrant that takes longer is not answering.
CONNECT_TIMEOUT_S = 10.0
#: Largest body kept in memory by default (a scroll page of 256 points with 4096-float vectors is ~25 MiB).
MAX_BODY_BYTES = 256 << 20
#: How much of a redirect's body, or of an error body meant for a file, is kept: enough for the message.
ERROR_BODY_BYTES = 64 << 10
CHUNK_BYTES = 1 << 20

_FORBIDDEN = ("timeout", "stream", "proxies", "allow_redirects")


class DeadlineExceeded(requests.Timeout):
    """The whole exchange (connect, headers and body) took longer than its deadline."""


class TooLarge(requests.RequestException):
    """The body grew past the cap; `limit` is the cap in bytes."""

    def __init__(self, message: str, *, limit: int):
        super().__init__(message)
        self.limit = limit


# -- the watchdog: one deadline for the whole exchange ------------------------------------------
#
# Why a watchdog and not socket timeouts: a socket timeout bounds one recv, not their sum.
# http.client reads the status line and the headers with `fp.readline()` on a file over the
# socket, and urllib3 sets the read timeout once before it: a server that sends one byte every
# half second satisfies every recv and holds `readline` for as long as its line is (the issue
# measured 39 s for a status line, 45 s for headers, with a 2 s deadline). Re-arming the timeout
# before each recv would need a socket whose recv is ours, which TLS (it replaces the socket)
# and http.client's buffering make fragile. A timer that shuts the socket down at the deadline
# bounds every phase - connect, sending an upload, status line, headers, body - however the
# library reads, because any recv or send blocked on a shut-down socket returns at once.
# `shutdown`, not `close`: closing from another thread frees the descriptor while the reader may
# still use it (and the number may already name another file); a shut-down socket stays valid
# and only reports end-of-file, which the exchange then reports as the deadline it was.

_current = threading.local()


class _Watch:
    """One exchange's deadline: at `deadline_s` the socket of the connection it uses is shut down."""

    def __init__(self, deadline_s: float):
        self._lock = threading.Lock()
        self._conn: Any = None
        self._done = False
        self.fired = False
        self._timer = threading.Timer(deadline_s, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def use(self, conn: Any) -> None:
        """Called (in the exchange's thread) with each connection the exchange sends on, and
        again once it is connected, so a deadline that passed while connecting still holds."""
        with self._lock:
            self._conn = conn
            if self.fired and not self._done:
                _shut(conn)

    def _fire(self) -> None:
        # Under the lock: `finish()` cannot slip in between, so a connection this exchange has
        # finished with (back in the pool) is never shut down.
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._conn is not None:
                _shut(self._conn)

    def finish(self) -> bool:
        """Stop watching; True when the deadline fired first."""
        with self._lock:
            self._done = True
        self._timer.cancel()
        return self.fired


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with suppress(OSError):
            # The plain socket's shutdown: SSLSocket.shutdown also drops its SSL object, which the
            # reading thread may be inside.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(conn: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.use(conn)


class _Watched:
    """Reports the connection to the exchange's watchdog before it connects (an HTTPS pool connects
    and shakes hands before it sends), once connected (a deadline that passed meanwhile still
    cuts), and before each request (a connection reused from the pool)."""

    def connect(self) -> None:
        _watched(self)
        super().connect()  # type: ignore[misc]
        _watched(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose connections report to the exchange's watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}


class _Session(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        # No target, so nothing to follow. Not only a guard against `allow_redirects=True`: with
        # False, requests still calls the redirect resolver to fill `resp.next`, and it begins by
        # reading the redirect's whole body (`resp.content`) - without a cap, so a 302 with an
        # endless body ran the gate out of memory.
        return None


def session() -> requests.Session:
    """A Session that never uses a proxy or credentials from the environment (variables, .netrc),
    never follows a redirect (nor reads a redirect's body by itself), and whose connections
    `request()`'s deadline can cut."""
    s = _Session()
    s.trust_env = False
    s.proxies.clear()
    for prefix in ("http://", "https://"):
        s.mount(prefix, _Adapter())
    return s


def shown(url: str) -> str:
    """A URL as messages may show it: without user and password (`http://u:pw@h:1/p` -> `http://h:1/p`)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def request(method: str, url: str, *, deadline_s: float, read_timeout_s: float | None = None,
            connect_timeout_s: float = CONNECT_TIMEOUT_S, max_bytes: int | None = MAX_BODY_BYTES,
            into: IO[bytes] | None = None, using: requests.Session | None = None, **kwargs: Any) -> requests.Response:
    """One exchange, finished (body read) within `deadline_s` seconds or `DeadlineExceeded`.

    `read_timeout_s` bounds each wait for bytes (default: the deadline), `connect_timeout_s` the
    connect; neither outlasts the deadline, which a watchdog enforces on the whole exchange. No
    redirect is followed: a 3xx is returned with at most ERROR_BODY_BYTES of its body (see
    `redirect_problem`). The body is kept in `resp.content` unless `into` is given and the status
    is 2xx: then it is written to `into` and `resp.content` is empty (other statuses keep the first
    ERROR_BODY_BYTES for the message). More than `max_bytes` raises `TooLarge` (None: no cap on a
    2xx written to `into`; a body kept in memory never exceeds MAX_BODY_BYTES). `using` reuses a
    caller's `session()` (kept open; a session not made by `session()` gets the per-read bounds
    only); without it a fresh one is made and closed. Other keyword arguments go to
    `Session.request` (json, params, headers, files...).
    """
    bad = [k for k in _FORBIDDEN if k in kwargs]
    if bad:
        raise TypeError(f"http.request sets {', '.join(bad)} itself (deadline_s, read_timeout_s, connect_timeout_s; "
                        "no redirect is followed)")
    begin = time.monotonic()
    read_s = min(read_timeout_s or deadline_s, deadline_s)
    own = using is None
    s = session() if using is None else using
    watch = _Watch(deadline_s)
    outer = getattr(_current, "watch", None)
    _current.watch = watch
    watch.start()
    try:
        try:
            resp = s.request(method, url, timeout=(min(connect_timeout_s, deadline_s), read_s), stream=True,
                             proxies={}, allow_redirects=False, **kwargs)
        except requests.RequestException as err:
            # A cut socket surfaces as whatever the library made of the end of file (a ConnectionError, a
            # ChunkedEncodingError...): it was the deadline.
            if watch.fired or time.monotonic() - begin >= deadline_s:
                raise _late(method, url, deadline_s, None) from err
            raise
        try:
            if watch.fired:
                # The cut left http.client a status line and perhaps some headers, which it parses as a
                # whole answer: it is none.
                raise _late(method, url, deadline_s, None)
            _read_body(resp, method, url, begin, deadline_s, read_s, max_bytes, into, watch)
        finally:
            resp.close()
        return resp
    finally:
        watch.finish()
        _current.watch = outer
        if own:
            s.close()


def _late(method: str, url: str, deadline_s: float, read: int | None) -> DeadlineExceeded:
    got = "before the status line and headers were in" if read is None else f"after {read} bytes of the body"
    return DeadlineExceeded(f"{method} {shown(url)} did not finish within its {deadline_s:g} s deadline "
                            f"(stopped {got})")


def _read_body(resp: requests.Response, method: str, url: str, begin: float, deadline_s: float, read_s: float,
               max_bytes: int | None, into: IO[bytes] | None, watch: _Watch) -> None:
    to_file = into is not None and 200 <= resp.status_code < 300
    keep = max_bytes if max_bytes is not None or to_file else MAX_BODY_BYTES
    # A redirect's body is only ever shown in a message; nor is an error body meant for a file kept whole.
    truncate = 300 <= resp.status_code < 400 or (into is not None and not to_file)
    if truncate:
        keep = ERROR_BODY_BYTES if keep is None else min(keep, ERROR_BODY_BYTES)
    body = bytearray()
    read = 0
    sock = _socket(resp)
    while True:
        left = deadline_s - (time.monotonic() - begin)
        if left <= 0 or watch.fired:
            raise _late(method, url, deadline_s, read)
        if sock is not None:
            # Each wait also ends at the deadline by itself; the watchdog is the bound, this the precision.
            sock.settimeout(max(0.001, min(read_s, left)))
        try:
            # read1: at most one socket read, so the clock is checked however slowly bytes trickle in
            # (read(n) would wait for all n bytes). Decoded here, as iter_content would: requests asks
            # urllib3 for the raw bytes, and the cap must count what a gzip body expands to.
            chunk = resp.raw.read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.HTTPError as err:
            if watch.fired or time.monotonic() - begin >= deadline_s:
                raise _late(method, url, deadline_s, read) from err
            if isinstance(err, urllib3.exceptions.ReadTimeoutError):
                raise requests.ReadTimeout(f"{method} {shown(url)}: no bytes for {read_s:g} s "
                                           f"(after {read} bytes of the body)") from err
            if isinstance(err, urllib3.exceptions.DecodeError):
                raise requests.exceptions.ContentDecodingError(f"{method} {shown(url)}: {err}") from err
            if isinstance(err, urllib3.exceptions.ProtocolError):
                raise requests.exceptions.ChunkedEncodingError(f"{method} {shown(url)}: {err}") from err
            raise requests.ConnectionError(f"{method} {shown(url)}: {err}") from err
        if not chunk:
            if watch.fired:  # the end of file was the watchdog's cut, not the end of the body
                raise _late(method, url, deadline_s, read)
            break
        read += len(chunk)
        if keep is not None and read > keep:
            if truncate:
                body += chunk[: keep - len(body)]
                resp.raw.close()  # the rest is unread: this connection must not go back to the pool
                break
            raise TooLarge(f"{method} {shown(url)} sent more than {keep} bytes, the most the gate reads from it",
                           limit=keep)
        if to_file:
            into.write(chunk)  # type: ignore[union-attr]
        else:
            body += chunk
    resp._content = bytes(body)  # what requests' own non-streamed path sets; resp.json()/.text read it
    resp._content_consumed = True


def _socket(resp: requests.Response) -> Any:
    """The response's socket, or None where urllib3 does not expose it (the deadline then holds per read)."""
    conn = getattr(resp.raw, "connection", None) or getattr(resp.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if hasattr(sock, "settimeout") else None


def describe_body(resp: requests.Response, limit: int = 160) -> str:
    """The start of a body on one line, for messages (binary bodies by size only)."""
    ctype = resp.headers.get("content-type") or ""
    content = resp.content or b""
    if not content:
        return "an empty body"
    if ctype and not any(t in ctype for t in ("json", "text", "html", "xml")):
        return f"{len(content)} bytes of {ctype}"
    text = re.sub(r"\s+", " ", content[: limit * 4].decode("utf-8", errors="replace")).strip()
    return f"{len(content)} bytes starting {clip(text, limit)!r}"


def location(resp: requests.Response) -> str | None:
    """The `Location` an answer names, escaped for messages (its bytes read as UTF-8, as browsers
    do; credentials in it dropped), or None when it names none."""
    raw = resp.headers.get("location")
    if raw is None:
        return None
    try:
        text = raw.encode("latin-1").decode("utf-8", errors="replace")  # http.client decoded the bytes as latin-1
    except UnicodeEncodeError:
        text = raw
    with suppress(ValueError):  # not a URL urlsplit takes: shown as it came, escaped
        text = shown(text)
    return clip(escape(text), 300)


def redirect_problem(resp: requests.Response) -> str | None:
    """None unless `resp` is a redirect (3xx); then one paragraph naming the method, URL, status
    and escaped `Location`, and what to fix. The gate follows no redirect: it would carry the
    API key, the upload or a retried method to wherever the answer points."""
    if not 300 <= resp.status_code < 400:
        return None
    method = resp.request.method if resp.request is not None else "GET"
    where = location(resp)
    target = f"a redirect to {where}" if where is not None else "a redirect with no Location"
    return (f"{method} {shown(resp.url)} answered {resp.status_code} ({target}). The gate follows no redirect, "
            "since that would send the API key and any upload to wherever the answer points: point the URL at the "
            "server itself (its own scheme, host and port), not at a proxy, a load balancer or a login page in "
            "front of it.")


def json_of(resp: requests.Response, *, error: Callable[[str], Exception] = GateError,
            hint: str = "Check that the URL points at the service itself, not at a web page, a login portal or "
                        "a proxy in front of it.") -> Any:
    """The parsed JSON body, or `error(one paragraph)` naming the URL, status and content type, and `hint`."""
    try:
        return resp.json()
    except ValueError:
        pass
    method = resp.request.method if resp.request is not None else "GET"
    ctype = resp.headers.get("content-type") or "no content type"
    raise error(f"{method} {shown(resp.url)} answered HTTP {resp.status_code} with {ctype} ({describe_body(resp)}), "
                f"not the JSON expected. {hint}".strip())
