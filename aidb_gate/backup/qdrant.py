"""qdrant: snapshot, download, upload and fingerprint collections through Qdrant's REST API.

Guarantees: every collection is snapshotted on the server, downloaded, and checked against the
sha256 the server lists for it; the manifest records each collection's exact point count.
Restore uploads with `priority=snapshot`, because the default priority can restore an empty
collection; it refuses a non-empty target collection unless forced. `fingerprint` reads every
point (id, payload, vector) so a restore is judged by content.
A collection name the server sends never becomes a path: each snapshot's file is the name
percent-encoded to one safe component of at most 255 bytes (`core.names.encode_component`;
plain names stay as they are), checked to lie in the backup's `qdrant/` folder before it is
opened, and the manifest maps the real name to it. QDRANT_SNAPSHOT_TIMEOUT_S must be finite
(`inf` and `nan` are refused), QDRANT_SNAPSHOT_MAX_BYTES a positive size.
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
from aidb_gate.core.names import NAME_MAX, contained, encode_component, escape
from aidb_gate.core.text import clip

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


#: The longest duration a variable may set: finite, so that every deadline comes.
MAX_DURATION_S = 30 * 86400.0


def _env_size(var: str, default: int) -> int:
    """A positive size from `var` (bytes, or a number with K, M, G or T), else `default`."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", raw.upper())
    value = int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0
    if value <= 0:
        raise BackupError(f"{var}={escape(repr(raw))} is not a size: give bytes, or a number with K, M, G or T (e.g. 500G).")
    return value


def _env_seconds(var: str, default: float) -> float:
    """A finite, positive number of seconds (at most 30 days) from `var`, else `default`; `inf`, `nan`,
    zero and negatives are a BackupError."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    # `inf` and `nan` parse as floats; a deadline that never comes (or never compares) is no deadline.
    if not (math.isfinite(value) and 0 < value <= MAX_DURATION_S):
        raise BackupError(f"{var}={escape(repr(raw))} is not a number of seconds: give a finite, positive number of at "
                          f"most {MAX_DURATION_S:g} (30 days), e.g. 21600 for 6 hours.")
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
        waits at most `timeout_s`. A redirect is a BackupError naming its status and `Location`:
        Qdrant never redirects, and following one would hand the API key (and an upload) to
        wherever it points."""
        headers = kwargs.pop("headers", {})
        if self.api_key:
            headers["api-key"] = self.api_key
        url = self.url.rstrip("/") + path
        try:
            resp = http.request(method, url, headers=headers, deadline_s=deadline_s or self.timeout_s,
                                read_timeout_s=self.timeout_s, **kwargs)
        except (http.DeadlineExceeded, http.TooLarge) as err:
            raise BackupError(f"Qdrant at {http.shown(self.url)}: {err}") from None
        except requests.RequestException as err:
            raise BackupError(f"Qdrant at {http.shown(self.url)} did not answer {method} {path}: "
                              f"{type(err).__name__}: {escape(err)}") from None
        problem = http.redirect_problem(resp)
        if problem:
            raise BackupError(f"Qdrant {problem}")
        return resp

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
    """`what answered <status>: <Qdrant's error, else the body's start>`, and what to fix, on one line
    (for a redirect: its status and `Location`); text from the server is escaped."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    redirect = http.redirect_problem(resp)
    if redirect:
        return f"{what}: {redirect}"
    status = body.get("status") if isinstance(body, dict) else None
    error = status.get("error") if isinstance(status, dict) else None
    ctype = escape(resp.headers.get("content-type") or "no content type")
    detail = escape(clip(re.sub(r"\s+", " ", str(error)), 300)) if error else f"{ctype}, {http.describe_body(resp)}"
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
    """The server's collection names; an answer not shaped as Qdrant's (`{"collections": [{"name":
    str}, ...]}`) is one BackupError, never a KeyError from deep inside a backup."""
    listed = q.result("GET", "/collections")
    items = listed.get("collections") if isinstance(listed, dict) else None
    if not isinstance(items, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in items):
        raise BackupError(f"GET /collections at {http.shown(q.url)} answered with a `result` that is not Qdrant's list of "
                          f"collections (each an object with a string `name`). {NOT_QDRANT}")
    return sorted(c["name"] for c in items)


def not_qdrant(q: QdrantTarget, what: str, shape: str) -> BackupError:
    """One paragraph for an answer whose JSON is not shaped as Qdrant's: what was asked, what Qdrant sends."""
    return BackupError(f"{what} at {http.shown(q.url)} answered with a `result` that is not Qdrant's ({shape}). {NOT_QDRANT}")


