"""api: inspection, logs, exec and one-shot runs through podman-py (Podman) or docker-py (Docker).

Guarantees: each call returns plain Python values (dicts, str, exit codes), so stage code never
handles a client object, a log generator or a multiplexed exec frame; one-shot containers are
labelled with the run and removed whatever happens.
"""

from __future__ import annotations

import contextlib
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidb_gate.core.engine import Engine
from aidb_gate.errors import GateError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

#: How long one engine call may stay silent: inspect, logs and top answer in well under a second
#: on a healthy engine; a hung engine must end in an error, not hold the gate.
CALL_TIMEOUT_S = 120.0


def client(engine: Engine, timeout_s: float = CALL_TIMEOUT_S) -> contextlib.closing[Any]:
    """podman-py for Podman, docker-py for Docker, closed when the `with` block ends; every
    socket read of the client ends after `timeout_s` seconds of silence."""
    if engine.kind == "podman":
        return contextlib.closing(engine.podman_client(timeout_s))
    return contextlib.closing(engine.docker_client(max(1, int(timeout_s))))


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
    with client(engine, max(CALL_TIMEOUT_S, timeout_s + 30)) as api:  # docker-py waits in one read
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


def exec_in(engine: Engine, container_id: str, argv: list[str], user: str | None = None,
            timeout_s: float = 60) -> tuple[int, str, str]:
    """Run argv inside a running container: (exit code, stdout, stderr). A command still running
    after `timeout_s` ends the call with a GateError; the exec goes with its container. The same
    path as `exec_to`, on either engine (docker-py's own exec_run reads without any deadline)."""
    import io

    out = io.BytesIO()
    try:
        code, stderr = exec_to(engine, container_id, argv, out, timeout_s=timeout_s, user=user)
    except ExecTimeout:
        raise ExecTimeout(f"`{' '.join(argv)[:200]}` in container {container_id[:12]} gave no answer within "
                        f"{timeout_s:g} s and was abandoned.") from None
    return code, _text(out.getvalue()), stderr


def inspect(engine: Engine, container_id: str) -> dict[str, Any]:
    with client(engine) as api:
        attrs: dict[str, Any] = api.containers.get(container_id).attrs
        return attrs


def image_attrs(engine: Engine, ref: str) -> dict[str, Any]:
    with client(engine) as api:
        attrs: dict[str, Any] = api.images.get(ref).attrs
        return attrs


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


def exec_to(engine: Engine, container_id: str, argv: list[str], out: SupportsWrite[bytes], *, timeout_s: float,
            user: str | None = None) -> tuple[int, str]:
    """Run argv inside a running container through the engine's API, its stdout streamed into
    `out` (a dump of any size needs no memory): (exit code, stderr). The whole call ends by
    `timeout_s`: a command still running then is abandoned with a GateError (the exec goes with
    its container). Works the same on Podman and Docker, local or remote: nothing runs a CLI."""
    begin = time.monotonic()
    errors = bytearray()
    with contextlib.closing(engine.docker_client(max(1, int(min(timeout_s, CALL_TIMEOUT_S))))) as api:
        low = api.api
        exec_id = low.exec_create(container_id, argv, stdout=True, stderr=True, user=user or "")["Id"]
        try:
            # The body as HTTP delivers it, not docker-py's raw socket: http.client may already hold
            # the stream's first bytes in its buffer (seen on Podman under load: docker-py then read
            # a payload byte as a frame header, "150 is not a valid stream"). No Upgrade header, so
            # Docker answers 200 with the stream as the body, as Podman does.
            # Each read may wait the whole deadline: a dump may be silent for minutes (a lock, a big table).
            resp = low.post(low._url("/exec/{0}/start", exec_id), json={"Detach": False, "Tty": False}, stream=True,
                            timeout=(min(30.0, timeout_s), timeout_s))
            low._raise_for_status(resp)
            with contextlib.closing(resp):
                for stream, data in frames(resp.raw):
                    if stream == 1:
                        out.write(data)
                    elif stream == 2 and len(errors) < STDERR_KEPT:
                        errors += data[: STDERR_KEPT - len(errors)]
                    if time.monotonic() - begin > timeout_s:
                        raise TimeoutError
        except Exception as err:
            if time.monotonic() - begin < timeout_s and not isinstance(err, TimeoutError):
                raise
            raise ExecTimeout(f"`{' '.join(argv)[:200]}` in container {container_id[:12]} was still running after "
                            f"{timeout_s:g} s and was abandoned.") from None
        code = _exit_code(low, exec_id, begin, timeout_s)
    return code, errors.decode("utf-8", errors="replace")


class ExecTimeout(GateError):
    """A command exec'd into a container was still running at its deadline (and was abandoned)."""


class StreamError(GateError):
    """The engine's multiplexed exec stream broke its own framing."""


def frames(body: Any, chunk: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(stream, bytes) of an engine's multiplexed stream (8-byte headers: stream 0/1/2, three zero
    bytes, a big-endian length), read from a file-like `body` until it ends; a header that breaks
    the format is a StreamError naming the offset, never a payload byte taken for a header."""
    import struct

    offset = 0
    while True:
        header = _read_exactly(body, 8)
        if not header:
            return
        if len(header) < 8 or header[0] not in (0, 1, 2) or header[1:4] != b"\0\0\0":
            raise StreamError(f"the engine's exec stream is malformed at byte {offset} (header {header.hex()}).")
        (size,) = struct.unpack(">L", header[4:])
        offset += 8 + size
        while size > 0:
            data = body.read(min(size, chunk))
            if not data:
                raise StreamError(f"the engine's exec stream ended inside a frame, {size} bytes short.")
            size -= len(data)
            yield header[0], data


def _read_exactly(body: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = body.read(n - len(data))
        if not more:
            break
        data += more
    return data


#: How much of a command's stderr is kept for its error message.
STDERR_KEPT = 64 << 10


def _exit_code(low: Any, exec_id: str, begin: float, timeout_s: float) -> int:
    """The exec's exit code; an engine may report it a moment after the output stream closes."""
    while True:
        info = low.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() - begin > timeout_s:
            raise GateError(f"exec {exec_id[:12]} reported no exit code within {timeout_s:g} s.")
        time.sleep(0.05)


def put_file(engine: Engine, container_id: str, src: Path, folder: str, name: str, *, mode: int = 0o644,
             timeout_s: float = CALL_TIMEOUT_S) -> str:
    """Copy one host file into a running container as `folder/name` through the engine's API,
    streamed as a one-member tar (no second copy on disk, none in memory); returns its path there."""
    size = src.stat().st_size
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(time.time())

    def chunks() -> Iterator[bytes]:
        yield info.tobuf(format=tarfile.GNU_FORMAT)
        sent = 0
        with src.open("rb") as fh:
            while block := fh.read(1 << 20):
                sent += len(block)
                yield block
        if sent != size:
            raise GateError(f"{src} changed size while it was copied into container {container_id[:12]}.")
        yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)

    with contextlib.closing(engine.docker_client(max(1, int(timeout_s)))) as api:
        api.api.put_archive(container_id, folder, chunks())
    return f"{folder.rstrip('/')}/{name}"
