"""The configuration is input, fuzzed: hypothesis writes gate.toml and pyproject.toml files (keys of
the real schema mixed with random ones, values of every TOML type - nan, inf, huge and negative
numbers, dates, strings with control characters - and raw bytes that are not UTF-8) and sets
AIDB_GATE_* variables, then calls the real loader. Each input is accepted, or refused with a
ConfigError whose message is one printable paragraph; never any other exception. What is accepted
keeps the rules: every deadline finite and positive, counts in range, a free table's variable
exactly as given."""

from __future__ import annotations

import datetime
import math
import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aidb_gate.config import COUNTS, DEFAULTS, DURATIONS, ENV_PREFIX, FREE_TABLES, MAX_DURATION_S, GateConfig, load_config
from aidb_gate.errors import ConfigError, GateError

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- values of every TOML type, the awkward ones often ------------------------------------------

TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Zs", "Zl", "Zp", "Cf"]), max_size=4),
    st.sampled_from(["", "/", "~", "..", ".", "{", "}", "{}", "{api_key}", "{postgres.host}", "{postgres.port:d}",
                     "{api_key!r}", "{qdrant.url}{{x}}", "stop", "kill", "auto", "X-API-Key", "POST", "/documents",
                     "reports", "A=B", "~nosuchuser-aidb", "nan", "0x10", "true"]),
)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 65535, 65536, 10_000, 10_001, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 86_400.0, 86_400.5]),
)
SCALAR = st.one_of(TEXT, NUMBER, st.booleans(), st.dates(), st.times(),
                   st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6)


PLAUSIBLE_TEXT = st.one_of(st.sampled_from(["", "/health", "/documents", "X-Key", "GET", "auto", "stop", "mcp",
                                             "{api_key}", "{redis.port}", "reports/gate", "img:1"]),
                           st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=8))
PLAUSIBLE_INT = st.integers(min_value=1, max_value=1000)
PLAUSIBLE_FLOAT = st.floats(min_value=0.001, max_value=1000)


def _like(default: Any, wild: bool) -> st.SearchStrategy[Any]:
    """A value for a key whose default is `default`: mostly plausible ones of its type with the
    edge cases mixed in; in a wild table, anything at all as often."""
    if isinstance(default, bool):
        typed: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(default, int):
        typed = st.one_of(PLAUSIBLE_INT, PLAUSIBLE_INT, PLAUSIBLE_INT, NUMBER)
    elif isinstance(default, float):
        typed = st.one_of(PLAUSIBLE_INT, PLAUSIBLE_FLOAT, PLAUSIBLE_FLOAT, NUMBER)
    elif isinstance(default, list):
        typed = st.lists(st.one_of(st.sampled_from(["stop", "pause", "kill"]), TEXT), max_size=4)
    else:
        typed = st.one_of(PLAUSIBLE_TEXT, PLAUSIBLE_TEXT, TEXT)
    return st.one_of(typed, VALUE) if wild else typed


def _table(schema: dict[str, Any], path: tuple[str, ...] = (), wild: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A table shaped like `schema`: some of its keys with fitting (or not) values; a wild one also
    holds random keys and puts anything in place of a sub-table."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for key, default in schema.items():
        here = (*path, key)
        if here in FREE_TABLES:
            if wild:
                fields[key] = st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, VALUE), max_size=3), VALUE)
            else:
                fields[key] = st.dictionaries(PLAUSIBLE_TEXT, st.one_of(PLAUSIBLE_TEXT, PLAUSIBLE_TEXT, TEXT), max_size=3)
        elif isinstance(default, dict):
            sub = _table(default, here, wild)
            if here == ("dependencies",):  # any compose service may be named there
                sub = st.builds(lambda known, extra: {**known, **extra}, sub,
                                st.dictionaries(TEXT, _table(default["postgres"], here, wild), max_size=1))
            fields[key] = st.one_of(sub, VALUE) if wild else sub
        else:
            fields[key] = _like(default, wild)
    chosen = st.fixed_dictionaries({}, optional=fields)
    if not wild:
        return chosen
    return st.builds(lambda known, extra: {**extra, **known}, chosen, st.dictionaries(TEXT, VALUE, max_size=1))


GATE_TABLE = st.one_of(_table(DEFAULTS), _table(DEFAULTS), _table(DEFAULTS, wild=True))


def _toml(document: dict[str, Any]) -> bytes | None:
    """The document as TOML, or None where TOML cannot express it (a key tomli_w cannot write)."""
    try:
        return tomli_w.dumps(document).encode()
    except (TypeError, ValueError):
        return None


@st.composite
def config_files(draw: st.DrawFn) -> dict[str, bytes]:
    """The files of a project folder: gate.toml and/or pyproject.toml, well-formed or not."""
    table = draw(GATE_TABLE)
    shape = draw(st.sampled_from(["pyproject", "pyproject", "pyproject", "gate", "gate", "gate-wrapped", "tool-scalar",
                                  "table-scalar", "bytes", "not-utf8", "none"]))
    files: dict[str, bytes] = {}
    if shape == "pyproject":
        data = _toml({"project": {"name": "x"}, "tool": {"aidb-gate": table}})
        files["pyproject.toml"] = data if data is not None else b""
    elif shape in ("gate", "gate-wrapped"):
        data = _toml(table if shape == "gate" else {"tool": {"aidb-gate": table}})
        files["gate.toml"] = data if data is not None else b""
    elif shape == "tool-scalar":
        files[draw(st.sampled_from(["gate.toml", "pyproject.toml"]))] = _toml({"tool": draw(SCALAR)}) or b"tool = 5\n"
    elif shape == "table-scalar":
        files[draw(st.sampled_from(["gate.toml", "pyproject.toml"]))] = \
            _toml({"tool": {"aidb-gate": draw(SCALAR)}}) or b"[tool]\naidb-gate = 5\n"
    elif shape == "bytes":
        files[draw(st.sampled_from(["gate.toml", "pyproject.toml"]))] = draw(st.binary(max_size=60))
    elif shape == "not-utf8":
        good = _toml({"tool": {"aidb-gate": table}}) or b"[tool.aidb-gate]\n"
        cut = draw(st.integers(min_value=0, max_value=len(good)))
        bad = draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        files[draw(st.sampled_from(["gate.toml", "pyproject.toml"]))] = good[:cut] + bad + good[cut:]
    return files


