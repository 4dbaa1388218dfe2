"""keep: what `--gate-keep` leaves behind, and how the user reaches it.

Guarantees: the kept containers' host ports are read while the engine still answers (so a
private API service may stop afterwards); the instructions name every container with a
ready-to-paste client line and never carry a secret: the secrets go to a 0600 file in the
user's runtime folder, never under reports/ (CI uploads that folder).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidb_gate.config import GateConfig
from aidb_gate.core.container import reach, url_host
from aidb_gate.core.engine import Engine, service_dir
from aidb_gate.core.text import clip


@dataclass
class KeptContainer:
    """One kept container as seen from the host. Holds no secret."""

    role: str  # its role in the run: target, postgres, postgres-restored, ...
    kind: str  # service, postgres, redis or qdrant
    container: str  # its name, for `podman exec`
    port: int | None = None  # the published port on the stack's host; None when it could not be read
    user: str = ""
    db: str = ""
    problem: str = ""  # why the port is unknown (the container exited, ...)


@dataclass
class KeptStack:
    """Everything `render_keep` prints about a kept run, read while the engine still answered."""

    run_id: str
    containers: list[KeptContainer]
    cli: str  # the engine CLI, with `CONTAINERS_CONF=...` in front where this host needs it
    health_path: str
    key_header: str
    api_key_var: str | None  # the service's environment variable holding the API key, if any
    secrets_file: Path | None = None
    secrets_problem: str = ""
    #: Where the published ports answer (127.0.0.1 for a local engine, the engine's host for a remote one).
    host: str = "127.0.0.1"


def kept_secrets_file(run_id: str) -> Path:
    """Where a kept run's secrets are written (mode 0600); `aidb-gate clean` removes it with the run.

    Beside the engine sockets in the user's runtime folder, never under reports/: CI jobs upload
    that folder as an artifact, and secrets must never reach a report."""
    return service_dir() / f"kept-{run_id}.env"


def secret_var(role: str, key: str) -> str:
    """The secrets file's variable for one dependency secret: postgres-restored + password ->
    POSTGRES_RESTORED_PASSWORD (one variable per instance: each has its own secret)."""
    return f"{role}_{key}".upper().replace("-", "_")


def write_secrets_file(path: Path, run_id: str, secrets: dict[str, str]) -> None:
    """A shell-sourceable file readable by its owner only; made 0600 before a secret is written."""
    import shlex

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        fh.write(f"# Secrets of the kept aidb-gate run {run_id}; `aidb-gate clean --run {run_id}` removes it.\n")
        fh.writelines(f"{name}={shlex.quote(value)}\n" for name, value in sorted(secrets.items()))


def engine_cli(engine: Engine) -> str:
    """The CLI line prefix that reaches the kept containers; `podman` talks to its storage directly,
    so it works after a private API service stopped, given the same CONTAINERS_CONF."""
    conf = engine.cli_env.get("CONTAINERS_CONF")
    return f"CONTAINERS_CONF={conf} {engine.kind}" if conf else engine.kind


def health_url_path(cfg: GateConfig) -> str:
    return cfg.health.get("ready") or cfg.health.get("live") or cfg.health.get("legacy") or "/"


def api_key_var(cfg: GateConfig) -> str | None:
    """The target's environment variable that carries the API key (AIDB_API_KEY by default)."""
    return next((var for var, template in cfg.env_templates.items() if template == "{api_key}"), None)


def kept_port(entry: KeptContainer, read: Callable[[], int]) -> KeptContainer:
    try:
        entry.port = int(read())
    except Exception as err:  # an exited container publishes no port; say so instead of failing the run
        entry.problem = f"no published port ({type(err).__name__}: {clip(str(err), 200)})"
    return entry


