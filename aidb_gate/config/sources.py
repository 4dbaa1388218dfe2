"""sources: where settings come from - the configuration file and AIDB_GATE_* variables.

Guarantees: a file is read only when it is a regular file of sane size, as TOML, and only its
gate table; an AIDB_GATE_* variable becomes a typed value at the key it names, or one paragraph
saying what to fix.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aidb_gate.config.schema import _ENV_FLOAT, _ENV_INT, DEFAULTS, ENV_PREFIX, FREE_TABLES, MAX_CONFIG_BYTES, NOT_SETTINGS, RUN_ID
from aidb_gate.config.shape import _example, validate_shape
from aidb_gate.config.words import _dotted, _show, _text
from aidb_gate.errors import ConfigError

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
