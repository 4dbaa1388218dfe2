"""Builds through the engine's API: the context is what `docker build` would send (ignore files,
a Containerfile outside the context), a build secret travels beside it under a name of its own,
and the Containerfiles that need BuildKit are told apart from those the API builds."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from aidb_gate.core import imagebuild
from aidb_gate.errors import ImageError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "needs"), [
    ("FROM x\nRUN --mount=type=secret,id=aidb-gate-ca pip install y\n", True),
    ("FROM x\nrun --network=none --mount=type=cache,target=/root/.cache pip install y\n", True),
    ("FROM x\nRUN pip install y  # --mount=type=secret in a comment after the command\n", False),
    ("FROM x\nRUN echo --mount=not-a-flag\n", False),
    ("FROM x\nCOPY . /app\n", False),
])
def test_a_containerfile_needs_buildkit_only_for_run_mount_flags(text, needs):
    assert imagebuild.needs_buildkit(text) is needs


def test_the_recipes_and_the_reference_take_the_ca_bundle_as_a_build_secret():
    for path in (ROOT / "fixtures/aidb/Containerfile", ROOT / "fixtures/images/postgres/Containerfile",
                 ROOT / "fixtures/images/qdrant-api/Containerfile"):
        text = path.read_text()
        assert f"--mount=type=secret,id={imagebuild.CA_SECRET}" in text and "ARG PIP_CERT" in text, path
        assert "/etc/ssl/certs/ca-certificates.crt:ro" not in text, path


def test_containerfile_is_preferred_to_dockerfile_and_a_missing_one_is_one_paragraph(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert imagebuild.containerfile_of(tmp_path).name == "Dockerfile"
    (tmp_path / "Containerfile").write_text("FROM x\n")
    assert imagebuild.containerfile_of(tmp_path).name == "Containerfile"
    with pytest.raises(ImageError, match="has no Containerfile or Dockerfile"):
        imagebuild.containerfile_of(tmp_path / "empty-folder-that-is-not-there")


def _names(archive) -> dict[str, bytes]:
    with tarfile.open(fileobj=archive) as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else b"" for m in tar.getmembers()}


def test_the_context_honours_containerignore_first_and_carries_an_outside_containerfile(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.py").write_text("print(1)\n")
    (ctx / "secret.env").write_text("TOKEN=x\n")
    (ctx / "notes.txt").write_text("n\n")
    (ctx / ".dockerignore").write_text("notes.txt\n")
    (ctx / ".containerignore").write_text("# Podman reads this one first\nsecret.env\n")
    outside = tmp_path / "elsewhere" / "Dockerfile.prod"
    outside.parent.mkdir()
    outside.write_text("FROM x\nCOPY app /app\n")
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    with imagebuild.context_archive(ctx, outside, {".aidb-gate-secret-1": bundle}) as (archive, dockerfile):
        names = _names(archive)
    assert "app/main.py" in names and "notes.txt" in names and "secret.env" not in names
    assert names[dockerfile] == outside.read_bytes() and dockerfile != "Dockerfile.prod"
    assert names[".aidb-gate-secret-1"] == bundle.read_bytes()


def test_a_containerfile_inside_the_context_is_named_by_its_path_there(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Containerfile").write_text("FROM x\n")
    with imagebuild.context_archive(tmp_path, tmp_path / "docker" / "Containerfile") as (archive, dockerfile):
        assert dockerfile == "docker/Containerfile" and dockerfile in _names(archive)


def test_docker_builds_a_run_mount_containerfile_with_buildkit_through_the_same_engine(tmp_path, monkeypatch):
    """The CLI path is chosen for Docker + RUN --mount only, and it points the CLI at the gate's engine."""
    (tmp_path / "Containerfile").write_text("FROM x\nRUN --mount=type=secret,id=aidb-gate-ca true\n")
    seen = {}

    def fake_cli(engine, context, tag, log, containerfile, args, labels, ca_bundle, progress, timeout_s):
        seen.update(engine=engine.kind, args=args, ca=ca_bundle)
        return 0, ""

    monkeypatch.setattr(imagebuild, "_buildkit_cli", fake_cli)
    monkeypatch.setattr(imagebuild, "_api", lambda *a, **k: (_ for _ in ()).throw(AssertionError("API path taken")))
    docker = type("E", (), {"kind": "docker", "docker_host": "tcp://docker:2375"})()
    bundle = tmp_path / "ca.crt"
    bundle.write_text("x")
    with (tmp_path / "log").open("w") as log:
        assert imagebuild.build(docker, tmp_path, "t:1", log, ca_bundle=bundle) == (0, "")
    assert seen == {"engine": "docker", "args": {"PIP_CERT": imagebuild.CA_SECRET_PATH}, "ca": bundle}


def test_without_a_buildkit_cli_the_docker_path_is_one_paragraph(tmp_path, monkeypatch):
    monkeypatch.setattr(imagebuild, "buildkit_cli", lambda: None)
    (tmp_path / "Containerfile").write_text("FROM x\nRUN --mount=type=cache,target=/c true\n")
    docker = type("E", (), {"kind": "docker", "docker_host": "unix:///var/run/docker.sock"})()
    with (tmp_path / "log").open("w") as log, pytest.raises(ImageError, match="which Docker builds only with BuildKit"):
        imagebuild.build(docker, tmp_path, "t:1", log)