# ---- AIDB_GATE_* ----------------------------------------------------------------------------------


def _schema_paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path] if path else []
    for key, value in schema.items():
        here = (*path, key)
        out += _schema_paths(value, here) if isinstance(value, dict) and here not in FREE_TABLES else [here]
    return out


PATHS = _schema_paths(DEFAULTS)
SEGMENT = st.text(st.characters(codec="ascii", exclude_characters="\0"), min_size=0, max_size=6)


@st.composite
def variable_names(draw: st.DrawFn) -> str:
    """An AIDB_GATE_* name: a real key (any case, sometimes one level too far) or made-up parts."""
    if draw(st.integers(0, 3)):
        parts = [p.upper() if draw(st.booleans()) else p for p in draw(st.sampled_from(PATHS))]
        if draw(st.integers(0, 3)) == 0 or parts[0] in ("env", "ENV", "build_args", "BUILD_ARGS", "auth", "AUTH"):
            parts.append(draw(SEGMENT))
    else:
        parts = draw(st.lists(SEGMENT, min_size=1, max_size=3))
    return ENV_PREFIX + draw(st.sampled_from(["__", "__", "_", "___"])).join(parts)


ENV_VALUE = st.one_of(st.text(max_size=10), st.sampled_from(
    ["", "0", "1", "-5", "true", "True", "yes", "0x10", "1e999", "nan", "inf", "-inf", "8080", "+9000", "2.5", "[1]",
     '["stop"]', "stop,kill", "[", "{", "{}", "/", "~", "..", "a\0b", "caf\udce9", "9" * 5000, "[" * 2000]))
ENVIRON = st.one_of(st.just({}), st.dictionaries(variable_names(), ENV_VALUE, max_size=4))


# ---- the property ---------------------------------------------------------------------------------


def _check_accepted(cfg: GateConfig, environ: dict[str, str]) -> None:
    for path in DURATIONS:
        value = cfg.raw
        for part in path:
            value = value[part]
        assert math.isfinite(value) and 0 < value <= MAX_DURATION_S * (1000 if path[-1].endswith("_ms") else 1), path
    for (table, key), (low, high, _, _) in COUNTS.items():
        assert low <= cfg.raw[table][key] <= high
    assert cfg.reports_dir != Path("/") and cfg.reports_dir != Path.home()
    for var, value in environ.items():
        if var.startswith(f"{ENV_PREFIX}ENV__") and len(var) > len(f"{ENV_PREFIX}ENV__"):
            assert cfg.env_templates[var[len(f"{ENV_PREFIX}ENV__"):]] == value  # exact key, exact string


def _check_refused(err: GateError) -> None:
    message = str(err)
    assert isinstance(err, ConfigError), f"{type(err).__name__}: {message}"
    assert message.strip(), "an empty message"
    assert "\n" not in message and message.isprintable(), f"not one printable paragraph: {message!r}"


@FUZZ
@given(files=config_files(), environ=ENVIRON,
       special=st.fixed_dictionaries({}, optional={"AIDB_GATE_RUN_ID": st.one_of(TEXT, st.just("ci-1")),
                                                   "AIDB_GATE_CONFIG": st.sampled_from(
                                                       ["gate.toml", "pyproject.toml", ".", "nope.toml", "/"])}))
@example(files={"pyproject.toml": b"tool = 5\n"}, environ={}, special={})
@example(files={"gate.toml": b"[tool]\naidb-gate = 5\n"}, environ={}, special={})
@example(files={"gate.toml": b'[env]\nX = "{"\n'}, environ={}, special={})
@example(files={"gate.toml": b"[env]\nX = 5\n"}, environ={"AIDB_GATE_ENV__PORT": "8080"}, special={})
@example(files={}, environ={"AIDB_GATE_DATA": "1", "AIDB_GATE_DATA__COUNT": "2"}, special={})
@example(files={}, environ={"AIDB_GATE_DATA__COUNT": "2", "AIDB_GATE_DATA": "1"}, special={})
@example(files={"gate.toml": b'image = "caf\xe9"\n'}, environ={}, special={})
@example(files={}, environ={}, special={"AIDB_GATE_CONFIG": "."})
@example(files={"gate.toml": b"[data]\ncount = -5\n"}, environ={}, special={})
@example(files={"gate.toml": b'reports_dir = "/"\n'}, environ={}, special={"AIDB_GATE_RUN_ID": "../../x"})
@example(files={"gate.toml": b"startup_timeout_s = nan\n[faults]\nbudget_s = inf\n"}, environ={}, special={})
def test_any_configuration_is_accepted_or_refused_in_one_paragraph(files, environ, special):
    environ = {**environ, **special}
    with tempfile.TemporaryDirectory(prefix="aidb-gate-config-fuzz-") as folder:
        root = Path(folder)
        for name, data in files.items():
            (root / name).write_bytes(data)
        try:
            cfg = load_config(root, environ=environ)
        except GateError as err:
            _check_refused(err)
        else:
            _check_accepted(cfg, environ)