def count(q: QdrantTarget, name: str) -> int:
    """The exact number of points in collection `name`."""
    result = q.result("POST", f"/collections/{seg(name)}/points/count", json={"exact": True})
    found = result.get("count") if isinstance(result, dict) else None
    if not isinstance(found, int) or isinstance(found, bool) or found < 0:
        raise not_qdrant(q, f"counting the points of '{escape(name)}'", "an object with a whole `count` of 0 or more")
    return found


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
    if not (isinstance(desc, dict) and isinstance(desc.get("name"), str) and desc["name"]):
        raise not_qdrant(q, f"creating a snapshot of '{escape(name)}'", "an object with the snapshot's `name`")
    snap = desc["name"]
    listing = q.result("GET", f"/collections/{seg(name)}/snapshots")
    if not (isinstance(listing, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in listing)):
        raise not_qdrant(q, f"listing the snapshots of '{escape(name)}'", "a list of objects, each with a string `name`")
    entry = {s["name"]: s for s in listing}.get(snap) or desc
    server_sum = entry.get("checksum")
    if server_sum is not None and not isinstance(server_sum, str):
        raise not_qdrant(q, f"listing the snapshots of '{escape(name)}'", "a `checksum` that is a string")
    # The name is the server's: encoded to one safe file name (the manifest maps the real name to it),
    # with room left for the temporary name below, and checked to stay inside `folder` before any open.
    try:
        dest = contained(folder, encode_component(name, ".snapshot", limit=NAME_MAX - len("..partial")))
    except ValueError as err:
        raise BackupError(f"Qdrant collection '{escape(name)}': {err}") from None
    tmp = dest.with_name(f".{dest.name}.partial")
    download(q, f"/collections/{seg(name)}/snapshots/{seg(snap)}", tmp, f"snapshot '{escape(snap)}' of '{escape(name)}'",
             entry.get("size"))
    tmp.replace(dest)
    digest = sha256_file(dest)
    if server_sum and digest != server_sum:
        raise BackupError(f"{escape(dest)}: sha256 {digest[:16]}... differs from the checksum Qdrant lists for "
                          f"'{escape(snap)}' ({escape(server_sum[:16])}...): the download is damaged")
    q.request("DELETE", f"/collections/{seg(name)}/snapshots/{seg(snap)}")  # the server's copy is not the backup
    return {"file": f"qdrant/{dest.name}", "sha256": digest, "size": dest.stat().st_size, "points": points,
            "server_checksum": server_sum, "snapshot": snap, "duration_s": round(time.monotonic() - begin, 3)}


def download(q: QdrantTarget, path: str, dest: Path, what: str, listed_size: Any = None) -> None:
    """GET `path` into `dest` (created private) within `q.snapshot_timeout_s`, stopping past
    `q.max_snapshot_bytes` or the size Qdrant lists; on any failure `dest` is removed. Any answer
    but 200 (a redirect included: it is not followed, and its body is never written) is a
    BackupError naming the status (and `Location`)."""
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
                raise BackupError(f"downloading {what} from {http.shown(q.url)} failed: {type(err).__name__}: "
                                  f"{escape(err)}; the partial file was removed.") from None
        if resp.status_code != 200:
            raise BackupError(refused(resp, f"downloading {what}"))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def backup(q: QdrantTarget, folder: Path) -> dict[str, Any]:
    """Snapshot every collection into `folder` (made here, inside the backup; never a link), one
    file per collection named by `encode_component` - a name the server sends never becomes a
    path of its own - and return the manifest's `qdrant` part, which maps each real name to its file."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as err:
        raise BackupError(f"cannot create {escape(folder)} ({err.strerror}): the backup folder must be writable.") from None
    if folder.is_symlink() or not folder.is_dir():
        raise BackupError(f"{escape(folder)} is a link or no folder: something else wrote into the backup while it was "
                          "taken; take it again into a new folder.")
    begin = time.monotonic()
    names = collections(q)
    odd = [name for name in names if not isinstance(name, str) or not name]
    if odd:
        raise BackupError(f"Qdrant at {http.shown(q.url)} lists a collection named {escape(repr(odd[0]))}, which is not a "
                          f"collection name. {NOT_QDRANT}")
    entries = {name: snapshot_collection(q, name, folder) for name in names}
    return {"url": q.url, "version": version(q), "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_collection(q: QdrantTarget, name: str, path: Path, force: bool = False, priority: str = "snapshot") -> float:
    """Upload a snapshot into collection `name`; refuses a collection that holds points unless forced.

    Succeeds only on Qdrant's documented answer to an upload with `wait=true`: 200 with
    `"result": true`. Anything else - a redirect (never followed, so neither the key nor the
    snapshot goes elsewhere), 202, 204, a page - is a BackupError naming the status."""
    if name in collections(q) and count(q, name) > 0 and not force:
        raise BackupError(f"refusing to restore {escape(path)} into Qdrant collection '{escape(name)}' at "
                          f"{http.shown(q.url)}: it holds {count(q, name)} points. Restore into a fresh Qdrant, or pass "
                          "--force to replace it.")
    begin = time.monotonic()
    # Verify refused links; O_NOFOLLOW keeps a link swapped in since then from being uploaded.
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as fh:
        resp = q.request("POST", f"/collections/{seg(name)}/snapshots/upload", deadline_s=q.snapshot_timeout_s,
                         params={"priority": priority, "wait": "true"},
                         files={"snapshot": (path.name, fh, "application/octet-stream")})
    where = f"{escape(path)}: the snapshot upload into Qdrant collection '{escape(name)}'"
    if resp.status_code != 200:
        raise BackupError(f"{where} did not succeed: {refused(resp, 'the upload')} Qdrant answers 200 with "
                          "`\"result\": true` once the snapshot is restored; nothing else counts as restored.")
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not (isinstance(body, dict) and body.get("result") is True):
        ctype = escape(resp.headers.get("content-type") or "no content type")
        raise BackupError(f"{where} at {http.shown(resp.url)} answered 200 with {ctype} ({http.describe_body(resp)}), "
                          f"not Qdrant's `\"result\": true`, so nothing says the collection was restored. {NOT_QDRANT}")
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
