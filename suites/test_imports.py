"""Stage imports: every module of the app imports inside the image, and its packages agree."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.p1, pytest.mark.imports]


def test_image_has_a_python_interpreter(import_report):
    assert not import_report.error, import_report.error
    assert import_report.interpreter, "no Python interpreter found in the image"


def test_every_module_imports(import_report):
    assert not import_report.error, import_report.error
    failed = import_report.failed
    assert not failed, (
        f"{len(failed)} of {len(import_report.modules)} modules fail to import inside the image "
        f"({import_report.interpreter} {import_report.python_version}, WORKDIR {import_report.workdir}): "
        + "; ".join(f"`{m.module}`: {m.cause}" for m in failed)
        + "\n\n" + "\n\n".join(f"--- import {m.module} ---\n{m.traceback.strip()}" for m in failed)
    )


def test_pip_check_is_clean(import_report, gate_config):
    if not gate_config.pip_check:
        pytest.skip("pip check is switched off in the configuration (imports.pip_check = false)")
    assert import_report.pip_check_ok, (
        f"`pip check` inside the image reports broken requirements:\n{import_report.pip_check}"
    )
