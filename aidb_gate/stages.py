"""stages: the gate's pipeline, in one table.

Guarantees: this table is the single source of the stages' names and order. The pytest markers
and their help, the order tests run in, the report's stage table, and the stage a failed test
belongs to (for the verdicts and the known-bad corpus) all derive from it. A stage has one name:
its marker, its row in the report and its key in summary.json are the same word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: what must hold, and whether tests carry its marker."""

    name: str
    holds: str
    #: False for the steps the session runs on the tests' behalf (engine, images, dependencies):
    #: they have a row in the report but no marker.
    marker: bool = True


PIPELINE: tuple[Stage, ...] = (
    Stage("engine", "the container engine answers", marker=False),
    Stage("images", "every dependency image exists: local, pulled or built from its recipe", marker=False),
    Stage("build", "the image builds as production would"),
    Stage("imports", "every module imports inside the image"),
    Stage("dependencies", "each dependency runs and is ready", marker=False),
    Stage("boot", "the container boots, answers, and never restarts"),
    Stage("health", "the health contract"),
    Stage("auth", "protected endpoints refuse bad keys"),
    Stage("qdrant", "the Qdrant API the service depends on"),
    Stage("backup", "backups are taken and verified"),
    Stage("restore", "backups restore without loss"),
    Stage("faults", "readiness under dependency faults"),
)

#: Every stage's name, in pipeline order.
NAMES: list[str] = [s.name for s in PIPELINE]
#: The stages tests are marked with, in pipeline order.
MARKED: list[str] = [s.name for s in PIPELINE if s.marker]
_ORDER = {name: i for i, name in enumerate(NAMES)}


def order(stage: str | None) -> int:
    """A stage's place in the pipeline; an unknown or missing stage sorts first."""
    return _ORDER.get(stage or "", -1)


def marker_help() -> dict[str, str]:
    """{marker: help line} for `pytest --markers`."""
    return {s.name: f"gate stage {s.name}: {s.holds}" for s in PIPELINE if s.marker}


def stage_of_markers(names: Iterable[str], nodeid: str = "") -> str | None:
    """The stage of a test from its marker names (the earliest when it carries several). A
    report's `keywords` hold the markers together with the names of the test and of its folders
    and files, which do not count."""
    names = set(names) - set(re.split(r"[/:\[\].]+", nodeid))
    return next((name for name in MARKED if name in names), None)
