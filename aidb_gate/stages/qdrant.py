"""qdrant_api: the Qdrant REST calls the gate and the reference AIDB make, and checks over the answers.

Guarantees:
- each REST call returns a `Reply` (method, path, status, body bytes, time); `result_of` turns a
  reply into its `result` or raises one AssertionError that shows the whole exchange;
- points and snapshot descriptions from qdrant-client models and from raw REST JSON reduce to the
  same plain dicts (`point_dict`, `snapshot_dict`), so one set of checks judges both transports;
- each `check_*` takes plain values and returns a list of problems in plain words - empty means
  the contract holds - so failure messages read the same in every suite and in the unit tests;
- nothing here assumes which Qdrant answers: a real `qdrant/qdrant` and the local qdrant-api
  recipe are judged alike (the snapshot path rules below hold for both images).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aidb_gate.core import http
from aidb_gate.core.text import clip
from aidb_gate.stages import health

#: What a refused API key may answer: 401 (missing or wrong key), 403 (valid key without rights).
REFUSED = {401, 403}
#: Float tolerance for vectors read back: Qdrant stores float32, and normalises cosine vectors.
VECTOR_TOLERANCE = 1e-6
#: Tolerance for scores compared with cosine similarity computed here in float64.
SCORE_TOLERANCE = 1e-4
#: The real image's default (config/config.yaml: `snapshots_path: ./snapshots`, WORKDIR /qdrant).
DEFAULT_SNAPSHOTS_PATH = "./snapshots"
DEFAULT_WORKDIR = "/qdrant"
SNAPSHOTS_ENV = "QDRANT__STORAGE__SNAPSHOTS_PATH"


# -- one HTTP exchange ------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """A Qdrant REST endpoint as seen from the host, with the key to send (None: no key)."""

    url: str
    api_key: str | None = None

    def with_key(self, api_key: str | None) -> Endpoint:
        return replace(self, api_key=api_key)


class Reply(health.Reply):
    """A reply from a Qdrant REST API, which also knows where Qdrant puts its error text."""

    @property
    def error(self) -> str | None:
        """Qdrant's error text: `{"status": {"error": ...}}`, else the plain-text body."""
        body = self.json
        if isinstance(body, dict) and isinstance(body.get("status"), dict):
            return str(body["status"].get("error"))
        return None if self.status < 400 else clip(self.text, 300)


def call(endpoint: Endpoint, method: str, path: str, timeout_s: float = 60.0, headers: Mapping[str, str] | None = None,
         **kwargs: Any) -> Reply:
    """One request, finished within `timeout_s`; the key goes in the `api-key` header, as the
    reference AIDB sends it.

    It goes through `core.http`, which ignores proxy variables: a proxy meant for pip must never
    sit between the gate and a container on 127.0.0.1.
    """
    sent = {"api-key": endpoint.api_key} if endpoint.api_key is not None else {}
    sent.update(headers or {})
    begin = time.monotonic()
    resp = http.request(method, endpoint.url + path, headers=sent, deadline_s=timeout_s, **kwargs)
    elapsed = (time.monotonic() - begin) * 1000
    return Reply(method, path, resp.status_code, resp.content, resp.headers.get("content-type", ""), elapsed)


def check_status(reply: Reply, expected: int | Iterable[int]) -> list[str]:
    allowed = {expected} if isinstance(expected, int) else set(expected)
    if reply.status not in allowed:
        want = " or ".join(str(s) for s in sorted(allowed))
        return [f"{reply.method} {reply.path} returned {reply.status}, expected {want}: "
                f"{reply.error or clip(reply.text, 300)}"]
    return []


def result_of(reply: Reply, expected: int | Iterable[int] = 200) -> Any:
    """The `result` of a Qdrant envelope, or an AssertionError that shows the exchange."""
    problems = check_status(reply, expected)
    body = reply.json
    if not problems and not (isinstance(body, dict) and "result" in body):
        problems.append(f"{reply.method} {reply.path}: the body is not a Qdrant envelope with `result`")
    if problems:
        raise AssertionError("; ".join(problems) + f"\n\n{reply.describe()}")
    return body["result"]


def _c(name: str) -> str:
    return "/collections/" + urllib.parse.quote(name, safe="")


# -- the REST calls (the same bodies the reference AIDB and the gate send) --------------------

def get_collections(ep: Endpoint) -> Reply:
    return call(ep, "GET", "/collections")


