"""stages: the gate's pipeline, in one table.

Guarantees: this table is the single source of the stages' names and order. The pytest markers
and their help, the order tests run in, the report's stage table, and the stage a failed test
belongs to (for the verdicts and the known-bad corpus) all derive from it. A stage has one name:
its marker, its row in the report and its key in summary.json are the same word.

`StageBook` keeps each stage's time and outcome, in the table's order; it refuses a name the
table does not have.

A stage name is a typed value (`StageName`), not a bare string: code names `StageName.BUILD`, so
a misspelling fails when its module is imported (or in mypy), and the stage book refuses a name
the table does not have instead of dropping its row from the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


_known_stage = stage  # StageBook's methods name their argument `stage`


class StageBook:
    """Per-stage time and outcome, from the session's own steps and from the tests of each stage."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._failed: set[str] = set()
        self._tests: dict[str, dict[str, int]] = {}

    def record(self, stage: str, seconds: float, ok: bool) -> None:
        stage = _known_stage(stage)  # a stage outside the table would have no row: refused, not dropped
        self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
        if not ok:
            self._failed.add(stage)

    def mark_failed(self, stage: str) -> None:
        self._failed.add(_known_stage(stage))

    def add_test(self, stage: str, outcome: str, seconds: float) -> None:
        stage = _known_stage(stage)
        counts = self._tests.setdefault(stage, {"passed": 0, "failed": 0, "skipped": 0})
        counts[outcome] = counts.get(outcome, 0) + 1
        self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds

    @classmethod
    def merged(cls, worker_rows: list[list[dict[str, Any]]]) -> StageBook:
        """The stage table of a pytest-xdist run, in which each worker ran its own stack: a stage's
        time is its slowest worker's, test counts add up, and a stage failed if it failed anywhere."""
        book = cls()
        for rows in worker_rows:
            for r in rows:
                stage = str(r["stage"])
                book._seconds[stage] = max(book._seconds.get(stage, 0.0), float(r["seconds"]))
                counts = book._tests.setdefault(stage, {"passed": 0, "failed": 0, "skipped": 0})
                for key in counts:
                    counts[key] += int(r.get(key, 0))
                if r["status"] == "failed":
                    book._failed.add(stage)
        return book

    def rows(self) -> list[dict[str, object]]:
        rows = []
        for stage in NAMES:
            tests = self._tests.get(stage, {})
            if stage not in self._seconds and not tests:
                continue
            if stage in self._failed or tests.get("failed"):
                status = "failed"
            elif tests.get("skipped") and not tests.get("passed"):
                status = "skipped"
            else:
                status = "passed"
            rows.append({"stage": stage, "status": status, "seconds": round(self._seconds.get(stage, 0.0), 2),
                         "passed": tests.get("passed", 0), "failed": tests.get("failed", 0),
                         "skipped": tests.get("skipped", 0)})
        return rows

    def first_failure(self) -> str | None:
        return next((str(r["stage"]) for r in self.rows() if r["status"] == "failed"), None)

    def as_text(self) -> str:
        lines = [f"{'stage':<14}{'status':<9}{'time':>9}  tests"]
        for r in self.rows():
            tests = f"{r['passed']} passed, {r['failed']} failed" + (f", {r['skipped']} skipped" if r["skipped"] else "")
            lines.append(f"{r['stage']:<14}{r['status']:<9}{r['seconds']:>8.1f}s  {tests}")
        return "\n".join(lines)

    def as_html(self) -> str:
        colour = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#9a6700"}
        body = "".join(
            f"<tr><td>{r['stage']}</td><td style='color:{colour.get(str(r['status']), '#000')};font-weight:bold'>"
            f"{r['status']}</td><td>{r['seconds']:.1f} s</td><td>{r['passed']} passed, {r['failed']} failed"
            f"{', ' + str(r['skipped']) + ' skipped' if r['skipped'] else ''}</td></tr>"
            for r in self.rows()
        )
        return ("<h2>Gate stages</h2><table class='gate-stages' border='1' cellpadding='4' "
                "style='border-collapse:collapse'><tr><th>stage</th><th>status</th><th>time</th><th>tests</th></tr>"
                f"{body}</table>")
