"""interpolation: compose's `$VAR` syntax, as the specification defines it.

Guarantees: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`, `${VAR?msg}`,
`${VAR:+alt}`, `${VAR+alt}`, nesting and `$$`; a secret-looking name gets a random per-run
value unless the configuration sets it; a required variable nobody gives is a ComposeError.
"""

from __future__ import annotations

import re
import secrets as _secrets
from collections.abc import Callable, Mapping
from typing import Any

from aidb_gate.compose.model import _NAME, SECRET_NAME, ComposeError


class Variables:
    """Where `${VAR}` gets its value: configuration, random secret, environment, `.env`."""

    def __init__(self, configured: Mapping[str, str], environ: Mapping[str, str], dotenv: Mapping[str, str],
                 make_secret: Callable[[], str] | None = None):
        self.configured, self.environ, self.dotenv = configured, environ, dotenv
        # Letters and digits only: a value that starts with "-" would read as an option wherever a
        # compose file puts it on a command line (`--requirepass ${REDIS_PASSWORD}`).
        self.make_secret = make_secret or (lambda: _secrets.token_hex(16))
        self.generated: dict[str, str] = {}
        self.unset: set[str] = set()

    def get(self, name: str) -> str | None:
        if name in self.configured:
            return str(self.configured[name])
        if SECRET_NAME.search(name):
            if name not in self.generated:
                self.generated[name] = self.make_secret()
            return self.generated[name]
        if name in self.environ:
            return self.environ[name]
        return self.dotenv.get(name)


def interpolate(text: str, variables: Variables, where: str) -> str:
    """`text` with every compose variable reference replaced (see the module docstring)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2, where)
            out.append(_expand(text[i + 2:end], variables, where))
            i = end + 1
        else:
            match = re.match(_NAME, text[i + 1:])
            if not match:
                out.append("$")
                i += 1
                continue
            out.append(_value(match.group(0), variables))
            i += 1 + match.end()
    return "".join(out)


def _closing_brace(text: str, start: int, where: str) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text.startswith("${", j):
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ComposeError(f"{where}: `{text}` has a `${{` without its closing `}}`. Close the variable reference.")


def _value(name: str, variables: Variables) -> str:
    value = variables.get(name)
    if value is None:
        variables.unset.add(name)
        return ""
    return value


def _expand(body: str, variables: Variables, where: str) -> str:
    match = re.match(rf"({_NAME})(:?[-?+])?(.*)\Z", body, re.DOTALL)
    if not match:
        raise ComposeError(f"{where}: `${{{body}}}` is not a variable reference compose understands "
                           "(use ${VAR}, ${VAR:-default}, ${VAR:?message} or ${VAR:+alternative}).")
    name, op, rest = match.group(1), match.group(2), match.group(3)
    if op is None:
        if rest:
            raise ComposeError(f"{where}: `${{{body}}}` is not a variable reference compose understands.")
        return _value(name, variables)
    value = variables.get(name)
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")
    if op.endswith("-"):
        return interpolate(rest, variables, where) if missing else value or ""
    if op.endswith("+"):
        return "" if missing else interpolate(rest, variables, where)
    if missing:  # ? and :?
        message = interpolate(rest, variables, where) or "required"
        raise ComposeError(
            f"{where}: the variable `{name}` is required ({message}) and the gate cannot provide it: it is not "
            f"set in the environment, in the project's .env, or in the configuration. Set "
            f"`compose_variables.{name} = \"...\"` in [tool.aidb-gate] (or export {name}) to the value a test "
            "stack should use. Names that look like secrets (PASSWORD, KEY, SECRET, TOKEN) get random values.")
    return value or ""


def _interpolate_tree(node: Any, variables: Variables, where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, variables, where) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, variables, f"{where}.{k}") for k, v in node.items()}
    return node


# -- values -----------------------------------------------------------------------------------
