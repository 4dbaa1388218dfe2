"""shape: every table checked against the schema, key by key and type by type.

Guarantees: an unknown key names the nearest known one; a value of the wrong type names the
type and an example; free tables (env, build_args, auth.body) keep their keys and values
exactly, within the limits docs/CONFIGURATION.md lists.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from typing import Any

from aidb_gate.config.schema import FREE_TABLES, MAX_BODY_DEPTH, MULTILINE
from aidb_gate.config.words import _dotted, _show
from aidb_gate.errors import ConfigError

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
