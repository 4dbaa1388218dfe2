"""corpus: known-bad variants of the reference AIDB, and the judge of a gate run on each.

A case is a folder under `fixtures/broken/<name>/` that holds a `case.toml` and, optionally, an
`overlay/` folder. Its build context is the reference (`fixtures/aidb/`) copied afresh, with the
overlay's files copied over it (the overlay wins; new files are allowed), then the case's textual
edits applied in order. `case.toml`:

    why = "one sentence: which real failure this reproduces"
    stage = "boot"                       # the FIRST stage the gate must fail (aidb_gate/pipeline.py), or
                                         # "config": the run must stop before any stage with a usage error
    verdict = ['regex', ...]             # each must match the headline of a verdict of that stage
                                         # (for "config": the run's output)
    markers = "p1"                       # the child's -m expression (default "p1")
    [gate]                               # merged into the child's [tool.aidb-gate]
    startup_timeout_s = 12
    [[edit]]                             # exact text replacements in the assembled context
    file = "server.py"
    old = '''...'''                      # must occur exactly once
    new = '''...'''

What this module guarantees:
- `load_case` accepts a case only when every key is known and well typed, `stage` is a gate
  stage, every verdict regex compiles, `[gate]` has the shape of the gate's own configuration
  (and leaves `target`, `image`, `reports_dir` and `keep` to the corpus), and the case changes
  something; otherwise it raises one `CaseError` that names the file and the key.
- `assemble` never modifies the reference or the case folder, and raises `CaseError` when an
  edit's file is missing or its `old` text does not occur exactly once - so a change to the
  reference cannot silently defuse a variant.
- `judge` is pure: from a child run's `reports/summary.json` (as the plugin writes it) it returns
  the list of broken expectations in words; an empty list means the gate rejected the case at the
  expected stage with a verdict that names the cause (or, for the reference, that it passed).
  A verdict regex is matched (`re.search`) against the *headline* of the verdicts - their first
  line, which is what the report's verdict list and the terminal summary show - of the failed
  tests of the expected stage (a test's stage is read from its suite file, one file per stage);
  every regex must match at least one of them. The rest of a verdict is evidence, not a verdict.

Nothing here starts a container; the self-tests in tests/corpus run the gate.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aidb_gate.fixtures as fixtures
from aidb_gate.config import DEFAULTS, deep_merge, validate_shape
from aidb_gate.errors import ConfigError
from aidb_gate.pipeline import NAMES as STAGES
from aidb_gate.pipeline import StageName

REFERENCE: Path = fixtures.REFERENCE
BROKEN: Path = fixtures.BROKEN
CASE_FILE = "case.toml"
OVERLAY_DIR = "overlay"
DEFAULT_MARKERS = "p1"

#: What every child run gets in [tool.aidb-gate] before the case's own `[gate]` table: the
#: gate's defaults (the whole stack, Qdrant included), as the project's own gate runs them.
BASE_GATE: dict[str, Any] = {"ca_bundle": "auto"}

#: Keys of [tool.aidb-gate] that the corpus sets itself; a case may not override them.
RESERVED_GATE_KEYS = {"target", "image", "reports_dir", "keep", "compose", "service"}
#: The reference's stack as production defines it; a context that has it is gated through it.
COMPOSE_FILE, COMPOSE_SERVICE = "compose.yml", "aidb"
#: The pseudo-stage of a case the gate must refuse before any stage runs (bad configuration).
CONFIG_STAGE = StageName.CONFIG

#: Never copied from the reference into a build context.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache")

CASE_KEYS = {"why", "stage", "verdict", "markers", "gate", "edit"}
EDIT_KEYS = {"file", "old", "new"}


class CaseError(Exception):
    """A corpus case is malformed, or cannot be applied to the current reference."""


@dataclass(frozen=True)
class Edit:
    """Replace `old` (which must occur exactly once) by `new` in `file` of the build context."""

    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Case:
    """One corpus entry; `stage is None` means the gate must pass it (the reference)."""

    name: str
    folder: Path | None
    stage: str | None
    verdict: tuple[str, ...] = ()
    markers: str = DEFAULT_MARKERS
    gate: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    edits: tuple[Edit, ...] = ()

    @property
    def overlay(self) -> Path | None:
        if self.folder is None:
            return None
        path = self.folder / OVERLAY_DIR
        return path if path.is_dir() else None

    @property
    def expects_pass(self) -> bool:
        return self.stage is None


#: The reference runs the fault checks as the fault cases do (same budget, same action), so a fault
#: case fails on its defect, not on a budget the reference could not meet either. (Every action, on
#: the default budget, is the project's own p2 gate's job.)
REFERENCE_GATE: dict[str, Any] = {"faults": {"budget_s": 5.0, "actions": ["stop"]}}


def reference_case(markers: str = "p1 or (p2 and faults)", gate: dict[str, Any] | None = None) -> Case:
    """The reference itself, which the gate must pass (with the fault checks too, by default)."""
    return Case("reference", None, None, markers=markers,
                gate=copy.deepcopy(REFERENCE_GATE if gate is None else gate),
                why="the bundled reference AIDB follows the contract and must pass the gate")


def discover(broken: Path = BROKEN) -> list[Path]:
    """Every case folder (sorted); a folder without case.toml is listed too, so it fails loudly."""
    if not broken.is_dir():
        return []
    return sorted(p for p in broken.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def load_case(folder: Path) -> Case:
    """Read and validate `folder/case.toml`; raises CaseError naming the problem."""
    path = folder / CASE_FILE
    if not path.is_file():
        raise CaseError(f"{folder}: no {CASE_FILE}. Every folder under {folder.parent} is a corpus case; "
                        f"add a {CASE_FILE} (see aidb_gate/corpus.py) or remove the folder.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise CaseError(f"{path} is not valid TOML: {err}") from None

    def bad(key: str, message: str) -> CaseError:
        return CaseError(f"{path}: `{key}` {message}")

    unknown = set(data) - CASE_KEYS
    if unknown:
        raise CaseError(f"{path}: unknown key(s) {sorted(unknown)}; known keys: {sorted(CASE_KEYS)}")

    why = data.get("why")
    if not isinstance(why, str) or not why.strip():
        raise bad("why", "must be one sentence saying which real failure this case reproduces")

    stage = data.get("stage")
    if stage not in STAGES:
        raise bad("stage", f"must be one of {[str(s) for s in STAGES]}: the first stage the gate must fail, or "
                           f"{str(CONFIG_STAGE)!r} when the run must stop with a configuration error; got {stage!r}")

    verdict = data.get("verdict")
    if not isinstance(verdict, list) or not verdict or not all(isinstance(v, str) and v for v in verdict):
        raise bad("verdict", "must be a non-empty list of regexes (strings) matched against the verdicts")
    for pattern in verdict:
        try:
            re.compile(pattern)
        except re.error as err:
            raise bad("verdict", f"holds {pattern!r}, which is not a valid regex: {err}") from None

    markers = data.get("markers", DEFAULT_MARKERS)
    if not isinstance(markers, str) or not markers.strip():
        raise bad("markers", f"must be a pytest -m expression, got {markers!r}")
    if stage == StageName.FAULTS and StageName.FAULTS not in markers:
        raise bad("markers", f"is {markers!r}, which does not select the faults stage; use e.g. "
                             "\"p1 or (p2 and faults)\"")

    gate = data.get("gate", {})
    if not isinstance(gate, dict):
        raise bad("gate", "must be a table merged into the child's [tool.aidb-gate]")
    reserved = RESERVED_GATE_KEYS & set(gate)
    if reserved:
        raise bad("gate", f"may not set {sorted(reserved)}: the corpus sets them for every run")
    try:
        validate_shape(gate, DEFAULTS, f"{path} [gate]")
    except ConfigError as err:
        raise CaseError(str(err)) from None

    raw_edits = data.get("edit", [])
    if not isinstance(raw_edits, list) or not all(isinstance(e, dict) for e in raw_edits):
        raise bad("edit", "must be an array of tables: [[edit]] with file, old, new")
    edits = []
    for i, raw in enumerate(raw_edits, 1):
        where = f"edit #{i}"
        if set(raw) != EDIT_KEYS:
            raise bad(where, f"must have exactly the keys {sorted(EDIT_KEYS)}, has {sorted(raw)}")
        if not all(isinstance(raw[k], str) for k in EDIT_KEYS):
            raise bad(where, "file, old and new must be strings")
        if not raw["old"]:
            raise bad(where, "has an empty `old`; say what text to replace")
        rel = PurePosixPath(raw["file"])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise bad(where, f"names {raw['file']!r}; it must be a path inside the build context")
        edits.append(Edit(str(rel), raw["old"], raw["new"]))

    case = Case(folder.name, folder, stage, tuple(verdict), markers.strip(), gate, " ".join(why.split()),
                tuple(edits))
    if not case.edits and case.overlay is None:
        raise CaseError(f"{folder}: the case changes nothing (no {OVERLAY_DIR}/ folder and no [[edit]]), "
                        "so it is the reference; add the change that breaks it")
    return case


def assemble(case: Case, dest: Path, reference: Path = REFERENCE) -> Path:
    """Build the case's context in `dest` (which must not exist or be empty): reference, overlay, edits."""
    if not (reference / "Containerfile").is_file() and not (reference / "Dockerfile").is_file():
        raise CaseError(f"the reference {reference} has no Containerfile or Dockerfile")
    if dest.exists() and any(dest.iterdir()):
        raise CaseError(f"{dest} is not empty; assemble a case into a new folder")
    shutil.copytree(reference, dest, ignore=IGNORED, dirs_exist_ok=True)
    if case.overlay is not None:
        shutil.copytree(case.overlay, dest, ignore=IGNORED, dirs_exist_ok=True)
    for i, edit in enumerate(case.edits, 1):
        apply_edit(dest, edit, f"{case.name}: edit #{i}")
    return dest


