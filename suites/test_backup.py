"""Stage backup: the seeded stack is backed up, and every artifact verifies against its manifest."""

from __future__ import annotations

import pytest

from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import seed

pytestmark = [pytest.mark.p1, pytest.mark.backup]


def test_seeding_reached_the_service_and_every_table(gate_backup, gate_config):
    seeded = gate_backup.seeded
    if gate_config.data["documents"]:
        assert len(seeded["documents"]) == gate_config.data["count"], "not every document was accepted by the API"
    left_alone = {t: why for t, why in seeded["tables"].items() if why.startswith("left alone")}
    assert seeded["tables"] and not left_alone, (
        f"the round trip must cover every table, but some could not be seeded directly: {left_alone}")


@pytest.mark.gate_requires("data.documents")
def test_documents_come_back_as_they_were_sent(gate_backup):
    """Field by field: what the create call answered, and what a GET right after returned."""
    written = gate_backup.seeded["written"]
    problems = seed.round_trip_verdict([(w.sent, w.created) for w in written], "the create call's answer")
    problems += seed.round_trip_verdict([(w.sent, w.read) for w in written], "GET right after")
    problems += [w.read_error for w in written if w.read_error]
    assert not problems, "; ".join(problems)


def test_backup_is_complete_and_verifies(gate_backup):
    assert (gate_backup.folder / "manifest.json").is_file(), f"{gate_backup.folder} has no manifest: the backup is incomplete"
    assert not gate_backup.problems, "the backup does not verify: " + "; ".join(gate_backup.problems)


def test_manifest_counts_match_the_source(gate_backup):
    manifest, before = gate_backup.manifest, gate_backup.before
    problems = []
    if "postgres" in manifest:
        source = {t: int(v.split(" rows ")[0]) for t, v in before.postgres["tables"].items()}
        if manifest["postgres"]["tables"] != source:
            problems.append(f"postgres row counts in the manifest {manifest['postgres']['tables']} differ from the "
                            f"database {source}")
    for name, entry in (manifest.get("qdrant") or {}).get("collections", {}).items():
        if entry["points"] != len(before.qdrant.get(name, {}).get("points", {})):
            problems.append(f"qdrant {name}: the manifest says {entry['points']} points, the server held "
                            f"{len(before.qdrant.get(name, {}).get('points', {}))}")
    if before.qdrant:
        missing = set(before.qdrant) - set((manifest.get("qdrant") or {}).get("collections", {}))
        if missing:
            problems.append(f"qdrant collections without a snapshot: {sorted(missing)} (the seed's backup 'SKIPPED' Qdrant)")
    assert not problems, "; ".join(problems)


def test_dump_lists_the_data_of_every_table(gate, gate_backup, gate_stack):
    entry = gate_backup.manifest.get("postgres")
    if not entry:
        pytest.fail("postgres is enabled but the backup holds no dump", pytrace=False)
    pg = gate.pg_target(gate_stack.of_kind("postgres"))
    carried = pg_backup.tables_with_data(pg, gate_backup.folder / entry["file"], entry.get("format", "custom"))
    missing = [t for t in gate_backup.before.postgres["tables"] if pg_backup.unquoted(t) not in carried]
    assert not missing, f"the dump carries no data for {missing}: it leaves them out"


def test_backing_up_did_not_change_the_data(gate_backup):
    from aidb_gate.backup.fingerprint import compare_stacks

    problems = compare_stacks(gate_backup.before, gate_backup.after)
    assert not problems, "the data changed while it was backed up: " + "; ".join(problems)
