"""Hostile servers against core.http and the Qdrant backup client (issue 20, items 4 and 5).

- Redirects: no redirect is followed, so neither the `api-key` header nor a snapshot upload ever
  reaches the host a `Location` names; a redirect that answers a Qdrant call, a snapshot
  download or an upload is one paragraph naming the status and the (escaped) `Location`, through
  the CLI too, where it once printed "restored qdrant" and exited 0. A health probe of the
  service under test still sees a redirect as the status it is.
- An upload answered with anything but Qdrant's documented success (200 with `result: true`)
  fails, naming the status.
- The deadline holds for the exchange as a whole: a status line, headers or a body trickled one
  byte per 0.5 s (each byte well within the read timeout) end within the 2 s deadline, as a
  DeadlineExceeded, never as the partial answer the cut-off leaves behind.
- A redirect with an endless body is read only up to a small cap: a clear error, never
  MemoryError.

Everything runs against real sockets on 127.0.0.1 (tests/unit/http_doubles.py); each call that
could hang runs under `outcome`, so a broken deadline fails the test instead of holding it.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest
from http_doubles import (
    FakeQdrant,
    Recorder,
    answer,
    drain,
    endless_redirect,
    handler_from,
    outcome,
    redirect,
    serving,
    trickle,
    trickle_headers,
    trickle_status_line,
)

from aidb_gate import cli
from aidb_gate.backup import BackupError
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.qdrant import QdrantTarget
from aidb_gate.core import http
from aidb_gate.stages import health
from tests.unit.crafted import snapshot_tar

#: The deadline the issue measured with, and the bound that proves it held: generous for a loaded
#: 2-core machine, far below the 39-45 s the trickles took before.
DEADLINE_S = 2.0
BOUND_S = 8.0
KEY = "qdrant-secret-key"


def _one_paragraph(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text




class Rogue:
    """A Qdrant-like server with no collections whose snapshot upload answers `upload(h)`."""

    def __init__(self, upload) -> None:
        self.upload = upload

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path == "/collections":
            drain(h)
            answer(h, 200, {"status": "ok", "result": {"collections": []}, "time": 0.0})
        elif path.endswith("/snapshots/upload"):
            self.upload(h)
        else:
            drain(h)
            answer(h, 404, {"status": {"error": f"Not found: {path}"}})


# -- redirects ----------------------------------------------------------------------------------

def test_a_307_to_another_port_receives_neither_the_api_key_nor_the_upload(tmp_path):
    """The premise of item 4: a 307 re-sends method, body and headers to wherever it points."""
    snapshot = tmp_path / "docs.snapshot"
    snapshot.write_bytes(snapshot_tar())
    other = Recorder()
    with other.running() as elsewhere:
        rogue = Rogue(lambda h: redirect(h, 307, elsewhere + "/collections/docs/snapshots/upload"))
        with serving(handler_from(rogue.respond)) as url:
            q = QdrantTarget(url, KEY, timeout_s=10)
            with pytest.raises(BackupError) as err:
                q_backup.restore_collection(q, "docs", snapshot)
            raw = http.request("POST", url + "/collections/docs/snapshots/upload", headers={"api-key": KEY},
                               files={"snapshot": ("docs.snapshot", snapshot.read_bytes())}, deadline_s=10)
            with serving(handler_from(lambda h: redirect(h, 307, elsewhere + "/collections"))) as everywhere, \
                    pytest.raises(BackupError) as listing:
                q_backup.collections(QdrantTarget(everywhere, KEY, timeout_s=10))
    text = _one_paragraph(str(err.value))
    assert "307" in text and f"{elsewhere}/collections/docs/snapshots/upload" in text, text
    assert "point" in text and "itself" in text, text  # says what to fix
    assert raw.status_code == 307 and raw.headers["Location"].startswith(elsewhere)  # seen, not followed
    assert "307" in _one_paragraph(str(listing.value)) and f"{elsewhere}/collections" in str(listing.value)
    assert other.requests == [], f"the redirect target received {[(m, p, h.get('api-key')) for m, p, h, _ in other.requests]}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_restore_answered_with_a_redirect_exits_non_zero_naming_status_and_location(tmp_path, monkeypatch, capsys, status):
    """Item 4: a 302 to the upload became a GET that answered 200, and restore printed "restored qdrant"."""
    monkeypatch.setenv("QDRANT_API_KEY", "k1")
    fake = FakeQdrant(key="k1")
    fake.snapshot_body = snapshot_tar()
    folder = tmp_path / "backup"
    with fake.running() as q_url:
        assert cli.main(["backup", "--qdrant-url", q_url, "--out", str(folder)]) == 0
    capsys.readouterr()
    other = Recorder()
    with other.running() as elsewhere:
        location = elsewhere + "/done\x1b[2J\u0085"  # a control sequence and a C1 line break: shown escaped
        rogue = Rogue(lambda h: redirect(h, status, location))
        with serving(handler_from(rogue.respond)) as url:
            code = cli.main(["restore", str(folder), "--qdrant-url", url])
    out, err = capsys.readouterr()
    assert code != 0 and "restored qdrant" not in out, (code, out, err)
    text = _one_paragraph(err)
    assert f"answered {status}" in text and elsewhere + "/done" in text, text
    assert "\\x1b[2J" in text and "\x1b" not in text and "\x85" not in text, text
    assert other.requests == []


def test_a_snapshot_download_answered_with_a_redirect_is_one_paragraph(tmp_path):
    other = Recorder()
    with other.running() as elsewhere, serving(handler_from(lambda h: redirect(h, 302, elsewhere + "/snap"))) as url:
        q = QdrantTarget(url, KEY, timeout_s=10)
        with pytest.raises(BackupError) as err:
            q_backup.download(q, "/collections/docs/snapshots/s1", tmp_path / "part", "snapshot s1 of docs")
    text = _one_paragraph(str(err.value))
    assert "302" in text and f"{elsewhere}/snap" in text, text
    assert not (tmp_path / "part").exists() and other.requests == []


def test_a_health_probe_sees_a_redirect_as_the_status_it_is():
    """The service under test may redirect: the probe reports that status, and follows nothing."""
    other = Recorder()
    with other.running() as elsewhere, serving(handler_from(lambda h: redirect(h, 301, elsewhere + "/health/"))) as url:
        reply = health.call(url, "/health", headers={"X-API-Key": "service-key"})
    assert reply.status == 301
    assert health.check_status(reply, 200) == ["GET /health returned 301, expected 200"]
    assert other.requests == []


@pytest.mark.parametrize(("status", "body", "says"), [
    (202, {"status": "accepted", "time": 0.0}, "answered 202"),
    (204, b"", "answered 204"),
    (200, b"<html><body>Upload complete</body></html>", "answered 200"),
    (200, {"status": "ok", "result": False}, "answered 200"),
])
def test_an_upload_answered_with_anything_but_qdrants_success_fails(tmp_path, status, body, says):
    snapshot = tmp_path / "docs.snapshot"
    snapshot.write_bytes(snapshot_tar())

    def upload(h: BaseHTTPRequestHandler) -> None:
        drain(h)
        if status == 204:
            h.send_response(204)
            h.end_headers()
        else:
            answer(h, status, body, "text/html" if isinstance(body, bytes) else "application/json")

    with serving(handler_from(Rogue(upload).respond)) as url, pytest.raises(BackupError) as err:
        q_backup.restore_collection(QdrantTarget(url, KEY, timeout_s=10), "docs", snapshot)
    text = _one_paragraph(str(err.value))
    assert says in text and "docs" in text, text


# -- the deadline holds for the whole exchange ------------------------------------------------

def _timed(call) -> tuple[BaseException | None, float]:
    begin = time.monotonic()
    raised = outcome(call, BOUND_S)
    return raised, time.monotonic() - begin


@pytest.mark.parametrize("respond", [trickle_status_line, trickle_headers, lambda h: trickle(h, 1000, 0.5)],
                         ids=["status line", "headers", "body"])
def test_a_trickled_answer_ends_at_the_deadline(respond):
    """One byte per 0.5 s: every socket read returns well within the read timeout (30 s), so only
    a deadline on the whole exchange stops it (before: 39 s for a status line, 45 s for headers)."""
    with serving(handler_from(respond)) as url:
        raised, took = _timed(lambda: http.request("GET", url + "/collections", deadline_s=DEADLINE_S, read_timeout_s=30))
        assert isinstance(raised, http.DeadlineExceeded), raised
        assert f"within its {DEADLINE_S:g} s deadline" in str(raised)
        assert DEADLINE_S - 0.1 <= took < BOUND_S, took
        # The Qdrant client, whose reads wait `timeout_s` each, as the 2 s run did.
        q = QdrantTarget(url, KEY, timeout_s=DEADLINE_S)
        raised, took = _timed(lambda: q_backup.collections(q))
        assert isinstance(raised, BackupError), raised
        assert "deadline" in _one_paragraph(str(raised)) and took < BOUND_S, (took, raised)


def test_an_upload_the_server_never_reads_ends_at_the_deadline():
    """Sending is part of the exchange: once the socket buffers are full, `sendall` waits on a
    server that reads nothing - for the read timeout (30 s here), unless the deadline cuts it."""
    def deaf(h: BaseHTTPRequestHandler) -> None:
        time.sleep(15)  # reads the request line and headers only

    with serving(handler_from(deaf)) as url:
        raised, took = _timed(lambda: http.request("POST", url + "/collections/docs/snapshots/upload",
                                                   data=b"s" * (64 << 20), deadline_s=DEADLINE_S, read_timeout_s=30))
    assert isinstance(raised, http.DeadlineExceeded), raised
    assert took < BOUND_S, took


def test_a_deadline_cut_never_passes_for_a_short_answer():
    """Cutting the connection leaves http.client a status line and some headers, which it would
    parse as a whole answer with an empty body: the cut is a DeadlineExceeded, never a 200."""
    def headers_then_silence(h: BaseHTTPRequestHandler) -> None:
        drain(h)
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        h.wfile.flush()
        for _ in range(20):
            h.wfile.write(b"X-Wait: 1\r\n")
            h.wfile.flush()
            time.sleep(0.5)

    with serving(handler_from(headers_then_silence)) as url:
        raised, took = _timed(lambda: http.request("GET", url, deadline_s=1, read_timeout_s=30))
    assert isinstance(raised, http.DeadlineExceeded), raised
    assert took < BOUND_S


# -- every body is capped, a redirect's too ---------------------------------------------------

def test_a_redirect_with_an_endless_body_is_read_only_up_to_a_small_cap():
    """Item 5: requests read a 302's whole body before following it - 3 GB, then MemoryError."""
    sent: list[int] = []
    other = Recorder()
    with other.running() as elsewhere, \
            serving(handler_from(lambda h: endless_redirect(h, 302, elsewhere + "/moved", sent))) as url:
        box: dict[str, object] = {}
        raised = outcome(lambda: box.update(resp=http.request("GET", url + "/collections", deadline_s=20)), 20)
        assert raised is None, raised
        q = QdrantTarget(url, KEY, timeout_s=20)
        raised = outcome(lambda: q_backup.collections(q), 20)
        limit = time.monotonic() + 10
        while len(sent) < 2 and time.monotonic() < limit:  # the server notices the hang-up
            time.sleep(0.05)
    resp = box["resp"]
    assert resp.status_code == 302 and len(resp.content) <= http.ERROR_BODY_BYTES  # type: ignore[attr-defined]
    assert isinstance(raised, BackupError), raised
    text = _one_paragraph(str(raised))
    assert "302" in text and f"{elsewhere}/moved" in text, text
    assert len(sent) == 2 and max(sent) < 32 << 20, sent  # socket buffers, not the body
    assert other.requests == []


