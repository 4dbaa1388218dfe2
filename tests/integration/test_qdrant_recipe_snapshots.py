"""The Qdrant-API recipe's snapshots are Qdrant's layout: a downloaded snapshot is a tar that GNU
tar lists with `config.json` and the shard's `0/segments/` and `0/wal/` entries (what operators'
backup checks look for), its bytes hash to the sha256 the listing gives, and an upload of it into
an empty Qdrant brings back every point. Run against the stack's Qdrant, the recipe here."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from aidb_gate.services import qdrant
from aidb_gate.stages import qdrant as qa

pytestmark = pytest.mark.integration

COLLECTION = "aidb_gate_recipe_layout"


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_a_downloaded_snapshot_lists_qdrants_layout_and_restores(deps_session, tmp_path):
    dep = deps_session.stack().deps["qdrant"]
    ep = qa.Endpoint(qdrant.url(dep), dep.secrets.get("api_key"))
    rnd = random.Random(5)
    points = [{"id": i, "vector": [rnd.uniform(-1, 1) for _ in range(8)], "payload": {"n": i, "s": "ü"}}
              for i in range(1, 51)]
    qa.result_of(qa.create_collection(ep, COLLECTION, 8))
    try:
        qa.result_of(qa.upsert(ep, COLLECTION, points))
        name = qa.result_of(qa.create_snapshot(ep, COLLECTION))["name"]
        reply = qa.download_snapshot(ep, COLLECTION, name)
        assert reply.status == 200, reply.describe()
        listed = next(s for s in qa.result_of(qa.list_snapshots(ep, COLLECTION)) if s["name"] == name)
        assert listed["checksum"] == qa.sha256_hex(reply.content)
        path = tmp_path / name
        path.write_bytes(reply.content)
        names = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=True).stdout.split()
        assert "config.json" in names, names
        assert any(n.startswith("0/segments/") and n != "0/segments/" for n in names), names
        assert any(n.startswith("0/wal/") for n in names), names

        fresh = deps_session.fresh_dependency("qdrant", "qdrant-layout-restore")
        target = qa.Endpoint(qdrant.url(fresh), fresh.secrets.get("api_key"))
        assert qa.result_of(qa.upload_snapshot(target, COLLECTION, reply.content, name, checksum=listed["checksum"]))
        expected = {p["id"]: {"payload": p["payload"], "vector": qa.normalize(p["vector"])} for p in points}
        problems = qa.check_points(expected, qa.all_points(target, COLLECTION), vectors=True, where="restored")
        assert not problems, problems
    finally:
        qa.remove_collection(ep, COLLECTION)
