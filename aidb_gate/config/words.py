"""words: how configuration messages show what a user wrote.

Guarantees: every message stays one printable paragraph, whatever the input held: values and
paths are quoted, escaped and cut here, never printed raw.
"""

from __future__ import annotations

from typing import Any

from aidb_gate.config.schema import _BARE_KEY

# ---- words for messages: every message stays one printable paragraph, whatever the input held ----


def _quote(text: str) -> str:
    """`text` as a TOML basic string with every non-printable character escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def _text(text: str) -> str:
    """`text` as is when it is printable, else quoted with its control characters escaped."""
    return text if text.isprintable() else _quote(text)


def _dotted(path: tuple[str, ...]) -> str:
    """`path` as a TOML dotted key a user can paste: parts that are not bare keys come out quoted."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else _quote(p) for p in map(str, path))


def _show(value: Any, limit: int = 80) -> str:
    """A value for a message: its repr (control characters escaped), cut to about `limit` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[:limit] + "..."
