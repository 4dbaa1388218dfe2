"""values: compose's scalar shapes - durations, sizes, argv, mappings, booleans, image names.

Guarantees: each parser accepts what the compose specification accepts and turns anything else
into one ComposeError naming where it was; nothing here reads a file.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from aidb_gate.compose.model import _DURATION, _UNITS, ComposeError, Healthcheck


def parse_duration(value: Any, where: str) -> float:
    """Compose durations (`30s`, `1m30s`, `500ms`) or plain numbers, in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(f"{where}: {value!r} is not a duration; write it like 30s, 1m30s or 500ms.")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_bytes(value: Any, where: str) -> int:
    """Compose byte values (`3G`, `512m`, `1gb`, a number of bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ComposeError(f"{where}: {value!r} is not a size; write it like 512m or 3G.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower() or "b"])


def _argv(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        import shlex

        return shlex.split(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ComposeError(f"{where}: must be a string or a list, got {type(value).__name__}.")


def _mapping(value: Any, where: str) -> dict[str, str]:
    """A compose `environment`/`args` map in either syntax; `KEY` alone (no value) is left out,
    as compose does when the variable is unset."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else _scalar(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        out = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            if sep:
                out[key] = val
        return out
    raise ComposeError(f"{where}: must be a map or a list of KEY=VALUE, got {type(value).__name__}.")


def _bool(value: Any, where: str) -> bool:
    """A compose boolean: YAML's own, or text after interpolation (`${RO:-false}`), as compose reads it."""
    if not isinstance(value, str):
        return bool(value)
    if value.lower() in ("y", "yes", "true", "on"):
        return True
    if value.lower() in ("n", "no", "false", "off"):
        return False
    raise ComposeError(f"{where}: {value!r} is not a boolean; write true or false.")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def healthcheck(raw: Any, where: str) -> Healthcheck | None:
    """A compose healthcheck block (None when absent or disabled)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ComposeError(f"{where}: must be a map with `test`, got {type(raw).__name__}.")
    if _bool(raw.get("disable", False), f"{where}.disable"):
        return None
    test = raw.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not isinstance(test, list) or not test:
        raise ComposeError(f"{where}.test: write it as [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or a string.")
    test = [str(t) for t in test]
    if test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise ComposeError(f"{where}.test: must start with CMD or CMD-SHELL and name a command, got {test!r}.")
    return Healthcheck(
        test=tuple(test),
        interval_s=parse_duration(raw.get("interval", "30s"), f"{where}.interval"),
        timeout_s=parse_duration(raw.get("timeout", "30s"), f"{where}.timeout"),
        retries=int(raw.get("retries", 3)),
        start_period_s=parse_duration(raw.get("start_period", "0s"), f"{where}.start_period"),
    )


# -- the file ---------------------------------------------------------------------------------

def qualified_image(ref: str) -> str:
    """An image reference as Docker resolves a short name: `redis:8` -> `docker.io/library/redis:8`."""
    first, _, rest = ref.partition("/")
    if first == "docker.io" and rest and "/" not in rest:
        return f"docker.io/library/{rest}"
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def repository(ref: str) -> str:
    """The repository of an image reference without registry, tag or digest: `pgvector/pgvector`."""
    name = qualified_image(ref).split("@")[0]
    path = PurePosixPath(name.split("/", 1)[1])
    last = path.name.split(":")[0]
    repo = str(path.parent / last) if str(path.parent) != "." else last
    return repo.removeprefix("library/")
