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
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import os
import re
import stat
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aidb_gate.compose import ComposeStack, Healthcheck, Mount, load_compose, qualified_image
from aidb_gate.errors import ConfigError

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
class DependencyConfig:
    """One backing service: which image to prefer, which recipe builds it, how it is judged."""

    name: str
    enabled: bool
    image: str
    recipe: str
    port: int
    critical: bool
    db: str = ""
    user: str = ""
    #: The service's readiness lists it by this name (the health and faults stages check that).
    reported: bool = True
    #: The plug-in that runs it (services/<kind>.py); "generic" for any other compose service.
    kind: str = ""
    #: Read from a compose file: the container runs with the service's own environment and
    #: command, and its plug-in reads what it offers from them.
    from_compose: bool = False
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: tuple[str, ...] | None = field(default=None, repr=False)
    healthcheck: Healthcheck | None = None
    #: The compose depends_on condition the target waits for.
    condition: str = "service_started"
    mounts: tuple[Mount, ...] = ()


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


# ---- words for messages: every message stays one printable paragraph, whatever the input held ----


def _quote(text: str) -> str:
    """`text` as a TOML basic string with every non-printable character escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def _text(text: str) -> str:
    """`text` as is when it is printable, else quoted with its control characters escaped."""
    return text if text.isprintable() else _quote(text)


def _dotted(path: tuple[str, ...]) -> str:
    """`path` as a TOML dotted key a user can paste: parts that are not bare keys come out quoted."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else _quote(p) for p in map(str, path))


def _show(value: Any, limit: int = 80) -> str:
    """A value for a message: its repr (control characters escaped), cut to about `limit` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[:limit] + "..."


# ---- reading files -------------------------------------------------------------------------------


def find_config_file(root: Path) -> tuple[Path | None, dict[str, Any]]:
    """The first of gate.toml and pyproject.toml under root, and its gate table ([tool.aidb-gate]).

    Guarantees: the table returned is a dict; a gate.toml or pyproject.toml that is there but is no
    regular file (a folder, a FIFO, a device such as a link to /dev/zero, a link to nothing) is a
    ConfigError, never silently skipped; so are an unreadable file, bytes that are not UTF-8, bad
    TOML, or a `tool` / `tool.aidb-gate` that is not a table. Never blocks on a FIFO, never reads
    past MAX_CONFIG_BYTES."""
    gate_toml = root / "gate.toml"
    if _present(gate_toml, "The configuration file"):
        return gate_toml, _gate_table(gate_toml, _read_toml(gate_toml), whole_file=True) or {}
    pyproject = root / "pyproject.toml"
    if _present(pyproject, "The configuration file"):
        table = _gate_table(pyproject, _read_toml(pyproject), whole_file=False)
        if table is not None:
            return pyproject, table
    return None, {}


def _gate_table(path: Path, data: dict[str, Any], whole_file: bool) -> dict[str, Any] | None:
    """The file's [tool.aidb-gate] table; without one, the whole document when `whole_file` (a gate.toml)
    and None otherwise. Guarantees: what it returns is a dict; a `tool` or `tool.aidb-gate` that
    is not a table is a ConfigError saying how to write it."""
    tool = data.get("tool")
    if tool is not None and not isinstance(tool, dict):
        raise ConfigError(f"{path}: `tool` must be a table, got {_show(tool)}; the gate reads its settings from a "
                          "[tool.aidb-gate] table. Remove the `tool = ...` line or make it that table.")
    table = tool.get("aidb-gate") if tool else None
    if table is None:
        return data if whole_file else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `tool.aidb-gate` must be a table, got {_show(table)}. Write the settings under a "
                          "[tool.aidb-gate] header, one `key = value` per line (see docs/CONFIGURATION.md).")
    return table


def _read_toml(path: Path, label: str = "") -> dict[str, Any]:
    """The parsed file (`label` says how it was chosen, for messages). Guarantees: any failure - not
    a regular file, over MAX_CONFIG_BYTES, unreadable, not UTF-8, not TOML, nested past the parser's
    depth, an integer past Python's digit limit - is a ConfigError naming the file."""
    shown = label or shown_path(path)
    raw = read_config_bytes(path, shown)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{shown} is not UTF-8: byte 0x{raw[err.start]:02x} on line {line} is not valid UTF-8. TOML "
                          "files must be UTF-8; save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) and run the gate "
                          "again.") from None
    try:
        # A byte-order mark is what some editors add to UTF-8; it carries no meaning, so it is no error.
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{shown} is not valid TOML ({err}). Fix the syntax and run the gate again.") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{shown} cannot be read as TOML ({_show(str(err), 120)}): a value is too large or "
                          "nested too deeply. Fix that value and run the gate again.") from None


