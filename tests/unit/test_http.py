"""core.http: the one HTTP session factory ignores proxy variables, bounds every exchange (connect,
read, total - a trickling body included), caps bodies, and turns a non-JSON answer into one
paragraph; and no other module of the gate speaks HTTP past it.

Everything runs against real local servers (tests/unit/http_doubles.py), no mocks of requests.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from http_doubles import answer, handler_from, outcome, proxied, serving, trickle

from aidb_gate.core import http
from aidb_gate.errors import GateError


def _json_answer(h) -> None:
    answer(h, 200, {"path": h.path, "api-key": h.headers.get("api-key")})


@pytest.fixture
def proxy(monkeypatch):
    """A recording proxy named by every proxy variable (NO_PROXY names some other host)."""
    with proxied(monkeypatch, no_proxy="example.invalid") as recorder:
        yield recorder


def test_the_recording_proxy_would_see_a_plain_requests_call(proxy):
    """The premise: without the factory, requests sends a call for 127.0.0.1 to the proxy."""
    with serving(handler_from(_json_answer)) as url:
        resp = requests.get(url + "/collections", headers={"api-key": "secret"}, timeout=5)
    assert resp.status_code == 502
    assert proxy.lines == [f"GET {url}/collections HTTP/1.1"]
    assert proxy.headers[0].get("api-key") == "secret"  # what the proxy log showed


def test_session_ignores_every_proxy_variable(proxy):
    s = http.session()
    assert s.trust_env is False and not s.proxies
    with serving(handler_from(_json_answer)) as url:
        resp = http.request("GET", url + "/collections", headers={"api-key": "secret"}, deadline_s=5)
        with http.session() as mine:
            again = http.request("GET", url + "/x", deadline_s=5, using=mine)
    assert resp.status_code == 200 and resp.json() == {"path": "/collections", "api-key": "secret"}
    assert again.json()["path"] == "/x"
    assert proxy.lines == []


def test_every_exchange_sends_connect_and_read_timeouts_and_no_proxy(monkeypatch):
    seen = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self, request, **kwargs):
        seen.append((kwargs.get("timeout"), kwargs.get("proxies")))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    with serving(handler_from(_json_answer)) as url:
        http.request("GET", url, deadline_s=7)
        http.request("POST", url, deadline_s=300, read_timeout_s=20, connect_timeout_s=3, json={})
        http.request("GET", url, deadline_s=2, connect_timeout_s=60)
    assert seen == [((7, 7), {}), ((3, 20), {}), ((2, 2), {})]  # neither outlasts the deadline


def test_a_caller_cannot_override_the_timeouts_or_proxies():
    for kwargs in ({"timeout": 5}, {"stream": True}, {"proxies": {"http": "http://p:1"}}):
        with pytest.raises(TypeError, match="sets"):
            http.request("GET", "http://127.0.0.1:9", deadline_s=1, **kwargs)


def _trickle(h) -> None:
    trickle(h, 100000, 0.02)


def test_the_deadline_stops_a_body_that_trickles(tmp_path):
    """Each byte comes well within the read timeout; only the total deadline can stop it."""
    with serving(handler_from(_trickle)) as url:
        begin = time.monotonic()
        raised = outcome(lambda: http.request("GET", url + "/snap", deadline_s=1, read_timeout_s=30), 5)
        took = time.monotonic() - begin
        assert isinstance(raised, http.DeadlineExceeded), raised
        assert re.search(r"did not finish within its 1 s deadline \(stopped after \d+ bytes", str(raised))
        with (tmp_path / "out").open("wb") as out:
            raised = outcome(lambda: http.request("GET", url + "/snap", deadline_s=0.5, read_timeout_s=30, into=out), 5)
        assert isinstance(raised, http.DeadlineExceeded), raised
    assert 0.9 <= took < 3.0, took
    assert isinstance(http.DeadlineExceeded("x"), requests.Timeout)  # callers catching Timeout still do


def _silent(h) -> None:
    time.sleep(5)  # no status line at all


def test_the_deadline_bounds_a_server_that_never_answers():
    with serving(handler_from(_silent)) as url:
        begin = time.monotonic()
        with pytest.raises(http.DeadlineExceeded, match="before the status line and headers were in"):
            http.request("GET", url, deadline_s=0.5)
    assert time.monotonic() - begin < 1.5


def _big(h) -> None:
    status = 200 if "ok" in h.path else 500
    h.send_response(status)
    h.send_header("Content-Type", "text/plain")
    h.end_headers()  # no length: the body ends when the connection closes
    for _ in range(40):
        h.wfile.write(b"y" * 65536)


def test_the_size_cap_stops_a_body_in_memory_or_on_disk(tmp_path):
    with serving(handler_from(_big)) as url:
        with pytest.raises(http.TooLarge, match="sent more than 1048576 bytes") as err:
            http.request("GET", url + "/ok", deadline_s=10, max_bytes=1 << 20)
        assert err.value.limit == 1 << 20
        with (tmp_path / "file").open("wb") as out, pytest.raises(http.TooLarge):
            http.request("GET", url + "/ok", deadline_s=10, max_bytes=1 << 20, into=out)
        assert (tmp_path / "file").stat().st_size <= 1 << 20
        whole = io.BytesIO()
        assert http.request("GET", url + "/ok", deadline_s=10, max_bytes=None, into=whole).content == b""
        assert len(whole.getvalue()) == 40 * 65536
        # An error answer is kept (its start) for the message, never written to the file.
        sink = io.BytesIO()
        failed = http.request("GET", url + "/fail", deadline_s=10, max_bytes=1 << 30, into=sink)
    assert failed.status_code == 500 and len(failed.content) == http.ERROR_BODY_BYTES and sink.getvalue() == b""


def _gzip(h) -> None:
    data = gzip.compress(json.dumps({"result": ["x" * 1000] * 300}).encode())
    answer(h, 200, data, headers={"Content-Encoding": "gzip"})


def test_a_compressed_body_is_decoded_and_capped_by_its_decoded_size():
    with serving(handler_from(_gzip)) as url:
        assert http.request("GET", url, deadline_s=5).json()["result"][0] == "x" * 1000
        with pytest.raises(http.TooLarge):  # ~4 kB on the wire, ~300 kB decoded
            http.request("GET", url, deadline_s=5, max_bytes=100_000)


def _html(h) -> None:
    answer(h, 200, b"<!DOCTYPE html>\n<html>\n<head><title>Sign in</title></head>\n<body>Welcome</body></html>\n",
           "text/html; charset=utf-8")


def test_a_page_where_json_is_expected_is_one_paragraph_naming_url_status_and_type():
    with serving(handler_from(_html)) as url:
        resp = http.request("GET", url.replace("http://", "http://user:pw@") + "/collections", deadline_s=5)
    with pytest.raises(GateError) as err:
        http.json_of(resp)
    text = str(err.value)
    assert f"GET {url}/collections answered HTTP 200 with text/html; charset=utf-8" in text
    assert "<title>Sign in</title>" in text and "not the JSON expected" in text
    assert "\n" not in text and "pw" not in text and "JSONDecodeError" not in text
    with pytest.raises(AssertionError, match="fix the path"):
        http.json_of(resp, error=AssertionError, hint="fix the path")


def test_shown_drops_credentials_only():
    assert http.shown("http://u:p@127.0.0.1:6333/c?x=1") == "http://127.0.0.1:6333/c?x=1"
    assert http.shown("http://[::1]:6333/") == "http://[::1]:6333/"
    assert http.shown("http://u@[::1]:6333/") == "http://[::1]:6333/"


# -- the rule: nothing but core/http.py speaks HTTP -------------------------------------------

#: Names that send a request or build a session of their own, by module.
DIRECT = {
    "requests": {"get", "post", "put", "delete", "patch", "head", "options", "request", "Session", "session"},
    "requests.api": {"get", "post", "put", "delete", "patch", "head", "options", "request"},
    "requests.sessions": {"Session", "session"},
    "urllib.request": {"urlopen", "Request", "build_opener"},
    "http.client": {"HTTPConnection", "HTTPSConnection"},
}


def direct_http(source: str) -> list[str]:
    """Every place in `source` that calls an HTTP client directly, as `line: name`."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> module or module.attr it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts = []
        target = node.func
        while isinstance(target, ast.Attribute):
            parts.append(target.attr)
            target = target.value
        if not isinstance(target, ast.Name):
            continue
        dotted = ".".join([aliases.get(target.id, target.id), *reversed(parts)])
        module, _, name = dotted.rpartition(".")
        if name in DIRECT.get(module, ()):
            found.append((node.lineno, f"{node.lineno}: {dotted}"))
    return [text for _, text in sorted(found)]


