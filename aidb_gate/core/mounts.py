"""mounts: the run's own copies of what a compose file mounts, and nothing of the user's.

Guarantees: a bind mount inside the compose project is mounted read-only from a per-run copy
(so the gate never writes into the user's tree), every named or outside volume is a fresh
volume labelled with the run (the janitor removes it), a tmpfs stays a tmpfs, every compose
secret is a per-run random file, mounted read-only at its target with its mode, and so is every
secret file a dependency plug-in asks for (`Offer.files`). The per-run
folder is private (0700) and removed by `close()`; the folder of a run that never reached
`close()` (killed) is removed with the run's containers by the janitor (`remove_run_folders`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aidb_gate.compose import Mount, Secret
from aidb_gate.core.run import Run

_MKDTEMP_SUFFIX = re.compile(r"[a-z0-9_]{8}")


def folder_prefix(run_id: str) -> str:
    """The name every per-run mount folder of run_id starts with, in the temporary folder."""
    return f"aidb-gate-{run_id}-"


def remove_run_folders(run_id: str) -> list[str]:
    """Remove this user's per-run mount folders of run_id (they hold the run's secret files);
    another user's, or a link, is left alone. Returns the paths removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(folder_prefix(run_id) + "*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        # The rest must be mkdtemp's own suffix: run "a" must not take run "a-b"'s folder.
        if not _MKDTEMP_SUFFIX.fullmatch(path.name[len(folder_prefix(run_id)):]):
            continue
        if path.is_symlink() or not path.is_dir() or st.st_uid != os.geteuid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


class MountPlan:
    """Makes the host side of one run's mounts and the docker-py kwargs that use them."""

    def __init__(self, run: Run, volume_factory: Callable[[str, dict[str, str]], Any]):
        self.run = run
        self._make_volume = volume_factory
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._count = 0
        #: {secret name: per-run value}, one value per compose secret for the whole run.
        self.secret_values: dict[str, str] = {}

    @property
    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix=folder_prefix(self.run.id)))
                os.chmod(self._folder, 0o700)
            return self._folder

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def secret_value(self, name: str) -> str:
        with self._lock:
            if name not in self.secret_values:
                self.secret_values[name] = self.run.secret()
            return self.secret_values[name]

    def kwargs(self, role: str, mounts: tuple[Mount, ...], secrets: tuple[Secret, ...] = (),
               owner: tuple[int, int] | None = None, files: dict[str, str] | None = None) -> dict[str, Any]:
        """testcontainers `volumes` ((host, container path, mode) tuples) and docker-py `tmpfs`.
        `files` ({container path: content}) are the gate's own secret files for a dependency
        (a password file, a config file with a key): read-only, so no secret needs a command
        line or an environment variable."""
        volumes: dict[str, dict[str, str]] = {}
        for i, (target, content) in enumerate(sorted((files or {}).items()), 1):
            path = self.folder / "files" / f"{role}-{i}-{Path(target).name}"
            path.parent.mkdir(exist_ok=True, mode=0o700)
            path.write_text(content)
            # Readable by whichever user the image's entrypoint switches to; the host side stays
            # private, inside the run's 0700 folder.
            os.chmod(path, 0o444)
            volumes[str(path)] = {"bind": target, "mode": "ro"}
        tmpfs: dict[str, str] = {}
        for mount in mounts:
            if mount.kind == "tmpfs":
                tmpfs[mount.target] = ""
            elif mount.kind == "copy":
                assert mount.source is not None
                copy = self.folder / f"{role}-{self._next()}" / mount.source.name
                copy.parent.mkdir(parents=True)
                if mount.source.is_dir():
                    shutil.copytree(mount.source, copy, symlinks=True)
                elif mount.source.exists():
                    shutil.copy2(mount.source, copy)
                else:  # compose creates a missing bind source as a folder
                    copy.mkdir()
                volumes[str(copy)] = {"bind": mount.target, "mode": "ro"}
            else:
                name = self.run.name(f"{role}-vol{self._next()}")
                self._make_volume(name, self.run.labels(role))
                volumes[name] = {"bind": mount.target, "mode": "rw"}
        for secret in secrets:
            path = self.folder / "secrets" / f"{role}-{secret.name}"
            path.parent.mkdir(exist_ok=True, mode=0o700)
            path.write_text(self.secret_value(secret.name))
            uid = int(secret.uid) if secret.uid.isdigit() else owner[0] if owner else None
            gid = int(secret.gid) if secret.gid.isdigit() else owner[1] if owner else None
            mode = secret.mode
            try:
                if uid is not None:
                    os.chown(path, uid, gid if gid is not None else -1)
            except OSError:
                mode |= 0o444  # rootless: the container's user cannot be made the owner
            os.chmod(path, mode)
            volumes[str(path)] = {"bind": secret.target, "mode": "ro"}
        out: dict[str, Any] = {}
        if volumes:
            out["volumes"] = [(host, spec["bind"], spec["mode"]) for host, spec in volumes.items()]
        if tmpfs:
            out["tmpfs"] = tmpfs
        return out

    def close(self) -> None:
        with self._lock:
            folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
