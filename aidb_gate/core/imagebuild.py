"""imagebuild: build an image through the engine's API, with a streamed log and a deadline.

Guarantees:
- The build context is the folder as `docker build` sends it: `.containerignore` (else
  `.dockerignore`) is honoured, a Containerfile outside the context is carried along, and the
  Containerfile is `Containerfile` when there is one, else `Dockerfile`.
- Podman (and Docker for a Containerfile without `RUN --mount`) builds through the API the gate
  chose, local or remote: no CLI, no local storage. Build secrets (the CA bundle, id
  `aidb-gate-ca`) reach Podman's builds in the context archive, which Podman moves out of the
  context before the build (`secrets=`), so no layer holds them.
- On Docker, a Containerfile with `RUN --mount` (secrets, caches) needs BuildKit, whose secrets
  travel over a session that docker-py cannot hold; it is built by a BuildKit-capable `docker`
  CLI pointed at the same engine (`DOCKER_HOST`), never at another one. Without such a CLI the
  build fails with one paragraph saying what to install.
- The log is written line by line as it comes, `STEP`/`Step` lines go to `progress`, and the
  build ends at `timeout_s` (code 124) whatever the engine does. The result is (exit code, log
  text): 0 when the engine reported the image built, 1 when it reported an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from aidb_gate.errors import ImageError

Progress = Callable[[str], None]

#: The id under which the host's CA bundle reaches RUN steps (`RUN --mount=type=secret,id=aidb-gate-ca`),
#: and where a RUN step that mounts it sees it.
CA_SECRET = "aidb-gate-ca"
CA_SECRET_PATH = f"/run/secrets/{CA_SECRET}"
_MOUNT = re.compile(r"^\s*RUN\s+(?:--\S+\s+)*--mount=", re.IGNORECASE | re.MULTILINE)


def containerfile_of(context: Path, given: Path | None = None) -> Path:
    """The Containerfile a build uses: the one given, else `Containerfile`, else `Dockerfile`."""
    if given is not None:
        return given
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise ImageError(f"{context} has no Containerfile or Dockerfile: add one, or name it with `containerfile` in the "
                     "gate's configuration.")


def needs_buildkit(containerfile_text: str) -> bool:
    """Whether a Containerfile uses `RUN --mount` (which Docker's legacy builder refuses)."""
    return bool(_MOUNT.search(containerfile_text))


def ignore_patterns(context: Path) -> list[str]:
    """The context's ignore rules, as Podman reads them (`.containerignore` first) and Docker does."""
    for name in (".containerignore", ".dockerignore"):
        path = context / name
        if path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return []


@contextlib.contextmanager
def context_archive(context: Path, containerfile: Path, extra: dict[str, Path] | None = None) -> Iterator[tuple[IO[bytes], str]]:
    """(the context as an uncompressed tar in a temporary file, the Containerfile's name in it);
    `extra` ({name in the archive: host file}) is added, e.g. a build secret for Podman to move out."""
    from docker.api.build import process_dockerfile
    from docker.utils import build as docker_build

    dockerfile = process_dockerfile(str(containerfile), str(context))
    archive = docker_build.tar(str(context), exclude=ignore_patterns(context), dockerfile=dockerfile, gzip=False)
    try:
        if extra:
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="a") as tar:
                for name, source in extra.items():
                    info = tar.gettarinfo(str(source), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                    with source.open("rb") as fh:
                        tar.addfile(info, fh)
        archive.seek(0)
        yield archive, dockerfile[0]
    finally:
        archive.close()


def build(engine: Any, context: Path, tag: str, log: IO[str], *, containerfile: Path | None = None,
          build_args: dict[str, str] | None = None, labels: dict[str, str] | None = None,
          ca_bundle: Path | None = None, progress: Progress | None = None, timeout_s: float = 3600.0) -> tuple[int, str]:
    """Build `context` as `tag` on `engine` (see the module docstring); the log goes to `log`."""
    containerfile = containerfile_of(context, containerfile)
    args = dict(build_args or {})
    if ca_bundle is not None:
        args.setdefault("PIP_CERT", CA_SECRET_PATH)
    if engine.kind == "docker" and needs_buildkit(containerfile.read_text(errors="replace")):
        return _buildkit_cli(engine, context, tag, log, containerfile, args, labels or {}, ca_bundle, progress, timeout_s)
    return _api(engine, context, tag, log, containerfile, args, labels or {}, ca_bundle, progress, timeout_s)


def _api(engine: Any, context: Path, tag: str, log: IO[str], containerfile: Path, args: dict[str, str],
         labels: dict[str, str], ca_bundle: Path | None, progress: Progress | None, timeout_s: float) -> tuple[int, str]:
    lines: list[str] = []

    def say(text: str) -> None:
        log.write(text)
        log.flush()
        lines.append(text)
        if progress and text.startswith(("STEP ", "Step ")):
            progress(text.strip()[:120])

    secret_name = f".aidb-gate-secret-{uuid.uuid4().hex}"
    # Docker's legacy builder has no secrets; a Containerfile that needs one took the BuildKit path.
    extra = {secret_name: ca_bundle} if ca_bundle is not None and engine.kind == "podman" else None
    params: dict[str, Any] = {"t": tag, "rm": "1", "forcerm": "1", "buildargs": json.dumps(args),
                              "labels": json.dumps(labels)}
    if extra:
        params["secrets"] = json.dumps([f"id={CA_SECRET},src={secret_name}"])
    say(f"$ build {context} as {tag} through the {engine.kind} API at {engine.docker_host}\n")
    begin = time.monotonic()
    client = engine.docker_client(timeout=max(1, int(timeout_s)))
    code = 1
    try:
        with context_archive(context, containerfile, extra) as (archive, dockerfile):
            params["dockerfile"] = dockerfile
            # docker-py's build() has no `secrets` parameter (Podman's API has one), so the request is
            # made with its own low-level helpers: same URL, auth and version pinning as build().
            api = client.api
            resp = api._post(api._url("/build"), data=archive, params=params, stream=True, timeout=timeout_s,
                             headers={"Content-Type": "application/x-tar"})
            api._raise_for_status(resp)
            try:
                for chunk in api._stream_helper(resp, decode=True):
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("stream"):
                        say(str(chunk["stream"]))
                    if chunk.get("error"):
                        say(f"error: {chunk['error']}\n")
                        code = 1
                        break
                    if (chunk.get("aux") or {}).get("ID"):
                        code = 0
                    if time.monotonic() - begin > timeout_s:
                        raise TimeoutError
                else:
                    # Podman ends a good build with its id on a line of its own, Docker with aux.ID.
                    code = 0 if code == 0 or _built(client, tag) else 1
            finally:
                resp.close()
    except TimeoutError:
        say(f"aidb-gate: the build was still running after {timeout_s:g} s and was stopped (build_timeout_s)\n")
        code = 124
    except Exception as err:
        if time.monotonic() - begin >= timeout_s:
            say(f"aidb-gate: the build was still running after {timeout_s:g} s and was stopped (build_timeout_s)\n")
            code = 124
        else:
            say(f"error: the {engine.kind} engine refused the build: {err}\n")
            code = 1
    finally:
        client.close()
    return code, "".join(lines)


def _built(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except Exception:
        return False


def buildkit_cli() -> list[str] | None:
    """A `docker` command line that builds with BuildKit: `docker buildx build --load` where the
    buildx plugin works, else a client older than 23 (`DOCKER_BUILDKIT=1 docker build`)."""
    seen: set[str] = set()
    for candidate in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if not candidate or candidate in seen or not os.access(candidate, os.X_OK):
            continue
        seen.add(candidate)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([candidate, "buildx", "version"], capture_output=True, timeout=30).returncode == 0:
                return [candidate, "buildx", "build", "--load"]
            version = subprocess.run([candidate, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                     text=True, timeout=30).stdout.strip()
            if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
                return [candidate, "build"]
    return None


def _buildkit_cli(engine: Any, context: Path, tag: str, log: IO[str], containerfile: Path, args: dict[str, str],
                  labels: dict[str, str], ca_bundle: Path | None, progress: Progress | None,
                  timeout_s: float) -> tuple[int, str]:
    base = buildkit_cli()
    if base is None:
        raise ImageError(f"{containerfile} uses `RUN --mount`, which Docker builds only with BuildKit, and BuildKit's "
                         "secrets need its session, which no Python client holds: install a `docker` CLI with the buildx "
                         "plugin (Debian/Ubuntu: docker-buildx or docker-buildx-plugin; or docker.io 20.10, which has "
                         "BuildKit built in). The gate points it at the same engine through DOCKER_HOST.")
    cmd = [*base, "--progress=plain", "-t", tag, "-f", str(containerfile)]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    if ca_bundle is not None:
        cmd += ["--secret", f"id={CA_SECRET},src={ca_bundle}"]
    cmd.append(str(context))
    env = {**os.environ, "DOCKER_HOST": engine.docker_host, "DOCKER_BUILDKIT": "1"}
    env.pop("DOCKER_CONTEXT", None)  # a context would point the CLI at another engine than the gate's
    lines: list[str] = []
    log.write("$ " + " ".join(cmd) + f"   (DOCKER_HOST={engine.docker_host})\n")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if progress and re.match(r"#\d+ \[", line):
                progress(line.strip()[:120])
        code = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        said = f"aidb-gate: the build was still running after {timeout_s:g} s and was stopped (build_timeout_s)\n"
        log.write(said)
        lines.append(said)
        code = code or 124
    return code, "".join(lines)


def import_rootfs(engine: Any, rootfs_tar: Path, ref: str, changes: list[str], timeout_s: float = 1800.0) -> None:
    """Import a root file system archive as image `ref` through the engine's API (`ref` carries
    its tag: Podman 4.3 ignores a separate tag parameter), streamed from disk."""
    client = engine.docker_client(timeout=max(1, int(timeout_s)))
    try:
        client.api.import_image_from_file(str(rootfs_tar), repository=ref, changes=changes)
    finally:
        client.close()

