"""selection: which runs the gate acts in, which tests it collects, and which it switches off.

Guarantees, each a plain function the plugin's hooks call:
- the gate acts only where it was asked to (a `[tool.aidb-gate]` table, a `gate.toml`, a
  `--gate-*` option or `AIDB_GATE_CONFIG`); anywhere else the plugin only registers markers;
- the bundled suites are collected when a gate marker is selected with `-m` and the user named
  no test paths, so `pytest -m p1` in a service repository runs the gate as installed;
- a check whose configuration key is false is deselected with that key as the reason, never
  skipped: a skip in CI is a failure, and a switched-off check has nothing to report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aidb_gate.config import find_config_file
from aidb_gate.pipeline import MARKED

#: The priority markers; every gate test carries one.
PRIORITIES = {"p1", "p2"}
#: Marker `gate_requires("data.search", ...)`: the test applies only while those keys are true.
REQUIRES_MARKER = "gate_requires"


def gate_requested(rootpath: Path, gate_options: Iterable[Any], environ: Mapping[str, str] = os.environ) -> bool:
    """True when this pytest run asked for the gate: a config table or file, an option or AIDB_GATE_CONFIG."""
    if any(v not in (None, False, "") for v in gate_options):
        return True
    if environ.get("AIDB_GATE_CONFIG"):
        return True
    try:
        source, _ = find_config_file(rootpath)
    except Exception:
        return True  # a broken gate.toml/pyproject: let load_config say what is wrong
    return source is not None


def marker_names(markexpr: str | None) -> set[str]:
    """The marker names a `-m` expression mentions."""
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", markexpr or "")) - {"and", "or", "not"}


def names_gate_marker(markexpr: str | None) -> bool:
    """True when `-m` names a priority or a stage: the run is a gate run."""
    return bool(marker_names(markexpr) & (PRIORITIES | set(MARKED)))


def bundled_suites() -> Path:
    """Where the installed suites are (inside the package, or suites/ of a checkout)."""
    import aidb_gate.suites as suites

    return Path(suites.__file__).resolve().parent


def suites_to_add(enabled: bool, markexpr: str | None, args: list[str], args_given: bool,
                  invocation_dir: Path) -> Path | None:
    """The bundled suites' folder when they should be collected in this run, else None.

    They are added when the configuration allows it (`suites = true`), `-m` names a gate marker,
    and the user named no test paths; never twice (a checkout's own `testpaths = ["suites"]`)."""
    if not enabled or args_given or not names_gate_marker(markexpr):
        return None
    suites = bundled_suites()
    for arg in args:
        path = Path(arg.split("::", 1)[0])
        path = (path if path.is_absolute() else invocation_dir / path).resolve()
        if path == suites or suites in path.parents:
            return None
    return suites


def lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    """The value of `a.b.c` in the merged configuration; KeyError names the missing key."""
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def switched_off_by(required: Iterable[str], raw: Mapping[str, Any]) -> str | None:
    """The first required configuration key that is false, or None when the test applies."""
    for key in required:
        if not lookup(raw, key):
            return key
    return None


def switched_off_lines(off: Mapping[str, str]) -> list[str]:
    """One line per configuration key: which tests it switched off (for the terminal and the report)."""
    by_key: dict[str, list[str]] = {}
    for nodeid, key in off.items():
        by_key.setdefault(key, []).append(nodeid.rsplit("::", 1)[-1])
    return [f"switched off by {key}: {len(tests)} test(s) deselected ({', '.join(sorted(tests))})"
            for key, tests in sorted(by_key.items())]
