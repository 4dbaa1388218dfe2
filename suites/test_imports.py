"""Stage imports: every module of the app imports inside the image, and its packages agree."""

from __future__ import annotations

import pytest

from aidb_gate.stages.boot import wiring_problems

# A service written in another language has nothing for a Python interpreter to import.
pytestmark = [pytest.mark.p1, pytest.mark.imports, pytest.mark.gate_requires("imports.enabled")]


def test_image_has_a_python_interpreter(gate_imports):
    assert not gate_imports.error, gate_imports.error
    assert gate_imports.interpreter, "no Python interpreter found in the image"


def test_every_module_imports(gate_imports, gate_config):
    assert not gate_imports.error, gate_imports.error
    failed = gate_imports.failed
    # A module that reads its settings at import fails here when the stack's wiring is wrong:
    # say so first, so the verdict blames the environment, not the code.
    wiring = wiring_problems(gate_config)
    assert not failed, (
        ("".join(f"{problem}; " for problem in wiring) + "so " if wiring else "")
        + f"{len(failed)} of {len(gate_imports.modules)} modules fail to import inside the image "
        f"({gate_imports.interpreter} {gate_imports.python_version}, WORKDIR {gate_imports.workdir}): "
        + "; ".join(f"`{m.module}`: {m.cause}" for m in failed)
        + "\n\n" + "\n\n".join(f"--- import {m.module} ---\n{m.traceback.strip()}" for m in failed)
    )


@pytest.mark.gate_requires("imports.pip_check")
def test_pip_check_is_clean(gate_imports):
    assert gate_imports.pip_check_ok, (
        f"`pip check` inside the image reports broken requirements:\n{gate_imports.pip_check}"
    )
