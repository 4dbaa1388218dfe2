"""Stage build: the image builds as production builds it, and its metadata fits the contract."""

from __future__ import annotations

import warnings

import pytest

from aidb_gate.stages.build import build_hint, runs_as_root

pytestmark = [pytest.mark.p1, pytest.mark.build]


def test_image_builds(gate_build):
    if not gate_build.ok:
        log = gate_build.log_path.read_text(errors="replace") if gate_build.log_path else gate_build.log_tail
        hint = build_hint(log)
        pytest.fail(f"the image did not build: `podman build` exited {gate_build.exit_code}"
                    + (f"; likely cause: {hint}" if hint else "")
                    + f".\nLast lines of {gate_build.log_path}:\n{gate_build.log_tail}", pytrace=False)


def test_image_exposes_the_contract_port(gate_image, gate_build, gate_config):
    exposed = gate_build.metadata["exposed_ports"]
    assert f"{gate_config.port}/tcp" in exposed, (
        f"the image exposes {exposed or 'no port'}, not the contract's port {gate_config.port}: "
        f"add `EXPOSE {gate_config.port}` to the Containerfile (or set `port` to the port the service uses)"
    )


def test_image_has_a_command(gate_image, gate_build):
    meta = gate_build.metadata
    assert meta["entrypoint"] or meta["cmd"], (
        "the image has neither ENTRYPOINT nor CMD, so a container from it runs nothing: add a CMD"
    )


def test_image_user(gate_image, gate_build):
    user = gate_build.metadata["user"]
    if runs_as_root(user):
        warnings.warn(
            f"the image runs as root (USER is {user or 'unset'}); add a non-root USER to the Containerfile",
            UserWarning, stacklevel=1,
        )
    assert ":" not in user or all(user.split(":")), f"the image's USER {user!r} is malformed"