def shown_path(path: Path | str, limit: int = 160) -> str:
    """A path for a message: control and bidi characters escaped, and cut in the middle past `limit`
    characters, so a 4000-byte name stays one readable paragraph."""
    text = _text(str(path))
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-(limit // 2):]}"


def _file_kind(mode: int) -> str:
    """What a file of this st_mode is, for a message."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _present(path: Path, what: str, fix: str = "Make it a regular TOML file, or remove it.") -> bool:
    """True when a regular file is at `path` (links followed), False when nothing is there.

    Guarantees: never opens the file; anything else at `path` - a folder, a FIFO, a device, a socket,
    a link to nothing, a name the system cannot look up - is a ConfigError naming `what`, so a
    configuration file is never silently skipped."""
    shown = shown_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.path.lexists(path):
            return False
        raise ConfigError(f"{what} {shown} is a link to {shown_path(os.readlink(path))}, which does not exist. "
                          f"{fix}") from None
    except OSError as err:
        raise ConfigError(f"{what} {shown} cannot be looked up ({_reason(err)}). {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {shown} is {_file_kind(st.st_mode)}, not a file the gate can read. {fix}")
    return True


def _check_compose_files(path: Path, where: str) -> None:
    """Return only when the compose file and the .env beside it are each absent or a regular file
    of at most MAX_CONFIG_BYTES. compose.py reads both with plain reads, which block forever on a
    FIFO and never end on /dev/zero, and skips a .env that is no regular file; checked here first,
    so each is a ConfigError instead. (A missing compose file is load_compose's to explain.)"""
    for file, what in ((path, "the compose file"), (path.parent / ".env", "the compose file's .env")):
        fix = f"Make {what} a regular file" + (", or remove it." if file is not path else ".")
        if _present(file, f"{where}: {what}", fix):
            try:
                size = os.stat(file).st_size
            except OSError as err:
                raise ConfigError(f"{where}: {what} {shown_path(file)} cannot be looked up ({_reason(err)}). {fix}") from None
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{where}: {what} {shown_path(file)} holds {size} bytes, more than the "
                                  f"{MAX_CONFIG_BYTES // (1024 * 1024)} MiB the gate reads of a configuration file; "
                                  f"it is not one. {fix}")


def read_config_bytes(path: Path, shown: str = "") -> bytes:
    """The content of the configuration file at `path` (`shown` names it in messages).

    Guarantees: returns only the bytes of a regular file (links followed) of at most
    MAX_CONFIG_BYTES; anything else - a folder, a FIFO, a device, a socket, a file too large, one
    that cannot be opened or read - is a one-paragraph ConfigError naming it. Never blocks: a FIFO
    is opened with O_NONBLOCK and refused by fstat before any read; never reads more than
    MAX_CONFIG_BYTES + 1 bytes (a file that grows meanwhile, or a device, costs no more)."""
    shown = shown or shown_path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise ConfigError(f"{shown} cannot be opened ({_reason(err)}). Make it a readable regular file, or name "
                          "another one.") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{shown} is {_file_kind(st.st_mode)}, not a configuration file the gate can read. "
                              "Point the setting at a regular file.")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_CONFIG_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise ConfigError(f"{shown} cannot be read ({_reason(err)}). Make it a readable regular file, or name "
                          "another one.") from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown} holds more than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, far more than any "
                          "configuration file; it is not one. Point the setting at the configuration file itself.")
    return b"".join(chunks)


# ---- AIDB_GATE_* ---------------------------------------------------------------------------------


def check_run_id(environ: Mapping[str, str]) -> None:
    """Return only when AIDB_GATE_RUN_ID is unset, empty (the gate picks an id) or a plain name
    matching RUN_ID; anything else is a ConfigError. The id names containers and the folder
    reports_dir/runs/<id>, so `../x` would write outside the reports folder."""
    value = environ.get("AIDB_GATE_RUN_ID")
    if value and not RUN_ID.fullmatch(value):
        raise ConfigError(
            f"AIDB_GATE_RUN_ID is {_show(value)}, which cannot name a run: the id names containers, networks and the "
            "folder reports_dir/runs/<id>, so it must be 1-63 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit (e.g. ci-1234). Set it to such a name, or unset it and the gate picks one.")


def env_overrides(environ: Mapping[str, str], dependencies: Iterable[str] = ()) -> dict[str, Any]:
    """`AIDB_GATE_A__B=v` becomes {"a": {"b": v}}, v parsed as the schema's type for a.b.

    Guarantees: see `_env_settings`; this is its table without the variable names."""
    return _env_settings(environ, dependencies)[0]


