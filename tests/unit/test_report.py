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