def apply_edit(context: Path, edit: Edit, label: str = "edit") -> None:
    """Replace edit.old by edit.new in context/edit.file; the old text must occur exactly once."""
    target = context / edit.file
    if not target.is_file():
        raise CaseError(f"{label}: {edit.file} does not exist in the assembled context (reference plus overlay)")
    text = target.read_text()
    count = text.count(edit.old)
    if count != 1:
        found = "is not found" if count == 0 else f"occurs {count} times"
        raise CaseError(
            f"{label}: the text to replace in {edit.file} {found}; it must occur exactly once. The reference "
            f"probably changed: update the case so it still breaks what it is meant to. Text:\n{edit.old}"
        )
    target.write_text(text.replace(edit.old, edit.new, 1))


# -- the child project ---------------------------------------------------------------------------

def gate_table(case: Case, context: Path, reports_dir: Path | str = "reports") -> dict[str, Any]:
    """The child's [tool.aidb-gate]: the corpus base, the case's [gate], and target/reports_dir."""
    table = deep_merge(BASE_GATE, case.gate)
    if (context / COMPOSE_FILE).is_file():
        table["compose"], table["service"] = str(context / COMPOSE_FILE), COMPOSE_SERVICE
    else:
        table["target"] = str(context)
    table["reports_dir"] = str(reports_dir)
    return table