def _env_settings(environ: Mapping[str, str], dependencies: Iterable[str] = ()
                  ) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The AIDB_GATE_* overrides as a nested table, and which variable set each key.

    Guarantees: the table passes `validate_shape`. Schema keys match case-insensitively; inside a
    free table (env, build_args, compose_variables, auth.body) the rest of the name is the key,
    exact case and `__` included, and the value is the exact string given. A typed key's value is
    parsed as that type (true/false/1/0, decimal whole numbers, decimal numbers, a TOML array or a
    comma-separated list) and never re-read as TOML otherwise. A variable that names no key, a table,
    or a value of the wrong type, and two variables setting one key, are ConfigErrors naming them."""
    out: dict[str, Any] = {}
    setters: dict[tuple[str, ...], str] = {}
    known = [*DEFAULTS["dependencies"], *(d for d in dependencies if d not in DEFAULTS["dependencies"])]
    for var in sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in NOT_SETTINGS):
        path, expected = _env_path(var, known)
        value = _env_value(var, environ[var], expected, path)
        if path in setters:
            raise ConfigError(f"{_text(setters[path])} and {_text(var)} both set `{_dotted(path)}`. Unset one of them.")
        setters[path] = var
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        nested: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            nested = {part: nested}
        validate_shape(nested, DEFAULTS, f"environment variable {_text(var)}")
    return out, setters


def _env_path(var: str, dependencies: list[str]) -> tuple[tuple[str, ...], Any]:
    """The key `var` sets and the schema's value for it (its type). Guarantees: the key exists in
    the schema (or in a free table, or is a dependency's), ends at a value, not a table; else a
    ConfigError that names the variable and, where one is close, the variable meant."""
    schema: Any = DEFAULTS
    path: tuple[str, ...] = ()
    rest = var[len(ENV_PREFIX):]
    shown = _text(var)
    while True:
        if path in FREE_TABLES:
            if not rest:
                raise ConfigError(f"{shown} names no key of `{_dotted(path)}`: write the key after the `__`, e.g. "
                                  f"{ENV_PREFIX}{'__'.join(p.upper() for p in path)}__NAME=value.")
            return (*path, rest), ""
        head, sep, rest = rest.partition("__")
        if not head:
            raise ConfigError(f"{shown} is not a setting: after {ENV_PREFIX} it needs a key, with `__` between nested "
                              f"keys and nothing empty between them (e.g. {ENV_PREFIX}DATA__COUNT=20). Rename or unset it.")
        if path == ("dependencies",):
            # Environment names are upper case by convention; dependency names are the file's.
            exact = [d for d in dependencies if d == head]
            folded = exact or [d for d in dependencies if d.lower() == head.lower()]
            if len(folded) > 1:
                raise ConfigError(f"{shown}: `{_text(head)}` matches the dependencies {', '.join(folded)}, which differ "
                                  "only in case. Write the name exactly as the configuration does.")
            key = folded[0] if folded else head.lower()
            sub = schema.get(key, schema["postgres"])
        else:
            key = head.lower()
            if key not in schema:
                done = var[: len(var) - len(rest) - len(sep) - len(head)]
                near = difflib.get_close_matches(key, list(schema), n=1)
                hint = f" Did you mean {done}{near[0].upper()}?" if near else ""
                where = f"`{_dotted(path)}`" if path else "the configuration"
                raise ConfigError(f"{shown} is not a setting: {where} has no key `{_text(key)}`.{hint} Known keys here: "
                                  f"{', '.join(sorted(schema))}. Rename or unset it.")
            sub = schema[key]
        path = (*path, key)
        if not sep:
            if isinstance(sub, dict):
                example = f"{var}__{next(iter(sub)).upper()}" if sub else f"{var}__NAME"
                raise ConfigError(f"{shown} names the table `{_dotted(path)}`, which takes no value of its own. Set "
                                  f"one of its keys instead, e.g. {_text(example)}=..., and unset {shown}.")
            return path, sub
        if not isinstance(sub, dict):
            raise ConfigError(f"{shown}: `{_dotted(path)}` is a single value, not a table with keys. Set it as "
                              f"{ENV_PREFIX}{'__'.join(p.upper() for p in path)}=... instead.")
        schema = sub


def _env_value(var: str, text: str, expected: Any, path: tuple[str, ...]) -> Any:
    """`text` as the schema's type for `path`. Guarantees: strings come back unchanged; other
    types parse only from their plain spelling, anything else is a ConfigError naming the
    variable, the key and the expected type."""
    if isinstance(expected, str):
        return text
    word = text.strip()
    if isinstance(expected, bool):
        if word.lower() in ("true", "1"):
            return True
        if word.lower() in ("false", "0"):
            return False
    elif isinstance(expected, int) and _ENV_INT.fullmatch(word):
        return int(word)
    elif isinstance(expected, float) and _ENV_FLOAT.fullmatch(word):
        return float(word)
    elif isinstance(expected, list):
        if not word.startswith("["):
            return [item.strip() for item in word.split(",") if item.strip()]
        try:
            value = tomllib.loads(f"v = {word}").get("v")
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    unit = " of seconds" if path[-1].endswith("_s") else " of milliseconds" if path[-1].endswith("_ms") else ""
    what = {bool: "true or false (also 1 or 0)", int: f"a whole number{unit} in decimal digits",
            float: f"a decimal number{unit}", list: 'a list of strings, comma-separated or as a TOML array'}
    raise ConfigError(f"{_text(var)} sets `{_dotted(path)}`, which must be {what[type(expected)]} like "
                      f"{_example(expected)}; got {_show(text)}. Fix or unset it.")


# ---- shape ---------------------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_shape(data: dict[str, Any], schema: dict[str, Any], origin: str, path: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for the first unknown key, wrongly typed value or unusable text.

    Guarantees: returns only when `data` is a table with the shape of `schema`: every key known
    (tables in FREE_TABLES take the user's own keys; `dependencies` any service name), every value
    of the default's type, strings free of NUL and, but for shell commands, of control characters."""
    if not isinstance(data, dict):
        where = f"`{_dotted(path)}`" if path else "the [tool.aidb-gate] table"
        raise ConfigError(f"{origin}: {where} must be a table, got {_show(data)}.")
    for key, value in data.items():
        here = (*path, key)
        dotted = _dotted(here)
        if path in FREE_TABLES:
            _check_free(value, here, origin)
            continue
        if path == ("dependencies",) and key not in schema:
            # Any compose service may be configured by name; the shape is every dependency's.
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: `{dotted}` must be a table of that dependency's settings, got "
                                  f"{_show(value)}. Write them as `{dotted}.image = \"...\"` and so on.")
            validate_shape(value, schema["postgres"], origin, here)
            continue
        if key not in schema:
            near = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" Did you mean `{_dotted((*path, near[0]))}`?" if near else ""
            known = ", ".join(sorted(schema))
            raise ConfigError(
                f"{origin}: unknown key `{dotted}`.{hint} Known keys here: {known}. "
                "Remove or rename it; see docs/CONFIGURATION.md."
            )
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                first = next(iter(expected), "NAME")
                example = _example(expected[first]) if expected else '"..."'
                raise ConfigError(f"{origin}: `{dotted}` must be a table of settings, got {_show(value)}. Set its keys "
                                  f"instead, e.g. `{_dotted((*here, first))} = {example}`.")
            validate_shape(value, expected, origin, here)
        elif not _type_ok(value, expected):
            raise ConfigError(
                f"{origin}: `{dotted}` must be {_type_name(expected)}, got {_show(value)} "
                f"({type(value).__name__}). Example: `{_dotted((key,))} = {_example(expected)}`."
            )
        else:
            _check_text(value, here, origin)


