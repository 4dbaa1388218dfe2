"""aidb_gate.corpus without containers: loading and validating cases, assembling contexts, judging runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from aidb_gate import corpus
from aidb_gate.config import load_config
from aidb_gate.report import STAGES


def make_reference(root: Path) -> Path:
    ref = root / "reference"
    ref.mkdir()
    (ref / "Containerfile").write_text('FROM scratch\nCMD ["python", "server.py"]\n')
    (ref / "server.py").write_text("PORT = 8091\nHOST = '0.0.0.0'\n")
    (ref / "settings.py").write_text("DB = 'mcp'\n")
    (ref / "__pycache__").mkdir()
    (ref / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0")
    return ref


def make_case(root: Path, text: str, name: str = "case", overlay: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "case.toml").write_text(text)
    for rel, content in (overlay or {}).items():
        path = folder / "overlay" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder


GOOD = '''
why = "binds loopback"
stage = "boot"
verdict = ['listens on 127\\.0\\.0\\.1:8091']

[gate]
startup_timeout_s = 12

[[edit]]
file = "server.py"
old = "HOST = '0.0.0.0'"
new = "HOST = '127.0.0.1'"
'''


# -- the real corpus ---------------------------------------------------------------------------

@pytest.mark.parametrize("folder", corpus.discover(), ids=lambda p: p.name)
def test_every_entry_loads_and_still_applies_to_the_reference(folder: Path, tmp_path: Path) -> None:
    """A change to the reference that defuses an entry (its edit no longer applies) fails here, fast."""
    case = corpus.load_case(folder)
    context = corpus.assemble(case, tmp_path / "ctx")
    assert (context / "Containerfile").is_file()
    changed = [p.relative_to(context) for p in context.rglob("*") if p.is_file()
               and (not (corpus.REFERENCE / p.relative_to(context)).is_file()
                    or (corpus.REFERENCE / p.relative_to(context)).read_bytes() != p.read_bytes())]
    assert changed, f"{case.name} assembles to a copy of the reference"


def test_the_corpus_covers_the_issue() -> None:
    cases = {c.name: c for c in map(corpus.load_case, corpus.discover())}
    assert len(cases) >= 11
    stages = {c.stage for c in cases.values()}
    assert {"imports", "boot", "auth", "faults"} <= stages
    for case in cases.values():
        if case.stage == "faults":
            assert "faults" in case.markers
            # The reference passes the very fault configuration that the fault cases fail.
            assert case.gate.get("faults") == corpus.REFERENCE_GATE["faults"], case.name


def test_the_reference_case_expects_a_pass() -> None:
    ref = corpus.reference_case()
    assert ref.expects_pass and ref.stage is None and "faults" in ref.markers


# -- load_case ---------------------------------------------------------------------------------

def test_a_good_case_loads(tmp_path: Path) -> None:
    case = corpus.load_case(make_case(tmp_path, GOOD))
    assert case.stage == "boot" and case.markers == "p1" and case.gate == {"startup_timeout_s": 12}
    assert case.edits == (corpus.Edit("server.py", "HOST = '0.0.0.0'", "HOST = '127.0.0.1'"),)
    assert case.overlay is None and not case.expects_pass


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace('stage = "boot"', 'stage = "booting"'), "`stage` must be one of"),
    (lambda t: t.replace("verdict = ['listens on 127\\.0\\.0\\.1:8091']", "verdict = []"), "`verdict` must be a non-empty"),
    (lambda t: t.replace("verdict = ['listens on 127\\.0\\.0\\.1:8091']", "verdict = ['(unclosed']"), "not a valid regex"),
    (lambda t: t.replace('why = "binds loopback"', 'why = ""'), "`why` must be one sentence"),
    (lambda t: "colour = 'red'\n" + t, "unknown key(s) ['colour']"),
    (lambda t: t.replace("startup_timeout_s = 12", "startup_timout_s = 12"), "Did you mean `startup_timeout_s`?"),
    (lambda t: t.replace("startup_timeout_s = 12", 'startup_timeout_s = "soon"'), "`startup_timeout_s` must be a number"),
    (lambda t: t.replace("startup_timeout_s = 12", 'target = "/elsewhere"'), "may not set ['target']"),
    (lambda t: t.replace('file = "server.py"', 'file = "../server.py"'), "must be a path inside the build context"),
    (lambda t: t.replace('new = "HOST = \'127.0.0.1\'"', ""), "must have exactly the keys"),
    (lambda t: t.replace('stage = "boot"', 'stage = "faults"'), "does not select the faults stage"),
    (lambda t: t[: t.index("[[edit]]")], "the case changes nothing"),
    (lambda t: t + "\n[oops", "is not valid TOML"),
])
def test_a_bad_case_is_one_clear_error(tmp_path: Path, change, message: str) -> None:
    folder = make_case(tmp_path, change(GOOD))
    with pytest.raises(corpus.CaseError) as err:
        corpus.load_case(folder)
    assert message in str(err.value)
    assert str(folder) in str(err.value)


def test_a_folder_without_case_toml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "stray").mkdir()
    assert corpus.discover(tmp_path) == [tmp_path / "stray"]
    with pytest.raises(corpus.CaseError, match=r"no case\.toml"):
        corpus.load_case(tmp_path / "stray")


def test_discover_ignores_hidden_and_cache_folders(tmp_path: Path) -> None:
    for name in ("b", "a", ".hidden", "__pycache__"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("x")
    assert [p.name for p in corpus.discover(tmp_path)] == ["a", "b"]
    assert corpus.discover(tmp_path / "missing") == []


# -- assemble ----------------------------------------------------------------------------------

def test_assemble_copies_the_reference_then_the_overlay_then_the_edits(tmp_path: Path) -> None:
    ref = make_reference(tmp_path)
    text = GOOD.replace('file = "server.py"', 'file = "settings.py"').replace(
        "old = \"HOST = '0.0.0.0'\"", "old = \"DB = 'mcp'\"").replace("new = \"HOST = '127.0.0.1'\"", "new = \"DB = 'aidb'\"")
    folder = make_case(tmp_path / "cases", text, overlay={"server.py": "PORT = 9000\n", "extra/new.txt": "new\n"})
    ref_before = {p: p.read_bytes() for p in ref.rglob("*") if p.is_file()}

    ctx = corpus.assemble(corpus.load_case(folder), tmp_path / "ctx", reference=ref)

    assert (ctx / "server.py").read_text() == "PORT = 9000\n"  # the overlay wins
    assert (ctx / "extra" / "new.txt").read_text() == "new\n"  # new files allowed
    assert (ctx / "settings.py").read_text() == "DB = 'aidb'\n"  # edits applied
    assert (ctx / "Containerfile").read_text() == (ref / "Containerfile").read_text()
    assert not (ctx / "__pycache__").exists()
    assert {p: p.read_bytes() for p in ref.rglob("*") if p.is_file()} == ref_before  # reference untouched
    assert not (folder / "overlay" / "settings.py").exists()  # case folder untouched


def test_an_edit_can_change_a_file_the_overlay_added(tmp_path: Path) -> None:
    ref = make_reference(tmp_path)
    text = GOOD.replace('file = "server.py"', 'file = "run.py"').replace(
        "old = \"HOST = '0.0.0.0'\"", 'old = "exit(0)"').replace("new = \"HOST = '127.0.0.1'\"", 'new = "exit(3)"')
    folder = make_case(tmp_path / "cases", text, overlay={"run.py": "exit(0)\n"})
    ctx = corpus.assemble(corpus.load_case(folder), tmp_path / "ctx", reference=ref)
    assert (ctx / "run.py").read_text() == "exit(3)\n"


@pytest.mark.parametrize(("old", "found"), [("HOST = 'localhost'", "is not found"), ("=", "occurs 2 times")])
def test_an_edit_must_match_exactly_once(tmp_path: Path, old: str, found: str) -> None:
    ref = make_reference(tmp_path)
    folder = make_case(tmp_path / "cases", GOOD.replace("old = \"HOST = '0.0.0.0'\"", f'old = "{old}"'))
    with pytest.raises(corpus.CaseError) as err:
        corpus.assemble(corpus.load_case(folder), tmp_path / "ctx", reference=ref)
    assert f"the text to replace in server.py {found}; it must occur exactly once" in str(err.value)
    assert "case: edit #1" in str(err.value)


def test_an_edit_of_a_missing_file_is_an_error(tmp_path: Path) -> None:
    ref = make_reference(tmp_path)
    folder = make_case(tmp_path / "cases", GOOD.replace('file = "server.py"', 'file = "app.py"'))
    with pytest.raises(corpus.CaseError, match=r"app\.py does not exist"):
        corpus.assemble(corpus.load_case(folder), tmp_path / "ctx", reference=ref)


def test_assemble_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    ref = make_reference(tmp_path)
    dest = tmp_path / "ctx"
    dest.mkdir()
    (dest / "left.txt").write_text("x")
    with pytest.raises(corpus.CaseError, match="not empty"):
        corpus.assemble(corpus.load_case(make_case(tmp_path / "cases", GOOD)), dest, reference=ref)


# -- the child project -------------------------------------------------------------------------

def test_the_child_pyproject_is_valid_toml_and_a_valid_gate_configuration(tmp_path: Path) -> None:
    case = corpus.load_case(make_case(tmp_path / "cases", GOOD + '\n'))
    case = corpus.Case(case.name, case.folder, case.stage, case.verdict, case.markers,
                       {"startup_timeout_s": 12, "faults": {"budget_s": 8.0, "actions": ["stop"]},
                        "dependencies": {"qdrant": {"enabled": False}}, "env": {"X Y": 'a "quoted" {api_key}'}},
                       case.why, case.edits)
    ctx = tmp_path / "ctx with space"
    text = corpus.child_pyproject(corpus.gate_table(case, ctx, "reports"))
    data = tomllib.loads(text)
    assert "pytest" not in data["tool"], "the plugin registers its own markers; the child needs no pytest table"
    project = tmp_path / "child"
    project.mkdir()
    (project / "pyproject.toml").write_text(text)
    cfg = load_config(project, environ={})
    assert cfg.target == ctx
    assert cfg.reports_dir == project / "reports"
    assert cfg.startup_timeout_s == 12.0 and cfg.fault_budget_s == 8.0 and cfg.fault_actions == ("stop",)
    assert not cfg.dependencies["qdrant"].enabled and cfg.dependencies["postgres"].enabled
    assert cfg.env_templates["X Y"] == 'a "quoted" {api_key}'
    assert cfg.ca_bundle is None or cfg.ca_bundle.is_file()


def test_gate_table_does_not_share_state_between_cases(tmp_path: Path) -> None:
    a = corpus.gate_table(corpus.reference_case(gate={"faults": {"budget_s": 3.0}}), tmp_path, "r")
    a["faults"]["budget_s"] = 99.0
    assert corpus.BASE_GATE.get("faults") is None
    assert corpus.reference_case().gate == corpus.REFERENCE_GATE


# -- judge -------------------------------------------------------------------------------------

#: The stage the run's markers gave each failed test of these examples (summary.json `test_stages`).
MARKED_AS = {"test_boot.py": "boot", "test_health.py": "health", "test_imports.py": "imports", "test_auth.py": "auth"}


def summary(first: str | None, verdicts: dict[str, str], exit_status: int = 1) -> dict:
    rows = [{"stage": s, "status": "failed" if s == first else "passed"} for s in STAGES[: STAGES.index(first or "auth") + 1]]
    test_stages = {n: MARKED_AS[n.split("::")[0]] for n in verdicts if n.split("::")[0] in MARKED_AS}
    return {"exit_status": exit_status, "first_failure": first, "stages": rows, "verdicts": verdicts, "evidence": {},
            "test_stages": test_stages}


BOOT_CASE = corpus.Case("loop", None, "boot", (r"listens on 127\.0\.0\.1:8091", r"^the container runs but never answered"))
LOOPBACK_VERDICT = ("the container runs but never answered: it listens on 127.0.0.1:8091 inside the container, so it "
                    "is unreachable from outside: bind 0.0.0.0 (or ::) instead. Last log line: x\n\nVERDICT: ...")


def test_judge_accepts_the_expected_stage_and_verdict() -> None:
    s = summary("boot", {"test_boot.py::test_service_becomes_ready_within_the_startup_budget": LOOPBACK_VERDICT,
                         "test_health.py::test_liveness": "The service did not become ready, so this stage cannot run"})
    assert corpus.judge(s, BOOT_CASE) == []


def test_judge_names_a_wrong_first_stage() -> None:
    s = summary("imports", {"test_imports.py::test_every_module_imports": "1 of 8 modules fail to import"})
    problems = corpus.judge(s, BOOT_CASE)
    assert "the first failing stage is `imports`, expected `boot`" in problems
    assert "no failed test of stage `boot` left a verdict" in problems
    assert any("test_imports.py::test_every_module_imports: 1 of 8 modules" in p for p in problems)


def test_judge_names_each_regex_that_no_verdict_headline_matches() -> None:
    s = summary("boot", {"test_boot.py::test_a": "the container runs but never answered: port 8091 never answered HTTP"})
    problems = corpus.judge(s, BOOT_CASE)
    assert "no verdict headline of stage `boot` matches 'listens on 127\\\\.0\\\\.0\\\\.1:8091'" in problems
    assert not any("never answered'" in p for p in problems if p.startswith("no verdict"))


def test_judge_reads_only_the_headline_and_only_the_expected_stage() -> None:
    evidence_only = "the container exited with code 1\n\nlistens on 127.0.0.1:8091 (in the evidence, not the verdict)"
    s = summary("boot", {"test_boot.py::test_a": evidence_only,
                         "test_health.py::test_b": LOOPBACK_VERDICT})  # right words, wrong stage
    problems = corpus.judge(s, BOOT_CASE)
    assert len([p for p in problems if p.startswith("no verdict headline")]) == 2


@pytest.mark.parametrize(("exit_status", "words"), [(0, "it passed"), (3, "stopped with an error")])
def test_judge_wants_a_failed_run_for_a_broken_case(exit_status: int, words: str) -> None:
    s = summary("boot", {"test_boot.py::test_a": LOOPBACK_VERDICT}, exit_status=exit_status)
    problems = corpus.judge(s, BOOT_CASE)
    assert any(words in p for p in problems)


def test_judge_of_a_run_that_wrote_no_summary() -> None:
    assert "wrote no reports/summary.json" in corpus.judge(None, BOOT_CASE)[0]


def test_judge_of_the_reference() -> None:
    ref = corpus.reference_case()
    assert corpus.judge(summary(None, {}, exit_status=0), ref) == []
    problems = corpus.judge(summary("auth", {"test_auth.py::test_x": "POST /documents returned 500"}), ref)
    assert "the gate did not pass: exit status 1" in problems
    assert "the gate failed at stage `auth`" in problems
    assert "test_auth.py::test_x failed: POST /documents returned 500" in problems


def test_a_tests_stage_comes_from_its_markers_never_its_file_name() -> None:
    marked = {"test_search.py::test_x": "qdrant"}
    assert corpus.stage_of_nodeid("test_search.py::test_x", {"test_stages": marked}) == "qdrant"
    assert corpus.stage_of_nodeid("test_health.py::test_y", {"test_stages": marked}) is None


def test_verdict_regexes_of_the_corpus_name_the_gates_own_words() -> None:
    """Each regex must hold some of the gate's wording, not only what the variant itself prints."""
    phrases = ["has no `", "not installed in the image", "no output", "listens on", "never answered",
               "nothing listens", "The service uses user `", "startup did not complete", "readiness did not answer",
               "liveness answered", "without an API key returned", "modules fail to import", "exited with code",
               "cached health answer", "password authentication failed", "add the distribution `",
               "never passed on the ready service", "has that target", "OOM killer at its memory limit",
               "a compose service that is not in its depends_on", "and the gate cannot provide it", "Set `compose_variables.",
               "do not come back as sent", "the environment differs from production, not the code"]
    for case in map(corpus.load_case, corpus.discover()):
        for pattern in case.verdict:
            plain = re.sub(r"\\(.)", r"\1", pattern)
            assert any(p in plain for p in phrases), f"{case.name}: {pattern!r} names none of the gate's phrases"