def get_collection(ep: Endpoint, name: str) -> Reply:
    return call(ep, "GET", _c(name))


def create_collection(ep: Endpoint, name: str, size: int, distance: str = "Cosine") -> Reply:
    return call(ep, "PUT", _c(name), json={"vectors": {"size": size, "distance": distance}})


def delete_collection(ep: Endpoint, name: str) -> Reply:
    return call(ep, "DELETE", _c(name))


def upsert(ep: Endpoint, name: str, points: Sequence[Mapping[str, Any]]) -> Reply:
    body = {"points": [{"id": p["id"], "vector": list(p["vector"]), "payload": p.get("payload") or {}} for p in points]}
    return call(ep, "PUT", _c(name) + "/points", params={"wait": "true"}, json=body)


def retrieve(ep: Endpoint, name: str, ids: Sequence[Any], with_vector: bool = True) -> Reply:
    return call(ep, "POST", _c(name) + "/points",
                json={"ids": list(ids), "with_payload": True, "with_vector": with_vector})


def get_point(ep: Endpoint, name: str, point_id: Any) -> Reply:
    return call(ep, "GET", f"{_c(name)}/points/{urllib.parse.quote(str(point_id), safe='')}")


def delete_points(ep: Endpoint, name: str, ids: Sequence[Any]) -> Reply:
    return call(ep, "POST", _c(name) + "/points/delete", params={"wait": "true"}, json={"points": list(ids)})


def scroll(ep: Endpoint, name: str, flt: Mapping[str, Any] | None = None, limit: int = 10, offset: Any = None,
           with_payload: bool = True, with_vector: bool = False) -> Reply:
    body: dict[str, Any] = {"limit": limit, "with_payload": with_payload, "with_vector": with_vector}
    if flt is not None:
        body["filter"] = flt
    if offset is not None:
        body["offset"] = offset
    return call(ep, "POST", _c(name) + "/points/scroll", json=body)


def count(ep: Endpoint, name: str, flt: Mapping[str, Any] | None = None, exact: bool = True) -> Reply:
    body: dict[str, Any] = {"exact": exact}
    if flt is not None:
        body["filter"] = flt
    return call(ep, "POST", _c(name) + "/points/count", json=body)


def query(ep: Endpoint, name: str, vector: Sequence[float], limit: int, flt: Mapping[str, Any] | None = None) -> Reply:
    """The universal query API (Qdrant >= 1.10), as the reference AIDB searches."""
    body: dict[str, Any] = {"query": list(vector), "limit": limit, "with_payload": True}
    if flt is not None:
        body["filter"] = flt
    return call(ep, "POST", _c(name) + "/points/query", json=body)


def search(ep: Endpoint, name: str, vector: Sequence[float], limit: int, flt: Mapping[str, Any] | None = None) -> Reply:
    """The legacy search API (deprecated upstream, still served by 1.x)."""
    body: dict[str, Any] = {"vector": list(vector), "limit": limit, "with_payload": True}
    if flt is not None:
        body["filter"] = flt
    return call(ep, "POST", _c(name) + "/points/search", json=body)


def create_snapshot(ep: Endpoint, name: str) -> Reply:
    return call(ep, "POST", _c(name) + "/snapshots", params={"wait": "true"}, timeout_s=300)


def list_snapshots(ep: Endpoint, name: str) -> Reply:
    return call(ep, "GET", _c(name) + "/snapshots")


def download_snapshot(ep: Endpoint, name: str, snapshot: str) -> Reply:
    return call(ep, "GET", f"{_c(name)}/snapshots/{urllib.parse.quote(snapshot, safe='')}", timeout_s=300)


def delete_snapshot(ep: Endpoint, name: str, snapshot: str) -> Reply:
    return call(ep, "DELETE", f"{_c(name)}/snapshots/{urllib.parse.quote(snapshot, safe='')}",
                params={"wait": "true"})


def upload_snapshot(ep: Endpoint, name: str, data: bytes, filename: str, priority: str | None = "snapshot",
                    checksum: str | None = None) -> Reply:
    """`POST .../snapshots/upload` (multipart field `snapshot`): recover from the uploaded file."""
    params = {"wait": "true"}
    if priority is not None:
        params["priority"] = priority
    if checksum is not None:
        params["checksum"] = checksum
    return call(ep, "POST", _c(name) + "/snapshots/upload", params=params, timeout_s=300,
                files={"snapshot": (filename, data, "application/octet-stream")})


