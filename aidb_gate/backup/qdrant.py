"""qdrant: snapshot, download, upload and fingerprint collections through Qdrant's REST API.

Guarantees: every collection is snapshotted on the server, downloaded, and checked against the
sha256 the server lists for it; the manifest records each collection's exact point count.
Restore uploads with `priority=snapshot`, because the default priority can restore an empty
collection; it refuses a non-empty target collection unless forced. `fingerprint` reads every
point (id, payload, vector) so a restore is judged by content.
Every call goes through `aidb_gate.core.http` (no proxy, connect/read/total timeouts). A snapshot
download stops at its deadline and at its size cap - the smaller of `max_snapshot_bytes` and the
size Qdrant lists for it - and leaves no partial file. Any answer that is not what Qdrant sends
(an HTML page, a status >= 300, JSON without `result`) is a one-paragraph `BackupError` naming
the URL, status and content type.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from aidb_gate.backup.manifest import BackupError, open_private, sha256_file
from aidb_gate.core import http
from aidb_gate.report import clip

#: Environment variables a user sets when a collection's snapshot is bigger, or slower to move,
#: than the defaults allow (read when a QdrantTarget is made: the CLI and the gate alike).
MAX_SNAPSHOT_VAR = "QDRANT_SNAPSHOT_MAX_BYTES"
SNAPSHOT_TIMEOUT_VAR = "QDRANT_SNAPSHOT_TIMEOUT_S"
#: Defaults: far above any collection a gate run seeds, and bounded so that a server streaming
#: without end cannot fill the disk or hold the backup for ever.
DEFAULT_MAX_SNAPSHOT_BYTES = 256 << 30
DEFAULT_SNAPSHOT_TIMEOUT_S = 3 * 3600.0
NOT_QDRANT = ("The Qdrant URL must be Qdrant's REST endpoint (port 6333 by default, e.g. http://127.0.0.1:6333), "
              "not a web UI, a login page or a proxy in front of it: fix --qdrant-url (or the Qdrant service's port).")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _env_size(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", raw.upper())
    value = int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0
    if value <= 0:
        raise BackupError(f"{var}={raw!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 500G).")
    return value


def _env_seconds(var: str, default: float) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise BackupError(f"{var}={raw!r} is not a number of seconds: give a positive number (e.g. 21600 for 6 hours).")
    return value


@dataclass
class QdrantTarget:
    """A Qdrant REST endpoint and its API key (None when the server has none).

    `timeout_s` is each call's deadline; a snapshot download or upload gets `snapshot_timeout_s`
    in all and stops past `max_snapshot_bytes` (defaults from QDRANT_SNAPSHOT_TIMEOUT_S and
    QDRANT_SNAPSHOT_MAX_BYTES).
    """

    url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_snapshot_bytes: int = field(default_factory=lambda: _env_size(MAX_SNAPSHOT_VAR, DEFAULT_MAX_SNAPSHOT_BYTES))
    snapshot_timeout_s: float = field(default_factory=lambda: _env_seconds(SNAPSHOT_TIMEOUT_VAR, DEFAULT_SNAPSHOT_TIMEOUT_S))

    def request(self, method: str, path: str, *, deadline_s: float | None = None, **kwargs: Any) -> requests.Response:
        """One call, answered or a BackupError; `deadline_s` defaults to `timeout_s`, each read
        waits at most `timeout_s`."""
        headers = kwargs.pop("headers", {})
        if self.api_key:
            headers["api-key"] = self.api_key
        url = self.url.rstrip("/") + path
        try:
            return http.request(method, url, headers=headers, deadline_s=deadline_s or self.timeout_s,
                                read_timeout_s=self.timeout_s, **kwargs)
        except (http.DeadlineExceeded, http.TooLarge) as err:
            raise BackupError(f"Qdrant at {http.shown(self.url)}: {err}") from None
        except requests.RequestException as err:
            raise BackupError(f"Qdrant at {http.shown(self.url)} did not answer {method} {path}: "
                              f"{type(err).__name__}: {err}") from None

    def result(self, method: str, path: str, **kwargs: Any) -> Any:
        """The `result` of a Qdrant answer; any other answer is a BackupError that says what to fix."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code >= 300:
            raise BackupError(refused(resp, f"Qdrant {method} {path}"))
        body = http.json_of(resp, error=BackupError, hint=NOT_QDRANT)
        if not isinstance(body, dict) or "result" not in body:
            raise BackupError(f"{method} {http.shown(resp.url)} answered HTTP {resp.status_code} with JSON that is not "
                              f"a Qdrant answer (no `result`: {http.describe_body(resp)}). {NOT_QDRANT}")
        return body["result"]


def refused(resp: requests.Response, what: str) -> str:
    """`what answered <status>: <Qdrant's error, else the body's start>`, and what to fix, on one line."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    error = status.get("error") if isinstance(status, dict) else None
    ctype = resp.headers.get("content-type") or "no content type"
    detail = clip(re.sub(r"\s+", " ", str(error)), 300) if error else f"{ctype}, {http.describe_body(resp)}"
    if resp.status_code in (401, 403):
        hint = " Qdrant refused the API key: give the server's key (QDRANT_API_KEY or --qdrant-api-key-file)."
    elif "html" in ctype:
        hint = " " + NOT_QDRANT
    else:
        hint = ""
    return f"{what} at {http.shown(resp.url)} answered {resp.status_code}: {detail}.{hint}"


def seg(name: str) -> str:
    """A collection or snapshot name as one URL path segment: `%64ocs` must not reach `/docs`,
    nor `a/../b` another collection."""
    return quote(str(name), safe="")


def collections(q: QdrantTarget) -> list[str]:
    return sorted(c["name"] for c in q.result("GET", "/collections")["collections"])


def count(q: QdrantTarget, name: str) -> int:
    return int(q.result("POST", f"/collections/{seg(name)}/points/count", json={"exact": True})["count"])


def version(q: QdrantTarget) -> str:
    """The server's version from `GET /`, "?" when its answer does not say (the version is only recorded)."""
    resp = q.request("GET", "/")
    try:
        body = http.json_of(resp, error=BackupError)
    except BackupError:
        return "?"
    return str(body.get("version", "?")) if isinstance(body, dict) else "?"