def child_pyproject(gate: dict[str, Any], ini_options: dict[str, Any] | None = None) -> str:
    """A pyproject.toml text with [tool.pytest.ini_options] and [tool.aidb-gate]."""
    parts = []
    if ini_options:
        parts.append(_toml_table("tool.pytest.ini_options", ini_options))
    parts.append(_toml_table("tool.aidb-gate", gate))
    return "\n".join(parts)


def _toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


# -- judging a finished run ----------------------------------------------------------------------

def read_summary(reports_dir: Path) -> dict[str, Any] | None:
    """The child's summary.json, or None when the run wrote none (it stopped before any stage)."""
    path = reports_dir / "summary.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def stage_of_nodeid(nodeid: str, summary: dict[str, Any]) -> str | None:
    """The stage of a failed gate test, from its markers as the run recorded them (`test_stages`)."""
    return (summary.get("test_stages") or {}).get(nodeid)


def judge(summary: dict[str, Any] | None, case: Case, exit_code: int | None = None, output: str = "") -> list[str]:
    """What the child run got wrong for this case, in words; [] when the gate behaved as expected.
    A "config" case is judged on the child's exit code (4, pytest's usage error) and output."""
    if case.stage == CONFIG_STAGE:
        problems: list[str] = []
        if exit_code != 4:
            problems.append(f"the child run's exit status is {exit_code}, expected 4 (a configuration error before any "
                            "stage)")
        problems += [f"the run's output does not match {p!r}" for p in case.verdict if not re.search(p, output)]
        if summary is not None and summary.get("exit_status") == 0:
            problems.append("the child run reported a pass")
        return problems
    if summary is None:
        return ["the child run wrote no reports/summary.json (it stopped before any stage ran: a "
                "configuration or engine error?)"]
    problems = []
    exit_status = summary.get("exit_status")
    first = summary.get("first_failure")
    verdicts: dict[str, str] = summary.get("verdicts") or {}
    rows = summary.get("stages") or []

    if case.expects_pass:
        if exit_status != 0:
            problems.append(f"the gate did not pass: exit status {exit_status}")
        if first is not None:
            problems.append(f"the gate failed at stage `{first}`")
        problems += [f"{nodeid} failed: {_first_line(text)}" for nodeid, text in verdicts.items()]
        problems += [f"stage `{r.get('stage')}` is {r.get('status')}" for r in rows
                     if r.get("status") != "passed" and r.get("stage") != first]
        return problems

    if exit_status != 1:
        problems.append(f"the child run's exit status is {exit_status}, expected 1 (tests failed): "
                        + ("it passed" if exit_status == 0 else "it stopped with an error, not a verdict"))
    if first != case.stage:
        problems.append(f"the first failing stage is `{first}`, expected `{case.stage}`")
    headlines = [headline(text) for nodeid, text in verdicts.items() if stage_of_nodeid(nodeid, summary) == case.stage]
    if not headlines:
        problems.append(f"no failed test of stage `{case.stage}` left a verdict")
    else:
        for pattern in case.verdict:
            if not any(re.search(pattern, line) for line in headlines):
                problems.append(f"no verdict headline of stage `{case.stage}` matches {pattern!r}")
    if problems:
        seen = "\n".join(f"  {nodeid}: {_first_line(text)}" for nodeid, text in verdicts.items()) or "  (none)"
        problems.append(f"verdicts of the run:\n{seen}")
    return problems


def headline(verdict: str) -> str:
    """A verdict's first line: what the report's verdict list and the terminal summary show."""
    return verdict.strip().splitlines()[0] if verdict.strip() else ""


def _first_line(text: str, limit: int = 400) -> str:
    return (headline(text) or "(empty verdict)")[:limit]
