"""config: precedence, validation and error messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aidb_gate.config import DURATIONS, load_config
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


# ---- every bad input is one paragraph that says what to fix, never a traceback --------------------


def refused(tmp_path: Path, environ: dict[str, str] | None = None, **kwargs) -> str:
    """The ConfigError's message, checked to be one printable paragraph."""
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, environ=environ or {}, **kwargs)
    message = str(err.value)
    assert message.strip() and "\n" not in message and message.isprintable(), message
    return message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("pyproject.toml", "tool = 5\n", "`tool` must be a table, got 5"),
        ("gate.toml", "tool = 5\n", "`tool` must be a table, got 5"),
        ("pyproject.toml", "[tool]\naidb-gate = 5\n", "`tool.aidb-gate` must be a table, got 5"),
        ("gate.toml", "[tool]\naidb-gate = [1]\n", "`tool.aidb-gate` must be a table, got [1]"),
        ("pyproject.toml", '[tool.aidb-gate.env]\nX = "{"\n', "`env.X` = '{' is not a template the gate can fill"),
        ("pyproject.toml", '[tool.aidb-gate.env]\nX = "{}"\n', "`env.X` uses the placeholder {}"),
        ("pyproject.toml", '[tool.aidb-gate.env]\nX = "{postgres.port:d}"\n', "placeholder {postgres.port:d}"),
        ("pyproject.toml", '[tool.aidb-gate.env]\nX = "{api_key!x}"\n', "placeholder {api_key!x}"),
        ("pyproject.toml", "[tool.aidb-gate.env]\nX = 5\n", '`env.X` must be a string, got 5 (int); variables and '
                                                             'build arguments are text. Quote it: `X = "5"`'),
        ("pyproject.toml", "[tool.aidb-gate.build_args]\nV = 3.10\n", "`build_args.V` must be a string"),
        ("pyproject.toml", '[tool.aidb-gate.env]\n"A=B" = "x"\n', '`env."A=B"` cannot be the name of a variable'),
        ("pyproject.toml", "[tool.aidb-gate]\ndata = 5\n", "`data` must be a table of settings, got 5"),
        ("pyproject.toml", "[tool.aidb-gate.dependencies]\nmine = 5\n", "`dependencies.mine` must be a table"),
        ("pyproject.toml", "[tool.aidb-gate.data]\ncount = -5\n", "`data.count` is the number of documents"),
        ("pyproject.toml", "[tool.aidb-gate.data]\ncount = 0\n", "To write none, set `data.documents = false`"),
        ("pyproject.toml", "[tool.aidb-gate.data]\nrows_per_table = 100001\n", "`data.rows_per_table` is"),
        ("pyproject.toml", "[tool.aidb-gate.dependencies.redis]\nport = 0\n", "`dependencies.redis.port` must be 1-65535"),
        ("pyproject.toml", '[tool.aidb-gate]\nimage = "a\\nb"\n', "`image` holds the character U+000A at position 1"),
        ("pyproject.toml", '[tool.aidb-gate.auth]\nheader = "X Key"\n', "`auth.header` is sent as an HTTP header name"),
        ("pyproject.toml", '[tool.aidb-gate.data]\nsearch_path = "search"\n', "`data.search_path` must be a path"),
        ("pyproject.toml", "[tool.aidb-gate.auth.body]\nwhen = 2024-01-31\n", "`auth.body.when` is a date"),
        ("pyproject.toml", "[tool.aidb-gate.auth.body]\nscore = nan\n", "`auth.body.score` is nan"),
        ("pyproject.toml", '[tool.aidb-gate]\nreports_dir = "~nosuchuser-aidb/r"\n', "`reports_dir` is '~nosuchuser"),
    ],
)
def test_each_bad_file_value_is_one_paragraph(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert expected in refused(tmp_path)


@pytest.mark.parametrize("name", ["gate.toml", "pyproject.toml"])
def test_a_file_that_is_not_utf8_is_named_with_the_line(tmp_path, name):
    (tmp_path / name).write_bytes(b'[tool.aidb-gate]\nimage = "caf\xe9"\n')
    message = refused(tmp_path)
    assert f"{tmp_path / name} is not UTF-8: byte 0xe9 on line 2" in message and "save it as UTF-8" in message


def test_a_utf8_byte_order_mark_is_no_error(tmp_path):
    (tmp_path / "gate.toml").write_bytes("\ufeffport = 9001\n".encode())
    assert load_config(tmp_path, environ={}).port == 9001


def test_a_config_variable_naming_a_folder_says_so(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    message = refused(tmp_path, {"AIDB_GATE_CONFIG": str(folder)})
    assert f"AIDB_GATE_CONFIG names {folder}, which is a folder" in message and str(folder / "gate.toml") in message
    assert "--gate-config names" in refused(tmp_path, config_file=folder)
    assert "does not exist" in refused(tmp_path, {"AIDB_GATE_CONFIG": str(tmp_path / "nope.toml")})


def test_a_named_pyproject_without_the_table_says_so(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert "has no [tool.aidb-gate] table" in refused(tmp_path, {"AIDB_GATE_CONFIG": "other/pyproject.toml"})


# ---- AIDB_GATE_* overrides ------------------------------------------------------------------------


def test_free_tables_keep_the_exact_key_and_the_exact_string(tmp_path):
    environ = {"AIDB_GATE_ENV__PORT": "8080", "AIDB_GATE_ENV__MyVar": "true", "AIDB_GATE_BUILD_ARGS__V": "0x10",
               "AIDB_GATE_ENV__QDRANT__SERVICE__API_KEY": "{qdrant.api_key}", "AIDB_GATE_COMPOSE_VARIABLES__n": "1e3",
               "AIDB_GATE_AUTH__BODY__Title": '"quoted"', "AIDB_GATE_IMAGE": '"localhost/x:1"'}
    cfg = load_config(tmp_path, environ=environ)
    assert cfg.env_templates["PORT"] == "8080" and cfg.env_templates["MyVar"] == "true"
    assert cfg.env_templates["QDRANT__SERVICE__API_KEY"] == "{qdrant.api_key}"
    assert cfg.build_args == {"V": "0x10"} and cfg.raw["compose_variables"] == {"n": "1e3"}
    assert cfg.auth["body"]["Title"] == '"quoted"' and cfg.image == '"localhost/x:1"'
    assert "myvar" not in cfg.env_templates and "port" not in cfg.env_templates


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AIDB_GATE_DATA": "1", "AIDB_GATE_DATA__COUNT": "2"}, "AIDB_GATE_DATA names the table `data`"),
        ({"AIDB_GATE_DATA__COUNT": "2", "AIDB_GATE_DATA": "1"}, "AIDB_GATE_DATA names the table `data`"),
        ({"AIDB_GATE_ENV": "x"}, "AIDB_GATE_ENV names the table `env`"),
        ({"AIDB_GATE_ENV__": "x"}, "AIDB_GATE_ENV__ names no key of `env`"),
        ({"AIDB_GATE_PORT": "0x10"}, "AIDB_GATE_PORT sets `port`, which must be a whole number in decimal digits"),
        ({"AIDB_GATE_PORT": "8091.0"}, "must be a whole number"),
        ({"AIDB_GATE_KEEP": "yes"}, "AIDB_GATE_KEEP sets `keep`, which must be true or false"),
        ({"AIDB_GATE_STARTUP_TIMEOUT_S": "nan"}, "must be a decimal number of seconds"),
        ({"AIDB_GATE_STARTUP_TIMEOUT_S": "1e999"}, "environment variable AIDB_GATE_STARTUP_TIMEOUT_S: "
                                                   "`startup_timeout_s` is inf"),
        ({"AIDB_GATE_FAULTS__ACTIONS": "[1]"}, "`faults.actions`, which must be a list of strings"),
        ({"AIDB_GATE_FAULTS__ACTIONS": "stop,nap"}, "`faults.actions` may hold stop, pause and kill"),
        ({"AIDB_GATE_PROT": "1"}, "AIDB_GATE_PROT is not a setting: the configuration has no key `prot`. "
                                  "Did you mean AIDB_GATE_PORT?"),
        ({"AIDB_GATE_DATA__CONT": "1"}, "Did you mean AIDB_GATE_DATA__COUNT?"),
        ({"AIDB_GATE_DATA____COUNT": "1"}, "AIDB_GATE_DATA____COUNT is not a setting"),
        ({"AIDB_GATE_PORT__X": "1"}, "`port` is a single value, not a table"),
        ({"AIDB_GATE_DEPENDENCIES__REDIS__PORT": "1", "AIDB_GATE_DEPENDENCIES__redis__PORT": "2"},
         "AIDB_GATE_DEPENDENCIES__REDIS__PORT and AIDB_GATE_DEPENDENCIES__redis__PORT both set "
         "`dependencies.redis.port`"),
        ({"AIDB_GATE_DATA__COUNT": "-5"}, "environment variable AIDB_GATE_DATA__COUNT: `data.count` is the number"),
        ({"AIDB_GATE_ENV__X": "a\0b"}, "environment variable AIDB_GATE_ENV__X: `env.X` holds a NUL character"),
        ({"AIDB_GATE_ENV__X": "caf\udce9"}, "`env.X` holds bytes that are not UTF-8"),  # os.environ's undecodable bytes
        ({"AIDB_GATE_ENV__X": "{postgres.hostname}"}, "environment variable AIDB_GATE_ENV__X: `env.X` uses the "
                                                       "placeholder {postgres.hostname}"),
    ],
)
def test_each_bad_variable_is_named(tmp_path, environ, expected):
    assert expected in refused(tmp_path, environ)


def test_typed_variables_parse_as_their_type(tmp_path):
    cfg = load_config(tmp_path, environ={"AIDB_GATE_KEEP": "1", "AIDB_GATE_REBUILD": "TRUE", "AIDB_GATE_PORT": "+9000",
                                         "AIDB_GATE_STARTUP_TIMEOUT_S": "2.5", "AIDB_GATE_FAULTS__ACTIONS": "stop, kill",
                                         "AIDB_GATE_IMPORTS__MODULES": '["server", "app"]',
                                         "AIDB_GATE_DEPENDENCIES__POSTGRES__CRITICAL": "false"})
    assert cfg.keep is True and cfg.rebuild is True and cfg.port == 9000 and cfg.startup_timeout_s == 2.5
    assert cfg.fault_actions == ("stop", "kill") and cfg.import_modules == ("server", "app")
    assert cfg.dependencies["postgres"].critical is False


def test_a_bad_value_from_the_environment_is_blamed_on_the_variable_not_the_file(tmp_path):
    write(tmp_path, "[tool.aidb-gate.faults]\nbudget_s = 5.0\n")
    message = refused(tmp_path, {"AIDB_GATE_FAULTS__BUDGET_S": "0"})
    assert message.startswith("environment variable AIDB_GATE_FAULTS__BUDGET_S: `faults.budget_s` must be greater "
                              "than 0, got 0")


@pytest.mark.parametrize("run_id", ["../../x", "a/b", "-x", ".hidden", "x" * 64, "a b", "ci\n1"])
def test_an_unsafe_run_id_is_refused(tmp_path, run_id):
    message = refused(tmp_path, {"AIDB_GATE_RUN_ID": run_id})
    assert message.startswith("AIDB_GATE_RUN_ID is ") and "1-63 letters, digits, '_', '.' or '-'" in message


@pytest.mark.parametrize("run_id", ["", "ci-1234", "corpus-compose-required-variable-3e2e15", "a.b_c", "x" * 63])
def test_a_plain_run_id_is_accepted(tmp_path, run_id):
    load_config(tmp_path, environ={"AIDB_GATE_RUN_ID": run_id})


# ---- durations, counts, reports_dir -----------------------------------------------------------


def test_every_duration_of_the_schema_is_checked():
    assert set(DURATIONS) == {("startup_timeout_s",), ("build_timeout_s",), ("response_budget_ms",), ("faults", "budget_s"),
                              ("backup", "command_timeout_s")}


@pytest.mark.parametrize("path", DURATIONS, ids=".".join)
@pytest.mark.parametrize(("value", "expected"), [
    ("nan", "is nan, but it is a deadline"), ("inf", "is inf, but it is a deadline"), ("-inf", "is -inf"),
    ("0", "must be greater than 0, got 0"), ("-1", "must be greater than 0, got -1"),
    ("1e300", "(one day) the gate allows any wait"), (str(10**30), "(one day) the gate allows any wait"),
])
def test_a_duration_is_finite_positive_and_at_most_a_day(tmp_path, path, value, expected):
    if path[-1].endswith("_ms") and not value.lstrip("-").isdigit():
        expected = "must be a whole number"  # milliseconds are whole: nan, inf and 1e300 are type errors
    header = "[tool.aidb-gate]" if len(path) == 1 else f"[tool.aidb-gate.{path[0]}]"
    write(tmp_path, f"{header}\n{path[-1]} = {value}\n")
    message = refused(tmp_path)
    assert f"`{'.'.join(path)}`" in message and expected in message


@pytest.mark.parametrize("where", ["/", "~", "file", "project"])
def test_a_dangerous_reports_dir_is_refused_with_the_rule(tmp_path, where):
    (tmp_path / "file").write_text("x")
    value = {"file": str(tmp_path / "file"), "project": "."}.get(where, where)
    write(tmp_path, f'[tool.aidb-gate]\nreports_dir = "{value}"\n')
    message = refused(tmp_path, {"HOME": str(Path.home())})
    assert {"/": "the filesystem root", "~": "your home folder", "file": "which is a file",
            "project": "which holds file, pyproject.toml - not reports, and no summary.json"}[where] in message, message
    assert "replaces the latest run's report and removes old run folders under it" in message


def test_a_folder_above_home_is_refused(tmp_path):
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    write(tmp_path, f'[tool.aidb-gate]\nreports_dir = "{home.parent}"\n')
    assert "a folder above your home folder" in refused(tmp_path, {"HOME": str(home)})


def test_an_earlier_reports_folder_or_an_empty_one_is_accepted(tmp_path):
    reports = tmp_path / "reports"
    (reports / "logs").mkdir(parents=True)
    (reports / "backup").mkdir()
    for name in (".gitkeep", "summary.json", "summary-gw0.tmp", "gate.html", "junit.xml", "notes.txt"):
        (reports / name).write_text("")
    assert load_config(tmp_path, environ={}).reports_dir == reports.resolve()
    (tmp_path / "empty").mkdir()
    assert load_config(tmp_path, {"reports_dir": "empty"}, environ={}).reports_dir == (tmp_path / "empty").resolve()


def test_a_reports_folder_with_a_logs_link_out_of_it_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "logs").symlink_to(elsewhere)
    assert "whose logs/ is a link out of it" in refused(tmp_path)
    (tmp_path / "reports" / "summary.json").write_text("{}")  # not even in an earlier run's folder
    assert "whose logs/ is a link out of it" in refused(tmp_path)


