"""model: a compose stack as the gate reads it - services, healthchecks, mounts, secrets.

Guarantees: plain frozen values, made only by load.py, that every other module reads; a
secret's value never shows in their repr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidb_gate.errors import ConfigError

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|KEY|SECRET|TOKEN", re.IGNORECASE)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class ComposeError(ConfigError):
    """The compose file cannot be gated as written; the message says what to change."""


@dataclass(frozen=True)
class Healthcheck:
    """A compose (or image) healthcheck: the command and its timing, in seconds."""

    test: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0

    def argv(self) -> list[str]:
        """What to exec: CMD runs as given, CMD-SHELL (or a plain string) through /bin/sh -c."""
        kind, *rest = self.test
        if kind == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)]
        return list(rest)

    def quoted(self) -> str:
        return " ".join(self.argv()) if self.test[0] == "CMD" else " ".join(self.test[1:])


@dataclass(frozen=True)
class Mount:
    """A mount of the running container, as the gate makes it.

    kind: "copy" (a read-only per-run copy of a file or folder inside the project), "volume" (a
    fresh labelled volume) or "tmpfs". `replaces` says what production mounts there instead."""

    kind: str
    target: str
    source: Path | None = None
    replaces: str = ""


@dataclass(frozen=True)
class Secret:
    """A compose secret: per-run random content at /run/secrets/<target> with this mode."""

    name: str
    target: str
    mode: int = 0o444
    uid: str = ""
    gid: str = ""


@dataclass(frozen=True)
class Service:
    """One compose service, interpolated and normalised."""

    name: str
    image: str = ""
    build_context: Path | None = None
    dockerfile: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: Healthcheck | None = None
    depends_on: dict[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    mounts: tuple[Mount, ...] = ()
    security_opt: tuple[str, ...] = ()
    mem_limit: int | None = None
    cpus: float | None = None
    user: str = ""
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class ComposeStack:
    """The target, the closure of its depends_on (start order), and what was left out or replaced."""

    path: Path
    target: Service
    dependencies: dict[str, Service]
    #: Services outside the closure: {service: [target variables whose value names it]}.
    not_started: dict[str, list[str]]
    #: Secret-looking variables filled with random per-run values: {name: value}.
    generated: dict[str, str] = field(repr=False, default_factory=dict)
    #: Variables that were unset and became "" (compose's rule), by name.
    unset: tuple[str, ...] = ()

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    def secret_values(self) -> list[str]:
        """Every value a report must never show: the random per-run ones, and whatever the file
        (or `compose_variables`) gives a variable whose name looks like a secret."""
        found = list(self.generated.values())
        for svc in [self.target, *self.dependencies.values()]:
            found += [v for k, v in svc.environment.items() if v and SECRET_NAME.search(k) and not k.endswith("_FILE")]
        return found

    def facts(self) -> dict[str, Any]:
        """How the gated stack differs from the file's, for the report's evidence (no values)."""
        found: dict[str, Any] = {"file": str(self.path), "service": self.target.name,
                                 "started": ", ".join(self.dependencies) or "(no dependencies)"}
        if self.not_started:
            found["not started (outside depends_on)"] = {
                name: ("named by " + ", ".join(names) if names else "not named by the service's environment")
                for name, names in self.not_started.items()}
        shown = [line for lines in self.secrets_in_plain_sight().values() for line in lines]
        if shown:
            found["secrets on command lines"] = shown
        replaced = self.replaced_mounts()
        if replaced:
            found["mounts replaced"] = replaced
        if self.generated:
            found["random per-run values"] = ", ".join(sorted(self.generated))
        if self.unset:
            found["unset variables (empty, as compose does)"] = ", ".join(self.unset)
        return found

    def secrets_in_plain_sight(self) -> dict[str, list[str]]:
        """{service: each place where the file puts a secret on its command lines, in words}: the
        gate runs the stack as written, so its random values show there as production's real
        ones do (`ps` shows every host user the command lines of containers' processes)."""
        found = {svc.name: _plain_sight(svc, self.generated) for svc in [self.target, *self.dependencies.values()]}
        return {name: lines for name, lines in found.items() if lines}

    def replaced_mounts(self) -> list[str]:
        """Each mount production makes that the gate replaced, in words, for the report."""
        return [f"{svc.name}: {m.target} ({m.replaces})" for svc in [self.target, *self.dependencies.values()]
                for m in svc.mounts if m.replaces]


def _plain_sight(svc: Service, generated: Mapping[str, str]) -> list[str]:
    named = {v: k for k, v in svc.environment.items() if v and SECRET_NAME.search(k) and not k.endswith("_FILE")}
    named.update({v: k for k, v in generated.items()})
    found: list[str] = []
    for what, argv in (("command", svc.command), ("entrypoint", svc.entrypoint)):
        shown = sorted({name for value, name in named.items() for arg in argv or () if value in arg})
        if shown:
            found.append(f"`{svc.name}` puts {', '.join(shown)} on its `{what}:` line, where `ps` on the host and "
                         "`inspect` show it: give the program the secret in a file instead (a compose secret, or a "
                         "config file the program reads).")
    if svc.healthcheck is not None and svc.healthcheck.test[0] == "CMD-SHELL":
        # `$$VAR` in the file is `$VAR` here: the shell in the container expands it onto the
        # command line of the program it starts, every interval.
        script = " ".join(svc.healthcheck.test[1:])
        expanded = sorted({m.group(1) or m.group(2) for m in re.finditer(rf"\$\{{({_NAME})[^}}]*\}}|\$({_NAME})", script)
                           if SECRET_NAME.search(m.group(1) or m.group(2)) and (m.group(1) or m.group(2)) in svc.environment})
        shown = sorted(set(expanded) | {name for value, name in named.items() if value in script})
        if shown:
            found.append(f"`{svc.name}`'s healthcheck puts {', '.join(shown)} on a command line at every check, where "
                         "`ps` on the host shows it: have the check read the secret from a file or the environment "
                         "(e.g. REDISCLI_AUTH for redis-cli).")
    return found


# -- interpolation ----------------------------------------------------------------------------