def _check_free(value: Any, here: tuple[str, ...], origin: str) -> None:
    """Return only for a usable entry of a free table: in auth.body any JSON value; in build_args,
    env and compose_variables a string without NUL under a non-empty name without '=' or NUL
    (variables and build args are strings; `5` or `true` would reach the service re-spelt)."""
    if here[:-1] == ("auth", "body"):
        _check_json(value, here, origin, 0)
        return
    dotted, key = _dotted(here), here[-1]
    if not key or "=" in key or "\0" in key:
        raise ConfigError(f"{origin}: `{dotted}` cannot be the name of a variable or build argument: a name must be "
                          "non-empty and hold no '=' or NUL character. Rename it.")
    if not isinstance(value, str):
        plain = str(value).lower() if isinstance(value, bool) else \
            str(value) if isinstance(value, int) and value.bit_length() < 64 else "..."
        raise ConfigError(f"{origin}: `{dotted}` must be a string, got {_show(value)} ({type(value).__name__}); "
                          f"variables and build arguments are text. Quote it: `{_dotted(here[-1:])} = \"{plain}\"`.")
    if "\0" in value:
        raise ConfigError(f"{origin}: `{dotted}` holds a NUL character, which no environment variable or build "
                          "argument can carry. Remove it.")
    # os.environ hands bytes that are not UTF-8 over as lone surrogates; no container API can encode them.
    if any("\ud800" <= ch <= "\udfff" for ch in key + value):
        raise ConfigError(f"{origin}: `{dotted}` holds bytes that are not UTF-8 ({_show(value, 40)}). Give it as "
                          "UTF-8 text.")


def _check_json(value: Any, here: tuple[str, ...], origin: str, depth: int) -> None:
    """Return only when `value` has a JSON form (the auth probe sends auth.body as JSON): strings,
    finite numbers, true/false, arrays and tables, nested at most MAX_BODY_DEPTH deep."""
    if depth > MAX_BODY_DEPTH:
        raise ConfigError(f"{origin}: `{_dotted(here)}` is nested more than {MAX_BODY_DEPTH} levels deep; a request "
                          "body does not need that. Flatten it.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{origin}: `{_dotted(here)}` is {value}, which JSON cannot express (the auth probe sends "
                          "auth.body as JSON). Use a finite number or a string.")
    if isinstance(value, (str, int, float)):
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, here, origin, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(item, (*here, key), origin, depth + 1)
        return
    raise ConfigError(f"{origin}: `{_dotted(here)}` is a {type(value).__name__}, which has no JSON form (the auth "
                      "probe sends auth.body as JSON). Write it as a string, e.g. \"2024-01-31\".")


def _check_text(value: Any, here: tuple[str, ...], origin: str) -> None:
    """Return only when the string (or each string of a list) can be used as written: no NUL
    anywhere, and outside shell commands no control or other non-printable character."""
    for text in value if isinstance(value, list) else [value]:
        if not isinstance(text, str):
            continue
        multiline = here in MULTILINE
        for pos, ch in enumerate(text):
            if ch == "\0" or not (ch.isprintable() or (multiline and ch in "\t\n\r")):
                where = "a shell command" if multiline else "one line of printable text"
                raise ConfigError(f"{origin}: `{_dotted(here)}` holds the character U+{ord(ch):04X} at position {pos} "
                                  f"({_show(text, 60)}); it must be {where}. Remove the character.")


def _type_ok(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(expected))


def _type_name(expected: Any) -> str:
    if isinstance(expected, bool):
        return "true or false"
    if isinstance(expected, float):
        return "a number"
    if isinstance(expected, int):
        return "a whole number"
    if isinstance(expected, list):
        return "a list of strings"
    return "a string"


def _example(expected: Any) -> str:
    if isinstance(expected, bool):
        return "true"
    if isinstance(expected, list):
        return json.dumps(expected) if expected else '["server", "health_check"]'
    if isinstance(expected, str):
        return f'"{expected}"' if expected else '"..."'
    return str(expected)


