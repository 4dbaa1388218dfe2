"""schema: every setting the gate knows, its default and type, and the validated result.

Guarantees: `DEFAULTS` is the one schema - every key, its default and so its type - that sources
are checked against; `DependencyConfig` and `GateConfig` are what a run reads, made only by
`load_config` (config/load.py).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aidb_gate.compose import ComposeStack
from aidb_gate.services.base import DependencyConfig

ENV_PREFIX = "AIDB_GATE_"

#: The contract's defaults. The shape of this dict is the schema: a user's key must exist here
#: and its value must have the same type (tables marked FREE accept any string keys).
DEFAULTS: dict[str, Any] = {
    "target": ".",
    "containerfile": "",
    "image": "",
    "build_args": {},
    "ca_bundle": "auto",
    "base_image": "localhost/aidb-gate/base:bookworm",
    "port": 8091,
    "startup_timeout_s": 120.0,
    "build_timeout_s": 3600.0,
    "response_budget_ms": 2000,
    "keep": False,
    "rebuild": False,
    "reports_dir": "reports",
    "suites": True,
    "compose": "",
    "service": "",
    "compose_variables": {},
    "imports": {"enabled": True, "modules": [], "interpreter": "", "pip_check": True},
    "health": {
        "live": "/health/live",
        "ready": "/health/ready",
        "startup": "/health/startup",
        "detailed": "/health/detailed",
        "legacy": "/health",
        "metrics": "/metrics",
    },
    "backup": {"postgres_command": "", "qdrant_command": "", "postgres_restore_command": "",
               "qdrant_restore_command": "", "command_timeout_s": 600.0},
    "faults": {"budget_s": 15.0, "actions": ["stop", "pause", "kill"]},
    "data": {
        "documents": True,
        "create_path": "/documents",
        "get_path": "/documents/{id}",
        "key_header": "X-API-Key",
        "search": True,
        "search_path": "/vector/search",
        "count": 20,
        "rows_per_table": 5,
    },
    "auth": {
        "enabled": True,
        "method": "POST",
        "path": "/documents",
        "body": {"title": "aidb-gate auth probe", "content": "written by the deployment gate"},
        "header": "X-API-Key",
    },
    "dependencies": {
        "postgres": {
            "enabled": True,
            "image": "docker.io/pgvector/pgvector:0.8.1-pg18",
            "recipe": "postgres",
            "port": 5432,
            "critical": True,
            "reported": True,
            "db": "mcp",
            "user": "mcp",
        },
        "redis": {
            "enabled": True,
            "image": "docker.io/library/redis:7",
            "recipe": "redis",
            "port": 6379,
            "critical": False,
            "reported": True,
        },
        "qdrant": {
            "enabled": True,
            "image": "docker.io/qdrant/qdrant:v1.12.6",
            "recipe": "qdrant-api",
            "port": 6333,
            "critical": False,
            "reported": True,
        },
    },
    "env": {
        "AIDB_POSTGRES_HOST": "{postgres.host}",
        "AIDB_POSTGRES_PORT": "{postgres.port}",
        "AIDB_POSTGRES_DB": "{postgres.db}",
        "AIDB_POSTGRES_USER": "{postgres.user}",
        "AIDB_POSTGRES_PASSWORD": "{postgres.password}",
        "AIDB_REDIS_HOST": "{redis.host}",
        "AIDB_REDIS_PORT": "{redis.port}",
        "AIDB_REDIS_PASSWORD": "{redis.password}",
        "QDRANT_URL": "{qdrant.url}",
        "QDRANT_HOST": "{qdrant.host}",
        "QDRANT_PORT": "{qdrant.port}",
        "AIDB_QDRANT_CRITICAL": "{qdrant.critical}",
        "AIDB_QDRANT_API_KEY": "{qdrant.api_key}",
        "AIDB_API_KEY": "{api_key}",
    },
}

#: Tables whose keys are the user's own (build args, environment, request bodies).
FREE_TABLES = {("build_args",), ("env",), ("auth", "body"), ("compose_variables",)}

#: The secrets a template may name by file: `{postgres.password_file}` (and `{api_key_file}`) is
#: the path of a read-only file in the service's container that holds the secret, for services
#: that read `*_FILE` variables - the value then never shows in the environment that `inspect`
#: prints.
SECRET_FILE_FIELDS = {"postgres": {"password"}, "redis": {"password"}, "qdrant": {"api_key"}}

#: What an env template may name, per dependency; `{api_key}` and `{api_key_file}` stand alone.
PLACEHOLDER_FIELDS = {
    "postgres": {"host", "port", "db", "user", "password", "password_file", "critical"},
    "redis": {"host", "port", "password", "password_file", "critical"},
    "qdrant": {"host", "port", "url", "api_key", "api_key_file", "critical"},
}
STANDALONE_FIELDS = ("api_key", "api_key_file")


def secret_file_path(dependency: str | None, secret: str) -> str:
    """Where the service finds the file `{<dependency>.<secret>_file}` (or `{api_key_file}`) names."""
    return "/run/secrets/aidb-gate-" + (f"{dependency}-" if dependency else "") + secret.replace("_", "-")


#: Variables with the prefix that are not settings: the configuration file, the run id, the lease time
#: (core/run.py), and the two the gate sets for the shells it starts (a backup command that runs a
#: nested gate inherits them).
NOT_SETTINGS = {"AIDB_GATE_CONFIG", "AIDB_GATE_RUN_ID", "AIDB_GATE_ERR_TRACE", "AIDB_GATE_USER_BASH_ENV",
                "AIDB_GATE_LEASE_S"}

#: A run id names containers, networks and folders (reports_dir/runs/<id>): a plain name only,
#: never a path. xdist workers append "-gw<N>", which stays within the same alphabet.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

#: The longest wait a duration may ask for. A deadline, not "forever" in disguise, and far below
#: what time.sleep and subprocess timeouts can represent (1e300 s overflows them).
MAX_DURATION_S = 86_400

#: Whole numbers whose meaning bounds them: (lowest, highest, what the number is, how to do without).
COUNTS: dict[tuple[str, ...], tuple[int, int, str, str]] = {
    ("data", "count"): (1, 10_000, "the number of documents the backup stage writes through the API",
                        " To write none, set `data.documents = false`."),
    ("data", "rows_per_table"): (1, 10_000, "the number of rows the backup stage inserts into every table", ""),
}

#: String keys that may span lines: shell commands. Every other string is one line of printable text.
MULTILINE = {("backup", f"{k}_command") for k in ("postgres", "qdrant", "postgres_restore", "qdrant_restore")}

#: Paths the gate appends to the service's URL, so each starts with '/'; empty stays allowed, as it
#: always was for the health paths (`health.startup = ""` falls back to `health.live`).
REQUEST_PATHS = [*(("health", k) for k in DEFAULTS["health"]), ("auth", "path"),
                 ("data", "create_path"), ("data", "get_path"), ("data", "search_path")]

#: Values sent as an HTTP method or a header name (RFC 9110 tokens).
HTTP_TOKENS = [("auth", "method"), ("auth", "header"), ("data", "key_header")]
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

#: What the gate, pytest-html and junitxml leave in a reports folder; a folder holding anything
#: else is someone else's, and the gate replaces the latest report and prunes old runs/ under the
#: one it is given.
REPORT_FOLDERS = {"runs", "logs", "backup", "assets", "bench"}
REPORT_SUFFIXES = {".html", ".xml", ".json", ".log", ".txt", ".tmp"}

#: The most a configuration file (gate.toml, pyproject.toml, a compose file) may hold: far beyond any
#: real one, and a bound on what a mistaken path (a log, a disk image, /dev/zero) costs before it is refused.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: The longest file name (one path component) Linux file systems take, in bytes.
NAME_MAX = 255
#: The longest `reports_dir` (bytes): the system's 4096-byte limit on a path, less room for what the
#: gate writes under it (runs/<run id>-gw<N>/logs/<artifact>, an artifact name up to NAME_MAX bytes).
MAX_REPORTS_PATH = 4096 - 512

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_INT = re.compile(r"[+-]?[0-9]{1,30}")
_ENV_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
#: auth.body is sent as JSON; deeper nesting than this is a mistake, not a request body.
MAX_BODY_DEPTH = 32


@dataclass(frozen=True)
class GateConfig:
    """Everything a run needs to know, validated. Paths are absolute."""

    root: Path
    source: str
    target: Path | None
    containerfile: str
    image: str
    build_args: dict[str, str]
    ca_bundle: Path | None
    base_image: str
    port: int
    startup_timeout_s: float
    build_timeout_s: float
    response_budget_ms: int
    keep: bool
    rebuild: bool
    reports_dir: Path
    import_modules: tuple[str, ...]
    import_interpreter: str
    pip_check: bool
    health: dict[str, str]
    auth: dict[str, Any]
    data: dict[str, Any]
    backup_commands: dict[str, str]
    restore_commands: dict[str, str]
    backup_timeout_s: float
    fault_budget_s: float
    fault_actions: tuple[str, ...]
    dependencies: dict[str, DependencyConfig]
    env_templates: dict[str, str]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    #: The stack as the compose file defines it (None: the contract's three dependencies).
    compose: ComposeStack | None = field(default=None, repr=False)

    @property
    def enabled_dependencies(self) -> list[DependencyConfig]:
        return [d for d in self.dependencies.values() if d.enabled]

    def render_env(self, endpoints: dict[str, dict[str, str]], api_key: str) -> dict[str, str]:
        """The target's environment: templates filled from the running dependencies.

        A variable whose template names a disabled dependency is left out rather than set to an
        empty string, so the service sees the dependency as absent, not misconfigured.
        """
        namespaces = {name: SimpleNamespace(**values, **{f"{s}_file": secret_file_path(name, s)
                                                         for s in SECRET_FILE_FIELDS.get(name, ())})
                      for name, values in endpoints.items()}
        env: dict[str, str] = {}
        for var, template in self._renderable(endpoints):
            env[var] = template.format(api_key=api_key, api_key_file=secret_file_path(None, "api_key"), **namespaces)
        return env

    def secret_files(self, endpoints: dict[str, dict[str, str]], api_key: str) -> dict[str, str]:
        """{path in the service's container: secret} for every `*_file` placeholder that
        `render_env` fills: the files the service must find there."""
        files: dict[str, str] = {}
        for _, template in self._renderable(endpoints):
            for fld in _template_fields(template):
                dep, _, attr = fld.partition(".")
                if fld == "api_key_file":
                    files[secret_file_path(None, "api_key")] = api_key
                elif attr.endswith("_file"):
                    files[secret_file_path(dep, attr[:-5])] = str(endpoints[dep][attr[:-5]])
        return files

    def _renderable(self, endpoints: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
        return [(var, template) for var, template in self.env_templates.items()
                if all(n in STANDALONE_FIELDS or n in endpoints
                       for n in {f.split(".")[0] for f in _template_fields(template)})]


def _template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _duration_keys(schema: dict[str, Any] = DEFAULTS, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every duration of the schema - a number whose key ends in `_s` or `_ms` - wherever it is nested,
    so a duration added to DEFAULTS later is checked without anyone listing it."""
    found: list[tuple[str, ...]] = []
    for key, value in schema.items():
        here = (*path, key)
        if isinstance(value, dict):
            if here not in FREE_TABLES:
                found += _duration_keys(value, here)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(("_s", "_ms")):
            found.append(here)
    return found


DURATIONS = _duration_keys()