def test_the_rule_finder_sees_every_spelling():
    source = ("import requests\nimport requests as r\nfrom requests import Session, get as fetch\n"
              "import urllib.request\nfrom http import client\n"
              "requests.get('u')\nr.post('u')\nSession()\nfetch('u')\nrequests.sessions.Session()\n"
              "urllib.request.urlopen('u')\nclient.HTTPConnection('h')\n"
              "requests.RequestException\nhttp.request('GET', 'u', deadline_s=1)\n")
    assert direct_http(source) == ["6: requests.get", "7: requests.post", "8: requests.Session", "9: requests.get",
                                   "10: requests.sessions.Session", "11: urllib.request.urlopen",
                                   "12: http.client.HTTPConnection"]


def _gate_sources() -> list[Path]:
    import aidb_gate.plugins
    import aidb_gate.suites

    roots = [Path(aidb_gate.__file__).parent, *map(Path, aidb_gate.plugins.__path__), *map(Path, aidb_gate.suites.__path__)]
    return sorted({p.resolve() for root in roots for p in root.rglob("*.py")})


def test_no_module_but_core_http_speaks_http_directly():
    """Every call to the stack goes through core.http, so none can honour HTTP_PROXY again."""
    sources = _gate_sources()
    assert any(p.name == "qdrant.py" and p.parent.name == "backup" for p in sources), sources[:5]
    offenders = [f"{path}:{hit}" for path in sources if path.parts[-2:] != ("core", "http.py")
                 for hit in direct_http(path.read_text())]
    assert not offenders, ("these call an HTTP client directly; use aidb_gate.core.http.request (no proxy, deadlines): "
                           + ", ".join(offenders))


