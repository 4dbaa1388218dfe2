"""report: redaction and the stage table."""

from __future__ import annotations

from aidb_gate.core.text import MASK, Redactor
from aidb_gate.pipeline import StageBook


def test_redactor_masks_every_secret_longest_first():
    r = Redactor()
    r.add("abcd1234")
    r.add("abcd12345678")
    r.add("ab")  # too short to be a secret worth masking; masking it would shred the text
    assert r("pw=abcd12345678 and abcd1234 ab") == f"pw={MASK} and {MASK} ab"
    assert r.bytes(b"x abcd1234") == f"x {MASK}".encode()


def test_stage_book_status_and_first_failure():
    book = StageBook()
    book.record("build", 2.0, ok=True)
    book.add_test("build", "passed", 0.5)
    book.record("boot", 1.0, ok=True)
    book.add_test("boot", "failed", 0.1)
    rows = {r["stage"]: r for r in book.rows()}
    assert rows["build"]["status"] == "passed" and rows["build"]["seconds"] == 2.5
    assert rows["boot"]["status"] == "failed"
    assert book.first_failure() == "boot"
    assert "boot" in book.as_html() and "failed" in book.as_text()


def test_an_xdist_run_merges_its_workers_summaries():
    from aidb_gate.report import merge_worker_summaries

    def summary(run, stages, verdicts=None, **evidence):
        return {"stages": stages, "verdicts": verdicts or {}, "evidence": {"run": run, **evidence}}

    row = lambda stage, status, seconds, passed=0, failed=0: {  # noqa: E731
        "stage": stage, "status": status, "seconds": seconds, "passed": passed, "failed": failed, "skipped": 0}
    book, evidence, verdicts = merge_worker_summaries({
        "gw0": summary("r0", [row("dependencies", "passed", 3.0), row("health", "passed", 0.5, passed=4)],
                       engine="podman 4.3.1"),
        "gw1": summary("r1", [row("dependencies", "passed", 4.0), row("health", "failed", 0.2, passed=3, failed=1)],
                       {"suites/test_health.py::test_ready": "ready answered 500"}, backup={"postgres": {}}),
    })
    rows = {r["stage"]: r for r in book.rows()}
    assert rows["dependencies"]["seconds"] == 4.0  # the slowest worker, not the sum
    assert rows["health"]["passed"] == 7 and rows["health"]["failed"] == 1 and rows["health"]["status"] == "failed"
    assert book.first_failure() == "health"
    assert verdicts == {"suites/test_health.py::test_ready": "ready answered 500"}
    assert evidence["run"] == "gw0: r0, gw1: r1" and evidence["engine"] == "podman 4.3.1" and "backup" in evidence


# -- the verdict first: banner and causes -----------------------------------------------------

BUILD_FAILED = ("The image did not build (exit 1), so this stage cannot run (see the build stage). "
                "Last lines of reports/logs/build.log:\nRUN false\nError: exit status 1")


def failed_build_run():
    """A run whose build failed: its own test says why, eleven more tests could not run."""
    from aidb_gate.pipeline import StageBook

    book = StageBook()
    book.record("build", 3.0, ok=False)
    book.add_test("build", "failed", 0.1)
    book.add_test("build", "failed", 0.1)
    book.add_test("health", "failed", 0.0)
    verdicts = {"suites/test_build.py::test_image_builds": "the image did not build: `podman build` exited 1\nlog tail",
                **{f"suites/test_build.py::test_meta_{i}": BUILD_FAILED for i in range(3)},
                **{f"suites/test_health.py::test_h{i}": BUILD_FAILED for i in range(8)}}
    return book, verdicts


def marked(verdicts: dict[str, str]) -> dict[str, str]:
    """{nodeid: stage} as the run's markers give it (the plugin reads them from the reports)."""
    return {n: "build" if "test_build" in n else "health" for n in verdicts}


def test_verdicts_are_grouped_by_cause_and_blocked_tests_name_the_stage_that_broke():
    from aidb_gate.report import group_causes

    book, verdicts = failed_build_run()
    causes = group_causes(verdicts, book, marked(verdicts))
    assert [(c.stage, c.blocked, len(c.tests)) for c in causes] == [("build", False, 1), ("build", True, 11)]
    assert causes[0].verdict == "the image did not build: `podman build` exited 1" and causes[0].detail == "log tail"
    assert causes[1].verdict.startswith("The image did not build (exit 1)") and "RUN false" in causes[1].detail
    assert causes[1].as_dict()["tests"][0] == "suites/test_build.py::test_meta_0"


def test_one_cause_is_one_group_whatever_its_whitespace_and_the_stage_comes_from_the_markers():
    from aidb_gate.report import group_causes

    verdicts = {"a.py::t1": "ready answered 500\ntrace 1", "a.py::t2": "  ready   answered 500 \ntrace 2",
                "b.py::t3": "auth let a bad key in"}
    causes = group_causes(verdicts, stages_of={"a.py::t1": "health", "a.py::t2": "health", "b.py::t3": "auth"})
    assert [(c.stage, c.verdict, c.tests) for c in causes] == [
        ("health", "ready answered 500", ["a.py::t1", "a.py::t2"]), ("auth", "auth let a bad key in", ["b.py::t3"])]


