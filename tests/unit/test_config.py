"""config: precedence, validation and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidb_gate.config import load_config
from aidb_gate.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_defaults_describe_the_reference_aidb(tmp_path):
    cfg = load_config(tmp_path, environ={})
    assert cfg.port == 8091
    assert cfg.dependencies["postgres"].db == "mcp" and cfg.dependencies["postgres"].user == "mcp"
    assert cfg.dependencies["postgres"].critical and not cfg.dependencies["redis"].critical
    # The service being gated is the project the gate runs in, unless `target` says otherwise.
    assert cfg.target == tmp_path.resolve()


def test_file_then_options_then_environment(tmp_path):
    write(tmp_path, '[tool.aidb-gate]\nport = 9000\nstartup_timeout_s = 10\n')
    cfg = load_config(tmp_path, {"port": 9100}, environ={"AIDB_GATE_PORT": "9200"})
    assert cfg.port == 9200
    cfg = load_config(tmp_path, {"port": 9100}, environ={})
    assert cfg.port == 9100
    assert load_config(tmp_path, environ={}).startup_timeout_s == 10.0


def test_nested_environment_override(tmp_path):
    cfg = load_config(tmp_path, environ={"AIDB_GATE_DEPENDENCIES__REDIS__IMAGE": "redis:7.2"})
    assert cfg.dependencies["redis"].image == "redis:7.2"


def test_gate_toml_wins_over_pyproject(tmp_path):
    write(tmp_path, "[tool.aidb-gate]\nport = 9000\n")
    (tmp_path / "gate.toml").write_text("port = 9001\n")
    assert load_config(tmp_path, environ={}).port == 9001


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 1", "unknown key `prot`. Did you mean `port`?"),
        ('port = "eighty"', "`port` must be a whole number"),
        ("port = 70000", "`port` must be a TCP port"),
        ("startup_timeout_s = 0", "`startup_timeout_s` must be greater than 0"),
        ('[tool.aidb-gate.dependencies.postgres]\ncritical = "yes"', "`dependencies.postgres.critical` must be true or false"),
        ('[tool.aidb-gate.env]\nDB_HOST = "{postgres.hostname}"', "placeholder {postgres.hostname}"),
        ('ca_bundle = "/nonexistent/ca.pem"', "`ca_bundle` points at /nonexistent/ca.pem"),
        ('[tool.aidb-gate.health]\nlive = "health/live"', "must be a path starting with '/'"),
    ],
)
def test_bad_values_get_one_clear_message(tmp_path, text, expected):
    if not text.startswith("[tool"):
        text = "[tool.aidb-gate]\n" + text
    write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, environ={})
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_toml_names_the_file(tmp_path):
    write(tmp_path, "[tool.aidb-gate\nport = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path, environ={})


def test_env_templates_render_and_drop_disabled_dependencies(tmp_path):
    write(tmp_path, "[tool.aidb-gate.dependencies.qdrant]\nenabled = false\n")
    cfg = load_config(tmp_path, environ={})
    env = cfg.render_env({"postgres": {"host": "postgres", "port": "5432", "db": "mcp", "user": "mcp",
                                       "password": "pw", "critical": "true"},
                          "redis": {"host": "redis", "port": "6379", "password": "rp", "critical": "false"}}, "key")
    assert env["AIDB_POSTGRES_HOST"] == "postgres" and env["AIDB_POSTGRES_PASSWORD"] == "pw"
    assert env["AIDB_API_KEY"] == "key"
    assert "QDRANT_URL" not in env and "AIDB_QDRANT_CRITICAL" not in env


def test_a_prebuilt_image_needs_no_target(tmp_path):
    cfg = load_config(tmp_path, {"image": "localhost/x:1"}, environ={})
    assert cfg.target is None and cfg.image == "localhost/x:1"