def snapshot_collection(q: QdrantTarget, name: str, folder: Path) -> dict[str, Any]:
    """Create, download and check one collection's snapshot; returns its manifest entry."""
    begin = time.monotonic()
    points = count(q, name)
    desc = q.result("POST", f"/collections/{seg(name)}/snapshots", params={"wait": "true"})
    snap = desc["name"]
    listed = {s["name"]: s for s in q.result("GET", f"/collections/{seg(name)}/snapshots")}
    entry = listed.get(snap) or desc
    server_sum = entry.get("checksum")
    dest = folder / f"{name}.snapshot"
    tmp = dest.with_name(f".{dest.name}.partial")
    download(q, f"/collections/{seg(name)}/snapshots/{seg(snap)}", tmp, f"snapshot {snap} of {name}", entry.get("size"))
    tmp.replace(dest)
    digest = sha256_file(dest)
    if server_sum and digest != server_sum:
        raise BackupError(f"{dest}: sha256 {digest[:16]}... differs from the checksum Qdrant lists for {snap} "
                          f"({server_sum[:16]}...): the download is damaged")
    q.request("DELETE", f"/collections/{seg(name)}/snapshots/{seg(snap)}")  # the server's copy is not the backup
    return {"file": f"qdrant/{dest.name}", "sha256": digest, "size": dest.stat().st_size, "points": points,
            "server_checksum": server_sum, "snapshot": snap, "duration_s": round(time.monotonic() - begin, 3)}


def download(q: QdrantTarget, path: str, dest: Path, what: str, listed_size: Any = None) -> None:
    """GET `path` into `dest` (created private) within `q.snapshot_timeout_s`, stopping past
    `q.max_snapshot_bytes` or the size Qdrant lists; on any failure `dest` is removed."""
    listed = listed_size if isinstance(listed_size, int) and not isinstance(listed_size, bool) and listed_size > 0 else None
    cap = min(q.max_snapshot_bytes, listed) if listed is not None else q.max_snapshot_bytes
    try:
        with open_private(dest) as out:
            try:
                resp = http.request("GET", q.url.rstrip("/") + path, headers={"api-key": q.api_key} if q.api_key else {},
                                    deadline_s=q.snapshot_timeout_s, read_timeout_s=q.timeout_s, max_bytes=cap, into=out)
            except http.TooLarge:
                if listed is not None and listed < q.max_snapshot_bytes:
                    raise BackupError(f"downloading {what} from {http.shown(q.url)}: Qdrant sent more than the {listed} "
                                      "bytes it lists for this snapshot, so the download is damaged (or the server is not "
                                      "Qdrant); the partial file was removed. Run the backup again.") from None
                raise BackupError(f"downloading {what} from {http.shown(q.url)}: the snapshot is larger than "
                                  f"{q.max_snapshot_bytes} bytes, the cap for one snapshot; the partial file was removed. "
                                  f"If the collection really is this big, raise the cap: {MAX_SNAPSHOT_VAR}=500G (bytes, "
                                  "or a number with K, M, G or T).") from None
            except http.DeadlineExceeded:
                raise BackupError(f"downloading {what} from {http.shown(q.url)} did not finish within "
                                  f"{q.snapshot_timeout_s:g} s; the partial file was removed. If the snapshot is big and "
                                  f"the link slow, allow more time: {SNAPSHOT_TIMEOUT_VAR}=21600 (seconds).") from None
            except requests.RequestException as err:
                raise BackupError(f"downloading {what} from {http.shown(q.url)} failed: {type(err).__name__}: {err}; "
                                  "the partial file was removed.") from None
        if resp.status_code != 200:
            raise BackupError(refused(resp, f"downloading {what}"))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def backup(q: QdrantTarget, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    entries = {name: snapshot_collection(q, name, folder) for name in collections(q)}
    return {"url": q.url, "version": version(q), "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_collection(q: QdrantTarget, name: str, path: Path, force: bool = False, priority: str = "snapshot") -> float:
    """Upload a snapshot into collection `name`; refuses a collection that holds points unless forced."""
    if name in collections(q) and count(q, name) > 0 and not force:
        raise BackupError(f"refusing to restore {path} into Qdrant collection {name} at {http.shown(q.url)}: it holds "
                          f"{count(q, name)} points. Restore into a fresh Qdrant, or pass --force to replace it.")
    begin = time.monotonic()
    with path.open("rb") as fh:
        resp = q.request("POST", f"/collections/{seg(name)}/snapshots/upload", deadline_s=q.snapshot_timeout_s,
                         params={"priority": priority, "wait": "true"},
                         files={"snapshot": (path.name, fh, "application/octet-stream")})
    if resp.status_code >= 300:
        raise BackupError(f"{path}: Qdrant refused the snapshot upload into {name}: " + refused(resp, "the upload"))
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
