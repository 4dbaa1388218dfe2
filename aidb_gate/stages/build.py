"""build: the target image, built exactly as production builds it, with its log kept.

Guarantees: the gate never copies files into a running container - it builds the image from
the target's context with `podman build` and keeps the log for the report. The tag carries a
hash of everything the build reads from the gate's side (the context's files, the Containerfile,
the build args, the base image); an image with that tag was built from exactly these inputs, so
it is reused instead of rebuilt (`rebuild = true` / `--gate-rebuild` builds anyway). A missing context or Containerfile is a
one-paragraph error before anything runs; a failed build returns the log's tail.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidb_gate.config import GateConfig
from aidb_gate.core import api
from aidb_gate.core.engine import Engine
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.errors import BuildError, ImageError
from aidb_gate.images import PROJECT_LABEL, Progress, announce_image, image_id, project_id, run_build, tree_hash, try_pull
from aidb_gate.pipeline import StageName
from aidb_gate.stack import BASE


@dataclass
class BuildResult:
    """The outcome of the build stage; `ok` is False for a failed build (never raised)."""

    ok: bool
    ref: str
    image_id: str = ""
    seconds: float = 0.0
    exit_code: int = 0
    log_path: Path | None = None
    log_tail: str = ""
    containerfile: Path | None = None
    prebuilt: bool = False
    #: True when an image built earlier from the same inputs was used (see target_tag).
    reused: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


def find_containerfile(context: Path, configured: str) -> Path:
    """The Containerfile (or Dockerfile) to build, or a BuildError that says what to add."""
    if not context.is_dir():
        raise BuildError(
            f"The target build context {context} does not exist or is not a directory. Pass the folder that "
            "holds your service's Containerfile with --gate-target DIR (or set `target` in [tool.aidb-gate])."
        )
    if configured:
        path = Path(configured) if Path(configured).is_absolute() else context / configured
        if not path.is_file():
            raise BuildError(f"The configured containerfile {path} does not exist. Fix `containerfile` or add the file.")
        return path
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise BuildError(
        f"No Containerfile or Dockerfile in {context}. The gate builds the image as production does, so the "
        "build context needs one at its root (or set `containerfile` to its path)."
    )


def declared_args(containerfile: Path) -> set[str]:
    return set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", containerfile.read_text(), re.M))


def target_tag(context: Path, containerfile: Path, build_args: dict[str, str],
               skip: tuple[Path, ...] = ()) -> str:
    """The target's tag: its context's name and a hash of every build input the gate controls."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", context.name.lower()).strip("-.") or "target"
    # The Containerfile may live outside the context, and the args (BASE_IMAGE among them) change
    # the image without changing a file.
    inputs = json.dumps({"containerfile": containerfile.read_text(errors="replace"), "args": sorted(build_args.items()),
                         "format": "docker"})
    return f"localhost/aidb-gate/target-{name}:c-{tree_hash(context, extra=inputs, skip=skip)[:12]}"


