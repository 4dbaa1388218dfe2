"""The Qdrant-API recipe's engines side by side, on the same collection, in one run.

- "edge": the recipe as it is now (Qdrant's own engine, qdrant-edge);
- "local-mode": the recipe as it was at --old-rev (qdrant-client's local mode), built from git
  history into `localhost/aidb-gate/qdrant-api-localmode:<rev>`; nothing at runtime needs it.

For each engine, on `points` embedding-like points of 384 dimensions (the same seeded values for
both; see _embedding_like):
- load_s: the upserts, 500 points a request, wait=true;
- round_trip_s: the gate's snapshot + verify + restore into a fresh container of that engine
  (take_backup, verify_backup, restore_backup: what `aidb-gate backup/verify/restore` run);
- identical_after_restore: every point of the restored collection equals the source's, ids,
  payloads and float32 vectors bit for bit (scrolled from both servers);
- top-10 ids of `queries` seeded random queries, exact (`params.exact=true`) and default.

Across engines: exact_top10_agreement (the share of queries whose exact top 10 is the same id
list on both engines: brute force on both, so 1.0 is expected) and, per engine, recall@10 of
its default search against the exact one (HNSW on edge once its index is built).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "bench_engines"
DIM = 384
#: The data's intrinsic dimensionality (see _embedding_like).
LATENT = 16


def old_recipe(session: Any, rev: str, log: Any) -> str:
    """The local-mode recipe as committed at rev, built once on the current base image."""
    from aidb_gate.images import image_id, run_build

    engine = session.connect()
    full = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    tag = f"localhost/aidb-gate/qdrant-api-localmode:{full[:12]}"
    if image_id(engine, tag):
        return tag
    base = session.base()()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", full, "fixtures/images/qdrant-api"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        log(f"building the local-mode recipe of {full[:12]} as {tag}")
        code, text = run_build(engine, Path(tmp) / "fixtures/images/qdrant-api", tag, session.log_dir / "build-localmode.log",
                               build_args={"BASE_IMAGE": base.ref}, ca_bundle=session.cfg.ca_bundle)
    if code != 0:
        raise SystemExit(f"building {tag} failed (exit {code}):\n{text[-3000:]}")
    return tag


def _embedding_like(n: int, seed: int) -> list[list[float]]:
    """Vectors shaped like text embeddings: LATENT independent directions mixed into 384
    dimensions, plus a little noise. Uniform random 384-dim vectors have no neighbourhood
    structure, so any HNSW finds few true neighbours there (0.22 recall@10 measured with
    qdrant-edge directly); real embeddings live near a low-dimensional manifold."""
    import numpy as np

    basis = np.random.default_rng(3).normal(size=(LATENT, DIM))
    rng = np.random.default_rng(seed)
    mixed = rng.normal(size=(n, LATENT)) @ basis + 0.1 * rng.normal(size=(n, DIM))
    return mixed.astype(np.float32).tolist()


def _points(n: int) -> list[dict[str, Any]]:
    return [{"id": i + 1, "vector": v, "payload": {"i": i, "t": f"p{i} ✓"}} for i, v in enumerate(_embedding_like(n, 7))]


def _queries(n: int) -> list[list[float]]:
    return _embedding_like(n, 11)


def _top10(q: Any, vector: list[float], exact: bool) -> list[Any]:
    body = {"vector": vector, "limit": 10, "params": {"exact": exact}}
    return [hit["id"] for hit in q.result("POST", f"/collections/{COLLECTION}/points/search", json=body)]


def _all(q: Any) -> dict[Any, tuple[bytes, Any]]:
    """{id: (float32 bytes of the vector, payload)} of every point, scrolled."""
    out: dict[Any, tuple[bytes, Any]] = {}
    offset = None
    while True:
        body: dict[str, Any] = {"limit": 1000, "with_payload": True, "with_vector": True}
        if offset is not None:
            body["offset"] = offset
        page = q.result("POST", f"/collections/{COLLECTION}/points/scroll", json=body)
        for p in page["points"]:
            out[p["id"]] = (struct.pack(f"<{len(p['vector'])}f", *p["vector"]), p["payload"])
        offset = page.get("next_page_offset")
        if offset is None:
            return out


def _own_environment(fn: Any) -> Any:
    """Each measurement runs its own gate session, which points DOCKER_HOST (and testcontainers)
    at the engine service it starts and stops: the next one must start from the same environment."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        saved = dict(os.environ)
        try:
            return fn(*args, **kwargs)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return wrapped


