"""compose: the stack as production defines it, read from the user's compose file.

Guarantees: `load_compose` reads a compose file per the compose specification and returns the
target service and the closure of its `depends_on`, every value interpolated, with nothing
started and nothing on the host touched. It never returns a value the gate cannot use safely:
- Interpolation supports `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`,
  `${VAR?msg}`, `${VAR:+alt}`, `${VAR+alt}`, nesting and `$$`. A variable whose name looks like a
  secret gets a random per-run value (never the host's real one) unless the configuration's
  `compose_variables` sets it; others come from `compose_variables`, the environment, then the
  project's `.env`. A required variable that none of them gives is a `ComposeError` naming it.
- A bind mount inside the compose project becomes a read-only per-run copy; anything outside it
  (the user's real data) and every named volume become fresh volumes; the report lists them.
- Secrets become per-run random files mounted at `/run/secrets/<target>` with their mode.
- Services outside the closure are listed with the target's variables that name them.
Every malformed input is one `ComposeError` that names the file, the service and the key.

The package: model.py (the values), interpolation.py (`$VAR`), values.py (scalar shapes),
load.py (`load_compose`).
"""

from aidb_gate.compose.load import load_compose, load_yaml, read_env_file, unmounted_secret_files
from aidb_gate.compose.model import ComposeError, ComposeStack, Healthcheck, Mount, Secret, Service
from aidb_gate.compose.values import parse_bytes, parse_duration, qualified_image, repository

__all__ = [
           "ComposeError",
           "ComposeStack",
           "Healthcheck",
           "Mount",
           "Secret",
           "Service",
           "load_compose",
           "load_yaml",
           "parse_bytes",
           "parse_duration",
           "qualified_image",
           "read_env_file",
           "repository",
           "unmounted_secret_files",
]
