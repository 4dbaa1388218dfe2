"""pg_values: a changed Postgres value, said by its value and its bits.

Guarantees: `value_changes` and `describe_value` turn the binary send-format listings the
fingerprint keeps (float4, float8, pgvector's vector and halfvec) into a short readable line -
the value before and after, and its bits where the text would hide the difference (-0.0, NaN
payloads) - at most EXAMPLES of them. Pure functions over bytes; nothing here talks to a server.
"""

from __future__ import annotations

import math
import struct
from collections import Counter

from aidb_gate.core.names import escape

#: At most this many changed values are spelled out in one verdict.
EXAMPLES = 3


def value_changes(before: str, after: str, limit: int = EXAMPLES) -> str:
    """What changed between two listings ("<send> <hex>,<hex>,..." from `binary_values`), in words:
    where as many values went as came, they are paired in value order ("x (bits) became y (bits)"),
    else the values lost and the values that appeared are listed; at most `limit` of each are
    spelled out, then how many more. "" when both listings hold the same values."""
    send_before, values_before = _listing(before)
    send_after, values_after = _listing(after)
    gone_count, came_count = Counter(values_before), Counter(values_after)
    gone = sorted((gone_count - came_count).elements(), key=lambda h: _order(send_before, h))
    came = sorted((came_count - gone_count).elements(), key=lambda h: _order(send_after, h))
    if not gone and not came:
        return ""
    if len(gone) == len(came):
        said = [_describe_change(send_before, send_after, b, a) for b, a in zip(gone[:limit], came[:limit], strict=True)]
        lead = f"{len(gone)} values changed, e.g. " if len(gone) > 1 else ""
        return lead + "; ".join(said) + _more(len(gone), limit)
    parts = []
    if gone:
        parts.append(f"{_count(len(gone))} gone: " + "; ".join(describe_value(send_before, h) for h in gone[:limit])
                     + _more(len(gone), limit))
    if came:
        parts.append(f"{_count(len(came))} new: " + "; ".join(describe_value(send_after, h) for h in came[:limit])
                     + _more(len(came), limit))
    return ", ".join(parts)


def _listing(listing: str) -> tuple[str, list[str]]:
    send, _, values = listing.rpartition(" ")  # hex holds no space; a quoted function name may
    return send, [v for v in values.split(",") if v]


def _count(n: int) -> str:
    return f"{n} value" + ("" if n == 1 else "s")


def _more(total: int, limit: int) -> str:
    return f"; and {total - limit} more" if total > limit else ""


#: struct formats of the scalar types whose bits are shown as numbers.
_SCALARS = {"float8send": ">d", "float4send": ">f"}


def _kind(send: str) -> str:
    return send.rsplit(".", 1)[-1].strip('"')  # an extension's send function may be schema-qualified


def _number(raw: bytes, fmt: str) -> str:
    """The shortest decimal that reads back as exactly these bits (Python's repr for float8)."""
    value = struct.unpack(fmt, raw)[0]
    if fmt == ">d" or not math.isfinite(value):
        return repr(value)
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if struct.pack(fmt, float(text)) == raw:
            break
    return text + (".0" if text.lstrip("-").isdigit() else "")


def _vector(send: str, raw: bytes) -> tuple[str, str, list[tuple[str, bytes]]] | None:
    """A pgvector value as (struct format, dimensions suffix, [(component label, its bits)]), or
    None when `raw` is not one (another extension may name its send function alike)."""
    kind = _kind(send)
    if kind in ("vector_send", "halfvec_send") and len(raw) >= 4:
        size = 4 if kind == "vector_send" else 2
        dim = struct.unpack(">h", raw[:2])[0]
        if dim >= 0 and len(raw) == 4 + size * dim:
            return (">f" if size == 4 else ">e"), "", [(str(i), raw[4 + size * i:4 + size * (i + 1)]) for i in range(dim)]
    if kind == "sparsevec_send" and len(raw) >= 12:
        dim, nnz = struct.unpack(">ii", raw[:8])
        if nnz >= 0 and len(raw) == 12 + 8 * nnz:
            indices = struct.unpack(f">{nnz}i", raw[12:12 + 4 * nnz])
            values = raw[12 + 4 * nnz:]
            # Shown 1-based, as sparsevec's text form numbers them.
            return ">f", f"/{dim}", [(str(j + 1), values[4 * k:4 * (k + 1)]) for k, j in enumerate(indices)]
    return None


def _vector_text(fmt: str, suffix: str, parts: list[tuple[str, bytes]], shown: int = 4) -> str:
    if suffix:  # sparse: index:value pairs
        items = [f"{label}:{_number(bits, fmt)}" for label, bits in parts[:shown]]
        return "{" + ",".join(items) + (",..." if len(parts) > shown else "") + "}" + suffix
    items = [_number(bits, fmt) for _, bits in parts[:shown]]
    return "[" + ", ".join(items) + (f", ... ({len(parts)} dimensions)" if len(parts) > shown else "") + "]"


def _order(send: str, hex_value: str) -> tuple:
    """Sort key that pairs changed values in numeric order (what a rounding hop preserves)."""
    fmt = _SCALARS.get(_kind(send))
    try:
        raw = bytes.fromhex(hex_value)
        if fmt and len(raw) == struct.calcsize(fmt):
            value = struct.unpack(fmt, raw)[0]
            return (math.isnan(value), 0.0 if math.isnan(value) else value, hex_value)
    except ValueError:
        pass
    return (False, 0.0, hex_value)


def describe_value(send: str, hex_value: str) -> str:
    """One value from its send form, for a verdict: a float as its shortest exact decimal with its
    bits (`-0.0 (0x8000000000000000)`), a pgvector value as its leading components, anything else
    as (clipped) hex."""
    try:
        raw = bytes.fromhex(hex_value)
    except ValueError:
        return escape(hex_value[:40])
    fmt = _SCALARS.get(_kind(send))
    if fmt and len(raw) == struct.calcsize(fmt):
        return f"{_number(raw, fmt)} (0x{raw.hex()})"
    vector = _vector(send, raw)
    if vector:
        return _vector_text(*vector)
    return f"0x{raw.hex()[:32]}" + (f"... ({len(raw)} bytes)" if len(raw) > 16 else "")


def _describe_change(send_before: str, send_after: str, before: str, after: str) -> str:
    """"x became y"; for vectors of the same shape, also each changed component with its bits."""
    said = f"{describe_value(send_before, before)} became {describe_value(send_after, after)}"
    try:
        old, new = _vector(send_before, bytes.fromhex(before)), _vector(send_after, bytes.fromhex(after))
    except ValueError:
        return said
    if not old or not new or old[:2] != new[:2] or [p[0] for p in old[2]] != [p[0] for p in new[2]]:
        return said
    fmt = old[0]
    changed = [(label, a, b) for (label, a), (_, b) in zip(old[2], new[2], strict=True) if a != b]
    details = [f"{label}: {_number(a, fmt)} (0x{a.hex()}) -> {_number(b, fmt)} (0x{b.hex()})" for label, a, b in changed[:EXAMPLES]]
    noun = "component" if len(changed) == 1 else "components"
    return said + f" ({noun} {', '.join(details)}{_more(len(changed), EXAMPLES)})"
