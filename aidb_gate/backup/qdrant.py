"""qdrant: snapshot, download, upload and fingerprint collections through Qdrant's REST API.

Guarantees: every collection is snapshotted on the server, downloaded, and checked against the
sha256 the server lists for it; the manifest records each collection's exact point count.
Restore uploads with `priority=snapshot`, because the default priority can restore an empty
collection; it refuses a non-empty target collection unless forced. `fingerprint` reads every
point (id, payload, vector) so a restore is judged by content.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from aidb_gate.backup.manifest import BackupError, open_private, sha256_file


@dataclass
class QdrantTarget:
    """A Qdrant REST endpoint and its API key (None when the server has none)."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.api_key:
            headers["api-key"] = self.api_key
        try:
            return requests.request(method, self.url.rstrip("/") + path, headers=headers, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as err:
            raise BackupError(f"Qdrant at {self.url} did not answer {method} {path}: {type(err).__name__}: {err}") from None

    def result(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        if resp.status_code >= 300:
            raise BackupError(f"Qdrant {method} {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json().get("result")


def seg(name: str) -> str:
    """A collection or snapshot name as one URL path segment: `%64ocs` must not reach `/docs`,
    nor `a/../b` another collection."""
    return quote(str(name), safe="")


def collections(q: QdrantTarget) -> list[str]:
    return sorted(c["name"] for c in q.result("GET", "/collections")["collections"])


def count(q: QdrantTarget, name: str) -> int:
    return int(q.result("POST", f"/collections/{seg(name)}/points/count", json={"exact": True})["count"])


def version(q: QdrantTarget) -> str:
    try:
        return str(q.request("GET", "/").json().get("version", "?"))
    except ValueError:
        return "?"


def snapshot_collection(q: QdrantTarget, name: str, folder: Path) -> dict[str, Any]:
    """Create, download and check one collection's snapshot; returns its manifest entry."""
    begin = time.monotonic()
    points = count(q, name)
    desc = q.result("POST", f"/collections/{seg(name)}/snapshots", params={"wait": "true"})
    snap = desc["name"]
    listed = {s["name"]: s for s in q.result("GET", f"/collections/{seg(name)}/snapshots")}
    server_sum = (listed.get(snap) or desc).get("checksum")
    dest = folder / f"{name}.snapshot"
    tmp = dest.with_name(f".{dest.name}.partial")
    resp = q.request("GET", f"/collections/{seg(name)}/snapshots/{seg(snap)}", stream=True)
    if resp.status_code != 200:
        raise BackupError(f"downloading snapshot {snap} of {name} answered {resp.status_code}: {resp.text[:200]}")
    with open_private(tmp) as out:
        for chunk in resp.iter_content(1 << 20):
            out.write(chunk)
    tmp.replace(dest)
    digest = sha256_file(dest)
    if server_sum and digest != server_sum:
        raise BackupError(f"{dest}: sha256 {digest[:16]}... differs from the checksum Qdrant lists for {snap} "
                          f"({server_sum[:16]}...): the download is damaged")
    q.request("DELETE", f"/collections/{seg(name)}/snapshots/{seg(snap)}")  # the server's copy is not the backup
    return {"file": f"qdrant/{dest.name}", "sha256": digest, "size": dest.stat().st_size, "points": points,
            "server_checksum": server_sum, "snapshot": snap, "duration_s": round(time.monotonic() - begin, 3)}


def backup(q: QdrantTarget, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    entries = {name: snapshot_collection(q, name, folder) for name in collections(q)}
    return {"url": q.url, "version": version(q), "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_collection(q: QdrantTarget, name: str, path: Path, force: bool = False, priority: str = "snapshot") -> float:
    """Upload a snapshot into collection `name`; refuses a collection that holds points unless forced."""
    if name in collections(q) and count(q, name) > 0 and not force:
        raise BackupError(f"refusing to restore {path} into Qdrant collection {name} at {q.url}: it holds "
                          f"{count(q, name)} points. Restore into a fresh Qdrant, or pass --force to replace it.")
    begin = time.monotonic()
    with path.open("rb") as fh:
        resp = q.request("POST", f"/collections/{seg(name)}/snapshots/upload",
                         params={"priority": priority, "wait": "true"},
                         files={"snapshot": (path.name, fh, "application/octet-stream")})
    if resp.status_code >= 300:
        raise BackupError(f"{path}: Qdrant refused the snapshot upload into {name} ({resp.status_code}: {resp.text[:300]})")
    return time.monotonic() - begin


def fingerprint(q: QdrantTarget, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """{collection: {"config": ..., "points": {id: (payload json, vector)}}} for every collection."""
    out = {}
    for name in names if names is not None else collections(q):
        info = q.result("GET", f"/collections/{seg(name)}")
        vectors = info["config"]["params"]["vectors"]
        points: dict[str, tuple[str, Any]] = {}
        offset = None
        while True:
            body = {"limit": 256, "with_payload": True, "with_vector": True}
            if offset is not None:
                body["offset"] = offset
            page = q.result("POST", f"/collections/{seg(name)}/points/scroll", json=body)
            for p in page["points"]:
                points[str(p["id"])] = (json.dumps(p.get("payload"), sort_keys=True), p.get("vector"))
            offset = page.get("next_page_offset")
            if offset is None:
                break
        out[name] = {"config": json.dumps(vectors, sort_keys=True), "points": points}
    return out


def _vectors_equal(a: Any, b: Any, tol: float = 1e-6) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_vectors_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b, strict=True))
    return a == b


def compare(original: dict[str, dict[str, Any]], restored: dict[str, dict[str, Any]]) -> list[str]:
    """What the restore lost or changed, per collection and point, in words."""
    problems = []
    for name in sorted(original):
        if name not in restored:
            problems.append(f"qdrant collection {name}: missing after the restore ({len(original[name]['points'])} points lost)")
            continue
        before, after = original[name], restored[name]
        if before["config"] != after["config"]:
            problems.append(f"qdrant collection {name}: vector config {before['config']} became {after['config']}")
        lost = sorted(set(before["points"]) - set(after["points"]))
        if lost:
            problems.append(f"qdrant collection {name}: {len(lost)} of {len(before['points'])} points lost "
                            f"after the restore (e.g. ids {', '.join(lost[:5])})")
        changed_payload = [i for i in before["points"] if i in after["points"] and before["points"][i][0] != after["points"][i][0]]
        if changed_payload:
            problems.append(f"qdrant collection {name}: payload differs for {len(changed_payload)} points "
                            f"(e.g. id {changed_payload[0]})")
        changed_vec = [i for i in before["points"] if i in after["points"]
                       and not _vectors_equal(before["points"][i][1], after["points"][i][1])]
        if changed_vec:
            problems.append(f"qdrant collection {name}: vector differs for {len(changed_vec)} points (e.g. id {changed_vec[0]})")
        extra = set(after["points"]) - set(before["points"])
        if extra:
            problems.append(f"qdrant collection {name}: {len(extra)} points appeared after the restore")
    for name in sorted(set(restored) - set(original)):
        problems.append(f"qdrant collection {name}: appeared after the restore")
    return problems