def build_target(engine: Engine, cfg: GateConfig, log_dir: Path, base_ref: str | None,
                 progress: Progress | None = None, announce: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or, with `image`, find) the target image. Raises only for input errors. The target tag
    is passed to announce before it is looked up, so `clean --images` never untags the image this
    run is about to reuse; the image carries `aidb-gate.project`, which `clean --images` selects by."""
    if cfg.image:
        return _prebuilt(engine, cfg.image)
    assert cfg.target is not None
    containerfile = find_containerfile(cfg.target, cfg.containerfile)
    args = dict(cfg.build_args)
    if base_ref and "BASE_IMAGE" in declared_args(containerfile) and "BASE_IMAGE" not in args:
        args["BASE_IMAGE"] = base_ref
    tag = target_tag(cfg.target, containerfile, args, skip=(cfg.reports_dir,))
    log_path = log_dir / "build-target.log"
    if announce is not None:
        announce(tag)
    existing = None if cfg.rebuild else image_id(engine, tag)
    if existing:
        note = (f"{tag} exists: it was built from this exact context, Containerfile and build args, so it is "
                "reused, not rebuilt. Pass --gate-rebuild (or set rebuild = true) to build it again.\n")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(note)
        if progress:
            progress(f"reusing {tag} (same build inputs)")
        return BuildResult(True, tag, existing, 0.0, 0, log_path, note, containerfile, reused=True,
                           metadata=image_metadata(engine, tag))
    if progress:
        progress(f"building {cfg.target} as {tag}")
    start = time.monotonic()
    code, text = run_build(engine, cfg.target, tag, log_path, containerfile=containerfile, build_args=args,
                           labels={"aidb-gate.target": str(cfg.target), PROJECT_LABEL: project_id(cfg.target)},
                           ca_bundle=cfg.ca_bundle, progress=progress, timeout_s=cfg.build_timeout_s)
    seconds = time.monotonic() - start
    tail = "".join(text.splitlines(keepends=True)[-30:])
    if code != 0:
        return BuildResult(False, tag, seconds=seconds, exit_code=code, log_path=log_path, log_tail=tail,
                           containerfile=containerfile)
    result = BuildResult(True, tag, image_id(engine, tag) or "", seconds, 0, log_path, tail, containerfile)
    result.metadata = image_metadata(engine, tag)
    return result


def _prebuilt(engine: Engine, ref: str) -> BuildResult:
    found = image_id(engine, ref)
    if not found:
        found, why = try_pull(engine, ref)
        if not found:
            raise ImageError(
                f"The image {ref} given with --gate-image (or `image`) is not present locally and cannot be "
                f"pulled ({why}). Build or load it first (`podman images` lists what is local), or drop "
                "--gate-image to build from --gate-target.",
                stage=StageName.BUILD,
            )
    return BuildResult(True, ref, found, prebuilt=True, metadata=image_metadata(engine, ref))


def image_metadata(engine: Engine, ref: str) -> dict[str, Any]:
    """The parts of the image config the gate judges: ports, user, workdir, entrypoint, env."""
    attrs = api.image_attrs(engine, ref)
    config = attrs.get("Config") or attrs.get("ContainerConfig") or {}
    return {
        "exposed_ports": sorted((config.get("ExposedPorts") or {}).keys()),
        "user": config.get("User") or "",
        "workdir": config.get("WorkingDir") or "",
        "entrypoint": config.get("Entrypoint") or [],
        "cmd": config.get("Cmd") or [],
        "env": [e.split("=", 1)[0] for e in (config.get("Env") or [])],
        "size_mb": round((attrs.get("Size") or 0) / 1e6, 1),
    }


#: Build-log signatures with a known cause and fix: (pattern, explanation).
BUILD_HINTS = [
    (re.compile(r"CERTIFICATE_VERIFY_FAILED|self[- ]signed certificate in certificate chain|unable to get local issuer"),
     "TLS verification failed inside the build: this host reaches package indexes through a TLS-intercepting proxy. "
     'Set `ca_bundle = "auto"` (or the path of your CA bundle) so RUN steps get the host\'s CA bundle as the '
     "build secret aidb-gate-ca, and give the pip step `ARG PIP_CERT` and `RUN --mount=type=secret,id=aidb-gate-ca`"),
    (re.compile(r"No matching distribution found for ([\w.\-\[\]=<>!~]+)"),
     "pip cannot find a requirement ({0}): check its name and pinned version"),
    (re.compile(r"(?:pull access denied|manifest unknown|name unknown|no such host|Error: creating build container).*", re.I),
     "the base image of the Containerfile cannot be found or pulled: build or load it first, or set a BASE_IMAGE "
     "build arg to an image that exists locally"),
]


def build_hint(log: str) -> str | None:
    """The likely cause of a failed build, from its log."""
    for pattern, hint in BUILD_HINTS:
        m = pattern.search(log)
        if m:
            return hint.format(*m.groups()) if m.groups() else hint
    return None


def runs_as_root(user: str) -> bool:
    """An empty user, root, or uid 0 (with or without a group) runs as root."""
    name = user.split(":", 1)[0].strip()
    return name in ("", "root", "0")


def _build(session: Pipeline) -> BuildResult:
    engine = session.connect()

    def announce(ref: str) -> None:
        try:
            announce_image(engine, session.run, ref)
        except Exception as err:  # the build goes on; only a concurrent `clean --images` could hurt it
            session.progress(f"could not announce {ref} in the engine ({type(err).__name__}: {err}); "
                             "`aidb-gate clean --images` run meanwhile might untag it")

    return build_target(engine, session.cfg, session.log_dir, session.base_ref(), session.progress, announce=announce)


#: The target image, built as production builds it (or the prebuilt one found). A failed build is
#: a result the build stage judges, not an error.
BUILD: Step[BuildResult] = Step("build", StageName.BUILD, _build, needs=(BASE,), passed=lambda r: r.ok)
