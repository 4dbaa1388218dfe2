"""api: inspection, logs, exec and one-shot runs through podman-py (Podman) or docker-py (Docker).

Guarantees: each call returns plain Python values (dicts, str, exit codes), so stage code never
handles a client object, a log generator or a multiplexed exec frame; one-shot containers are
labelled with the run and removed whatever happens.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aidb_gate.engine import Engine
from aidb_gate.errors import GateError


def client(engine: Engine) -> contextlib.closing:
    """podman-py for Podman, docker-py for Docker, closed when the `with` block ends."""
    return contextlib.closing(engine.podman_client() if engine.kind == "podman" else engine.docker_client())


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        return data
    return b"".join(data).decode("utf-8", errors="replace")  # podman-py yields frames


def run_once(
    engine: Engine,
    image: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    labels: dict[str, str],
    timeout_s: float = 120,
    user: str | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
) -> tuple[int, str, str]:
    """Run argv as the entrypoint in a fresh, network-less container: (exit code, stdout, stderr)."""
    with client(engine) as api:
        kwargs: dict[str, Any] = dict(entrypoint=[argv[0]], command=argv[1:], environment=env or {},
                                      labels=labels, network_mode="none", detach=True)
        if user:
            kwargs["user"] = user
        if volumes:
            kwargs["volumes"] = volumes
        container = api.containers.create(image, **kwargs)
        try:
            container.start()
            result = container.wait(timeout=timeout_s) if engine.kind == "docker" else _exited(container, timeout_s)
            code = result["StatusCode"] if isinstance(result, dict) else int(result)
            out = _text(container.logs(stdout=True, stderr=False))
            err = _text(container.logs(stdout=False, stderr=True))
            return code, out, err
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)


def _exited(container: Any, timeout_s: float) -> dict[str, Any]:
    """podman-py's `wait` takes no timeout: poll the container's state until it exits, and kill it
    at the deadline, so a process that never ends cannot hold the gate."""
    deadline = time.monotonic() + timeout_s
    while True:
        container.reload()
        state = container.attrs.get("State") or {}
        if container.status in ("exited", "stopped", "dead") or state.get("Status") in ("exited", "stopped"):
            return {"StatusCode": int(state.get("ExitCode", 0) or 0)}
        if time.monotonic() > deadline:
            with contextlib.suppress(Exception):
                container.kill()
            raise GateError(f"a one-off container of {container.attrs.get('ImageName') or 'the image'} was still running "
                            f"after {timeout_s:g} s and was stopped")
        time.sleep(0.2)


def exec_in(engine: Engine, container_id: str, argv: list[str], user: str | None = None) -> tuple[int, str, str]:
    """Run argv inside a running container: (exit code, stdout, stderr)."""
    with client(engine) as api:
        container = api.containers.get(container_id)
        kwargs: dict[str, Any] = {"demux": True}
        if user:
            kwargs["user"] = user
        code, output = container.exec_run(argv, **kwargs)
        out, err = output if isinstance(output, tuple) else (output, b"")
        return int(code or 0), _text(out), _text(err)


def inspect(engine: Engine, container_id: str) -> dict[str, Any]:
    with client(engine) as api:
        return api.containers.get(container_id).attrs


def image_attrs(engine: Engine, ref: str) -> dict[str, Any]:
    with client(engine) as api:
        return api.images.get(ref).attrs


def logs(engine: Engine, container_id: str) -> str:
    with client(engine) as api:
        return _text(api.containers.get(container_id).logs(stdout=True, stderr=True))


def top(engine: Engine, container_id: str) -> str:
    """The process list as `podman top` shows it, or why it is not available."""
    try:
        with client(engine) as api:
            table = api.containers.get(container_id).top()
    except Exception as err:
        return f"(process list unavailable: {err})"
    rows = [table.get("Titles", []), *table.get("Processes", [])]
    return "\n".join("  ".join(str(c) for c in row) for row in rows)