def test_the_redirect_paragraph_says_what_to_fix_and_escapes_the_location():
    def respond(h: BaseHTTPRequestHandler) -> None:
        redirect(h, 308, "https://login.example.invalid/sso?next=%2F\u202e\x07")

    with serving(handler_from(respond)) as url:
        resp = http.request("GET", url.replace("http://", "http://user:pw@") + "/collections", deadline_s=10)
        ok = http.request("GET", url, deadline_s=10)
    text = http.redirect_problem(resp)
    assert text is not None
    _one_paragraph(text)
    assert text.startswith(f"GET {url}/collections answered 308 (a redirect to https://login.example.invalid/sso?next=%2F")
    assert "\u202e" not in text and "\x07" not in text and "\\x07" in text and "pw" not in text, text
    assert "follows no redirect" in text and "itself" in text
    assert ok.status_code == 308 and http.redirect_problem(ok) is not None


def test_a_redirect_without_a_location_is_named_too():
    def respond(h: BaseHTTPRequestHandler) -> None:
        drain(h)
        answer(h, 302, b"", "text/plain")

    with serving(handler_from(respond)) as url:
        resp = http.request("GET", url, deadline_s=10)
    assert "no Location" in (http.redirect_problem(resp) or "")


def test_a_json_answer_is_no_redirect_problem():
    with serving(handler_from(lambda h: answer(h, 200, {"result": []}))) as url:
        assert http.redirect_problem(http.request("GET", url, deadline_s=10)) is None
