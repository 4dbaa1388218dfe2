"""The gate's user-facing errors.

Every error a user can cause (no engine, no Containerfile, a bad configuration value, an image
that cannot be found, a build that fails) is a `GateError` whose message is one paragraph that
says what is wrong and what to do. The plugin turns these into a short pytest error, never a
traceback from deep inside docker-py.
"""

from __future__ import annotations

from aidb_gate.pipeline import StageName
from aidb_gate.pipeline import stage as _stage


class GateError(Exception):
    """A problem the user can fix; `str(err)` is the whole explanation."""

    #: The gate stage the error belongs to, for the report's stage table.
    stage: StageName = StageName.CONFIG

    def __init__(self, message: str, *, stage: StageName | None = None, evidence: dict[str, str] | None = None):
        super().__init__(message)
        if stage:
            self.stage = _stage(stage)  # a name outside the table fails here, not as a missing report row
        #: Whether the raiser named the stage: only then may a step that meets this error book it to
        #: that earlier stage (core/steps.py). A class's own stage is a default, not such a
        #: statement: a BackupError raised while restoring is the restore's failure.
        self.stage_given = bool(stage)
        self.evidence = evidence or {}


class ConfigError(GateError):
    stage = StageName.CONFIG


class EngineError(GateError):
    stage = StageName.ENGINE


class ImageError(GateError):
    stage = StageName.IMAGES


class BuildError(GateError):
    stage = StageName.BUILD
