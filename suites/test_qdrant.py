"""Stage qdrant: the provisioned Qdrant answers the calls the gate and the reference AIDB make.

Every contract is run twice, through qdrant-client (REST, `prefer_grpc=False`) and through raw
REST (`requests`, the bodies the AIDB sends), against the run's Qdrant - a real `qdrant/qdrant`
(`--gate-qdrant-image docker.io/qdrant/qdrant:v1.12.6`) or the local qdrant-api recipe, unchanged.
What holds when this stage passes:
- a 384-dim Cosine collection is created, read back with that size and distance, and a missing
  one answers 404 (the AIDB creates its collection on that answer);
- points are upserted and retrieved with their payloads (nested JSON, unicode, null) and their
  (normalised) vectors; upsert overwrites, delete removes;
- filtered scroll pages walk the matching ids once each via `next_page_offset`; exact counts
  follow filters; query (and the legacy search) return the nearest first, scores non-increasing;
- a snapshot is created, listed with a sha256 checksum of its bytes, downloaded, uploaded with
  `priority=snapshot` into a new empty Qdrant container, and every point comes back equal;
- a snapshot on the server's own disk is recovered through a `file://` location;
- a missing or wrong API key is refused (401/403) and the right one accepted.
Each test uses its own collections (unique names) and deletes them, snapshots included; the
AIDB's own collection (`aidb_documents`) on the same server is never touched, and the last test
proves the shared Qdrant is left as it was found.

Behaviour known to differ between the recipe and a real Qdrant is not asserted: recovery with
the default priority (`replica`) yields an empty collection on the recipe, while a real
single-node Qdrant may restore the data (see fixtures/images/qdrant-api/README.md, "Snapshot
priority"); so every recovery here passes `priority=snapshot` explicitly.
"""

from __future__ import annotations

import posixpath
import random
import uuid
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import UnexpectedResponse

from aidb_gate.core import api
from aidb_gate.services import qdrant
from aidb_gate.stages import qdrant as qa

