"""stages: the gate's pipeline, in one table.

Guarantees: this table is the single source of the stages' names and order. The pytest markers
and their help, the order tests run in, the report's stage table, and the stage a failed test
belongs to (for the verdicts and the known-bad corpus) all derive from it. A stage has one name:
its marker, its row in the report and its key in summary.json are the same word.

A stage name is a typed value (`StageName`), not a bare string: code names `StageName.BUILD`, so
a misspelling fails when its module is imported (or in mypy), and the stage book refuses a name
the table does not have instead of dropping its row from the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class StageName(StrEnum):
    """Every stage's name; a member is its string (`StageName.BUILD == "build"`), in JSON too."""

    CONFIG = "config"
    ENGINE = "engine"
    IMAGES = "images"
    BUILD = "build"
    IMPORTS = "imports"
    DEPENDENCIES = "dependencies"
    BOOT = "boot"
    HEALTH = "health"
    AUTH = "auth"
    QDRANT = "qdrant"
    BACKUP = "backup"
    RESTORE = "restore"
    FAULTS = "faults"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: what must hold, and whether tests carry its marker."""

    name: StageName
    holds: str
    #: False for the steps the session runs on the tests' behalf (engine, images, dependencies):
    #: they have a row in the report but no marker.
    marker: bool = True


PIPELINE: tuple[Stage, ...] = (
    Stage(StageName.CONFIG, "the configuration is complete and valid", marker=False),
    Stage(StageName.ENGINE, "the container engine answers", marker=False),
    Stage(StageName.IMAGES, "every dependency image exists: local, pulled or built from its recipe", marker=False),
    Stage(StageName.BUILD, "the image builds as production would"),
    Stage(StageName.IMPORTS, "every module imports inside the image"),
    Stage(StageName.DEPENDENCIES, "each dependency runs and is ready", marker=False),
    Stage(StageName.BOOT, "the container boots, answers, and never restarts"),
    Stage(StageName.HEALTH, "the health contract (and the service's own healthcheck)"),
    Stage(StageName.AUTH, "protected endpoints refuse bad keys"),
    Stage(StageName.QDRANT, "the Qdrant API the service depends on"),
    Stage(StageName.BACKUP, "backups are taken and verified"),
    Stage(StageName.RESTORE, "backups restore without loss"),
    Stage(StageName.FAULTS, "readiness under dependency faults"),
)
assert [s.name for s in PIPELINE] == list(StageName), "the table lists every StageName once, in order"

#: Every stage's name, in pipeline order.
NAMES: list[StageName] = [s.name for s in PIPELINE]
#: The stages tests are marked with, in pipeline order.
MARKED: list[StageName] = [s.name for s in PIPELINE if s.marker]
#: {stage: its place in the pipeline}, looked up by name (a StageName is its string).
ORDER: dict[str, int] = {name: i for i, name in enumerate(NAMES)}


def stage(name: str) -> StageName:
    """The stage of that name; a name the table does not have is a ValueError naming the known ones."""
    try:
        return StageName(name)
    except ValueError:
        raise ValueError(f"{name!r} is not a gate stage (known: {', '.join(NAMES)})") from None


def order(stage: str | None) -> int:
    """A stage's place in the pipeline; an unknown or missing stage sorts first."""
    return ORDER.get(stage or "", -1)


def marker_help() -> dict[str, str]:
    """{marker: help line} for `pytest --markers`."""
    return {s.name: f"gate stage {s.name}: {s.holds}" for s in PIPELINE if s.marker}


def stage_of_markers(names: Iterable[str], nodeid: str = "") -> StageName | None:
    """The stage of a test from its marker names (the earliest when it carries several). A
    report's `keywords` hold the markers together with the names of the test and of its folders
    and files, which do not count."""
    names = set(names) - set(re.split(r"[/:\[\].]+", nodeid))
    return next((name for name in MARKED if name in names), None)
