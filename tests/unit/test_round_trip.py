"""What goes in through the service must come out unchanged: the verdict names the field, the
smallest example sent and returned, and whether plain ASCII survives."""

from __future__ import annotations

from aidb_gate.backup.seed import round_trip_problems, round_trip_verdict

ASCII = {"title": "plain", "content": "ascii only"}
ACCENTED = {"title": "Zürich", "content": "naïve façade"}


def test_an_intact_round_trip_has_no_problem() -> None:
    assert round_trip_verdict([(ASCII, dict(ASCII, id=1)), (ACCENTED, dict(ACCENTED, id=2))], "GET") == []


def test_a_changed_or_missing_field_is_named_with_what_was_sent_and_returned() -> None:
    problems = round_trip_problems(ACCENTED, {"title": "Zurich"}, "GET right after")
    assert problems == ["GET right after: field `title` was sent as 'Zürich' and came back as 'Zurich'",
                        "GET right after: field `content` is missing (sent 'naïve façade')"]
    assert round_trip_problems(ASCII, None, "GET") == ["GET: no document came back"]


def test_the_verdict_leads_with_the_smallest_example_and_says_ascii_survives() -> None:
    mangled = {k: v.encode().decode("ascii", "ignore") for k, v in ACCENTED.items()}
    long_one = {"title": "Ünïcödé " * 10, "content": "x"}
    verdict = round_trip_verdict([(ASCII, ASCII), (long_one, {"title": "?", "content": "x"}), (ACCENTED, mangled)],
                                 "the create call's answer")
    assert verdict[0].startswith("2 of 3 documents written through the data API do not come back as sent; smallest "
                                 "example: the create call's answer: field `title` was sent as 'Zürich'")
    assert "plain-ASCII documents come back intact" in verdict[0]


def test_when_ascii_is_changed_too_the_verdict_says_so() -> None:
    verdict = round_trip_verdict([(ASCII, {"title": "PLAIN", "content": "ascii only"})], "GET")
    assert "plain-ASCII documents are changed too" in verdict[0]