# -- no redirect followed, every body capped, one deadline per exchange (issue 20) -------------
# (the hostile servers themselves are in tests/unit/test_http_hostile.py)

def test_the_session_follows_no_redirect_and_a_caller_cannot_ask_it_to():
    with pytest.raises(TypeError, match="no redirect is followed"):
        http.request("GET", "http://127.0.0.1:9", deadline_s=1, allow_redirects=True)
    s = http.session()
    assert all(isinstance(s.get_adapter(p), http._Adapter) for p in ("http://x", "https://x"))

    def moved(h) -> None:
        answer(h, 302, b"", "text/plain", headers={"Location": "/elsewhere"})

    with serving(handler_from(moved)) as url:
        resp = s.request("GET", url, timeout=5)  # even a direct use of the session: nothing followed, nothing read
    assert resp.status_code == 302 and resp.history == [] and resp.next is None
    s.close()


def test_a_body_kept_in_memory_is_capped_even_without_max_bytes(monkeypatch):
    monkeypatch.setattr(http, "MAX_BODY_BYTES", 1 << 20)
    with serving(handler_from(_big)) as url:
        for path in ("/ok", "/fail"):  # an error body too
            with pytest.raises(http.TooLarge, match="more than 1048576 bytes"):
                http.request("GET", url + path, deadline_s=10, max_bytes=None)


class _KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: the first request is answered at once, every later one on the
    same connection trickles its headers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        served = getattr(self, "served", 0)
        self.served = served + 1
        if served == 0:
            answer(self, 200, {"n": 1})
            return
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(40):
            try:
                self.wfile.write(b"X-Slow: 1\r\n")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.25)


def test_the_deadline_also_holds_on_a_connection_reused_from_the_pool():
    with serving(_KeepAlive) as url, http.session() as s:
        assert http.request("GET", url, deadline_s=5, using=s).json() == {"n": 1}
        begin = time.monotonic()
        raised = outcome(lambda: http.request("GET", url, deadline_s=1, read_timeout_s=30, using=s), 8)
        took = time.monotonic() - begin
    assert isinstance(raised, http.DeadlineExceeded), raised
    assert took < 5, took
