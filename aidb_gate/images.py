"""images: provision every image a run needs - local, else pulled, else built from a recipe.

Guarantees: a dependency's configured image is used when it is present locally or can be
pulled; otherwise the recipe under fixtures/images/ is built on a debootstrap base image. A
recipe that uses modules of the gate itself (`RECIPE_ADDITIONS`: the Qdrant-API recipe reads
snapshots with the gate's strict tar reader) is built from a temporary copy of its folder with
those module files added, so the repository holds one copy of each. A recipe image is tagged
with the hash of its build context - the recipe's files, the added modules, and its base image -
so it is rebuilt only when one of them changes, and two runs agree on the tag. The result says
which source was used, for the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aidb_gate.fixtures as fixtures
from aidb_gate.core.engine import Engine
from aidb_gate.core.text import clip
from aidb_gate.errors import ImageError

RECIPES: Path = fixtures.IMAGES
BASE_SCRIPT = RECIPES / "base" / "build-base.sh"
HASH_LABEL = "aidb-gate.recipe-hash"
IGNORED = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".venv"}
#: Files of the gate a recipe's build context receives beside its own files: {recipe: {name in
#: the context: the gate's file}}. The Containerfile COPYs them by that name.
RECIPE_ADDITIONS: dict[str, dict[str, Path]] = {
    "qdrant-api": {"archive.py": Path(__file__).resolve().parent / "backup" / "archive.py"},
}

Progress = Callable[[str], None]


@dataclass
class ImageInfo:
    """One provisioned image and how it came to be."""

    role: str
    ref: str
    source: str  # "local", "pulled", "recipe (cached)", "recipe (built)"
    image_id: str
    seconds: float = 0.0
    log_path: Path | None = None
    #: The image production names (the configured or compose one) when another stood in for it.
    wanted: str = ""

    @property
    def is_official(self) -> bool:
        return not self.source.startswith("recipe")


def tree_hash(folder: Path, extra: str = "", skip: tuple[Path, ...] = (), added: dict[str, Path] | None = None) -> str:
    """sha256 over the relative paths and bytes of every file under folder (stable order), leaving
    out the folders in `skip` (the gate's own reports, when they live inside a build context).
    `added` ({relative name: file}) counts as if those files were in the folder under those
    names, so the hash of a recipe with its additions equals that of the staged context."""
    h = hashlib.sha256(extra.encode())
    skipped = {s.resolve() for s in skip}
    files = {p.relative_to(folder): p for p in folder.rglob("*") if p.is_file() and not IGNORED & set(p.parts)
             and not skipped & set(p.resolve().parents)}
    files.update({Path(name): source for name, source in (added or {}).items()})
    for rel in sorted(files):
        h.update(str(rel).encode() + b"\0")
        h.update(files[rel].read_bytes() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def recipe_context(folder: Path, added: dict[str, Path] | None = None) -> Iterator[Path]:
    """The folder to build a recipe from: `folder` itself when nothing is added, else a temporary
    copy of it (IGNORED folders left out, as `tree_hash` leaves them out) with the `added` files
    ({name: the gate's file}) copied in under their names; the copy is removed afterwards."""
    if not added:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"aidb-gate-recipe-{folder.name}-") as tmp:
        context = Path(tmp) / folder.name
        shutil.copytree(folder, context, ignore=shutil.ignore_patterns(*IGNORED))
        for name, source in added.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, context / name)
        yield context


def image_id(engine: Engine, ref: str) -> str | None:
    try:
        return engine.shared.images.get(ref).id
    except Exception:
        return None


def try_pull(engine: Engine, ref: str) -> tuple[str | None, str]:
    """(image id, "") after a successful pull, else (None, why)."""
    try:
        return engine.shared.images.pull(ref).id, ""
    except Exception as err:
        return None, last_line(err, 300)


def last_line(err: Exception, limit: int) -> str:
    """The engine's own words for a failure: the last line of its message (or the error's type)."""
    text = str(err).strip()
    return text.splitlines()[-1][:limit] if text else type(err).__name__


#: Seconds a build may run (`build_timeout_s` for the target's build).
BUILD_TIMEOUT_S = 3600.0


def run_build(
    engine: Engine,
    context: Path,
    tag: str,
    log_path: Path,
    *,
    containerfile: Path | None = None,
    build_args: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    ca_bundle: Path | None = None,
    progress: Progress | None = None,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> tuple[int, str]:
    """Build as production would, through the engine the gate chose; returns (exit code, log text).

    The build goes through the engine's API (core/imagebuild.py): a remote engine and a shared
    socket build the same as a local one, with no CLI. The host's CA bundle reaches RUN steps as
    the build secret `aidb-gate-ca` (`RUN --mount=type=secret,id=aidb-gate-ca`, at
    /run/secrets/aidb-gate-ca, with PIP_CERT naming it), never in a layer."""
    from aidb_gate.core import imagebuild

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        return imagebuild.build(engine, context, tag, log, containerfile=containerfile, build_args=build_args,
                                labels=labels, ca_bundle=ca_bundle, progress=progress, timeout_s=timeout_s)


def ensure_base(engine: Engine, base_ref: str, log_dir: Path, progress: Progress | None = None) -> ImageInfo:
    """The debootstrap base image, built only when missing or when its recipe changed."""
    digest = tree_hash(BASE_SCRIPT.parent)[:12]
    tag = f"{base_ref.rsplit(':', 1)[0]}:r-{digest}"
    found = image_id(engine, tag)
    if found:
        _alias(engine, tag, base_ref)
        return ImageInfo("base", tag, "recipe (cached)", found)
    if not (shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists()):
        raise ImageError(
            f"The base image {base_ref} must be built here (a dependency's official image could not be pulled, so its "
            "local recipe is used), and that needs debootstrap, which is not installed. Install it (`sudo apt-get "
            "install -y debootstrap`; in a checkout of aidb-gate `make gate` does it), or configure dependency images "
            "you can pull (`dependencies.<name>.image`)."
        )
    if progress:
        progress(f"building base image {tag} with debootstrap (about a minute, once)")
    start = time.monotonic()
    log_path = log_dir / "build-base.log"
    with tempfile.TemporaryDirectory(prefix="aidb-gate-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        with log_path.open("w") as log:
            proc = subprocess.run(["bash", str(BASE_SCRIPT), str(rootfs)], stdout=log, stderr=subprocess.STDOUT,
                                  check=False)
        if proc.returncode != 0:
            tail = clip(log_path.read_text(errors="replace"), 1500, tail=True)
            raise ImageError(
                f"Building the base image {tag} failed (exit {proc.returncode}). Last lines of {log_path}:\n{tail}\n"
                "debootstrap needs root and a reachable Debian mirror."
            )
        from aidb_gate.core.imagebuild import import_rootfs

        # Through the API, so the base lands in the engine the gate uses (Docker, a remote one), not in
        # whatever local storage a CLI would reach.
        import_rootfs(engine, rootfs, tag, [f"LABEL {HASH_LABEL}={digest}", 'CMD ["/bin/bash"]',
                                           "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    _alias(engine, tag, base_ref)
    return ImageInfo("base", tag, "recipe (built)", image_id(engine, tag) or "?", time.monotonic() - start, log_path)


def _alias(engine: Engine, source: str, alias: str) -> None:
    """Tag `source` as `alias` too, through the engine's API."""
    if alias == source or image_id(engine, alias) == image_id(engine, source):
        return
    repository, _, tag = alias.rpartition(":")
    with contextlib.suppress(Exception):
        engine.shared.images.get(source).tag(repository, tag)


def provision(
    engine: Engine,
    role: str,
    configured: str,
    recipe: str,
    base: Callable[[], ImageInfo],
    log_dir: Path,
    ca_bundle: Path | None = None,
    progress: Progress | None = None,
) -> ImageInfo:
    """The image for one dependency: configured ref if local or pullable, else its recipe."""
    start = time.monotonic()
    found = image_id(engine, configured)
    if found:
        return ImageInfo(role, configured, "local", found)
    pulled, why = try_pull(engine, configured)
    if pulled:
        return ImageInfo(role, configured, "pulled", pulled, time.monotonic() - start)
    if not recipe:
        raise ImageError(
            f"The {role} image {configured} is not present locally and cannot be pulled ({why}), and no recipe "
            f"is configured to build it. Pull or load it (`podman pull {configured}`), or set "
            f"`dependencies.{role}.recipe`."
        )
    folder = RECIPES / recipe
    if not (folder / "Containerfile").is_file():
        raise ImageError(f"The recipe for {role} is missing: {folder}/Containerfile does not exist.")
    base_info = base()
    added = RECIPE_ADDITIONS.get(recipe)
    digest = tree_hash(folder, extra=base_info.image_id, added=added)[:12]
    tag = f"localhost/aidb-gate/{recipe}:r-{digest}"
    found = image_id(engine, tag)
    if found:
        return ImageInfo(role, tag, "recipe (cached)", found, wanted=configured)
    if progress:
        progress(f"{role}: {configured} cannot be pulled ({why}); building recipe {folder.name} as {tag}")
    log_path = log_dir / f"build-{role}.log"
    with recipe_context(folder, added) as context:
        code, text = run_build(
            engine, context, tag, log_path,
            build_args={"BASE_IMAGE": base_info.ref}, labels={HASH_LABEL: digest},
            ca_bundle=ca_bundle, progress=progress,
        )
    if code != 0:
        tail = "".join(text.splitlines(keepends=True)[-25:])
        raise ImageError(f"Building the {role} recipe image {tag} failed (exit {code}). Last lines of {log_path}:\n{tail}")
    return ImageInfo(role, tag, "recipe (built)", image_id(engine, tag) or "?", time.monotonic() - start, log_path,
                     wanted=configured)


#: Every target image the gate builds lives under this repository prefix (see build.target_tag).
TARGET_REPO_PREFIX = "localhost/aidb-gate/target-"
#: On every target image the gate builds: `project_id` of its build context. `clean --images`
#: selects by it alone, so an image of another project (even one whose folder has the same name)
#: or one the gate did not build is never a candidate.
PROJECT_LABEL = "aidb-gate.project"
#: On an announcement volume (labelled with its run, so the janitor removes it with the run): the
#: image ref that run chose. `clean --images` leaves an announced ref alone.
IMAGE_LABEL = "aidb-gate.image"
IMAGE_ROLE = "image"


def project_id(context: Path) -> str:
    """A short hash of the build context's absolute path: the same for every run of one project."""
    return hashlib.sha256(str(Path(context).resolve()).encode()).hexdigest()[:16]


def announce_image(engine: Engine, run: Any, ref: str) -> None:
    """Say in the engine, before the image is looked up or built, that this run uses ref: a volume
    labelled with the run and `aidb-gate.image=<ref>`, which lives as long as the run's other
    resources. Raises what the engine raises."""
    digest = hashlib.sha256(ref.encode()).hexdigest()[:8]
    name = f"aidb-gate-{run.id}-{IMAGE_ROLE}-{digest}-{uuid.uuid4().hex[:4]}"
    engine.shared.volumes.create(name=name, labels={**run.labels(IMAGE_ROLE), IMAGE_LABEL: ref})


def stale_target_tags(tags_with_times: list[tuple[str, float]], keep: int = 1) -> list[str]:
    """Of (tag, created) pairs, the target tags beyond the newest `keep` of each repository."""
    by_repo: dict[str, list[tuple[float, str]]] = {}
    for tag, created in tags_with_times:
        if tag.startswith(TARGET_REPO_PREFIX) and ":" in tag:
            by_repo.setdefault(tag.rsplit(":", 1)[0], []).append((created, tag))
    return [tag for entries in by_repo.values() for _, tag in sorted(entries, reverse=True)[keep:]]


def _bare_id(value: object) -> str:
    return str(value or "").removeprefix("sha256:")


def images_in_use(client) -> tuple[set[str], set[str]]:
    """(image ids, image refs) of every container in the engine, running or not, and the refs
    every run still present in the engine announced (`announce_image`)."""
    ids: set[str] = set()
    refs: set[str] = set()
    for c in client.containers.list(all=True, sparse=True):
        attrs = c.attrs or {}
        ids.add(_bare_id(attrs.get("ImageID")))
        refs.add(str(attrs.get("Image") or ""))
    for v in client.volumes.list(filters={"label": IMAGE_LABEL}):
        labels = (v.attrs or {}).get("Labels") or {}
        refs.add(str(labels.get(IMAGE_LABEL) or ""))
    ids.discard("")
    refs.discard("")
    return ids, refs


def prune_target_images(engine: Engine, project: str, keep: int = 1) -> tuple[list[str], list[str], list[str]]:
    """Untag this project's target images beyond the newest `keep` per target; (removed, problems,
    left alone with why).

    Only images labelled `aidb-gate.project=<project>` are candidates, never one a container uses
    (any container, any state) nor one a run still in the engine announced: the protections are read
    again just before each removal, and runs announce before they look an image up. Removal is never
    forced, so the engine itself refuses an image a container was made from meanwhile.
    """
    client = engine.shared
    images = client.images.list(filters={"label": f"{PROJECT_LABEL}={project}"})
    ids = {tag: _bare_id(img.id) for img in images for tag in img.tags}
    tagged = [(tag, created_seconds(img.attrs.get("Created"))) for img in images for tag in img.tags]
    removed, problems, left = [], [], []
    for tag in stale_target_tags(tagged, keep):
        used_ids, used_refs = images_in_use(client)
        if tag in used_refs or ids[tag] in used_ids:
            left.append(f"{tag}: a gate run or a container uses it")
            continue
        try:
            client.images.remove(tag, force=False)
            removed.append(tag)
        except Exception as err:
            problems.append(f"{tag}: {last_line(err, 200)}")
    return removed, problems, left


def created_seconds(value: object) -> float:
    """An image's creation time in seconds: a Unix time, or an RFC 3339 string (nanoseconds and all)."""
    if isinstance(value, int | float):
        return float(value)
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0
