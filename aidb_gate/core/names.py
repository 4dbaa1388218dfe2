"""names: outside text made safe to print, and outside names made safe to use as file names.

Guarantees:

- `escape(text)` returns one printable line: every control character (Cc), format character
  (Cf: bidi overrides such as U+202E, zero-width characters, BOM), line or paragraph separator
  (Zl, Zp) and lone surrogate is replaced by a visible escape (`\\xNN`, `\\uXXXX` or
  `\\UXXXXXXXX`); a surrogate that `os.fsdecode` made from an undecodable byte is shown as that
  byte (`\\xNN`). Every other character is left as it is, so ordinary names read unchanged.
- `component_problem(name)` says why `name` is not one safe file-name component (empty, `.` or
  `..`, a `/` or `\\`, NUL, an unsafe character as above, more than 255 bytes in UTF-8), or
  None when it is one.
- `check_component(name)` returns `name` when it is safe, else raises ValueError with the reason
  and the escaped name.
- `encode_component(name, suffix)` maps any string to a safe component ending in `suffix`:
  letters, digits, `_` and `-` stay (and `.` except at the start), everything else is
  percent-encoded from its UTF-8 bytes, so the mapping is one-to-one and plain names stay
  readable. A result that would exceed 255 bytes (or a smaller `limit`) is cut and ends in `~` plus 16 hex digits of
  the name's SHA-256, which no untruncated result contains.
- `contained(folder, name)` returns `folder / name` only when `name` is one safe component and
  the path, resolved, stays directly under the resolved folder; otherwise it raises ValueError.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

#: The longest file-name component Linux file systems accept, in bytes.
NAME_MAX = 255

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: object) -> str:
    """`text` (anything; non-strings go through `str`) as one line that is safe to print: unsafe
    characters (see the module docstring) become visible escapes, everything else is unchanged."""
    text = text if isinstance(text, str) else str(text)
    return "".join(_escape_char(c) if _unsafe(c) else c for c in text)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def component_problem(name: str) -> str | None:
    """Why `name` cannot be used as one file-name component, or None when it can."""
    if not isinstance(name, str) or not name:
        return "it is empty" if name == "" else "it is not a string"
    if name in (".", ".."):
        return f"it is {name!r}, which names a folder"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if "\x00" in name:
        return "it holds a NUL character"
    if any(_unsafe(c) for c in name):
        return "it holds a control, bidi or line-separator character"
    if len(_utf8(name)) > NAME_MAX:
        return f"it is {len(_utf8(name))} bytes long, more than the {NAME_MAX} a file name may have"
    return None


def check_component(name: str, what: str = "name") -> str:
    """`name` itself when it is one safe file-name component; otherwise ValueError naming it (escaped)."""
    problem = component_problem(name)
    if problem:
        raise ValueError(f"the {what} '{escape(name)}' cannot be used as a file name: {problem}")
    return name


def encode_component(name: str, suffix: str = "", limit: int = NAME_MAX) -> str:
    """A safe file-name component for any `name`, ending in `suffix` (itself safe and short), at
    most `limit` bytes long (leave room when a longer temporary name is made from it).

    One-to-one: distinct names give distinct results (percent-encoding is reversible; a cut
    result carries a hash of the whole name)."""
    parts = []
    for index, char in enumerate(name):
        if char in _KEPT and not (char == "." and index == 0):
            parts.append(char)
        else:
            parts.append("".join(f"%{b:02X}" for b in _utf8(char)))
    encoded = "".join(parts) or "%"  # "" encodes to "%", which no non-empty name gives
    room = min(limit, NAME_MAX) - len(suffix.encode())
    if len(encoded) > room:
        digest = hashlib.sha256(_utf8(name)).hexdigest()[:16]
        cut = encoded[: room - 17]
        # Never leave half of a %XX escape at the cut.
        tail = cut.rfind("%")
        if tail != -1 and tail > len(cut) - 3:
            cut = cut[:tail]
        encoded = f"{cut}~{digest}"
    return check_component(encoded + suffix)


def contained(folder: Path, name: str, what: str = "name") -> Path:
    """`folder / name`, after checking that `name` is one safe component and that the resolved path
    lies directly in the resolved folder (so no link in `folder` can lead elsewhere)."""
    check_component(name, what)
    path = Path(folder) / name
    base = Path(os.path.realpath(folder))
    if Path(os.path.realpath(path)).parent != base:
        raise ValueError(f"the {what} '{escape(name)}' leads outside {escape(base)}")
    return path