def test_an_earlier_runs_reports_folder_may_hold_other_things_too(tmp_path):
    reports = tmp_path / "reports"
    (reports / "bench-runs").mkdir(parents=True)
    (reports / "bench.md").write_text("")
    message = refused(tmp_path)
    assert "bench-runs" in message and "bench.md" in message and "no summary.json of an earlier run" in message
    (reports / "summary-gw0.json").write_text("{}")
    assert load_config(tmp_path, environ={}).reports_dir == reports.resolve()


def test_the_benchs_own_folder_does_not_block_a_first_gate_run(tmp_path):
    """`make bench` before any gate run writes reports/bench/ only, which the policy knows."""
    (tmp_path / "reports" / "bench" / "runs" / "warm-1").mkdir(parents=True)
    (tmp_path / "reports" / "bench" / "bench.md").write_text("")
    assert load_config(tmp_path, environ={}).reports_dir == (tmp_path / "reports").resolve()


# ---- exit code 4: the plugin turns a ConfigError into pytest's usage error ----------------------


@pytest.mark.parametrize(("files", "environ", "expected"), [
    ({"pyproject.toml": b"[tool]\naidb-gate = 5\n"}, {}, "`tool.aidb-gate` must be a table"),
    ({"gate.toml": b'image = "caf\xe9"\n'}, {}, "is not UTF-8"),
    ({"gate.toml": b"port = 1\n"}, {"AIDB_GATE_DATA": "1", "AIDB_GATE_DATA__COUNT": "2"}, "names the table `data`"),
    ({"gate.toml": b"port = 1\n"}, {"AIDB_GATE_RUN_ID": "../../x"}, "AIDB_GATE_RUN_ID is '../../x'"),
    ({"gate.toml": b"startup_timeout_s = nan\n"}, {}, "`startup_timeout_s` is nan"),
])
def test_a_configuration_error_ends_the_run_with_exit_code_4(pytester, monkeypatch, files, environ, expected):
    for key in [k for k in os.environ if k.startswith(("AIDB_GATE_", "PYTEST_XDIST_"))]:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/aidb-gate-config.sock")  # never reached
    for name, data in files.items():
        (pytester.path / name).write_bytes(data)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert expected in output and "Traceback" not in output, output