def recover_snapshot(ep: Endpoint, name: str, location: str, priority: str | None = "snapshot",
                     checksum: str | None = None) -> Reply:
    """`PUT .../snapshots/recover` from a location the server can read (`file://` on its own disk)."""
    body: dict[str, Any] = {"location": location}
    if priority is not None:
        body["priority"] = priority
    if checksum is not None:
        body["checksum"] = checksum
    return call(ep, "PUT", _c(name) + "/snapshots/recover", params={"wait": "true"}, json=body, timeout_s=300)


def all_points(ep: Endpoint, name: str, page: int = 256) -> list[dict[str, Any]]:
    """Every point of a collection (payload and vector), by id, through scroll pages."""
    out: list[dict[str, Any]] = []
    offset = None
    for _ in range(100_000):
        result = result_of(scroll(ep, name, limit=page, offset=offset, with_vector=True))
        out += [point_dict(p) for p in result.get("points") or []]
        offset = result.get("next_page_offset")
        if offset is None:
            return out
    raise AssertionError(f"scrolling {name!r} never ended (next_page_offset kept coming)")


def remove_collection(ep: Endpoint, name: str) -> list[str]:
    """Delete a collection's snapshots, then the collection; the problems left (empty: it is gone).

    Snapshots are deleted first because a real Qdrant keeps `snapshots/<collection>/` after the
    collection itself is deleted.
    """
    problems: list[str] = []
    listing = list_snapshots(ep, name)
    if listing.status == 200:
        for snap in listing.json.get("result") or []:
            problems += check_status(delete_snapshot(ep, name, snap["name"]), 200)
    # Deleting a collection that is not there: the recipe answers 200 `result: false`, a real
    # Qdrant 200 `false` or 404 depending on the version; either way it is gone.
    gone = delete_collection(ep, name)
    problems += check_status(gone, {200, 404})
    problems += check_status(get_collection(ep, name), 404)
    return problems


# -- plain values from either transport -------------------------------------------------------

def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def point_dict(point: Any) -> dict[str, Any]:
    """`{"id", "payload", "vector"[, "score"]}` from a REST point (dict) or a qdrant-client
    Record/ScoredPoint; `vector` is None when it was not asked for."""
    out = {"id": _field(point, "id"), "payload": _field(point, "payload"), "vector": _field(point, "vector")}
    score = _field(point, "score")
    if score is not None:
        out["score"] = score
    return out


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    """`{"name", "size", "checksum", "creation_time"}` from REST JSON or a SnapshotDescription."""
    return {k: _field(snapshot, k) for k in ("name", "size", "checksum", "creation_time")}


def vector_params(params: Any) -> tuple[Any, Any]:
    """(size, distance name) of an unnamed vector config: REST `config.params.vectors` or VectorParams."""
    size, distance = _field(params, "size"), _field(params, "distance")
    return size, getattr(distance, "value", distance)


# -- vectors ------------------------------------------------------------------------------------

def normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- checks -------------------------------------------------------------------------------------

def check_vector_params(params: Any, size: int, distance: str, where: str = "collection") -> list[str]:
    got_size, got_distance = vector_params(params)
    if (got_size, got_distance) != (size, distance):
        return [f"{where}: vectors read back as size {got_size!r} ({got_distance!r}), expected size {size} ({distance}); "
                f"config.params.vectors = {params!r}"]
    return []