def test_blocked_by_a_later_stage_names_that_stage_not_the_first_failure():
    """imports failed on its own; boot never became ready, which blocked health: the blocked
    group names boot."""
    from aidb_gate.pipeline import StageBook
    from aidb_gate.report import group_causes

    book = StageBook()
    for stage in ("imports", "boot", "health"):
        book.add_test(stage, "failed", 0.1)
    verdicts = {"x::i": "module app.x does not import", "x::b": "no answer on port 8091 within 30 s",
                "x::h": "The service did not become ready, so this stage cannot run: no answer"}
    causes = group_causes(verdicts, book, {"x::i": "imports", "x::b": "boot", "x::h": "health"})
    assert [(c.stage, c.blocked) for c in causes] == [("imports", False), ("boot", False), ("boot", True)]


def test_the_stage_of_a_report_comes_from_its_markers_not_from_its_names():
    from types import SimpleNamespace

    from aidb_gate.report import stage_of_markers, stages_of_reports

    # A report's keywords also hold the test's, file's and folders' names: a folder named backup is not a marker.
    assert stage_of_markers({"backup", "test_x", "p1"}, "tests/backup/test_x.py::test_x") is None
    assert stage_of_markers({"p1", "boot", "test_x"}, "t/test_x.py::test_x") == "boot"
    reports = [SimpleNamespace(nodeid="t.py::a", keywords={"p1": 1, "health": 1}), SimpleNamespace(nodeid="t.py::b")]
    assert stages_of_reports(reports) == {"t.py::a": "health"}


def test_the_banner_leads_with_the_first_failing_stage_and_its_own_verdict():
    from aidb_gate.pipeline import StageBook
    from aidb_gate.report import banner_text, group_causes

    book, verdicts = failed_build_run()
    assert banner_text(book, group_causes(verdicts, book, marked(verdicts)), 1) == \
        "GATE: FAIL at build: the image did not build: `podman build` exited 1"
    # Only blocked tests in the failing stage: their verdict is the stage's first.
    only_blocked = {k: v for k, v in verdicts.items() if v == BUILD_FAILED}
    assert banner_text(book, group_causes(only_blocked, book), 1).startswith("GATE: FAIL at build: The image did not build")
    ok = StageBook()
    ok.add_test("health", "passed", 0.1)
    assert banner_text(ok, [], 0) == "GATE: PASS"
    assert banner_text(ok, [], 1) == "GATE: FAIL"  # e.g. a non-gate test failed
    long = {"x::t": "y" * 1000}
    book.add_test("build", "failed", 0)
    assert len(banner_text(book, group_causes(long, book, {"x::t": "build"}), 1)) < 330


def test_the_summary_says_each_cause_once_after_the_banner_and_folds_the_environment():
    from aidb_gate.report import summary_html

    book, verdicts = failed_build_run()
    page = "".join(summary_html(book, {"run": "r1"}, verdicts, stages_of=marked(verdicts), exit_status=1))
    banner = page.index("GATE: FAIL at build: the image did not build")
    assert "gate-fail" in page and banner < page.index("Gate stages") < page.index("Verdicts, by cause")
    assert page.count("The image did not build (exit 1)") == 1  # eleven tests, one cause, said once
    assert page.count("RUN false") == 1
    assert "build</span> broke: 11 test(s) could not run" in page
    assert page.index("Verdicts, by cause") < page.index("id=\"gate-environment\"")
    assert "getElementById(\"environment\")" in page  # pytest-html's table is moved into the fold
    passed = "".join(summary_html(failed_build_run()[0].__class__(), {}, {}, exit_status=0))
    assert "gate-pass" in passed and "GATE: PASS" in passed


def test_the_terminal_lists_each_cause_once_with_its_tests():
    from aidb_gate.report import causes_text, group_causes

    book, verdicts = failed_build_run()
    lines = causes_text(group_causes(verdicts, book, marked(verdicts)), max_tests=5)
    text = "\n".join(lines)
    assert text.count("The image did not build (exit 1)") == 1
    assert "[build] 11 test(s) could not run because the build stage failed: The image did not build" in text
    assert "suites/test_build.py::test_image_builds" in text and "... and 7 more" in text


def test_summary_json_keeps_its_fields_and_adds_causes(tmp_path):
    import json

    from aidb_gate.report import write_summary

    book, verdicts = failed_build_run()
    write_summary(tmp_path / "summary.json", book, {"run": "r1"}, verdicts, 1, stages_of=marked(verdicts))
    data = json.loads((tmp_path / "summary.json").read_text())
    assert list(data) == ["exit_status", "first_failure", "stages", "verdicts", "evidence", "causes", "switched_off",
                          "test_stages"]
    assert data["first_failure"] == "build" and data["verdicts"] == verdicts
    assert data["causes"][1] == {"stage": "build", "verdict": BUILD_FAILED.splitlines()[0],
                                 "tests": [k for k, v in verdicts.items() if v == BUILD_FAILED], "blocked": True}


def test_text_is_redacted_before_it_is_cut() -> None:
    """A cut through a secret would leave a piece the redactor no longer recognises: `clip`
    masks every live run's secrets first, whichever end it keeps."""
    from aidb_gate.core.text import Redactor, clip

    secret = "Zq8vXw2pLr5tNm7kJh3sDf9g"
    redactor = Redactor()
    redactor.add(secret)
    text = "FATAL: password authentication failed, password=" + secret + " (from 10.0.0.2)"
    cut_at = text.index(secret) + 9  # the old way: cut first, nine characters of it survive
    assert secret[:9] in text[:cut_at]
    assert secret[:4] not in clip(text, cut_at) and "password=***" in clip(text, cut_at)
    assert secret[-4:] not in clip(text, 30, tail=True)
    assert clip("short", 100) == "short" and clip("", 10) == ""
