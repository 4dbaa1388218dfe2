"""Configuration paths the system cannot use: each is one paragraph and exit code 4, never a hang.

A reports folder or configuration file name too long for the system, a reports folder that cannot be
made, and a configuration file that is a FIFO, a folder, a link to /dev/zero or a link to nothing
(gate.toml, pyproject.toml, AIDB_GATE_CONFIG, --gate-config, the compose file and its .env) are each a
ConfigError - in the plugin, pytest's usage error (exit 4) - and never an OSError, an INTERNALERROR, a
configuration file silently skipped, a read that blocks on a FIFO, or one that never ends.

Every `load_config` case runs in a child process with a deadline and a memory limit, so a loader that
blocks on a FIFO or reads /dev/zero fails the test instead of hanging the suite or filling memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: A child that takes longer than this has hung (a load takes well under a second).
DEADLINE_S = 20
#: The child's address-space limit: far above what loading a configuration needs, far below /dev/zero.
MEMORY_LIMIT = 1 << 30

CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from aidb_gate.config import load_config
    from aidb_gate.errors import ConfigError
    root, options, environ, config_file = json.loads(sys.argv[1])
    try:
        load_config(Path(root), options, environ, Path(config_file) if config_file else None)
        print(json.dumps({"outcome": "loaded"}))
    except ConfigError as err:
        print(json.dumps({"outcome": "ConfigError", "message": str(err)}))
    except BaseException as err:
        print(json.dumps({"outcome": type(err).__name__, "message": str(err)[:500]}))
""")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def load_in_child(root: Path, options: dict | None = None, environ: dict | None = None,
                  config_file: Path | None = None) -> dict:
    """`load_config`'s outcome in a child process: {"outcome": "loaded" | "ConfigError" | an exception's
    name, "message": ...}; "hung" when it did not finish within DEADLINE_S."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "PYTHONPATH")}
    arg = json.dumps([str(root), options or {}, environ or {}, str(config_file) if config_file else None])
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, timeout=DEADLINE_S,
                              env=env, preexec_fn=_limit_memory, check=False)
    except subprocess.TimeoutExpired:
        return {"outcome": "hung", "message": f"load_config did not return within {DEADLINE_S} s"}
    if not proc.stdout.strip():
        return {"outcome": f"died ({proc.returncode})", "message": proc.stderr[-1000:]}
    return json.loads(proc.stdout.splitlines()[-1])


def refused(result: dict) -> str:
    """The ConfigError's message, checked to be one paragraph."""
    assert result["outcome"] == "ConfigError", result
    message = result["message"]
    assert "\n" not in message and "Traceback" not in message, message
    return message


def make(path: Path, kind: str) -> None:
    """Put a `kind` at path: a FIFO, a folder, a link to /dev/zero, or a link to nothing."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(path.parent / "nothing-here")
    else:
        raise AssertionError(kind)


WORDS = {"fifo": "FIFO", "folder": "folder", "dev-zero": "character device", "dangling": "link to"}
KINDS = list(WORDS)
COMPOSE = "services:\n  app:\n    image: docker.io/library/busybox:1\n"


def case(tmp_path: Path, where: str, kind: str) -> tuple[dict, str]:
    """Set up the file `where` as a `kind` and load; returns (outcome, the file's name)."""
    root = tmp_path / "project"
    root.mkdir()
    if where in ("gate.toml", "pyproject.toml"):
        make(root / where, kind)
        return load_in_child(root), where
    if where == "AIDB_GATE_CONFIG":
        make(tmp_path / "chosen.toml", kind)
        return load_in_child(root, environ={"AIDB_GATE_CONFIG": str(tmp_path / "chosen.toml")}), "chosen.toml"
    if where == "--gate-config":
        make(tmp_path / "chosen.toml", kind)
        return load_in_child(root, config_file=tmp_path / "chosen.toml"), "chosen.toml"
    options = {"compose": str(root / "compose.yml"), "service": "app"}
    if where == "compose":
        make(root / "compose.yml", kind)
        return load_in_child(root, options), "compose.yml"
    assert where == "compose .env"
    (root / "compose.yml").write_text(COMPOSE)
    make(root / ".env", kind)
    return load_in_child(root, options), ".env"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["gate.toml", "pyproject.toml", "AIDB_GATE_CONFIG", "--gate-config", "compose",
                                   "compose .env"])
