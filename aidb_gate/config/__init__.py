"""config: one validated `GateConfig`, parsed once per run.

Sources, lowest precedence first: built-in defaults (the reference AIDB's contract), the
`[tool.aidb-gate]` table of pyproject.toml or a `gate.toml`, command-line options, and
`AIDB_GATE_*` environment variables. Every key and type is checked against the defaults, so a
typo is a one-paragraph `ConfigError` naming the key and the nearest valid one, never a
KeyError later in the run.

Guarantees: whatever a file, an option or an AIDB_GATE_* variable holds, `load_config` returns a
GateConfig or raises a ConfigError (the plugin's exit code 4) - never another exception. What it
returns keeps the rules docs/CONFIGURATION.md's "What the gate refuses" lists: every duration a finite,
positive deadline of at most a day; counts and ports in range; a reports folder the gate may
write and clean; AIDB_GATE_RUN_ID a plain name; free tables' keys and values exactly as given.

The package, by concern: schema.py (defaults, types, the result), sources.py (the file and
AIDB_GATE_* variables), shape.py (checks against the schema), reports.py (the reports folder
policy), load.py (`load_config`, built section by section), words.py (how messages quote input).
"""

from aidb_gate.config.load import load_config
from aidb_gate.config.schema import (
    COUNTS,
    DEFAULTS,
    DURATIONS,
    ENV_PREFIX,
    FREE_TABLES,
    MAX_DURATION_S,
    REPORT_FOLDERS,
    GateConfig,
    secret_file_path,
)
from aidb_gate.config.shape import deep_merge, validate_shape
from aidb_gate.config.sources import find_config_file, read_config_bytes, shown_path
from aidb_gate.services.base import DependencyConfig

__all__ = ["COUNTS", "DEFAULTS", "DURATIONS", "ENV_PREFIX", "FREE_TABLES", "MAX_DURATION_S", "REPORT_FOLDERS",
           "DependencyConfig", "GateConfig", "deep_merge", "find_config_file", "load_config", "read_config_bytes",
           "secret_file_path", "shown_path", "validate_shape"]