# ---- loading -------------------------------------------------------------------------------------


def load_config(
    root: Path,
    options: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> GateConfig:
    """Parse, merge and validate the configuration for a run rooted at `root`.

    Guarantees: a GateConfig, or a ConfigError whose message is one paragraph naming where the bad
    input is (file, option or variable) and what to write instead - never another exception for
    anything a file, an option or an AIDB_GATE_* variable can hold. AIDB_GATE_RUN_ID is checked
    here, before anything uses it (see `check_run_id`)."""
    environ = os.environ if environ is None else environ
    check_run_id(environ)
    source, table = _chosen_file(root, config_file, environ)
    root = source.parent if source is not None else root  # a named file's folder is the project's
    origin = _text(str(source)) if source else "built-in defaults"
    validate_shape(table, DEFAULTS, origin)
    # Checked by identity: 0 and 0.0 equal False, and a chosen 0 must reach validation, not vanish.
    cli = {k: v for k, v in (options or {}).items() if v is not None and v is not False and v != ""}
    validate_shape(cli, DEFAULTS, "command-line options")
    named_deps = [*table.get("dependencies", {}), *cli.get("dependencies", {})]
    env, setters = _env_settings(environ, named_deps)
    # A file's `env` table is the service's whole environment: merged into the contract's, a
    # service with its own names would also get AIDB_*_PASSWORD - its secrets in `inspect` for no use.
    base = {k: v for k, v in DEFAULTS.items() if k != "env" or "env" not in table}
    merged = deep_merge(deep_merge(deep_merge(base, table), cli), env)
    merged.setdefault("env", {})
    chosen = deep_merge(deep_merge(table, cli), env)  # what the user said, without the defaults

    def blame(path: tuple[str, ...]) -> str:
        """Where the value at `path` came from, for the message: the variable, the options or the file."""
        for n in range(len(path), 0, -1):
            if path[:n] in setters:
                return f"environment variable {_text(setters[path[:n]])}"
        if _has(cli, path):
            return "command-line options"
        return origin if _has(table, path) else f"{origin} (the default)" if source else "built-in defaults"

    return _build(root, origin, merged, chosen, environ, blame)


def _chosen_file(root: Path, config_file: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """The configuration file and its gate table: --gate-config, else AIDB_GATE_CONFIG, else the
    first of gate.toml and pyproject.toml under root. Guarantees: a named file that is missing,
    a folder, a FIFO, a device, a link to nothing, a name too long for the system, unreadable,
    over MAX_CONFIG_BYTES, not TOML, or a pyproject.toml without [tool.aidb-gate], is a ConfigError
    naming the option or variable that chose it; nothing is opened before it is known to be a
    regular file, and no read blocks."""
    given = config_file or (Path(environ["AIDB_GATE_CONFIG"]) if environ.get("AIDB_GATE_CONFIG") else None)
    if given is None:
        return find_config_file(root)
    how = "--gate-config" if config_file else "AIDB_GATE_CONFIG"
    path = given if given.is_absolute() else root / given
    shown = shown_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        link = " is a link to nothing" if os.path.lexists(path) else " does not exist"
        raise ConfigError(f"The configuration file {shown} ({how}){link}. Pass an existing gate.toml.") from None
    except NotADirectoryError:
        raise ConfigError(f"The configuration file {shown} ({how}) does not exist: part of its path is a file, not a "
                          "folder. Pass an existing gate.toml.") from None
    except OSError as err:
        raise ConfigError(f"{how} names {shown}, which cannot be looked up ({_reason(err)}). Point it at an existing "
                          "gate.toml.") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{how} names {shown}, which is a folder; it must name the configuration file itself. "
                          f"Point it at the gate.toml (or pyproject.toml) inside, e.g. {shown_path(path / 'gate.toml')}.")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{how} names {shown}, which is {_file_kind(st.st_mode)}, not a regular file. Point it at "
                          "a gate.toml.")
    table = _gate_table(path, _read_toml(path, f"{shown} ({how})"), whole_file=path.name != "pyproject.toml")
    if table is None:
        raise ConfigError(f"{shown} ({how}) has no [tool.aidb-gate] table. Add one, or point {how} at a gate.toml.")
    return path, table


