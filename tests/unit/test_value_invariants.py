"""Value invariants: a restore is judged by the meaning the dump format gives values, and a verdict
names the values that changed.

pg_dump writes every float NaN as the text `NaN`, so a NaN's payload and sign never survive a dump
and restore; everything else (-0.0 included) must come back bit for bit. A verdict on a changed
float or vector value shows it before and after, with its bits, bounded to a few examples. The
gate's own property tests draw the same examples on every run of a commit and keep no example
database, so a past run's stored example cannot fail a good service.
"""

from __future__ import annotations

import importlib.util
import math
import struct
from pathlib import Path

import pytest

from aidb_gate.backup import pg_values
from aidb_gate.backup import postgres as pg_backup

ROOT = Path(__file__).resolve().parents[2]


def f8(x: float) -> str:
    return struct.pack(">d", x).hex()


def f4(x: float) -> str:
    return struct.pack(">f", x).hex()


def vector(*xs: float) -> str:
    return (struct.pack(">hh", len(xs), 0) + b"".join(struct.pack(">f", x) for x in xs)).hex()


def column(name: str, before: list[str], after: list[str], send: str = "float8send") -> tuple[dict, dict]:
    """Two fingerprints of one listed column, as `fingerprint` builds them."""
    def one(values: list[str]) -> dict:
        listing = f"{send} " + ",".join(sorted(values))
        return {"binary values": {name: f"{len(values)} values {hash(listing)}"}, pg_backup.LISTED_VALUES: {name: listing}}

    return one(before), one(after)


def test_a_negative_zero_that_became_zero_is_named_with_its_bits() -> None:
    before, after = column("public.item.ratio", [f8(-0.0), f8(1.5)], [f8(0.0), f8(1.5)])
    problems = pg_backup.compare(before, after)
    assert problems == ["postgres column public.item.ratio: its values differ bit for bit after the restore (2 before, 2 after): "
                        "-0.0 (0x8000000000000000) became 0.0 (0x0000000000000000) - a float or vector was rounded or "
                        "altered on the way"]


def test_the_listed_values_are_detail_never_a_verdict_of_their_own() -> None:
    before, after = column("public.item.ratio", [f8(2.0)], [f8(2.0)])
    after[pg_backup.LISTED_VALUES]["public.item.ratio"] = "float8send"  # e.g. listed on one side only
    assert pg_backup.compare(before, after) == []


def test_a_column_too_large_to_list_still_fails_and_says_why_no_values_are_named() -> None:
    before = {"binary values": {"public.big.x": "5000 values aaa"}}
    after = {"binary values": {"public.big.x": "5000 values bbb"}}
    (problem,) = pg_backup.compare(before, after)
    assert problem.startswith("postgres column public.big.x: its values differ bit for bit after the restore (5000 before, "
                              "5000 after): the column holds more than 1000 values")


def test_many_changed_values_are_bounded_to_a_few_examples() -> None:
    before, after = column("public.t.x", [f8(i) for i in range(10)], [f8(i + 0.5) for i in range(10)])
    (problem,) = pg_backup.compare(before, after)
    assert "10 values changed, e.g. 0.0 (0x0000000000000000) became 0.5 (0x3fe0000000000000); " in problem
    assert "2.0 (0x4000000000000000) became 2.5 (0x4004000000000000); and 7 more - " in problem
    assert "3.0 (" not in problem


def test_values_lost_and_values_new_are_named_apart_when_their_numbers_differ() -> None:
    said = pg_values.value_changes(f"float8send {f8(1.0)},{f8(2.0)}", f"float8send {f8(3.0)}")
    assert said == ("2 values gone: 1.0 (0x3ff0000000000000); 2.0 (0x4000000000000000), "
                    "1 value new: 3.0 (0x4008000000000000)")
    assert pg_values.value_changes(f"float8send {f8(1.0)}", f"float8send {f8(1.0)}") == ""


@pytest.mark.parametrize(("send", "hex_value", "shown"), [
    ("float8send", "7ff8000000000001", "nan (0x7ff8000000000001)"),
    ("float8send", "fff0000000000000", "-inf (0xfff0000000000000)"),
    ("float8send", "0000000000000001", "5e-324 (0x0000000000000001)"),
    ("float4send", "3e99999a", "0.3 (0x3e99999a)"),  # float4's shortest decimal, not 0.30000001192092896
    ("float4send", "80000000", "-0.0 (0x80000000)"),
    ("float4send", "7fc00001", "nan (0x7fc00001)"),
    ("vector_send", vector(0.3, -0.1, 0.7), "[0.3, -0.1, 0.7]"),
    ("public.vector_send", vector(*range(6)), "[0.0, 1.0, 2.0, 3.0, ... (6 dimensions)]"),
    ("halfvec_send", (struct.pack(">hh", 2, 0) + struct.pack(">ee", 0.1, -2)).hex(), "[0.1, -2.0]"),
    ("sparsevec_send", (struct.pack(">iiiii", 5, 2, 0, 0, 3) + struct.pack(">ff", 0.5, 2)).hex(), "{1:0.5,4:2.0}/5"),
    ("vector_send", "0003000000", "0x0003000000"),  # not a pgvector value after all: its bytes, never a traceback
    ("box3d_send", "00" * 40, "0x" + "00" * 16 + "... (40 bytes)"),
])
def test_a_value_is_shown_as_its_type_means_it(send: str, hex_value: str, shown: str) -> None:
    assert pg_values.describe_value(send, hex_value) == shown


