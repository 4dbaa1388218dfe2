"""qdrant_api: the Qdrant conformance checks judge plain values without any server, and the REST
helpers send the key and ignore proxies (checked against a local HTTP server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from qdrant_client.http import models

from aidb_gate.stages import qdrant as qa


def reply(status=200, body=None, method="GET", path="/collections", ctype="application/json"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return qa.Reply(method, path, status, content, ctype, 3.0)


# -- replies ------------------------------------------------------------------------------------

def test_result_of_returns_the_result_or_shows_the_exchange():
    assert qa.result_of(reply(body={"result": {"status": "completed"}, "status": "ok"})) == {"status": "completed"}
    with pytest.raises(AssertionError) as err:
        qa.result_of(reply(404, {"status": {"error": "Not found: Collection `x` doesn't exist!"}}, path="/collections/x"))
    text = str(err.value)
    assert "GET /collections/x returned 404, expected 200" in text and "doesn't exist" in text
    with pytest.raises(AssertionError, match="not a Qdrant envelope"):
        qa.result_of(reply(200, {"title": "qdrant"}))


def test_reply_error_and_describe():
    assert reply(401, b"Invalid API key or JWT", ctype="text/plain").error == "Invalid API key or JWT"
    assert reply(400, {"status": {"error": "Wrong input"}}).error == "Wrong input"
    assert reply(200, {"result": True}).error is None
    binary = qa.Reply("GET", "/s", 200, b"\x00" * 2048, "application/octet-stream", 1.0)
    assert "<2048 bytes of application/octet-stream>" in binary.describe()


def test_check_status_accepts_a_set():
    assert qa.check_status(reply(409, {"status": {"error": "exists"}}), {400, 409}) == []
    assert "returned 200, expected 400 or 409" in qa.check_status(reply(200, {"result": True}), {400, 409})[0]


# -- plain values from either transport ---------------------------------------------------------

def test_points_and_snapshots_from_rest_json_and_client_models_are_the_same():
    rest = {"id": 3, "payload": {"a": None}, "vector": [0.6, 0.8], "score": 0.9, "version": 1}
    model = models.ScoredPoint(id=3, version=1, score=0.9, payload={"a": None}, vector=[0.6, 0.8])
    assert qa.point_dict(rest) == qa.point_dict(model) == {"id": 3, "payload": {"a": None}, "vector": [0.6, 0.8],
                                                           "score": 0.9}
    record = models.Record(id="5f0c3d6e-8a4b-4a55-9d0f-3b1f0f4bce21", payload={"t": "ß"})
    assert qa.point_dict(record) == {"id": "5f0c3d6e-8a4b-4a55-9d0f-3b1f0f4bce21", "payload": {"t": "ß"}, "vector": None}
    snap = {"name": "c-1-2026.snapshot", "size": 10, "checksum": "ab", "creation_time": "2026-01-01T00:00:00"}
    assert qa.snapshot_dict(snap) == qa.snapshot_dict(models.SnapshotDescription(**snap))


def test_vector_params_from_rest_and_client():
    assert qa.check_vector_params({"size": 384, "distance": "Cosine"}, 384, "Cosine") == []
    assert qa.check_vector_params(models.VectorParams(size=384, distance="Cosine"), 384, "Cosine") == []
    problem = qa.check_vector_params({"size": 768, "distance": "Dot"}, 384, "Cosine", where="c")
    assert "c: vectors read back as size 768 ('Dot'), expected size 384 (Cosine)" in problem[0]
    assert qa.check_vector_params({"text": {"size": 384, "distance": "Cosine"}}, 384, "Cosine")  # named vectors


def test_normalize_and_cosine():
    assert qa.normalize([3.0, 4.0]) == [0.6, 0.8]
    assert qa.normalize([0.0, 0.0]) == [0.0, 0.0]
    assert qa.cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert qa.cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert qa.sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# -- payloads, vectors, points ------------------------------------------------------------------

def test_payload_difference_is_strict_and_says_where():
    nested = {"a": {"b": [1, {"c": None}]}, "t": "東京"}
    assert qa.payload_difference(nested, json.loads(json.dumps(nested))) is None
    assert qa.payload_difference(nested, {"a": {"b": [1, {}]}, "t": "東京"}) == "payload.a.b[1].c is missing (expected None)"
    assert qa.payload_difference({"x": None}, {"x": "None"}) == "payload.x is 'None', expected None"
    assert qa.payload_difference({"x": True}, {"x": 1}) == "payload.x is 1, expected True"
    assert qa.payload_difference({"x": 1}, {"x": 1.5}) == "payload.x is 1.5, expected 1"
    assert qa.payload_difference({"x": 2.0}, {"x": 2}) is None  # JSON may print a whole float without `.0`
    assert qa.payload_difference({}, {"y": 1}) == "payload.y is unexpected (1)"
    assert "has 1 item(s), expected 2" in qa.payload_difference({"l": [1, 2]}, {"l": [1]})


def test_vector_difference_uses_the_tolerance():
    assert qa.vector_difference([0.6, 0.8], [0.6000001, 0.8]) is None
    assert "differs at [1]" in qa.vector_difference([0.6, 0.8], [0.6, 0.81])
    assert "2 dimension(s), expected 3" in qa.vector_difference([1.0, 0.0, 0.0], [1.0, 0.0])
    assert "expected a list" in qa.vector_difference([1.0], None)


def test_check_points_names_missing_extra_repeated_and_changed_points():
    expected = {1: {"payload": {"t": "a"}, "vector": [1.0, 0.0]}, 2: {"payload": {"t": "b"}, "vector": [0.0, 1.0]}}
    good = [{"id": 1, "payload": {"t": "a"}, "vector": [1.0, 0.0]}, {"id": 2, "payload": {"t": "b"}, "vector": [0.0, 1.0]}]
    assert qa.check_points(expected, good, vectors=True, where="w") == []
    bad = [{"id": 1, "payload": {"t": "A"}, "vector": [0.9, 0.1]}, {"id": 1, "payload": {"t": "a"}, "vector": [1.0, 0.0]},
           {"id": 3, "payload": {}, "vector": [0.0, 0.0]}]
    text = " | ".join(qa.check_points(expected, bad, vectors=True, where="w"))
    assert "w: point 1 is returned twice" in text
    assert "w: 1 point(s) missing: ['2']" in text
    assert "w: 1 unexpected point(s): ['3']" in text
    # without vectors, only ids and payloads are judged
    assert qa.check_points(expected, [dict(p, vector=None) for p in good], vectors=False, where="w") == []
    assert qa.check_points({}, [], vectors=True, where="w") == []


# -- scroll pages -------------------------------------------------------------------------------

def test_check_pages_accepts_a_proper_walk():
    pages = [([2, 4, 6], 8), ([8, 10, 12], 14), ([14], None)]
    assert qa.check_pages(pages, [2, 4, 6, 8, 10, 12, 14], 3) == []
    assert qa.check_pages([([], None)], [], 3) == []


def test_check_pages_names_each_broken_rule():
    skipped = qa.check_pages([([2, 4, 6], 10), ([10], None)], [2, 4, 6, 8, 10], 3)
    assert len(skipped) == 1, skipped
    assert "the pages walk [2, 4, 6, 10]" in skipped[0]
    wrong_offset = " | ".join(qa.check_pages([([1, 2], 4), ([3], None)], [1, 2, 3], 2))
    assert "page 1's next_page_offset is 4, but the next page starts at 3" in wrong_offset
    dangling = " | ".join(qa.check_pages([([1, 2], 3)], [1, 2], 2))
    assert "the last page's next_page_offset is 3, expected null" in dangling
    short = " | ".join(qa.check_pages([([1], 2), ([2, 3], None)], [1, 2, 3], 2))
    assert "page 1 holds 1 points, but more follow" in short
    over = " | ".join(qa.check_pages([([1, 2, 3], None)], [1, 2, 3], 2))
    assert "over the limit 2" in over


# -- ranking ------------------------------------------------------------------------------------

SCORES = {1: 0.9, 2: 0.5, 3: 0.3, 4: 0.1}


def test_check_ranking_accepts_the_true_top_k():
    assert qa.check_ranking([{"id": 1, "score": 0.9}, {"id": 2, "score": 0.50001}], SCORES, 2) == []
    # ties within the tolerance at the cut may swap
    tied = {1: 0.9, 2: 0.5, 3: 0.50001}
    assert qa.check_ranking([{"id": 1, "score": 0.9}, {"id": 2, "score": 0.5}], tied, 2) == []


def test_check_ranking_names_each_broken_rule():
    rising = " | ".join(qa.check_ranking([{"id": 2, "score": 0.5}, {"id": 1, "score": 0.9}], SCORES, 2))
    assert "scores increase at rank 2" in rising and "the first point is 2, but the nearest is 1" in rising
    missing = " | ".join(qa.check_ranking([{"id": 1, "score": 0.9}, {"id": 3, "score": 0.3}], SCORES, 2))
    assert "point 2 (similarity 0.500000) belongs in the top 2 but is missing" in missing
    wrong_score = " | ".join(qa.check_ranking([{"id": 1, "score": 0.7}], SCORES, 1))
    assert "point 1 scored 0.7, its cosine similarity is 0.900000" in wrong_score
    foreign = " | ".join(qa.check_ranking([{"id": 9, "score": 1.0}], SCORES, 1))
    assert "point 9 is not a candidate" in foreign
    short = " | ".join(qa.check_ranking([{"id": 1, "score": 0.9}], SCORES, 3))
    assert "1 point(s) returned, expected 3" in short


# -- snapshots ----------------------------------------------------------------------------------

def test_check_snapshot_listed():
    data = b"snapshot bytes"
    good = [{"name": "s", "size": len(data), "checksum": qa.sha256_hex(data).upper()}]
    assert qa.check_snapshot_listed(good, "s", data) == []
    assert "'t' is not listed (listed: ['s'])" in qa.check_snapshot_listed(good, "t", data)[0]
    assert "without a checksum" in qa.check_snapshot_listed([{"name": "s", "size": len(data)}], "s", data)[0]
    wrong = " | ".join(qa.check_snapshot_listed([{"name": "s", "size": 3, "checksum": "00"}], "s", data))
    assert "listed with checksum 00, but the downloaded 14 bytes hash to" in wrong
    assert "listed with size 3, but 14 bytes were downloaded" in wrong


def test_snapshot_paths_for_the_real_image_and_the_recipe():
    # the recipe sets the variable; the real image relies on ./snapshots under WORKDIR /qdrant
    recipe = ["PATH=/usr/bin", "QDRANT__STORAGE__SNAPSHOTS_PATH=/qdrant/snapshots"]
    assert qa.snapshots_dir(recipe, "/qdrant") == "/qdrant/snapshots"
    assert qa.snapshots_dir(["PATH=/usr/bin", "RUN_MODE=production"], "/qdrant") == "/qdrant/snapshots"
    assert qa.snapshots_dir(None, "") == "/qdrant/snapshots"
    assert qa.snapshots_dir({"QDRANT__STORAGE__SNAPSHOTS_PATH": "./snaps"}, "/srv") == "/srv/snaps"
    assert qa.snapshots_dir({"QDRANT__STORAGE__SNAPSHOTS_PATH": ""}, "/qdrant") == "/qdrant/snapshots"
    path = qa.snapshot_file("/qdrant/snapshots", "docs", "docs-1-2026-01-01-00-00-00.snapshot")
    assert path == "/qdrant/snapshots/docs/docs-1-2026-01-01-00-00-00.snapshot"
    assert qa.file_location(path) == "file:///qdrant/snapshots/docs/docs-1-2026-01-01-00-00-00.snapshot"
    assert qa.file_location("/q/a b.snapshot") == "file:///q/a%20b.snapshot"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            qa.snapshot_file("/qdrant/snapshots", "docs", bad)
    with pytest.raises(ValueError):
        qa.file_location("snapshots/x.snapshot")


def test_env_dict():
    assert qa.env_dict(["A=1", "B=x=y", "C"]) == {"A": "1", "B": "x=y", "C": ""}
    assert qa.env_dict(None) == {}


def test_check_refused():
    assert qa.check_refused(401, "x") == qa.check_refused(403, "x") == []
    assert qa.check_refused(200, "GET /collections with a wrong key") == [
        "GET /collections with a wrong key was answered 200, expected 401 or 403 (the key must be refused)"]


# -- paging and clean-up over fake replies --------------------------------------------------------

def test_all_points_follows_next_page_offset(monkeypatch):
    pages = {None: ([1, 2], 3), 3: ([3], None)}
    offsets = []

    def fake_scroll(ep, name, flt=None, limit=10, offset=None, with_payload=True, with_vector=False):
        offsets.append(offset)
        ids, nxt = pages[offset]
        return reply(body={"result": {"points": [{"id": i, "payload": {}, "vector": [1.0]} for i in ids],
                                      "next_page_offset": nxt}})

    monkeypatch.setattr(qa, "scroll", fake_scroll)
    assert [p["id"] for p in qa.all_points(qa.Endpoint("http://x"), "c")] == [1, 2, 3]
    assert offsets == [None, 3]


def test_remove_collection_deletes_snapshots_first_and_confirms(monkeypatch):
    calls = []

    def fake_call(ep, method, path, **kwargs):
        calls.append(f"{method} {path}")
        if path.endswith("/snapshots") and method == "GET":
            return reply(body={"result": [{"name": "c-1.snapshot", "size": 1}]})
        if method == "GET":
            return reply(404, {"status": {"error": "Not found"}}, path=path)
        return reply(body={"result": True}, method=method, path=path)

    monkeypatch.setattr(qa, "call", fake_call)
    assert qa.remove_collection(qa.Endpoint("http://x"), "c") == []
    assert calls == ["GET /collections/c/snapshots", "DELETE /collections/c/snapshots/c-1.snapshot",
                     "DELETE /collections/c", "GET /collections/c"]


# -- the HTTP call itself -------------------------------------------------------------------------

class _Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"result": {"api-key": self.headers.get("api-key"),
                                      "authorization": self.headers.get("authorization")}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_server():
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_call_sends_the_key_header_and_ignores_proxy_variables(echo_server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that would refuse the connection
    monkeypatch.setenv("NO_PROXY", "")
    ep = qa.Endpoint(echo_server, "k1")
    assert qa.result_of(qa.call(ep, "GET", "/")) == {"api-key": "k1", "authorization": None}
    assert qa.result_of(qa.call(ep.with_key(None), "GET", "/")) == {"api-key": None, "authorization": None}
    bearer = qa.call(ep.with_key(None), "GET", "/", headers={"Authorization": "Bearer k2"})
    assert qa.result_of(bearer)["authorization"] == "Bearer k2"
