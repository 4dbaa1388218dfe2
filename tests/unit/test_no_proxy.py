"""Self-test: on a host whose environment names a proxy, nothing the gate sends to its stack - the
Qdrant api-key, the service's X-API-Key, snapshot bytes - reaches that proxy.

A real recording proxy (tests/unit/http_doubles.py) is named by HTTP_PROXY, HTTPS_PROXY,
ALL_PROXY and their lower-case forms; a real local Qdrant-like server and a service-like server
stand in for the stack. The gate's own call paths run against them: backup (snapshot, download,
check), restore (upload), fingerprint, the readiness probes and polls, the fault watch, the
Qdrant conformance client, and the seed and restore comparisons through the data API. Every
exchange must also have carried connect and read timeouts. An HTML page at the Qdrant URL, an
oversized or endless snapshot must each end in one clear BackupError, never a traceback.
"""

from __future__ import annotations

import json
import math
import re
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest
import requests
from http_doubles import FakeQdrant, answer, handler_from, outcome, proxied, serving, trickle

from aidb_gate.backup import BackupError, seed
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.qdrant import QdrantTarget
from aidb_gate.core import wait
from aidb_gate.services import qdrant as q_service
from aidb_gate.stages import faults, health, restore
from aidb_gate.stages import qdrant as qa


@pytest.fixture
def proxy(monkeypatch):
    with proxied(monkeypatch, no_proxy=None) as recorder:
        yield recorder


@pytest.fixture
def exchanges(monkeypatch):
    """(url, timeout, proxies) of every request any code sends through requests' adapter."""
    seen: list[tuple[str, object, object]] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self, request, **kwargs):
        seen.append((request.url, kwargs.get("timeout"), kwargs.get("proxies")))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def _assert_bounded(exchanges) -> None:
    assert exchanges, "no exchange was recorded"
    for url, timeout, proxies in exchanges:
        assert isinstance(timeout, tuple) and all(isinstance(t, (int, float)) and 0 < t < math.inf for t in timeout), \
            (url, timeout)
        assert not proxies, (url, proxies)


class _Service:
    """A service-like API: health probes, documents with X-API-Key, search."""

    def __init__(self) -> None:
        self.docs: dict[int, dict] = {}
        self.keys: list[str | None] = []

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        self.keys.append(h.headers.get("X-API-Key"))
        if h.path.startswith("/health/ready"):
            body = {"status": "healthy", "details": {"dependencies": [{"name": "qdrant", "status": "healthy"}]}}
        elif h.path.startswith("/health"):
            body = {"status": "healthy"}
        elif h.command == "POST" and h.path == "/documents":
            doc = {"id": len(self.docs) + 1, **json.loads(raw)}
            self.docs[doc["id"]] = doc
            body = doc
        elif h.command == "GET" and re.fullmatch(r"/documents/\d+", h.path):
            body = self.docs[int(h.path.rsplit("/", 1)[1])]
        elif h.path == "/search":
            body = {"results": [{"id": i, "score": 1.0} for i in list(self.docs)[:1]]}
        else:
            body = {"detail": "not found"}
        answer(h, 200, body)


API = {"create_path": "/documents", "get_path": "/documents/{id}", "search_path": "/search", "search": True,
       "key_header": "X-API-Key"}


def test_nothing_the_gate_sends_to_its_stack_reaches_a_proxy(proxy, exchanges, tmp_path):
    qdrant, service = FakeQdrant(key="qdrant-secret"), _Service()
    with qdrant.running() as q_url, serving(handler_from(service.respond)) as s_url:
        q = QdrantTarget(q_url, "qdrant-secret", timeout_s=10)
        # backup: collections, counts, snapshot, listing, download, checksum, delete, version
        manifest = q_backup.backup(q, tmp_path / "qdrant")
        snapshot = tmp_path / "qdrant" / "docs.snapshot"
        assert snapshot.read_bytes() == qdrant.snapshot_body
        assert manifest["collections"]["docs"]["points"] == 3 and manifest["version"] == "1.12.6"
        # restore: upload, and the fingerprint that judges it
        q_backup.restore_collection(q, "restored", snapshot)
        assert qdrant.uploads and qdrant.uploads[0][0] == "restored"
        assert set(q_backup.fingerprint(q)) == {"docs", "restored"}
        # readiness: the plug-in's check, the poll on the service's probe, the fault watch
        host, port = q_url.rsplit("//", 1)[1].split(":")
        assert q_service.is_ready(SimpleNamespace(host=host, host_port=int(port)))
        container = _container(s_url)
        wait.HttpProbe(8091, "/health/ready", timeout_s=5).wait_until_ready(container)
        assert health.call(s_url, "/health/live").status == 200
        watched = faults.watch(s_url, "/health/ready", "/health/live", lambda s: s.ready_status == 200, deadline_s=5)
        assert watched.satisfied_at_s is not None
        # the conformance client, and the data API with the service's key
        assert qa.result_of(qa.get_collections(qa.Endpoint(q_url, "qdrant-secret")))["collections"]
        written = seed.seed_via_api(s_url, API, "service-secret", 2)
        assert [w.read for w in written] == [w.created for w in written]
        assert restore.read_back(s_url, [w.created for w in written], API) == [w.created for w in written]
        assert restore.compare_service(s_url, s_url, [w.created for w in written], API) == []
    assert proxy.lines == [], f"these reached the proxy named by HTTP_PROXY: {proxy.lines}"
    assert {key for _, _, key in qdrant.seen} == {"qdrant-secret", None}  # None: /readyz, sent without a key
    assert "service-secret" in service.keys
    _assert_bounded(exchanges)
    assert len(exchanges) >= 20


