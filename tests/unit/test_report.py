"""report: redaction and the stage table."""

from __future__ import annotations

from aidb_gate.report import MASK, Redactor, StageBook


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
