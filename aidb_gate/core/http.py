"""http: the one way the gate speaks HTTP - to the stack it starts and to a Qdrant named by --qdrant-url.

Guarantees:
- `session()` ignores every proxy variable (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, in
  either case) and ~/.netrc: `trust_env` is off and no proxy is set, so an API key or a snapshot
  meant for a container on 127.0.0.1 never travels through a proxy meant for pip;
- `request()` bounds every exchange three ways: the connect, each read, and the whole exchange
  (`deadline_s`), the body included - the body is read one socket read at a time and the clock is
  checked after each, so a server that trickles bytes cannot hold the gate past the deadline;
- a body is never read past `max_bytes` (`TooLarge`); with `into=` a 2xx body goes to that file
  instead of memory (snapshot downloads), under the same deadline and cap;
- the body is read in full before `request()` returns, so no connection is left half-read;
- `json_of()` returns the parsed body or raises one paragraph naming the URL, the status and the
  content type, and what to fix - never a JSONDecodeError.

Failures of the exchange itself are `requests` exceptions (`DeadlineExceeded` is a
`requests.Timeout`, `TooLarge` a `requests.RequestException`), so callers that catch those keep
working. Nothing else in the gate may call `requests.get/post/...` or build a `requests.Session`:
tests/unit/test_http.py fails if one does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions

from aidb_gate.errors import GateError
from aidb_gate.report import clip

#: Connect timeout: the stack is local, and a remote Qdrant that takes longer is not answering.
CONNECT_TIMEOUT_S = 10.0
#: Largest body kept in memory by default (a scroll page of 256 points with 4096-float vectors is ~25 MiB).
MAX_BODY_BYTES = 256 << 20
#: How much of an error body is kept when the body was meant for a file: enough for the message.
ERROR_BODY_BYTES = 64 << 10
CHUNK_BYTES = 1 << 20

_FORBIDDEN = ("timeout", "stream", "proxies")


class DeadlineExceeded(requests.Timeout):
    """The whole exchange (connect, headers and body) took longer than its deadline."""


class TooLarge(requests.RequestException):
    """The body grew past the cap; `limit` is the cap in bytes."""

    def __init__(self, message: str, *, limit: int):
        super().__init__(message)
        self.limit = limit


def session() -> requests.Session:
    """A Session that never uses a proxy or credentials from the environment (variables, .netrc)."""
    s = requests.Session()
    s.trust_env = False
    s.proxies.clear()
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
    connect; neither outlasts the time left. The body is kept in `resp.content` unless `into` is
    given and the status is 2xx: then it is written to `into` and `resp.content` is empty (other
    statuses keep the first ERROR_BODY_BYTES for the message). More than `max_bytes` (None: no cap)
    raises `TooLarge`. `using` reuses a caller's `session()` (kept open); without it a fresh one is
    made and closed. Other keyword arguments go to `Session.request` (json, params, headers, files...).
    """
    bad = [k for k in _FORBIDDEN if k in kwargs]
    if bad:
        raise TypeError(f"http.request sets {', '.join(bad)} itself (deadline_s, read_timeout_s, connect_timeout_s)")
    begin = time.monotonic()
    read_s = min(read_timeout_s or deadline_s, deadline_s)
    own = using is None
    s = session() if using is None else using
    try:
        try:
            resp = s.request(method, url, timeout=(min(connect_timeout_s, deadline_s), read_s), stream=True,
                             proxies={}, **kwargs)
        except requests.Timeout as err:
            if time.monotonic() - begin >= deadline_s:
                raise _late(method, url, deadline_s, None) from err
            raise
        try:
            _read_body(resp, method, url, begin, deadline_s, read_s, max_bytes, into)
        finally:
            resp.close()
        return resp
    finally:
        if own:
            s.close()


def _late(method: str, url: str, deadline_s: float, read: int | None) -> DeadlineExceeded:
    got = "before the answer began" if read is None else f"after {read} bytes of the body"
    return DeadlineExceeded(f"{method} {shown(url)} did not finish within its {deadline_s:g} s deadline "
                            f"(stopped {got})")


def _read_body(resp: requests.Response, method: str, url: str, begin: float, deadline_s: float, read_s: float,
               max_bytes: int | None, into: IO[bytes] | None) -> None:
    to_file = into is not None and 200 <= resp.status_code < 300
    keep = max_bytes
    truncate = into is not None and not to_file
    if truncate:
        keep = ERROR_BODY_BYTES if max_bytes is None else min(max_bytes, ERROR_BODY_BYTES)
    body = bytearray()
    read = 0
    sock = _socket(resp)
    while True:
        left = deadline_s - (time.monotonic() - begin)
        if left <= 0:
            raise _late(method, url, deadline_s, read)
        if sock is not None:
            # The socket waits at most the time left: a read never carries the exchange past its deadline.
            sock.settimeout(max(0.001, min(read_s, left)))
        try:
            # read1: at most one socket read, so the clock is checked however slowly bytes trickle in
            # (read(n) would wait for all n bytes). Decoded here, as iter_content would: requests asks
            # urllib3 for the raw bytes, and the cap must count what a gzip body expands to.
            chunk = resp.raw.read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as err:
            if time.monotonic() - begin >= deadline_s:
                raise _late(method, url, deadline_s, read) from err
            raise requests.ReadTimeout(f"{method} {shown(url)}: no bytes for {read_s:g} s "
                                       f"(after {read} bytes of the body)") from err
        except urllib3.exceptions.DecodeError as err:
            raise requests.exceptions.ContentDecodingError(f"{method} {shown(url)}: {err}") from err
        except urllib3.exceptions.ProtocolError as err:
            raise requests.exceptions.ChunkedEncodingError(f"{method} {shown(url)}: {err}") from err
        except urllib3.exceptions.HTTPError as err:
            raise requests.ConnectionError(f"{method} {shown(url)}: {err}") from err
        if not chunk:
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
