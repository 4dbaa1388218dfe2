"""A build through the engine's API makes the image `podman build --format docker` made: Docker's
format, which keeps HEALTHCHECK (an OCI image has no field for it, and the gate runs it)."""

from __future__ import annotations

import contextlib

import pytest

from aidb_gate.core import api, imagebuild

pytestmark = pytest.mark.integration


def test_a_build_through_the_api_keeps_the_docker_format_and_its_healthcheck(deps_session, tmp_path):
    engine = deps_session.engine
    base = deps_session.stack().of_kind("postgres").image.ref
    # The run id first, so no step comes from the build cache of an image made another way.
    (tmp_path / "Containerfile").write_text(f"FROM {base}\nLABEL aidb-gate.selftest={deps_session.run.id}\n"
                                            "HEALTHCHECK --interval=7s CMD true\n")
    tag = f"localhost/aidb-gate/selftest-format:{deps_session.run.id}"
    try:
        with (tmp_path / "build.log").open("w") as log:
            code, text = imagebuild.build(engine, tmp_path, tag, log, labels=deps_session.run.labels("selftest"))
        assert code == 0, text
        attrs = api.image_attrs(engine, tag)
        if engine.kind == "podman":
            assert attrs.get("ManifestType") == "application/vnd.docker.distribution.manifest.v2+json"
            assert (attrs.get("Healthcheck") or {}).get("Interval") == 7_000_000_000
    finally:
        with contextlib.suppress(Exception):
            engine.docker_client().images.remove(tag, force=True)