pytestmark = [
    pytest.mark.p1,
    pytest.mark.qdrant,
    # qdrant-client warns whenever a key travels over http; the stack's Qdrant is on 127.0.0.1.
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

DIM = 384
DISTANCE = "Cosine"
#: Every collection this suite makes starts with this; the AIDB's `aidb_documents` never does.
PREFIX = "aidb_gate_conformance_"
TRANSPORTS = ["qdrant-client", "rest"]


# -- the two transports: the same operations, plain values out ---------------------------------

class ViaRest:
    """Raw REST with `requests`: the bodies the reference AIDB sends."""

    def __init__(self, ep: qa.Endpoint):
        self.ep = ep

    def close(self) -> None:
        pass

    def exists(self, name: str) -> bool:
        reply = qa.get_collection(self.ep, name)
        assert reply.status in (200, 404), "\n".join(qa.check_status(reply, {200, 404})) + f"\n\n{reply.describe()}"
        return reply.status == 200

    def create_collection(self, name: str) -> Any:
        return qa.result_of(qa.create_collection(self.ep, name, DIM, DISTANCE))

    def create_collection_status(self, name: str) -> int:
        return qa.create_collection(self.ep, name, DIM, DISTANCE).status

    def info(self, name: str) -> dict[str, Any]:
        result = qa.result_of(qa.get_collection(self.ep, name))
        return {"vectors": ((result.get("config") or {}).get("params") or {}).get("vectors"),
                "points_count": result.get("points_count")}

    def list_collection_names(self) -> list[str]:
        return [c["name"] for c in qa.result_of(qa.get_collections(self.ep))["collections"]]

    def delete_collection(self, name: str) -> Any:
        return qa.result_of(qa.delete_collection(self.ep, name))

    def upsert(self, name: str, points: list[dict[str, Any]]) -> str:
        return qa.result_of(qa.upsert(self.ep, name, points))["status"]

    def retrieve(self, name: str, ids: list[Any]) -> list[dict[str, Any]]:
        return [qa.point_dict(p) for p in qa.result_of(qa.retrieve(self.ep, name, ids, with_vector=True))]

    def delete_points(self, name: str, ids: list[Any]) -> str:
        return qa.result_of(qa.delete_points(self.ep, name, ids))["status"]

    def scroll(self, name: str, flt: dict | None, limit: int, offset: Any) -> tuple[list[dict[str, Any]], Any]:
        result = qa.result_of(qa.scroll(self.ep, name, flt, limit, offset))
        return [qa.point_dict(p) for p in result["points"]], result.get("next_page_offset")

    def count(self, name: str, flt: dict | None = None) -> int:
        return qa.result_of(qa.count(self.ep, name, flt, exact=True))["count"]

    def query(self, name: str, vector: list[float], limit: int, flt: dict | None = None) -> list[dict[str, Any]]:
        return [qa.point_dict(p) for p in qa.result_of(qa.query(self.ep, name, vector, limit, flt))["points"]]

    def create_snapshot(self, name: str) -> dict[str, Any]:
        return qa.snapshot_dict(qa.result_of(qa.create_snapshot(self.ep, name)))

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        return [qa.snapshot_dict(s) for s in qa.result_of(qa.list_snapshots(self.ep, name))]

    def upload_snapshot(self, name: str, path: Any, checksum: str) -> Any:
        return qa.result_of(qa.upload_snapshot(self.ep, name, path.read_bytes(), path.name, "snapshot", checksum))

    def recover_snapshot(self, name: str, location: str, checksum: str | None) -> Any:
        return qa.result_of(qa.recover_snapshot(self.ep, name, location, "snapshot", checksum))


class ViaClient:
    """qdrant-client over REST, as the gate's own code talks to Qdrant."""

    def __init__(self, ep: qa.Endpoint):
        # check_compatibility=False: client 1.20 against a real 1.12 server only warns that the
        # minor versions are more than one apart; this suite checks the calls themselves.
        # trust_env=False (passed to httpx): no proxy between the gate and 127.0.0.1.
        self.client = QdrantClient(url=ep.url, api_key=ep.api_key, prefer_grpc=False, timeout=300,
                                   check_compatibility=False, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def exists(self, name: str) -> bool:
        return self.client.collection_exists(name)

    def create_collection(self, name: str) -> Any:
        return self.client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance(DISTANCE)))

    def create_collection_status(self, name: str) -> int | None:
        try:
            self.create_collection(name)
        except UnexpectedResponse as err:
            return err.status_code
        return 200

    def info(self, name: str) -> dict[str, Any]:
        info = self.client.get_collection(name)
        return {"vectors": info.config.params.vectors, "points_count": info.points_count}

    def list_collection_names(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def delete_collection(self, name: str) -> Any:
        return self.client.delete_collection(name)

    def upsert(self, name: str, points: list[dict[str, Any]]) -> str | None:
        structs = [models.PointStruct(id=p["id"], vector=p["vector"], payload=p["payload"]) for p in points]
        return getattr(self.client.upsert(name, structs, wait=True).status, "value", None)

    def retrieve(self, name: str, ids: list[Any]) -> list[dict[str, Any]]:
        return [qa.point_dict(r) for r in self.client.retrieve(name, ids, with_payload=True, with_vectors=True)]

    def delete_points(self, name: str, ids: list[Any]) -> str | None:
        result = self.client.delete(name, models.PointIdsList(points=ids), wait=True)
        return getattr(result.status, "value", None)

    def scroll(self, name: str, flt: dict | None, limit: int, offset: Any) -> tuple[list[dict[str, Any]], Any]:
        records, next_offset = self.client.scroll(name, scroll_filter=_filter(flt), limit=limit, offset=offset,
                                                  with_payload=True, with_vectors=False)
        return [qa.point_dict(r) for r in records], next_offset

    def count(self, name: str, flt: dict | None = None) -> int:
        return self.client.count(name, count_filter=_filter(flt), exact=True).count

    def query(self, name: str, vector: list[float], limit: int, flt: dict | None = None) -> list[dict[str, Any]]:
        response = self.client.query_points(name, query=vector, query_filter=_filter(flt), limit=limit, with_payload=True)
        return [qa.point_dict(p) for p in response.points]

    def create_snapshot(self, name: str) -> dict[str, Any]:
        return qa.snapshot_dict(self.client.create_snapshot(name, wait=True))

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        return [qa.snapshot_dict(s) for s in self.client.list_snapshots(name)]

    def upload_snapshot(self, name: str, path: Any, checksum: str) -> Any:
        with path.open("rb") as fh:
            return self.client.http.snapshots_api.recover_from_uploaded_snapshot(
                collection_name=name, wait=True, priority=models.SnapshotPriority.SNAPSHOT, checksum=checksum,
                snapshot=fh).result

    def recover_snapshot(self, name: str, location: str, checksum: str | None) -> Any:
        return self.client.recover_snapshot(name, location, checksum=checksum,
                                            priority=models.SnapshotPriority.SNAPSHOT, wait=True)


def _filter(flt: dict | None) -> models.Filter | None:
    return None if flt is None else models.Filter.model_validate(flt)


def connect(kind: str, ep: qa.Endpoint) -> ViaRest | ViaClient:
    return ViaClient(ep) if kind == "qdrant-client" else ViaRest(ep)


# -- test data ------------------------------------------------------------------------------------

LANGS = ["de", "ja", "he"]
TITLES = {"de": "Grüße aus Köln, Straße", "ja": "東京タワーの夜景 🚀", "he": "שלום עולם"}


def payload_for(i: int) -> dict[str, Any]:
    lang = LANGS[i % 3]
    return {
        "n": i,
        "group": "even" if i % 2 == 0 else "odd",
        "title": f"{TITLES[lang]} #{i}",
        "note": None if i % 5 == 0 else f"n° {i}",
        "doc": {"lang": lang, "tags": ["gate", lang, "ß"], "meta": {"score": i / 8, "flag": i % 3 == 0, "parent": None}},
    }


RICH_PAYLOAD = {
    "title": "Grüße aus Köln — 東京タワー 🚀 שלום مرحبا",
    "ключ": "значение",
    "nested": {"level1": {"level2": {"level3": [1, 2.5, "drei", True, None, {"deep": "ß"}]}}},
    "null_value": None,
    "empty": {"list": [], "object": {}, "string": ""},
    "numbers": {"int": -42, "float": 0.125, "big": 2**40},
    "bool": False,
    "list_of_objects": [{"a": 1}, {"a": None}],
}


def make_points(n: int, seed: int) -> list[dict[str, Any]]:
    """Points 1..n with random (not normalised) vectors and varied payloads."""
    rng = random.Random(seed)
    return [{"id": i, "vector": [rng.gauss(0.0, 1.0) for _ in range(DIM)], "payload": payload_for(i)}
            for i in range(1, n + 1)]


def stored(points: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """What a Cosine collection must give back: the payload, and the vector normalised."""
    return {p["id"]: {"payload": p["payload"], "vector": qa.normalize(p["vector"])} for p in points}


def judge(*problem_lists: list[str]) -> None:
    problems = [p for group in problem_lists for p in group]
    assert not problems, "\n".join(problems)


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qdrant_dep(gate_stack):
    if "qdrant" not in gate_stack.deps:
        pytest.fail("Qdrant is disabled in this configuration, so this test should have been deselected "
                    "(dependencies.qdrant.enabled = false)", pytrace=False)
    return gate_stack.of_kind("qdrant")


@pytest.fixture(scope="module")
def server(qdrant_dep) -> qa.Endpoint:
    """The stack's Qdrant (shared with the AIDB), with its per-run key."""
    return qa.Endpoint(qdrant.url(qdrant_dep), qdrant_dep.secrets.get("api_key"))


@pytest.fixture(scope="module", autouse=True)
def found_as(server) -> dict[str, Any]:
    """The stack Qdrant's collections (and their point counts) before this module touched it."""
    return {name: qa.result_of(qa.get_collection(server, name)).get("points_count")
            for name in ViaRest(server).list_collection_names()}


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def via(transport, server):
    """The stack's Qdrant through this test's transport."""
    conn = connect(transport, server)
    yield conn
    conn.close()


@pytest.fixture
def collections():
    """`collections(endpoint, purpose)` -> a unique collection name; each one (and its snapshots)
    is deleted when the test ends, and the test errors if one is left behind."""
    made: list[tuple[qa.Endpoint, str]] = []

    def new(ep: qa.Endpoint, purpose: str, name: str | None = None) -> str:
        name = name or f"{PREFIX}{purpose}_{uuid.uuid4().hex[:10]}"
        assert name.startswith(PREFIX), name
        made.append((ep, name))
        return name

    yield new
    problems = [p for ep, name in reversed(made) for p in qa.remove_collection(ep, name)]
    assert not problems, "clean-up left state behind: " + "; ".join(problems)


@pytest.fixture(scope="module")
def snapshot_target(gate_fresh_dependency) -> qa.Endpoint:
    """A second Qdrant of the same image, new and empty, on the run's network (removed with the run)."""
    dep = gate_fresh_dependency("qdrant", role="qdrant-snapshot-target")
    ep = qa.Endpoint(qdrant.url(dep), dep.secrets.get("api_key"))
    names = ViaRest(ep).list_collection_names()
    assert names == [], f"the new Qdrant container is not empty: {names}"
    return ep


def locate_snapshot(gate_engine, dep, collection: str, snapshot: str) -> str:
    """The snapshot's absolute path inside the server's container.

    Both servers keep `<snapshots dir>/<collection>/<name>`; the directory is the container's
    `QDRANT__STORAGE__SNAPSHOTS_PATH` (the recipe sets /qdrant/snapshots), else the real image's
    default `./snapshots` under its WORKDIR /qdrant. The file is confirmed with `test -f`; if it
    is not there, `find` looks for it by name, so a server with another layout still works.
    """
    config = api.inspect(gate_engine, dep.container_id).get("Config") or {}
    path = qa.snapshot_file(qa.snapshots_dir(config.get("Env"), config.get("WorkingDir")), collection, snapshot)
    code, _, _ = api.exec_in(gate_engine, dep.container_id, ["test", "-f", path])
    if code == 0:
        return path
    code, out, err = api.exec_in(gate_engine, dep.container_id, [
        "find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
        "-type", "f", "-name", snapshot, "-print"])
    hits = [line for line in out.splitlines() if posixpath.basename(posixpath.dirname(line)) == collection]
    assert hits, (f"snapshot {snapshot!r} is neither at {path} nor anywhere else in the container "
                  f"(find exit {code}: {err.strip()[:300]})")
    return hits[0]


# -- collections -----------------------------------------------------------------------------------

def test_collection_create_and_info(via, server, collections):
    """A missing collection answers 404 / does not exist; a 384-dim Cosine collection is created,
    listed, read back with that size and distance and 0 points; creating it again is refused
    (409 on current Qdrant, 400 on older ones - the AIDB handles both); it can be deleted."""
    name = collections(server, "create")
    assert via.exists(name) is False, f"{name} exists before it was created"
    assert via.create_collection(name) is True
    info = via.info(name)
    judge(qa.check_vector_params(info["vectors"], DIM, DISTANCE, where=name))
    assert info["points_count"] in (0, None), f"a new collection holds {info['points_count']} points"
    assert name in via.list_collection_names()
    status = via.create_collection_status(name)
    assert status in (400, 409), f"creating {name} a second time answered {status}, expected 409 (or 400)"
    assert via.delete_collection(name) is True
    assert via.exists(name) is False, f"{name} still exists after DELETE"


# -- points ----------------------------------------------------------------------------------------

def test_upsert_and_retrieve_payloads_and_vectors(via, server, collections):
    """Upserted points (integer and UUID ids) come back with their payloads exactly (nested JSON,
    unicode keys and values, null, empty containers) and their vectors normalised; a missing id is
    simply absent; upsert overwrites; delete removes."""
    name = collections(server, "points")
    via.create_collection(name)
    points = make_points(6, seed=11)
    rich_id = str(uuid.UUID(int=random.Random(5).getrandbits(128)))
    points.append({"id": rich_id, "vector": make_points(1, seed=12)[0]["vector"], "payload": RICH_PAYLOAD})
    assert via.upsert(name, points) == "completed"

    expected = stored(points)
    ids = [p["id"] for p in points]
    judge(qa.check_points(expected, via.retrieve(name, [*ids, 999_999]), vectors=True, where="retrieve"))

    changed = {"id": 1, "vector": points[0]["vector"], "payload": {"title": "überschrieben ✓", "note": None}}
    assert via.upsert(name, [changed]) == "completed"
    assert via.delete_points(name, [2]) == "completed"
    expected[1] = {"payload": changed["payload"], "vector": qa.normalize(changed["vector"])}
    del expected[2]
    judge(qa.check_points(expected, via.retrieve(name, ids), vectors=True, where="retrieve after overwrite and delete"))
    assert via.count(name) == len(expected)


def test_get_point_by_uuid(server, collections):
    """REST only (qdrant-client has no single-point call): `GET .../points/{uuid}` answers the point
    with payload and vector, and a missing id answers 404."""
    name = collections(server, "getpoint")
    rest = ViaRest(server)
    rest.create_collection(name)
    point = {"id": str(uuid.uuid4()), "vector": make_points(1, seed=13)[0]["vector"], "payload": RICH_PAYLOAD}
    rest.upsert(name, [point])
    got = qa.point_dict(qa.result_of(qa.get_point(server, name, point["id"])))
    judge(qa.check_points(stored([point]), [got], vectors=True, where="GET point"))
    judge(qa.check_status(qa.get_point(server, name, str(uuid.uuid4())), 404))


# -- scroll, count, query ------------------------------------------------------------------------

def test_filtered_scroll_pages_with_next_page_offset(via, server, collections):
    """A filtered scroll walks every matching point once, in ascending id order, `limit` at a time:
    each `next_page_offset` is the first id of the next page and the last one is null; every
    point returned matches the filter. An unfiltered scroll walks them all the same way."""
    name = collections(server, "scroll")
    via.create_collection(name)
    points = make_points(50, seed=21)
    via.upsert(name, points)
    even = {"must": [{"key": "group", "match": {"value": "even"}}]}

    for flt, expected_ids, limit in ((even, [p["id"] for p in points if p["id"] % 2 == 0], 7),
                                     (None, [p["id"] for p in points], 20)):
        pages, offset, problems = [], None, []
        for _ in range(len(points) + 1):
            page, next_offset = via.scroll(name, flt, limit, offset)
            pages.append(([p["id"] for p in page], next_offset))
            if flt is not None:
                problems += [f"scroll returned point {p['id']} with group {p['payload'].get('group')!r}"
                             for p in page if (p["payload"] or {}).get("group") != "even"]
            offset = next_offset
            if offset is None:
                break
        judge(problems, qa.check_pages(pages, expected_ids, limit, where=f"scroll filter={flt}"))


def test_exact_count_follows_filters(via, server, collections):
    """Exact counts: all points, a keyword match, a nested key, a range combined with a match, and
    after a delete."""
    name = collections(server, "count")
    via.create_collection(name)
    points = make_points(50, seed=31)
    via.upsert(name, points)
    cases = [
        (None, len(points)),
        ({"must": [{"key": "group", "match": {"value": "even"}}]}, 25),
        ({"must": [{"key": "doc.lang", "match": {"value": "de"}}]},
         sum(1 for p in points if p["payload"]["doc"]["lang"] == "de")),
        ({"must": [{"key": "n", "range": {"gte": 10, "lt": 30}}, {"key": "group", "match": {"value": "odd"}}]},
         sum(1 for p in points if 10 <= p["id"] < 30 and p["id"] % 2 == 1)),
        ({"must_not": [{"key": "doc.lang", "match": {"any": ["de", "ja"]}}]},
         sum(1 for p in points if p["payload"]["doc"]["lang"] == "he")),
    ]
    problems = []
    for flt, want in cases:
        got = via.count(name, flt)
        if got != want:
            problems.append(f"count filter={flt} is {got}, expected {want}")
    via.delete_points(name, [1, 2, 3])
    if (got := via.count(name)) != len(points) - 3:
        problems.append(f"count after deleting 3 of {len(points)} points is {got}, expected {len(points) - 3}")
    judge(problems)


def _query_vector(points: list[dict[str, Any]], nearest_id: int, seed: int) -> list[float]:
    """A query close to one point's vector (scaled, with a little noise): that point is nearest."""
    rng = random.Random(seed)
    base = next(p["vector"] for p in points if p["id"] == nearest_id)
    return [2.5 * x + rng.gauss(0.0, 0.3) for x in base]


def test_query_returns_the_nearest_first(via, server, collections):
    """`/points/query` (what the AIDB searches with) returns the true top-k by cosine similarity,
    the nearest first, scores non-increasing and equal to the similarity; with a filter, only
    matching points, ranked the same way."""
    name = collections(server, "query")
    via.create_collection(name)
    points = make_points(40, seed=41)
    via.upsert(name, points)
    q = _query_vector(points, nearest_id=7, seed=42)
    scores = {p["id"]: qa.cosine(q, p["vector"]) for p in points}
    judge(qa.check_ranking(via.query(name, q, 10), scores, 10, where="query"))

    even = {"must": [{"key": "group", "match": {"value": "even"}}]}
    q_even = _query_vector(points, nearest_id=12, seed=43)
    even_scores = {p["id"]: qa.cosine(q_even, p["vector"]) for p in points if p["id"] % 2 == 0}
    judge(qa.check_ranking(via.query(name, q_even, 5, even), even_scores, 5, where="filtered query"))


def test_legacy_search_returns_the_nearest_first(server, collections):
    """REST only (qdrant-client 1.20 no longer calls it): the legacy `/points/search` ranks like query."""
    name = collections(server, "search")
    rest = ViaRest(server)
    rest.create_collection(name)
    points = make_points(40, seed=51)
    rest.upsert(name, points)
    q = _query_vector(points, nearest_id=33, seed=52)
    scores = {p["id"]: qa.cosine(q, p["vector"]) for p in points}
    hits = [qa.point_dict(p) for p in qa.result_of(qa.search(server, name, q, 10))]
    judge(qa.check_ranking(hits, scores, 10, where="search"))


# -- snapshots -------------------------------------------------------------------------------------

@pytest.mark.gate_fresh("qdrant", role="qdrant-snapshot-target")
def test_snapshot_round_trip_into_a_new_qdrant(via, transport, server, snapshot_target, collections, tmp_path):
    """A snapshot is created, listed with a sha256 checksum that matches the downloaded bytes,
    downloaded, uploaded with `priority=snapshot` into a new, empty Qdrant container, and there
    every point is equal to the source's: ids, payloads, vectors within float tolerance."""
    name = collections(server, "snap")
    via.create_collection(name)
    points = make_points(40, seed=61)
    points.append({"id": str(uuid.uuid4()), "vector": make_points(1, seed=62)[0]["vector"], "payload": RICH_PAYLOAD})
    via.upsert(name, points)
    source_points = qa.all_points(server, name)
    judge(qa.check_points(stored(points), source_points, vectors=True, where="source before the snapshot"))

    created = via.create_snapshot(name)
    assert created["name"], f"create_snapshot answered {created}"
    listing = via.list_snapshots(name)
    download = qa.download_snapshot(server, name, created["name"])
    judge(qa.check_status(download, 200))
    judge(qa.check_snapshot_listed(listing, created["name"], download.content))
    if created.get("checksum"):
        assert created["checksum"] == qa.sha256_hex(download.content), "create_snapshot's checksum is not the file's"
    snapshot_file = tmp_path / created["name"]
    snapshot_file.write_bytes(download.content)

    # The same collection name on the new server, as a real restore would use. The new server
    # runs the same image as the stack's (snapshot files are not portable between the recipe and
    # a real Qdrant). The recipe keeps the uploaded file in the collection's snapshot folder and a
    # real Qdrant may not; clean-up deletes whatever is listed, so neither is asserted.
    target_name = collections(snapshot_target, "snap", name=name)
    target = connect(transport, snapshot_target)
    try:
        assert target.exists(target_name) is False, f"{target_name} exists on the new Qdrant before the upload"
        # priority=snapshot, always: the default (replica) gives an empty collection on the
        # recipe and may restore on a real single-node Qdrant, so it is not asserted here.
        assert target.upload_snapshot(target_name, snapshot_file, qa.sha256_hex(download.content)) is True
        info = target.info(target_name)
    finally:
        target.close()
    judge(qa.check_vector_params(info["vectors"], DIM, DISTANCE, where=f"{target_name} on the new Qdrant"))
    restored = qa.all_points(snapshot_target, target_name)
    judge(qa.check_points({p["id"]: p for p in source_points}, restored, vectors=True, where="restored vs source"),
          qa.check_points(stored(points), restored, vectors=True, where="restored vs upserted"))
    assert info["points_count"] in (len(points), None), \
        f"the restored collection reports {info['points_count']} points, expected {len(points)}"


def test_recover_from_a_file_location_on_the_server(via, server, qdrant_dep, gate_engine, collections):
    """`PUT .../snapshots/recover` with a `file://` location of a snapshot on the server's own disk
    (`<snapshots dir>/<collection>/<name>`, found the same way on the real image and the recipe)
    with `priority=snapshot`: into a new collection it brings back every point, and into the
    source collection after points were deleted and changed, it puts back the snapshot's state."""
    name = collections(server, "recover")
    via.create_collection(name)
    points = make_points(30, seed=71)
    via.upsert(name, points)
    expected = stored(points)

    created = via.create_snapshot(name)
    listed = {s["name"]: s for s in via.list_snapshots(name)}
    assert created["name"] in listed, f"{created['name']} is not listed: {sorted(listed)}"
    checksum = listed[created["name"]].get("checksum")
    location = qa.file_location(locate_snapshot(gate_engine, qdrant_dep, name, created["name"]))

    via.delete_points(name, [1, 2, 3, 4, 5])
    via.upsert(name, [{"id": 6, "vector": points[5]["vector"], "payload": {"changed": True}}])

    copy = collections(server, "recovered")
    assert via.recover_snapshot(copy, location, checksum) is True
    judge(qa.check_vector_params(via.info(copy)["vectors"], DIM, DISTANCE, where=copy),
          qa.check_points(expected, qa.all_points(server, copy), vectors=True, where=f"recovered into {copy}"))

    assert via.recover_snapshot(name, location, checksum) is True
    judge(qa.check_points(expected, qa.all_points(server, name), vectors=True, where=f"recovered over {name}"))


# -- the API key -----------------------------------------------------------------------------------

@pytest.mark.gate_requires("stack.qdrant_api_key")
def test_api_key_is_required(transport, server, collections):
    """Without a key or with a wrong one (header or bearer), reads and writes are refused with
    401/403 and nothing is written; the right key (header or bearer) is accepted."""
    name = collections(server, "auth")
    wrong = server.with_key("wrong-" + uuid.uuid4().hex)
    problems: list[str] = []
    if transport == "rest":
        problems += qa.check_refused(qa.call(server.with_key(None), "GET", "/collections").status,
                                     "GET /collections without a key")
        problems += qa.check_refused(qa.get_collections(wrong).status, "GET /collections with a wrong api-key")
        problems += qa.check_refused(
            qa.call(server.with_key(None), "GET", "/collections", headers={"Authorization": f"Bearer {wrong.api_key}"}).status,
            "GET /collections with a wrong bearer token")
        problems += qa.check_refused(qa.create_collection(wrong, name, DIM).status, "PUT /collections/{c} with a wrong key")
        problems += qa.check_status(qa.get_collections(server), 200)
        problems += qa.check_status(
            qa.call(server.with_key(None), "GET", "/collections", headers={"Authorization": f"Bearer {server.api_key}"}), 200)
    else:
        for what, action in (("get_collections with a wrong key", lambda c: c.get_collections()),
                             ("create_collection with a wrong key", lambda c: c.create_collection(
                                 name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance(DISTANCE))))):
            client = ViaClient(wrong)
            try:
                action(client.client)
                problems.append(f"{what} was accepted")
            except UnexpectedResponse as err:
                problems += qa.check_refused(err.status_code, what)
            finally:
                client.close()
        right = ViaClient(server)
        try:
            right.list_collection_names()
        except UnexpectedResponse as err:
            problems.append(f"get_collections with the right key was answered {err.status_code}")
        finally:
            right.close()
    if ViaRest(server).exists(name):
        problems.append(f"{name} was created by a request with a wrong key")
    judge(problems)


# -- last: the shared Qdrant is as this module found it ---------------------------------------------

def test_the_stack_qdrant_is_left_as_found(server, found_as):
    """No collection of this suite remains on the stack's Qdrant, and every collection that was
    there before (the AIDB's `aidb_documents`) is still there with the same number of points."""
    now = {name: qa.result_of(qa.get_collection(server, name)).get("points_count")
           for name in ViaRest(server).list_collection_names()}
    problems = [f"{name} was left behind" for name in now if name.startswith(PREFIX)]
    for name, points in found_as.items():
        if name.startswith(PREFIX):
            continue
        if name not in now:
            problems.append(f"{name} (not this suite's) is gone")
        elif now[name] != points:
            problems.append(f"{name} (not this suite's) held {points} points, now {now[name]}")
    judge(problems)