def _has(table: dict[str, Any], path: tuple[str, ...]) -> bool:
    """True when the nested `table` holds a value at `path`."""
    node: Any = table
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _get(table: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` of a table whose shape validate_shape accepted."""
    for part in path:
        table = table[part]
    return table


def _resolve(root: Path, value: str, key: str = "", origin: str = "") -> Path:
    """`value` as an absolute path (relative ones against root, `~` expanded). Guarantees: a `~user`
    that does not exist, or a path the system cannot resolve, is a ConfigError naming `key`."""
    try:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (root / path).resolve()
    except (RuntimeError, OSError, ValueError) as err:
        raise ConfigError(f"{origin}: `{key}` is {_show(value)}, which is not a usable path ({err}). Write a path "
                          "relative to the project, or an absolute one.") from None


def _check_reports_dir(path: Path, where: str, environ: Mapping[str, str]) -> Path:
    """The reports folder, resolved. Guarantees: it is not the filesystem root, not a home folder
    nor above one, not a file, its logs/ is no link out of it, and, when it exists, it is an
    earlier run's reports folder (summary.json or summary-gw*.json) or holds nothing but reports
    (REPORT_FOLDERS, REPORT_SUFFIXES, hidden files). The gate writes there, replaces the latest
    report and removes old run folders under runs/, so anything else is a ConfigError that says why
    and what to set instead. So is a folder the gate could not make: a name part over NAME_MAX
    bytes, a path over MAX_REPORTS_PATH bytes, a file where a parent folder must be, or any error
    the system gives while looking at it (no permission, a loop of links) - never an OSError."""
    rule = ("the gate writes its reports there, replaces the latest run's report and removes old run folders "
            "under it, so it must be a folder of its own: new, empty, an earlier run's reports folder (with its "
            "summary.json), or holding only reports (*.html, *.xml, *.json, *.log, *.txt, runs/, logs/, backup/, "
            "assets/, bench/ and hidden files). Set "
            "`reports_dir` to such a folder, e.g. \"reports/aidb-gate\"")
    shown = shown_path(path)
    try:
        real = path.resolve()
        homes = {Path(h).resolve() for h in (environ.get("HOME"), os.path.expanduser("~")) if h and Path(h).is_absolute()}
    except (OSError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be resolved ({err}); {rule}.") from None
    if real == Path(real.anchor):
        raise ConfigError(f"{where}: `reports_dir` is {shown}, the filesystem root; {rule}.")
    for home in homes:
        if real == home or real in home.parents:
            what = "your home folder" if real == home else f"a folder above your home folder {home}"
            raise ConfigError(f"{where}: `reports_dir` is {shown}, {what}; {rule}.")
    unusable = _unmakeable(real)
    if unusable:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be made: {unusable}. Set `reports_dir` to a folder "
                          "the gate can create and write, e.g. \"reports/aidb-gate\" in the project.")
    try:
        return _check_reports_content(real, shown, where, rule)
    except OSError as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be used ({_reason(err)}); {rule}.") from None


def _unmakeable(real: Path) -> str | None:
    """Why no folder can be made at the absolute path `real`, or None when nothing known stops it.
    Guarantees: never raises OSError; looks only (no folder is made)."""
    longest = max(real.parts, key=lambda part: len(os.fsencode(part)))
    if len(os.fsencode(longest)) > NAME_MAX:
        return (f"one name in its path ({shown_path(longest, 40)}) is {len(os.fsencode(longest))} bytes long, and a "
                f"file name may have at most {NAME_MAX}")
    if len(os.fsencode(str(real))) > MAX_REPORTS_PATH:
        return (f"it is {len(os.fsencode(str(real)))} bytes long, and what the gate writes under it must stay within "
                f"the system's 4096-byte limit on a path (at most {MAX_REPORTS_PATH} bytes)")
    try:
        ancestor = real
        while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        st = os.stat(ancestor)
    except OSError as err:
        return f"{shown_path(ancestor)} cannot be looked up ({_reason(err)})"
    if not stat.S_ISDIR(st.st_mode):
        if ancestor == real:
            return None  # the folder itself is a file: the caller says so in its own words
        kind = "a file" if stat.S_ISREG(st.st_mode) else _file_kind(st.st_mode)
        return f"{shown_path(ancestor)} is {kind}, not a folder the gate can make it in"
    return None


def _check_reports_content(real: Path, shown: str, where: str, rule: str) -> Path:
    """`real` when it may serve as the reports folder (see `_check_reports_dir`); may raise OSError."""
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{where}: `reports_dir` is {shown}, which is a file; {rule}.")
    if not real.is_dir():
        return real
    for sub in ("runs", "logs"):
        if (real / sub).is_symlink():
            # A prune would follow the link and delete run folders wherever it points.
            raise ConfigError(f"{where}: `reports_dir` is {shown}, whose {sub}/ is a link out of it; {rule}.")
    try:
        if (real / "summary.json").is_file() or next(real.glob("summary-gw*.json"), None) is not None:
            return real  # an earlier run's: what the user keeps beside its reports is theirs, and untouched
        strangers = list(itertools.islice((e.name for e in real.iterdir() if not _is_report(e)), 3))
    except OSError as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be listed ({err.strerror or err}); {rule}.") from None
    if strangers:
        names = ", ".join(_text(n) for n in strangers)
        raise ConfigError(f"{where}: `reports_dir` is {shown}, which holds {names} - not reports, and no summary.json "
                          f"of an earlier run; {rule}.")
    return real


def _is_report(entry: Path) -> bool:
    """True for what a reports folder may hold: hidden entries, the gate's folders (not links
    out of the folder) and report files."""
    if entry.name.startswith("."):
        return True
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return entry.name in REPORT_FOLDERS
    return entry.suffix in REPORT_SUFFIXES


def _build(root: Path, origin: str, m: dict[str, Any], chosen: dict[str, Any] | None = None,
           environ: Mapping[str, str] | None = None, blame: Callable[[tuple[str, ...]], str] | None = None,
           ) -> GateConfig:
    where = blame or (lambda _path: origin)
    environ = os.environ if environ is None else environ

    for path in DURATIONS:
        _check_duration(_get(m, path), path, where(path))
    for path, (low, high, meaning, instead) in COUNTS.items():
        value = _get(m, path)
        if not low <= value <= high:
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` is {meaning}; it must be {low}-{high}, got "
                              f"{_show(value)}.{instead}")
    unknown = set(m["faults"]["actions"]) - {"stop", "pause", "kill"}
    if unknown:
        raise ConfigError(f"{where(('faults', 'actions'))}: `faults.actions` may hold stop, pause and kill; "
                          f"{_show(sorted(unknown))} is not one of them.")
    if not 1 <= m["port"] <= 65535:
        raise ConfigError(f"{where(('port',))}: `port` must be a TCP port (1-65535), got {_show(m['port'])}.")
    for name, d in m["dependencies"].items():
        here = ("dependencies", name, "port")
        # A compose service named only to override, say, its image has no port of its own here.
        if "port" in d and not 1 <= d["port"] <= 65535:
            raise ConfigError(f"{where(here)}: `{_dotted(here)}` must be 1-65535, got {_show(d['port'])}.")
    for path in REQUEST_PATHS:
        value = _get(m, path)
        if value and not value.startswith("/"):
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` must be a path starting with '/', got {value!r}.")
    for path in HTTP_TOKENS:
        value = _get(m, path)
        if not _TOKEN.fullmatch(value):
            what = "method" if path[-1] == "method" else "header name"
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` is sent as an HTTP {what} and must be one word of "
                              f"letters, digits and !#$%&'*+.^_`|~-, got {_show(value)}.")
    for var, template in m["env"].items():
        _check_template(var, template, where(("env", var)))
    reports_dir = _check_reports_dir(_resolve(root, m["reports_dir"], "reports_dir", where(("reports_dir",))),
                                     where(("reports_dir",)), environ)

    deps: dict[str, DependencyConfig] = {}
    for name, d in m["dependencies"].items():
        if name not in DEFAULTS["dependencies"]:
            if not m["compose"]:
                known = ", ".join(DEFAULTS["dependencies"])
                raise ConfigError(f"{where(('dependencies', name))}: `{_dotted(('dependencies', name))}` is not a "
                                  f"dependency the gate knows ({known}). Remove it, or set `compose` to the stack's "
                                  "compose file, where any service can be one.")
            continue
        deps[name] = DependencyConfig(name=name, kind=name, **d)
    compose = None
    if m["compose"]:
        compose_file = _resolve(root, m["compose"], "compose", where(("compose",)))
        _check_compose_files(compose_file, where(("compose",)))
        compose = load_compose(compose_file, m["service"], m["compose_variables"], environ)
        deps = compose_dependencies(compose, (chosen or {}).get("dependencies", {}))
        m = _compose_target(compose, m, chosen or {})
    # Facts of the stack that switch checks on or off (`gate_requires("stack.…")`), derived, not set:
    # a Qdrant that production runs without an API key cannot be checked for refusing bad keys.
    m = {**m, "stack": {"qdrant_api_key": all(d.kind != "qdrant" or not d.from_compose
                                              or bool(d.environment.get("QDRANT__SERVICE__API_KEY"))
                                              for d in deps.values())}}

    ca_bundle: Path | None = None
    if m["ca_bundle"] == "auto":
        candidate = Path("/etc/ssl/certs/ca-certificates.crt")
        ca_bundle = candidate if candidate.is_file() else None
    elif m["ca_bundle"]:
        ca_bundle = _resolve(root, m["ca_bundle"], "ca_bundle", where(("ca_bundle",)))
        if not _present(ca_bundle, f"{where(('ca_bundle',))}: `ca_bundle`",
                        "Set it to your host's CA bundle file (Debian: /etc/ssl/certs/ca-certificates.crt)."):
            raise ConfigError(
                f"{where(('ca_bundle',))}: `ca_bundle` points at {shown_path(ca_bundle)}, which does not exist. Set it "
                "to your host's CA bundle (Debian: /etc/ssl/certs/ca-certificates.crt), to \"auto\", or to \"\" to "
                "build without it."
            )

    return GateConfig(
        root=root,
        source=origin,
        target=None if m["image"] else _resolve(root, m["target"], "target", where(("target",))),
        containerfile=m["containerfile"],
        image=m["image"],
        build_args={k: str(v) for k, v in m["build_args"].items()},
        ca_bundle=ca_bundle,
        base_image=m["base_image"],
        port=m["port"],
        startup_timeout_s=float(m["startup_timeout_s"]),
        build_timeout_s=float(m["build_timeout_s"]),
        response_budget_ms=m["response_budget_ms"],
        keep=m["keep"],
        rebuild=m["rebuild"],
        reports_dir=reports_dir,
        import_modules=tuple(m["imports"]["modules"]),
        import_interpreter=m["imports"]["interpreter"],
        pip_check=m["imports"]["pip_check"],
        health=dict(m["health"]),
        auth=dict(m["auth"]),
        data=dict(m["data"]),
        backup_commands={k: m["backup"][f"{k}_command"] for k in ("postgres", "qdrant") if m["backup"][f"{k}_command"]},
        restore_commands={k: m["backup"][f"{k}_restore_command"] for k in ("postgres", "qdrant")
                          if m["backup"][f"{k}_restore_command"]},
        backup_timeout_s=float(m["backup"]["command_timeout_s"]),
        fault_budget_s=float(m["faults"]["budget_s"]),
        fault_actions=tuple(m["faults"]["actions"]),
        dependencies=deps,
        env_templates=dict(m["env"]),
        raw=m,
        compose=compose,
    )


