"""Stage build: the image builds as production builds it, and its metadata fits the contract."""

from __future__ import annotations

import warnings

import pytest

from aidb_gate.build import build_hint, runs_as_root

pytestmark = [pytest.mark.p1, pytest.mark.build]


def test_image_builds(target_build):
    if not target_build.ok:
        log = target_build.log_path.read_text(errors="replace") if target_build.log_path else target_build.log_tail
        hint = build_hint(log)
        pytest.fail(f"the image did not build: `podman build` exited {target_build.exit_code}"
                    + (f"; likely cause: {hint}" if hint else "")
                    + f".\nLast lines of {target_build.log_path}:\n{target_build.log_tail}", pytrace=False)


def test_image_exposes_the_contract_port(target_image, target_build, gate_config):
    exposed = target_build.metadata["exposed_ports"]
    assert f"{gate_config.port}/tcp" in exposed, (
        f"the image exposes {exposed or 'no port'}, not the contract's port {gate_config.port}: "
        f"add `EXPOSE {gate_config.port}` to the Containerfile (or set `port` to the port the service uses)"
    )


def test_image_has_a_command(target_image, target_build):
    meta = target_build.metadata
    assert meta["entrypoint"] or meta["cmd"], (
        "the image has neither ENTRYPOINT nor CMD, so a container from it runs nothing: add a CMD"
    )


def test_image_user(target_image, target_build):
    user = target_build.metadata["user"]
    if runs_as_root(user):
        warnings.warn(
            f"the image runs as root (USER is {user or 'unset'}); add a non-root USER to the Containerfile",
            UserWarning, stacklevel=1,
        )
    assert ":" not in user or all(user.split(":")), f"the image's USER {user!r} is malformed"