def _container(url: str) -> SimpleNamespace:
    """What HttpProbe asks of a testcontainers container, for a service already listening at `url`."""
    host, port = url.rsplit("//", 1)[1].split(":")
    wrapped = SimpleNamespace(status="running", reload=lambda: None)
    return SimpleNamespace(get_docker_client=lambda: SimpleNamespace(port=lambda _cid, _port: port),
                           get_container_id=lambda: "c1", get_container_host_ip=lambda: host,
                           get_wrapped_container=lambda: wrapped)


def _html_page(h: BaseHTTPRequestHandler) -> None:
    answer(h, 200, b"<!doctype html>\n<html><head><title>Grafana</title></head>\n<body>Sign in</body></html>\n",
           "text/html; charset=utf-8")


def test_an_html_page_at_the_qdrant_url_is_one_clear_error(tmp_path, capsys):
    from aidb_gate import cli

    with serving(handler_from(_html_page)) as url:
        with pytest.raises(BackupError) as err:
            q_backup.backup(QdrantTarget(url, "k"), tmp_path / "q")
        code = cli.main(["backup", "--qdrant-url", url, "--out", str(tmp_path / "cli")])
    text = str(err.value)
    assert f"GET {url}/collections answered HTTP 200 with text/html; charset=utf-8" in text
    assert "--qdrant-url" in text and "6333" in text and "\n" not in text
    printed = capsys.readouterr().err
    assert code == 2 and "Traceback" not in printed and "JSONDecodeError" not in printed
    assert printed.strip() == f"aidb-gate: {text}"


def test_an_error_page_at_the_qdrant_url_names_status_and_type():
    def gateway(h: BaseHTTPRequestHandler) -> None:
        answer(h, 502, b"<html>\n<body><h1>502 Bad Gateway</h1></body>\n</html>\n", "text/html")

    with serving(handler_from(gateway)) as url, pytest.raises(BackupError) as err:
        q_backup.collections(QdrantTarget(url))
    text = str(err.value)
    assert f"at {url}/collections answered 502: text/html" in text and "502 Bad Gateway" in text
    assert "--qdrant-url" in text and "\n" not in text


def test_a_snapshot_over_the_cap_stops_with_the_setting_to_raise(tmp_path, monkeypatch):
    qdrant = FakeQdrant()
    qdrant.snapshot_body = b"z" * (3 << 20)
    monkeypatch.setenv(q_backup.MAX_SNAPSHOT_VAR, "1M")
    with qdrant.running() as url:
        q = QdrantTarget(url, "k1")
        assert q.max_snapshot_bytes == 1 << 20
        with pytest.raises(BackupError) as err:
            q_backup.backup(q, tmp_path / "q")
    text = str(err.value)
    assert "larger than 1048576 bytes" in text and f"{q_backup.MAX_SNAPSHOT_VAR}=" in text and "\n" not in text
    assert list((tmp_path / "q").iterdir()) == []  # no partial file left


def test_a_snapshot_longer_than_qdrant_lists_is_damaged(tmp_path):
    qdrant = FakeQdrant()
    qdrant.listed_size = 100
    with qdrant.running() as url, pytest.raises(BackupError, match="more than the 100 bytes it lists"):
        q_backup.backup(QdrantTarget(url, "k1"), tmp_path / "q")
    assert list((tmp_path / "q").iterdir()) == []


def test_a_snapshot_download_stops_at_its_deadline(tmp_path, monkeypatch):
    def slow_snapshot(h: BaseHTTPRequestHandler) -> None:
        if "/snapshots/" not in h.path:
            return _not_found(h)
        trickle(h, 1000000, 0.01, b"s")

    monkeypatch.setenv(q_backup.SNAPSHOT_TIMEOUT_VAR, "1")
    with serving(handler_from(slow_snapshot)) as url:
        begin = time.monotonic()
        raised = outcome(lambda: q_backup.download(QdrantTarget(url), "/collections/docs/snapshots/s",
                                                    tmp_path / "s.partial", "snapshot s"), 5)
        took = time.monotonic() - begin
    assert isinstance(raised, BackupError), raised
    assert "did not finish within 1 s" in str(raised) and f"{q_backup.SNAPSHOT_TIMEOUT_VAR}=" in str(raised)
    assert took < 2.5 and not (tmp_path / "s.partial").exists()


def _not_found(h: BaseHTTPRequestHandler) -> None:
    h.send_response(404)
    h.send_header("Content-Length", "0")
    h.end_headers()


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1X"])
def test_a_bad_cap_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(q_backup.MAX_SNAPSHOT_VAR, value)
    with pytest.raises(BackupError, match=f"{q_backup.MAX_SNAPSHOT_VAR}=.* is not a size"):
        QdrantTarget("http://127.0.0.1:6333")


def test_cap_settings_accept_units(monkeypatch):
    monkeypatch.setenv(q_backup.MAX_SNAPSHOT_VAR, "1.5G")
    monkeypatch.setenv(q_backup.SNAPSHOT_TIMEOUT_VAR, "600")
    q = QdrantTarget("http://127.0.0.1:6333")
    assert (q.max_snapshot_bytes, q.snapshot_timeout_s) == (int(1.5 * (1 << 30)), 600.0)
    monkeypatch.delenv(q_backup.MAX_SNAPSHOT_VAR)
    assert QdrantTarget("http://x").max_snapshot_bytes == q_backup.DEFAULT_MAX_SNAPSHOT_BYTES


def test_the_proxy_fixture_is_live(proxy):
    """If the proxy stopped recording, the first test would pass for nothing."""
    requests.get("http://127.0.0.1:9/never", timeout=5)
    assert proxy.lines == ["GET http://127.0.0.1:9/never HTTP/1.1"]