@_own_environment
def _measure(name: str, image: str | None, points: list[dict[str, Any]], queries: list[list[float]],
             work: Path, log: Any) -> dict[str, Any]:
    from aidb_gate.backup import restore_backup, take_backup, verify_backup
    from aidb_gate.config import load_config
    from aidb_gate.session import GateSession

    deps: dict[str, Any] = {"redis": {"enabled": False}, "postgres": {"enabled": False}}
    if image:
        deps["qdrant"] = {"image": image}
    cfg = load_config(ROOT, {"reports_dir": str(work / name), "dependencies": deps})
    session = GateSession(cfg, progress=log)
    result: dict[str, Any] = {"engine": name}
    try:
        q = session.qdrant_target(session.stack().of_kind("qdrant"))
        result["image"] = session.dependency_images()["qdrant"].ref
        q.result("PUT", f"/collections/{COLLECTION}", json={"vectors": {"size": DIM, "distance": "Cosine"}})
        log(f"{name}: loading {len(points)} points")
        begin = time.monotonic()
        for start in range(0, len(points), 500):
            q.result("PUT", f"/collections/{COLLECTION}/points", params={"wait": "true"},
                     json={"points": points[start:start + 500]})
        result["load_s"] = round(time.monotonic() - begin, 2)
        source = _all(q)
        # Give an engine that indexes in the background the time it asks for: poll its status.
        begin = time.monotonic()
        while time.monotonic() - begin < 300:
            info = q.result("GET", f"/collections/{COLLECTION}")
            if info.get("status") == "green" and info.get("optimizer_status", "ok") == "ok":
                break
            time.sleep(1)
        result["index_wait_s"] = round(time.monotonic() - begin, 2)
        result["indexed_vectors_count"] = info.get("indexed_vectors_count")
        log(f"{name}: {len(queries)} queries, exact and default")
        begin = time.monotonic()
        result["exact_top10"] = [_top10(q, v, True) for v in queries]
        result["exact_queries_s"] = round(time.monotonic() - begin, 2)
        begin = time.monotonic()
        result["default_top10"] = [_top10(q, v, False) for v in queries]
        result["default_queries_s"] = round(time.monotonic() - begin, 2)

        log(f"{name}: snapshot + verify + restore")
        folder = work / f"backup-{name}"
        fresh = session.qdrant_target(session.fresh_dependency("qdrant", f"qdrant-{name}-restore"))
        begin = time.monotonic()
        take_backup(folder, None, q)
        problems = verify_backup(folder, None)
        restore_backup(folder, None, fresh)
        result["round_trip_s"] = round(time.monotonic() - begin, 2)
        result["round_trip_problems"] = problems
        result["snapshot_bytes"] = sum(p.stat().st_size for p in folder.rglob("*.snapshot"))
        restored = _all(fresh)
        result["points_restored"] = len(restored)
        result["identical_after_restore"] = restored == source
    finally:
        session.close()
    return result


def recall(found: list[list[Any]], truth: list[list[Any]]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    return round(hits / sum(len(t) for t in truth), 4)


def compare(points: int, queries: int, old_rev: str, log: Any) -> dict[str, Any]:
    """Both engines, measured one after the other on the same data (see the module docstring)."""
    from aidb_gate.config import load_config
    from aidb_gate.session import GateSession

    work = ROOT / "reports" / "bench-engines"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    @_own_environment
    def build() -> str:
        builder = GateSession(load_config(ROOT, {"reports_dir": str(work / "build")}), progress=log)
        try:
            return old_recipe(builder, old_rev, log)
        finally:
            builder.close()

    old_image = build()
    data, vectors = _points(points), _queries(queries)
    edge = _measure("edge", None, data, vectors, work, log)
    local = _measure("local-mode", old_image, data, vectors, work, log)
    out: dict[str, Any] = {"points": points, "queries": queries, "old_rev": old_rev}
    for r in (edge, local):
        name = r["engine"]
        out[name] = {k: v for k, v in r.items() if not k.endswith("_top10")}
        out[name]["recall_at_10_default_vs_exact"] = recall(r["default_top10"], r["exact_top10"])
    out["exact_top10_agreement"] = round(sum(a == b for a, b in zip(edge["exact_top10"], local["exact_top10"], strict=True))
                                         / queries, 4)
    out["edge_default_recall_vs_local_exact"] = recall(edge["default_top10"], local["exact_top10"])
    return out
