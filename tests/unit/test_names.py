"""Unit tests for aidb_gate.core.names: escaping outside text and checking outside file names."""

from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidb_gate.core import names


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name", "plain name"),
        ("caf\u00e9 \u6f22\u5b57 \U0001f600", "caf\u00e9 \u6f22\u5b57 \U0001f600"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("two\u2028lines\u2029", "two\\u2028lines\\u2029"),
        ("a\nb\rc\x1b[31m", "a\\x0ab\\x0dc\\x1b[31m"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("lone\ud800", "lone\\ud800"),
        (os.fsdecode(b"byte\xff"), "byte\\xff"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_escape_shows_unsafe_characters_and_keeps_the_rest(raw, shown):
    assert names.escape(raw) == shown


@given(st.text())
def test_escaped_text_is_one_printable_line(text):
    shown = names.escape(text)
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"} for c in shown)
    assert shown.splitlines() in ([shown], [])


@pytest.mark.parametrize(
    "bad",
    ["", ".", "..", "a/b", "../../x", "/abs", "a\\b", "nul\x00", "r\u202el", "l\u2028s", "c\x07", "x" * 256, "\u00e9" * 128],
)
def test_unsafe_components_are_refused_with_the_escaped_name(bad):
    assert names.component_problem(bad)
    with pytest.raises(ValueError) as err:
        names.check_component(bad, "collection name")
    assert "\u202e" not in str(err.value) and "\u2028" not in str(err.value) and "\x00" not in str(err.value)


@pytest.mark.parametrize("good", ["a", "my_collection", "v1.2-final", ".hidden", "x" * 255, "caf\u00e9"])
def test_safe_components_pass(good):
    assert names.component_problem(good) is None
    assert names.check_component(good) == good


def test_encoding_keeps_plain_names_and_encodes_the_rest():
    assert names.encode_component("my_collection", ".snapshot") == "my_collection.snapshot"
    assert names.encode_component("../../x", ".snapshot") == "%2E.%2F..%2Fx.snapshot"
    assert names.encode_component("/abs", "") == "%2Fabs"
    assert names.encode_component("", "") == "%"


@given(st.text(), st.text())
def test_encoding_is_safe_and_one_to_one(one, two):
    a, b = names.encode_component(one, ".snapshot"), names.encode_component(two, ".snapshot")
    assert names.component_problem(a) is None and a.endswith(".snapshot")
    assert (a == b) == (one == two)


def test_long_names_are_cut_to_255_bytes_and_stay_distinct():
    first = names.encode_component("\u00e9" * 300, ".snapshot")
    second = names.encode_component("\u00e9" * 301, ".snapshot")
    assert len(first.encode()) <= 255 and len(second.encode()) <= 255
    assert first != second and "~" in first


def test_contained_refuses_links_and_escapes(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    assert names.contained(folder, "a.snapshot") == folder / "a.snapshot"
    (folder / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leads outside"):
        names.contained(folder, "link")
    with pytest.raises(ValueError, match="separator"):
        names.contained(folder, "../x")
