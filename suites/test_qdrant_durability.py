"""Stage qdrant (p2): an acknowledged write survives a crash of the Qdrant process.

A fresh Qdrant of the run's image (the recipe's, or a real `qdrant/qdrant`) is given points with
`wait=true`; once the server has answered, the container gets SIGKILL - no shutdown, no flush -
and is started again on the same storage. What holds when this passes: every acknowledged point
is there after the restart, with its payload and its vector. On a real Qdrant and on the recipe's
Qdrant Edge engine this is the write-ahead log; a server that keeps writes in memory until a
clean shutdown fails here.
"""

from __future__ import annotations

import random

import pytest

from aidb_gate.services import qdrant
from aidb_gate.stages import faults
from aidb_gate.stages import qdrant as qa

pytestmark = [pytest.mark.p2, pytest.mark.qdrant]

DIM = 384
COLLECTION = "aidb_gate_durability"


def _points(n: int, seed: int, first_id: int) -> list[dict]:
    rnd = random.Random(seed)
    return [{"id": first_id + i, "vector": [rnd.uniform(-1, 1) for _ in range(DIM)],
             "payload": {"i": first_id + i, "text": f"gesichert ✓ {first_id + i}", "tags": ["a", None, 3]}}
            for i in range(n)]


def test_acknowledged_points_survive_sigkill(gate_fresh_dependency):
    dep = gate_fresh_dependency("qdrant", role="qdrant-durability")
    ep = qa.Endpoint(qdrant.url(dep), dep.secrets.get("api_key"))
    qa.result_of(qa.create_collection(ep, COLLECTION, DIM))
    # Several acknowledged batches, the last one just before the kill: a server that flushes on
    # a timer loses at least that one.
    written: list[dict] = []
    for batch in range(5):
        points = _points(200, seed=batch, first_id=1 + batch * 200)
        assert qa.result_of(qa.upsert(ep, COLLECTION, points))["status"] == "completed"
        written += points

    wrapped = dep.container.get_wrapped_container()
    faults.inject(wrapped, "kill")
    faults.recover(wrapped, "kill")
    back = dep.wait_ready(deadline_s=120)
    assert back.ok, f"the Qdrant container did not come back after SIGKILL: {back.last_error}"
    ep = qa.Endpoint(qdrant.url(dep), dep.secrets.get("api_key"))  # the published port may move

    expected = {p["id"]: {"payload": p["payload"], "vector": qa.normalize(p["vector"])} for p in written}
    problems = qa.check_points(expected, qa.all_points(ep, COLLECTION), vectors=True,
                               where=f"after SIGKILL and restart of {dep.container_id[:12]}")
    assert not problems, "acknowledged writes were lost:\n" + "\n".join(problems[:20])