def test_a_vector_one_ulp_off_names_the_component_and_its_bits() -> None:
    before, after = column("public.doc.e", [vector(0.3, -0.1, 0.7)], [vector(0.30000004172325134, -0.1, 0.7)], "vector_send")
    (problem,) = pg_backup.compare(before, after)
    assert ("[0.3, -0.1, 0.7] became [0.30000004, -0.1, 0.7] (component 0: 0.3 (0x3e99999a) -> 0.30000004 "
            "(0x3e99999b))") in problem


def test_names_from_the_database_are_escaped_in_verdicts() -> None:
    name = 'public."t\u202e\nx".c'
    before, after = column(name, [f8(1.0)], [f8(2.0)])
    before["tables"] = {name: "1 rows a"}
    (table, values) = pg_backup.compare(before, after | {"tables": {}})
    assert "\u202e" not in table + values and "\n" not in table + values
    assert '"t\\u202e\\x0ax"' in table and '"t\\u202e\\x0ax"' in values


class FakePg:
    """Answers the two queries of `binary_values` the way psql does (NULL as '')."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def sql(self, query: str, db: str | None = None) -> list[list[str]]:
        self.queries.append(query)
        if query == pg_backup.BINARY_COLUMNS:
            return [["public.item", "ratio", "float8send"], ["public.item", "small", "float4send"],
                    ["public.item", "e", "vector_send"]]
        return [["public.item.ratio", "2 values aa", f"float8send {f8(-0.0)},{f8(1.0)}"],
                ["public.item.small", "0 values ", "float4send "], ["public.item.e", "5000 values bb", ""]]


def test_the_fingerprint_canonicalises_float_nans_only_and_lists_small_columns() -> None:
    pg = FakePg()
    hashes, listed = pg_backup.binary_values(pg)  # type: ignore[arg-type]
    assert hashes == {"public.item.ratio": "2 values aa", "public.item.small": "0 values ", "public.item.e": "5000 values bb"}
    assert listed == {"public.item.ratio": f"float8send {f8(-0.0)},{f8(1.0)}", "public.item.small": "float4send "}
    parts = pg.queries[1].split(" UNION ALL ")
    # PostgreSQL's `=` holds for any two NaNs, so every NaN is replaced by the one `NaN` parses to;
    # -0.0 = 0.0 holds too, but the CASE only fires for NaN, so zero signs stay as they are.
    assert "float8send(CASE WHEN ratio = 'NaN' THEN 'NaN' ELSE ratio END)" in parts[0]
    assert "float4send(CASE WHEN small = 'NaN' THEN 'NaN' ELSE small END)" in parts[1]
    assert "vector_send(e)" in parts[2] and "CASE WHEN e =" not in parts[2]  # pgvector refuses NaN
    assert all(f"count(h) <= {pg_backup.LIST_MAX_VALUES}" in part for part in parts)


def _suite_modules() -> list:
    modules = []
    for path in sorted((ROOT / "suites").glob("test_*.py")):
        if "hypothesis" not in path.read_text(encoding="utf-8"):
            continue
        spec = importlib.util.spec_from_file_location(f"_suite_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def test_every_property_in_the_gate_suites_is_reproducible_and_keeps_no_example_database() -> None:
    """A deployment gate draws the same examples on every run of a commit and never replays an
    example a past run stored in `.hypothesis` (which made a correct service fail every run)."""
    properties = {f"{m.__name__}.{name}": fn for m in _suite_modules() for name, fn in vars(m).items()
                  if name.startswith("test_") and hasattr(fn, "hypothesis")}
    assert "_suite_test_backup_properties.test_postgres_round_trip_keeps_adversarial_data" in properties
    for name, fn in properties.items():
        chosen = fn._hypothesis_internal_use_settings
        assert chosen.derandomize, f"{name} draws random examples: a gate run must be reproducible"
        assert chosen.database is None, f"{name} reads and writes an example database"


def test_the_nan_payload_found_by_exploring_is_an_explicit_example_of_the_round_trip() -> None:
    (module,) = [m for m in _suite_modules() if m.__name__ == "_suite_test_backup_properties"]
    examples = module.test_postgres_round_trip_keeps_adversarial_data.hypothesis_explicit_examples
    ratios = [row["ratio"] for ex in examples for row in ex.kwargs["rows"]]
    bits = {struct.pack(">d", r).hex() for r in ratios if r is not None and math.isnan(r)}
    assert "7ff8000000000001" in bits
    assert any(r == 0 and math.copysign(1, r) < 0 for r in ratios), "-0.0 must stay distinct from 0.0"


def test_a_failing_property_prints_its_targets_without_environment_dsn_or_api_key() -> None:
    """Hypothesis prints every argument of a failing example, fixtures too, and prints a dataclass
    field by field, `repr=False` fields included: the property suite's targets print as their repr."""
    from hypothesis.vendor.pretty import pretty

    from aidb_gate.backup.qdrant import QdrantTarget

    (module,) = [m for m in _suite_modules() if m.__name__ == "_suite_test_backup_properties"]
    pg = pg_backup.PgTarget("podman", "c1", "gate", "db", env={"CI_DEPLOY_TOKEN": "tok"}, dsn="host=h password=hunter2")
    shown = pretty(module._printed_as_repr(pg, module._PrintedPg).with_db("other"))
    assert "db='other'" in shown and "hunter2" not in shown and "CI_DEPLOY_TOKEN" not in shown
    q = module._printed_as_repr(QdrantTarget("http://127.0.0.1:6333", "s3cret-key"), module._PrintedQdrant)
    assert q.api_key == "s3cret-key" and "s3cret-key" not in pretty(q)