def _check_duration(value: float, path: tuple[str, ...], where: str) -> None:
    """Return only for a usable deadline: finite, greater than 0 and at most MAX_DURATION_S."""
    key = _dotted(path)
    unit, scale = ("milliseconds", 1000) if path[-1].endswith("_ms") else ("seconds", 1)
    default = _get(DEFAULTS, path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: `{key}` is {value}, but it is a deadline in {unit}, and a wait bounded by nan or "
                          f"inf never ends. Set a finite number greater than 0 (the default is {default}).")
    if value <= 0:
        raise ConfigError(f"{where}: `{key}` must be greater than 0, got {_show(value)}: it is a deadline in {unit}, "
                          f"and one of 0 or less ends the wait before it starts. The default is {default}.")
    if value > MAX_DURATION_S * scale:
        raise ConfigError(f"{where}: `{key}` is {_show(value)} {unit}, longer than the {MAX_DURATION_S * scale} {unit} "
                          f"(one day) the gate allows any wait. Set a shorter deadline (the default is {default}).")


def _check_template(var: str, template: str, where: str) -> None:
    """Return only for a template `render_env` can fill: literal text, `{{`/`}}`, and placeholders
    from PLACEHOLDER_FIELDS or `{api_key}`, each without conversion or format spec."""
    known = [f"{{{f}}}" for f in STANDALONE_FIELDS] + [f"{{{d}.{a}}}" for d in PLACEHOLDER_FIELDS
                                                         for a in sorted(PLACEHOLDER_FIELDS[d])]
    here = _dotted(("env", var))
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{where}: `{here}` = {_show(template)} is not a template the gate can fill ({err}). Write "
                          f"a literal brace as {{{{ or }}}}, and placeholders as one of: {', '.join(known)}.") from None
    for _, fld, spec, conversion in parts:
        if fld is None:
            continue
        dep, _, attr = fld.partition(".")
        if (fld in STANDALONE_FIELDS or attr in PLACEHOLDER_FIELDS.get(dep, ())) and not spec and conversion is None:
            continue
        written = "{" + fld + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        raise ConfigError(f"{where}: `{here}` uses the placeholder {_text(written)}, which the gate does not provide. "
                          f"Use one of: {', '.join(known)} (a literal brace is {{{{ or }}}}).")