def test_file_placeholders_name_a_path_and_hand_over_the_secret(tmp_path):
    write(tmp_path, '[tool.aidb-gate.env]\nPG_FILE = "{postgres.password_file}"\nKEY_FILE = "{api_key_file}"\n'
                    'Q_FILE = "{qdrant.api_key_file}"\nPLAIN = "{postgres.host}"\n')
    cfg = load_config(tmp_path, environ={})
    endpoints = {"postgres": {"host": "postgres", "port": "5432", "db": "mcp", "user": "mcp", "password": "pw",
                              "critical": "true"}}
    env = cfg.render_env(endpoints, "key")
    # Q_FILE names the disabled-here qdrant: left out, and so is its file.
    assert env["PG_FILE"] == "/run/secrets/aidb-gate-postgres-password" and "Q_FILE" not in env
    assert env["KEY_FILE"] == "/run/secrets/aidb-gate-api-key" and env["PLAIN"] == "postgres"
    assert cfg.secret_files(endpoints, "key") == {"/run/secrets/aidb-gate-postgres-password": "pw",
                                                  "/run/secrets/aidb-gate-api-key": "key"}
    # The file's env table is the whole environment: no default AIDB_* variable carries the
    # secrets beside their files.
    assert set(env) == {"PG_FILE", "KEY_FILE", "PLAIN"}


def test_without_an_env_table_the_contract_templates_apply_and_variables_add_to_them(tmp_path):
    cfg = load_config(tmp_path, environ={"AIDB_GATE_ENV__EXTRA": "{postgres.db}"})
    assert cfg.env_templates["AIDB_POSTGRES_PASSWORD"] == "{postgres.password}"
    assert cfg.env_templates["EXTRA"] == "{postgres.db}"