def test_a_configuration_file_that_is_no_regular_file_is_one_paragraph_never_skipped_or_a_hang(tmp_path, where, kind):
    result, name = case(tmp_path, where, kind)
    message = refused(result)
    assert name in message, message
    if where.startswith("compose") and kind == "dangling":
        assert "does not exist" in message, message
    elif where in ("AIDB_GATE_CONFIG", "--gate-config") and kind == "dangling":
        assert "link to nothing" in message, message
    else:
        assert WORDS[kind] in message, message


def test_a_huge_sparse_gate_toml_is_refused_without_reading_it(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    with open(root / "gate.toml", "wb") as fh:
        fh.truncate(10 * 1024**3)  # 10 GiB of holes: no disk used, but read_bytes() would try
    message = refused(load_in_child(root))
    assert "gate.toml" in message and "MiB" in message, message


TOO_LONG = "a" * 300


@pytest.mark.parametrize(("value", "expected"), [
    (TOO_LONG, "300 bytes long, and a file name may have at most 255"),
    ("/".join(["b" * 200] * 30), "4096-byte limit on a path"),
    ("pyproject.toml/reports", "pyproject.toml is a file, not a folder"),
], ids=["a-name-over-255-bytes", "a-path-over-4096-bytes", "under-a-file"])
def test_a_reports_dir_the_system_cannot_make_is_one_paragraph(tmp_path, value, expected):
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text(f'[tool.aidb-gate]\nreports_dir = "{value}"\n')
    message = refused(load_in_child(root))
    assert "`reports_dir`" in message and expected in message, message


@pytest.mark.parametrize("how", ["AIDB_GATE_CONFIG", "--gate-config"])
def test_a_configuration_file_name_too_long_for_the_system_is_one_paragraph(tmp_path, how):
    root = tmp_path / "project"
    root.mkdir()
    path = tmp_path / TOO_LONG
    result = (load_in_child(root, environ={"AIDB_GATE_CONFIG": str(path)}) if how == "AIDB_GATE_CONFIG"
              else load_in_child(root, config_file=path))
    message = refused(result)
    assert how in message and "File name too long" in message, message
    assert len(message) < 600, message  # the 300-byte name is shortened, not repeated whole


def test_a_ca_bundle_name_too_long_for_the_system_is_one_paragraph(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    message = refused(load_in_child(root, {"ca_bundle": str(tmp_path / TOO_LONG)}))
    assert "`ca_bundle`" in message and "File name too long" in message, message


# ---- the plugin: a real child pytest --------------------------------------------------------------


def gate_project(pytester: pytest.Pytester, config: str) -> None:
    target = Path(__file__).resolve().parents[2] / "fixtures" / "aidb"
    pytester.makepyprojecttoml(f'[tool.aidb-gate]\nsuites = false\ntarget = "{target}"\n{config}\n')
    pytester.makepyfile(test_gate="import pytest\n\npytestmark = pytest.mark.p1\n\ndef test_x():\n    pass\n")


def one_paragraph_usage_error(result: pytest.RunResult) -> str:
    out, err = result.stdout.str(), result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
    assert "INTERNALERROR" not in out + err and "Traceback" not in out + err, out + err
    lines = [line for line in (out + "\n" + err).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR: aidb-gate configuration:")]
    assert len(errors) == 1 and len(lines) == 1, lines
    return errors[0]


@pytest.mark.parametrize(("config", "environ", "expected"), [
    (f'reports_dir = "{TOO_LONG}"', {}, "a file name may have at most 255"),
    ('reports_dir = "pyproject.toml/reports"', {}, "is a file, not a folder"),
    ('reports_dir = "/proc/self/aidb-gate-reports"', {}, "cannot be made"),
    ('reports_dir = "reports"', {"AIDB_GATE_CONFIG": f"/tmp/{TOO_LONG}"}, "File name too long"),
], ids=["reports-dir-name-over-255-bytes", "reports-dir-under-a-file", "reports-dir-in-proc", "config-name-too-long"])
def test_the_plugin_exits_4_with_one_paragraph_for_an_unusable_path(pytester, config, environ, expected):
    gate_project(pytester, config)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in environ.items():
            mp.setenv(key, value)
        result = pytester.runpytest_subprocess("-p", "aidb_gate.plugins.gate", "-p", "no:cacheprovider", timeout=120)
    assert expected in one_paragraph_usage_error(result)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_the_plugin_exits_4_for_a_gate_toml_that_is_no_regular_file(pytester, kind):
    gate_project(pytester, 'reports_dir = "reports"')
    make(pytester.path / "gate.toml", kind)
    result = pytester.runpytest_subprocess("-p", "aidb_gate.plugins.gate", "-p", "no:cacheprovider", timeout=120)
    assert WORDS[kind] in one_paragraph_usage_error(result)