def compose_dependencies(compose: ComposeStack, chosen: dict[str, Any]) -> dict[str, DependencyConfig]:
    """The closure of the target's depends_on as dependencies: each with the plug-in that stands
    for its image (generic otherwise); `dependencies.<name>` keys the user set still win."""
    from aidb_gate.services import kind_for_image, plugin

    # The strictest condition anyone waits for wins: a healthy wait is never weakened to "started"
    # because another service lists the same dependency in the short syntax.
    strictness = ["service_started", "service_completed_successfully", "service_healthy"]
    conditions: dict[str, str] = {}
    for svc in [compose.target, *compose.dependencies.values()]:
        for name, cond in svc.depends_on.items():
            conditions[name] = max(conditions.get(name, cond), cond, key=strictness.index)
    deps: dict[str, DependencyConfig] = {}
    for name, svc in compose.dependencies.items():
        if not svc.image:
            raise ConfigError(
                f"{compose.path}: `{name}` is a dependency of the gated service but has no `image:` (only `build:`). "
                "The gate starts dependencies from images: build it once (`podman build -t <name> ...`), name that "
                "image in the compose file, and run the gate again.")
        kind = kind_for_image(svc.image)
        module = plugin(kind)
        user = chosen.get(name, {})
        port = module.PORT or (svc.ports[0] if svc.ports else 0)
        deps[name] = DependencyConfig(
            name=name, enabled=user.get("enabled", True), image=user.get("image") or qualified_image(svc.image),
            recipe=user.get("recipe", module.RECIPE), port=user.get("port", port),
            critical=user.get("critical", module.CRITICAL), reported=user.get("reported", kind != "generic"),
            kind=kind, from_compose=True,
            environment=dict(svc.environment), command=tuple(svc.command) if svc.command else None,
            healthcheck=svc.healthcheck, condition=conditions.get(name, "service_started"), mounts=svc.mounts,
        )
    return {name: d for name, d in deps.items() if d.enabled}


def _compose_target(compose: ComposeStack, m: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """The merged configuration with the target's build (or image) taken from the compose file,
    unless the user set `target`, `containerfile` or `image` themselves."""
    m = copy.deepcopy(m)
    svc = compose.target
    if svc.build_context is not None and "target" not in chosen and "image" not in chosen:
        m["target"] = str(svc.build_context)
        m["containerfile"] = chosen.get("containerfile", svc.dockerfile)
    elif svc.build_context is None and svc.image and "target" not in chosen:
        m["image"] = chosen.get("image", svc.image)
    m["build_args"] = {**svc.build_args, **m["build_args"]}
    if "port" not in chosen and len(svc.ports) == 1:
        m["port"] = svc.ports[0]
    return m