def payload_difference(expected: Any, actual: Any, path: str = "payload") -> str | None:
    """Where two JSON values first differ, in words; None when equal (types compared strictly:
    `true` is not `1`, `1` is not `"1"`, `null` is not a missing key)."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key in expected:
            if key not in actual:
                return f"{path}.{key} is missing (expected {expected[key]!r})"
        for key in actual:
            if key not in expected:
                return f"{path}.{key} is unexpected ({actual[key]!r})"
        for key in expected:
            diff = payload_difference(expected[key], actual[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path} has {len(actual)} item(s), expected {len(expected)}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = payload_difference(e, a, f"{path}[{i}]")
            if diff:
                return diff
        return None
    same_type = type(expected) is type(actual) or (
        isinstance(expected, float) and isinstance(actual, int) and not isinstance(actual, bool) and expected == actual)
    if not same_type or expected != actual:
        return f"{path} is {actual!r}, expected {expected!r}"
    return None


def vector_difference(expected: Sequence[float] | None, actual: Any, tolerance: float = VECTOR_TOLERANCE) -> str | None:
    if not isinstance(actual, Sequence) or isinstance(actual, (str, bytes)):
        return f"the vector is {type(actual).__name__} {str(actual)[:80]}, expected a list of {len(expected or [])} floats"
    if expected is None:
        return None
    if len(actual) != len(expected):
        return f"the vector has {len(actual)} dimension(s), expected {len(expected)}"
    worst = max(range(len(expected)), key=lambda i: abs(float(actual[i]) - expected[i]), default=None)
    if worst is not None and abs(float(actual[worst]) - expected[worst]) > tolerance:
        return (f"the vector differs at [{worst}]: {actual[worst]!r}, expected {expected[worst]!r} "
                f"(tolerance {tolerance})")
    return None


def check_points(expected: Mapping[Any, Mapping[str, Any]], actual: Sequence[Mapping[str, Any]], *, vectors: bool,
                 where: str, tolerance: float = VECTOR_TOLERANCE) -> list[str]:
    """`actual` holds exactly the points of `expected` ({id: {"payload", "vector"}}): no id missing,
    none extra or repeated, payloads equal, vectors (when `vectors`) within `tolerance`."""
    problems: list[str] = []
    seen: dict[Any, Mapping[str, Any]] = {}
    for point in actual:
        if point["id"] in seen:
            problems.append(f"{where}: point {point['id']!r} is returned twice")
        seen[point["id"]] = point
    missing = [pid for pid in expected if pid not in seen]
    extra = [pid for pid in seen if pid not in expected]
    if missing:
        problems.append(f"{where}: {len(missing)} point(s) missing: {sorted(map(str, missing))[:10]}")
    if extra:
        problems.append(f"{where}: {len(extra)} unexpected point(s): {sorted(map(str, extra))[:10]}")
    for pid, want in expected.items():
        got = seen.get(pid)
        if got is None:
            continue
        diff = payload_difference(want.get("payload") or {}, got.get("payload") or {})
        if diff:
            problems.append(f"{where}: point {pid!r}: {diff}")
        if vectors:
            diff = vector_difference(want.get("vector"), got.get("vector"), tolerance)
            if diff:
                problems.append(f"{where}: point {pid!r}: {diff}")
    return problems


def check_pages(pages: Sequence[tuple[Sequence[Any], Any]], expected_ids: Sequence[Any], limit: int,
                where: str = "scroll") -> list[str]:
    """Scroll pages [(ids, next_page_offset), ...] walk `expected_ids` in order, `limit` at a time:
    every page but the last is full, each `next_page_offset` is the first id of the next page, the
    last one is null, and no id is skipped or repeated."""
    problems: list[str] = []
    walked = [pid for ids, _ in pages for pid in ids]
    if walked != list(expected_ids):
        problems.append(f"{where}: the pages walk {walked}, expected {list(expected_ids)} (ascending ids, each once)")
    for i, (ids, next_offset) in enumerate(pages):
        last = i == len(pages) - 1
        if len(ids) > limit:
            problems.append(f"{where}: page {i + 1} holds {len(ids)} points, over the limit {limit}")
        if not last and len(ids) != limit:
            problems.append(f"{where}: page {i + 1} holds {len(ids)} points, but more follow (limit {limit})")
        if last and next_offset is not None:
            problems.append(f"{where}: the last page's next_page_offset is {next_offset!r}, expected null")
        if not last and pages[i + 1][0] and next_offset != pages[i + 1][0][0]:
            problems.append(f"{where}: page {i + 1}'s next_page_offset is {next_offset!r}, but the next page starts "
                            f"at {pages[i + 1][0][0]!r}")
    return problems


def check_ranking(scored: Sequence[Mapping[str, Any]], expected_scores: Mapping[Any, float], limit: int,
                  where: str = "query", tolerance: float = SCORE_TOLERANCE) -> list[str]:
    """A nearest-neighbour answer: min(limit, candidates) points, the nearest first, scores
    non-increasing, each score the cosine similarity computed here, and the set the true top
    `limit` (points tied within `tolerance` at the cut may swap)."""
    problems: list[str] = []
    want = min(limit, len(expected_scores))
    if len(scored) != want:
        problems.append(f"{where}: {len(scored)} point(s) returned, expected {want}")
    scores = [float(p["score"]) for p in scored]
    for i in range(1, len(scores)):
        if scores[i] > scores[i - 1] + 1e-9:
            problems.append(f"{where}: scores increase at rank {i + 1}: {scores[i - 1]!r} then {scores[i]!r} "
                            "(the nearest must come first)")
            break
    for point in scored:
        pid = point["id"]
        if pid not in expected_scores:
            problems.append(f"{where}: point {pid!r} is not a candidate (does it match the filter?)")
        elif abs(float(point["score"]) - expected_scores[pid]) > tolerance:
            problems.append(f"{where}: point {pid!r} scored {point['score']!r}, its cosine similarity is "
                            f"{expected_scores[pid]:.6f}")
    ranked = sorted(expected_scores.items(), key=lambda kv: -kv[1])
    if ranked and scored and scored[0]["id"] != ranked[0][0] and \
            abs(expected_scores.get(scored[0]["id"], -2.0) - ranked[0][1]) > tolerance:
        problems.append(f"{where}: the first point is {scored[0]['id']!r}, but the nearest is {ranked[0][0]!r} "
                        f"(similarity {ranked[0][1]:.6f})")
    returned = {p["id"] for p in scored if p["id"] in expected_scores}
    if returned:
        # A candidate left out while a less similar one was returned (ties within the tolerance may swap).
        worst = min(expected_scores[pid] for pid in returned)
        left_out = [(pid, score) for pid, score in ranked if pid not in returned and score > worst + tolerance]
        problems += [f"{where}: point {pid!r} (similarity {score:.6f}) belongs in the top {want} but is missing"
                     for pid, score in left_out[:5]]
    return problems


def check_snapshot_listed(listing: Sequence[Mapping[str, Any]], name: str, data: bytes,
                          where: str = "snapshots") -> list[str]:
    """The snapshot is listed, with a size and a sha256 `checksum` that match the downloaded bytes."""
    entry = next((s for s in listing if s.get("name") == name), None)
    if entry is None:
        return [f"{where}: {name!r} is not listed (listed: {[s.get('name') for s in listing]})"]
    problems = []
    digest = sha256_hex(data)
    checksum = entry.get("checksum")
    if not checksum:
        problems.append(f"{where}: {name!r} is listed without a checksum")
    elif str(checksum).lower() != digest:
        problems.append(f"{where}: {name!r} is listed with checksum {checksum}, but the downloaded "
                        f"{len(data)} bytes hash to {digest}")
    if entry.get("size") is not None and entry["size"] != len(data):
        problems.append(f"{where}: {name!r} is listed with size {entry['size']}, but {len(data)} bytes were downloaded")
    return problems


def check_refused(status: int | None, what: str) -> list[str]:
    if status not in REFUSED:
        return [f"{what} was answered {status}, expected 401 or 403 (the key must be refused)"]
    return []


# -- where a snapshot lies on the server's own disk ---------------------------------------------

def env_dict(env: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """A container's `Config.Env` (["K=V", ...]) as a dict."""
    if env is None:
        return {}
    if isinstance(env, Mapping):
        return dict(env)
    return {key: value for key, _, value in (item.partition("=") for item in env)}


def snapshots_dir(env: Iterable[str] | Mapping[str, str] | None, workdir: str | None) -> str:
    """The server's snapshots directory: `QDRANT__STORAGE__SNAPSHOTS_PATH` when the container sets
    it (the recipe does: /qdrant/snapshots), else the real image's `./snapshots`, resolved against
    the container's working directory (the real image's is /qdrant)."""
    path = env_dict(env).get(SNAPSHOTS_ENV) or DEFAULT_SNAPSHOTS_PATH
    return posixpath.normpath(posixpath.join(workdir or DEFAULT_WORKDIR, path))


def snapshot_file(directory: str, collection: str, snapshot: str) -> str:
    """`<snapshots dir>/<collection>/<snapshot>`: where both servers keep a collection snapshot."""
    for part in (collection, snapshot):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"not a plain file name: {part!r}")
    return posixpath.join(directory, collection, snapshot)


def file_location(path: str) -> str:
    """A `file://` URL for an absolute path inside the server's container."""
    if not path.startswith("/"):
        raise ValueError(f"a snapshot location must be absolute, got {path!r}")
    return "file://" + urllib.parse.quote(path)