def _client_line(c: KeptContainer, kept: KeptStack) -> str:
    """A ready-to-paste command for one container; secrets come from the sourced file's variables."""
    where = f"{kept.host} -p {c.port}"
    var = secret_var(c.role, "password")
    if c.kind == "service":
        return f'curl -H "{kept.key_header}: $AIDB_API_KEY" http://{url_host(kept.host)}:{c.port}{kept.health_path}'
    if c.kind == "postgres":
        return f'PGPASSWORD="${var}" psql -h {where}' + (f" -U {c.user}" if c.user else "") + (f" {c.db}" if c.db else "")
    if c.kind == "redis":
        return f'REDISCLI_AUTH="${var}" redis-cli -h {where} ping'
    if c.kind == "qdrant":
        return f'curl -H "api-key: ${secret_var(c.role, "api_key")}" http://{url_host(kept.host)}:{c.port}/collections'
    return ""


def render_keep(kept: KeptStack) -> str:
    """The --gate-keep instructions: every kept container's address and a client line for it, where
    the secrets are, and how to remove the stack. Never a secret value."""
    lines = [f"[aidb-gate] --gate-keep: the stack of run {kept.run_id} is still running. It is labelled "
             "aidb-gate.kept=true, so later gate runs and `aidb-gate clean` leave it alone."]
    if kept.secrets_file:
        lines.append(f"  secrets (mode 0600): {kept.secrets_file}")
        lines.append(f"      load them into your shell: set -a; . {kept.secrets_file}; set +a")
    elif kept.secrets_problem:
        lines.append(f"  secrets: {kept.secrets_problem}")
    for c in kept.containers:
        address = f"http://{url_host(kept.host)}:{c.port}" if c.kind == "service" else f"{url_host(kept.host)}:{c.port}"
        if c.port is None:
            lines.append(f"  {c.role:<18} {c.problem}  (container {c.container})")
            continue
        lines.append(f"  {c.role:<18} {address}  (container {c.container})")
        command = _client_line(c, kept)
        if command:
            lines.append(f"      {command}")
    target = next((c for c in kept.containers if c.kind == "service"), None)
    if target and kept.api_key_var:
        lines.append(f"  API key: AIDB_API_KEY in the secrets file, or from the service itself: "
                     f"{kept.cli} exec {target.container} printenv {kept.api_key_var}")
    if not kept.containers:
        lines.append("  (no container of this run was running when it ended)")
    lines.append(f"  remove it with: aidb-gate clean --run {kept.run_id}   (every kept stack: aidb-gate clean --kept)")
    return "\n".join(lines)


def read_kept(session: Any, engine: Engine) -> KeptStack:
    """Host ports of every kept container, read through the engine now (before a private API
    service stops), and the secrets written to a 0600 file so the printed instructions never
    carry them."""
    from aidb_gate.core.container import host_port
    from aidb_gate.stack import STACK
    from aidb_gate.stages.boot import BOOT
    from aidb_gate.stages.restore import RESTORE

    run, cfg = session.run, session.cfg
    found: list[tuple[KeptContainer, dict[str, str]]] = []
    boots = [("target", session.finished(BOOT))]
    restore = session.finished(RESTORE)
    if restore is not None:
        boots.append(("target-restored", restore.boot))
    for role, boot in boots:
        if boot is not None:
            found.append((kept_port(KeptContainer(role, "service", run.name(role)),
                                    functools.partial(host_port, boot.container, boot.port)),
                          {"AIDB_API_KEY": session.api_key}))
    stack = session.finished(STACK)
    if stack is not None:
        for dep in [*stack.deps.values(), *stack.extra.values()]:
            entry = KeptContainer(dep.name, dep.kind, run.name(dep.name),
                                  user=dep.extra.get("user", ""), db=dep.extra.get("db", ""))
            found.append((kept_port(entry, functools.partial(host_port, dep.container, dep.config.port)),
                          {secret_var(dep.name, key): value for key, value in dep.secrets.items()}))
    secrets = {k: v for _entry, values in found for k, v in values.items()}
    kept = KeptStack(run.id, [entry for entry, _values in found], engine_cli(engine), health_url_path(cfg),
                     cfg.auth.get("header") or "X-API-Key", api_key_var(cfg), host=reach().host)
    if secrets:
        path = kept_secrets_file(run.id)
        try:
            write_secrets_file(path, run.id, secrets)
            kept.secrets_file = path
        except OSError as err:
            kept.secrets_problem = f"the secrets file {path} could not be written: {err}"
    return kept
