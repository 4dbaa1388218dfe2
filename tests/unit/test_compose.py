"""compose: reading a user's compose file into the stack the gate runs (pure Python, no engine)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from aidb_gate.compose import (
    ComposeError,
    ComposeStack,
    Healthcheck,
    Mount,
    load_compose,
    parse_bytes,
    parse_duration,
    qualified_image,
    repository,
)
from aidb_gate.compose.interpolation import Variables, interpolate
from aidb_gate.compose.values import healthcheck
from aidb_gate.config import load_config
from aidb_gate.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
HOME = "/home/tester"

# The shape real stacks have: a built app with env_file, secrets, host data under $AI_STACK_DATA
# (or the user's home), a project-local init script, a named volume and resource limits.
STACK = """\
name: ai-stack

services:
  app:
    build:
      context: ./app
      dockerfile: Containerfile.prod
      args:
        PYTHON_VERSION: "3.12"
        PIP_INDEX: ${PIP_INDEX:-https://pypi.org/simple}
    env_file:
      - app.env
      - path: local.env
        required: false
    environment:
      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app
      REDIS_URL: redis://:${REDIS_PASSWORD}@cache:6379/0
      QDRANT_URL: http://vectors:6333
      EMBEDDINGS_URL: http://embeddings:8081
      SMTP_HOST: mailer
      LOG_LEVEL: ${LOG_LEVEL:-info}
      SHARED: from-environment
    secrets:
      - api_key
      - source: tls_cert
        target: /etc/tls/cert.pem
        mode: 0400
        uid: "1000"
    volumes:
      - ${AI_STACK_DATA:-${HOME}/.local/share/ai-stack}/app:/data:Z
      - ./config:/etc/app:ro
      - app-cache:/cache
      - type: tmpfs
        target: /scratch
    tmpfs:
      - /tmp:size=64m
      - /run
    ports:
      - "127.0.0.1:8091:8091"
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
      vectors:
        condition: service_started
    healthcheck:
      test: ["CMD", "curl", "-fsS", "http://localhost:8091/health"]
      interval: 30s
      timeout: 10s
      retries: 3
      start_period: 1m30s
    security_opt:
      - no-new-privileges:true
    user: "1000:1000"
    read_only: true
    mem_limit: 3G
    cpus: '2.0'
    restart: unless-stopped

  db:
    image: pgvector/pgvector:0.8.1-pg18
    environment:
      - POSTGRES_USER=app
      - POSTGRES_PASSWORD=${DB_PASSWORD}
      - POSTGRES_DB
    volumes:
      - ${AI_STACK_DATA:-${HOME}/.local/share/ai-stack}/pg:/var/lib/postgresql:Z
      - ./init.sql:/docker-entrypoint-initdb.d/init.sql:ro
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app -d app"]
      interval: 10s
      timeout: 5s
      retries: 5
    deploy:
      resources:
        limits:
          memory: 512m
          cpus: '0.5'

  cache:
    image: redis:7
    command: redis-server --requirepass ${REDIS_PASSWORD} --appendonly yes
    healthcheck:
      test: redis-cli -a "$$REDIS_PASSWORD" ping
    environment:
      REDIS_PASSWORD: ${REDIS_PASSWORD}

  vectors:
    image: qdrant/qdrant:v1.16.2
    expose:
      - "6333"
    healthcheck:
      disable: true

  embeddings:
    image: ghcr.io/huggingface/text-embeddings-inference:cpu-1.8
    command: ["--port", "8081", "--model-id", "${MODEL:?set MODEL}"]

  mailer:
    image: docker.io/axllent/mailpit:v1.20

  worker:
    build: ./worker

volumes:
  app-cache:

secrets:
  api_key:
    file: ./secrets/api_key
  tls_cert:
    environment: TLS_CERT
"""


def counter():
    numbers = itertools.count(1)
    return lambda: f"secret{next(numbers)}"


def write(folder: Path, text: str, name: str = "compose.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(folder: Path, text: str, service: str = "app", configured=None, environ=None, make_secret=None) -> ComposeStack:
    return load_compose(write(folder, text), service, configured, {} if environ is None else environ,
                        make_secret or counter())


@pytest.fixture
def stack(tmp_path) -> ComposeStack:
    (tmp_path / "app.env").write_text("SHARED=from-env-file\nWORKERS=4\nGREETING=hello ${LOG_LEVEL:-info}\n")
    return load(tmp_path, STACK, environ={"HOME": HOME, "DB_PASSWORD": "the-real-one"})


def services(body: str) -> str:
    return "services:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def interp(text: str, environ=None, configured=None, dotenv=None, make_secret=None) -> str:
    return interpolate(text, Variables(configured or {}, environ or {}, dotenv or {}, make_secret or counter()), "here")


# -- interpolation ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$NAME", "value"),
        ("${NAME}", "value"),
        ("pre-$NAME-post", "pre-value-post"),
        ("${NAME}${NAME}", "valuevalue"),
        ("${NAME:-d}", "value"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET:-d}", "d"),
        ("${UNSET-d}", "d"),
        ("${UNSET:-}", ""),
        ("${NAME:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET+alt}", ""),
        ("${NAME:?needed}", "value"),
        ("${EMPTY?needed}", ""),
        ("${UNSET:-${NAME}/x}", "value/x"),
        ("${UNSET:-${ALSO_UNSET:-deep}/x}", "deep/x"),
        ("${NAME:+${NAME}-alt}", "value-alt"),
        ("$$NAME", "$NAME"),
        ("$${NAME}", "${NAME}"),
        ("cost: 5$", "cost: 5$"),
        ("$1 and $-", "$1 and $-"),
        ("${UNSET:-a}}", "a}"),
        ("no variables", "no variables"),
    ],
)
def test_interpolation_forms(text, expected):
    assert interp(text, environ={"NAME": "value", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${NEEDED:?set NEEDED please}", "${NEEDED?set NEEDED please}"])
def test_required_unset_variable_names_it_and_compose_variables(text):
    with pytest.raises(ComposeError, match="NEEDED") as err:
        interp(text)
    assert "set NEEDED please" in str(err.value)
    assert 'compose_variables.NEEDED = "..."' in str(err.value)
    assert str(err.value).startswith("here:")


def test_colon_question_mark_rejects_an_empty_value_and_plain_question_mark_does_not():
    with pytest.raises(ComposeError, match="`EMPTY` is required"):
        interp("${EMPTY:?x}", environ={"EMPTY": ""})
    assert interp("${EMPTY?x}", environ={"EMPTY": ""}) == ""


def test_required_without_message_says_required():
    with pytest.raises(ComposeError, match=r"`NEEDED` is required \(required\)"):
        interp("${NEEDED?}")


def test_required_variable_given_by_configuration_passes():
    assert interp("${NEEDED:?x}", configured={"NEEDED": "ok"}) == "ok"


@pytest.mark.parametrize("text", ["${NAME", "prefix ${NAME:-${OTHER}", "${"])
def test_unclosed_brace_is_an_error(text):
    with pytest.raises(ComposeError, match="without its closing"):
        interp(text)


@pytest.mark.parametrize("text", ["${}", "${1ABC}", "${NAME:x}", "${NAME x}", "${NAME.x}"])
def test_malformed_reference_is_an_error(text):
    with pytest.raises(ComposeError, match="not a variable reference"):
        interp(text, environ={"NAME": "v"})


@pytest.mark.parametrize("name", ["DB_PASSWORD", "POSTGRES_PASSWD", "QDRANT_API_KEY", "JWT_SECRET", "GITHUB_TOKEN",
                                  "db_password", "Api_Key", "secretThing"])
def test_secret_looking_names_get_a_random_value_even_when_the_environment_sets_them(name):
    variables = Variables({}, {name: "the-real-one"}, {name: "dotenv-one"}, counter())
    assert interpolate(f"${{{name}}}", variables, "here") == "secret1"
    assert variables.generated == {name: "secret1"}


def test_a_secret_gets_one_value_everywhere_in_one_load():
    variables = Variables({}, {}, {}, counter())
    text = interpolate("${DB_PASSWORD} $DB_PASSWORD ${DB_PASSWORD:-x} ${REDIS_PASSWORD}", variables, "here")
    assert text == "secret1 secret1 secret1 secret2"
    assert variables.generated == {"DB_PASSWORD": "secret1", "REDIS_PASSWORD": "secret2"}


def test_configured_value_wins_over_a_random_secret():
    variables = Variables({"DB_PASSWORD": "fixed"}, {"DB_PASSWORD": "env"}, {}, counter())
    assert interpolate("${DB_PASSWORD}", variables, "here") == "fixed"
    assert variables.generated == {}


def test_required_secret_is_never_an_error():
    assert interp("${API_TOKEN:?set API_TOKEN}") == "secret1"


def test_default_random_secret_is_hex_and_differs_per_variable():
    variables = Variables({}, {}, {})
    first, second = interpolate("${A_KEY}", variables, "w"), interpolate("${B_KEY}", variables, "w")
    assert first != second
    assert len(first) == 32 and all(c in "0123456789abcdef" for c in first)


def test_configured_then_environment_then_dotenv():
    assert interp("$X", configured={"X": "c"}, environ={"X": "e"}, dotenv={"X": "d"}) == "c"
    assert interp("$X", environ={"X": "e"}, dotenv={"X": "d"}) == "e"
    assert interp("$X", dotenv={"X": "d"}) == "d"


def test_configured_values_are_turned_into_text():
    assert interp("${PORT}", configured={"PORT": 8080}) == "8080"


def test_unset_plain_variables_become_empty_and_are_listed():
    variables = Variables({}, {}, {}, counter())
    assert interpolate("a${MISSING}b$ALSO_MISSING${DEFAULTED:-d}", variables, "here") == "abd"
    assert variables.unset == {"MISSING", "ALSO_MISSING"}


# -- load_compose: the file ---------------------------------------------------------------------

def test_compose_error_is_a_config_error():
    assert issubclass(ComposeError, ConfigError)


def test_missing_file(tmp_path):
    with pytest.raises(ComposeError, match=r"does not exist.*compose"):
        load_compose(tmp_path / "nope.yml", "app", environ={})


def test_invalid_yaml(tmp_path):
    with pytest.raises(ComposeError, match="not valid YAML"):
        load(tmp_path, "services:\n  app: [unclosed\n")


@pytest.mark.parametrize("text", ["", "version: '3'\n", "services:\n", "services: {}\n", "services: [app]\n", "- a\n"])
def test_no_services_map(tmp_path, text):
    with pytest.raises(ComposeError, match="no `services:` map"):
        load(tmp_path, text)


def test_no_service_named_lists_the_choices(tmp_path):
    with pytest.raises(ComposeError, match=r"say which service to gate.*one of app, db"):
        load(tmp_path, services("app: {image: a}\ndb: {image: b}\n"), service="")


def test_unknown_service_lists_the_choices(tmp_path):
    with pytest.raises(ComposeError, match="no service `web`; the file defines app, db"):
        load(tmp_path, services("app: {image: a}\ndb: {image: b}\n"), service="web")


def test_service_that_is_not_a_map(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app: must be a map"):
        load(tmp_path, services("app: just-a-string\n"))


def test_yaml_anchors_and_merge_keys_are_honoured(tmp_path):
    text = """\
    x-common: &common
      environment:
        SHARED: yes-please
    services:
      app:
        <<: *common
        image: app:1
    """
    assert load(tmp_path, text).target.environment == {"SHARED": "yes-please"}


def test_dotenv_in_the_project_folder_is_read(tmp_path):
    (tmp_path / ".env").write_text("TAG=1.2.3\nHOST_PORT=9000\n")
    stack = load(tmp_path, services("app: {image: 'app:${TAG}', environment: {PORT: '${HOST_PORT}'}}\n"))
    assert stack.target.image == "app:1.2.3"
    assert stack.target.environment == {"PORT": "9000"}


def test_environment_beats_dotenv(tmp_path):
    (tmp_path / ".env").write_text("TAG=from-dotenv\n")
    assert load(tmp_path, services("app: {image: 'app:${TAG}'}\n"), environ={"TAG": "from-env"}).target.image == "app:from-env"


def test_dotenv_secret_is_still_random(tmp_path):
    (tmp_path / ".env").write_text("DB_PASSWORD=hunter2\n")
    stack = load(tmp_path, services("app: {image: a, environment: {P: '${DB_PASSWORD}'}}\n"))
    assert stack.target.environment == {"P": "secret1"}
    assert stack.generated == {"DB_PASSWORD": "secret1"}


def test_unset_variables_are_reported_sorted(tmp_path):
    stack = load(tmp_path, services("app: {image: a, environment: {A: '${ZED}', B: '$ALPHA', C: '${SET}'}}\n"),
                 environ={"SET": "s"})
    assert stack.unset == ("ALPHA", "ZED")
    assert stack.target.environment == {"A": "", "B": "", "C": "s"}


def test_required_variable_error_names_the_file_service_and_key(tmp_path):
    with pytest.raises(ComposeError) as err:
        load(tmp_path, services("app: {image: a, environment: {DB_HOST: '${DB_HOST:?set DB_HOST}'}}\n"))
    assert "compose.yml: services.app.environment.DB_HOST" in str(err.value)
    assert "compose_variables.DB_HOST" in str(err.value)


def test_services_outside_the_closure_are_not_interpolated(stack):
    # `embeddings` needs ${MODEL:?...}, which nothing sets; it is not started, so it is no error.
    assert "embeddings" in stack.not_started


# -- load_compose: the closure ------------------------------------------------------------------

def test_closure_holds_only_what_the_target_depends_on(stack):
    assert stack.target.name == "app"
    assert list(stack.dependencies) == ["db", "cache", "vectors"]
    assert set(stack.not_started) == {"embeddings", "mailer", "worker"}


def test_not_started_lists_the_target_variables_that_name_them(stack):
    assert stack.not_started == {"embeddings": ["EMBEDDINGS_URL"], "mailer": ["SMTP_HOST"], "worker": []}


def test_not_started_matches_hosts_not_substrings(tmp_path):
    text = services("""\
    app:
      image: a
      environment:
        URL: postgres://u:p@search:5432/db
        NOT_IT: research-notes
        ALSO_NOT: searching
        PATH_ONE: http://search/api
    search: {image: b}
    """)
    assert load(tmp_path, text).not_started == {"search": ["PATH_ONE", "URL"]}


def test_order_is_dependencies_first(tmp_path):
    text = services("""\
    app: {image: a, depends_on: [api, cache]}
    api: {image: b, depends_on: {db: {condition: service_healthy}, cache: {condition: service_started}}}
    cache: {image: c}
    db: {image: d}
    unrelated: {image: e}
    """)
    stack = load(tmp_path, text)
    assert list(stack.dependencies) == ["db", "cache", "api"]
    assert stack.not_started == {"unrelated": []}


def test_depends_on_short_and_long_syntax(stack, tmp_path):
    assert stack.target.depends_on == {"db": "service_healthy", "cache": "service_started", "vectors": "service_started"}
    short = load(tmp_path, services("app: {image: a, depends_on: [db]}\ndb: {image: b}\n"))
    assert short.target.depends_on == {"db": "service_started"}


def test_depends_on_long_syntax_without_condition_means_started(tmp_path):
    text = services("app: {image: a, depends_on: {db: {restart: true}, job: null}}\ndb: {image: b}\njob: {image: c}\n")
    target = load(tmp_path, text).target
    assert target.depends_on == {"db": "service_started", "job": "service_started"}


def test_completed_successfully_is_a_condition(tmp_path):
    text = services("app: {image: a, depends_on: {migrate: {condition: service_completed_successfully}}}\nmigrate: {image: m}\n")
    assert load(tmp_path, text).target.depends_on == {"migrate": "service_completed_successfully"}


def test_cycle_is_an_error_that_shows_it(tmp_path):
    text = services("app: {image: a, depends_on: [api]}\napi: {image: b, depends_on: [db]}\ndb: {image: c, depends_on: [api]}\n")
    with pytest.raises(ComposeError, match="cycle: app -> api -> db -> api"):
        load(tmp_path, text)


def test_self_dependency_is_a_cycle(tmp_path):
    with pytest.raises(ComposeError, match="cycle: app -> app"):
        load(tmp_path, services("app: {image: a, depends_on: [app]}\n"))


def test_unknown_depends_on_name(tmp_path):
    with pytest.raises(ComposeError, match="`api` depends on `dbb`, which the file does not define"):
        load(tmp_path, services("app: {image: a, depends_on: [api]}\napi: {image: b, depends_on: [dbb]}\ndb: {image: c}\n"))


def test_bad_condition(tmp_path):
    with pytest.raises(ComposeError, match=r"services.app.depends_on.db: unknown condition 'service_ready'"):
        load(tmp_path, services("app: {image: a, depends_on: {db: {condition: service_ready}}}\ndb: {image: b}\n"))


def test_depends_on_of_the_wrong_type(tmp_path):
    with pytest.raises(ComposeError, match="depends_on: must be a list or a map"):
        load(tmp_path, services("app: {image: a, depends_on: db}\ndb: {image: b}\n"))


# -- the target's fields ------------------------------------------------------------------------

def test_build_section(stack, tmp_path):
    target = stack.target
    assert target.image == ""
    assert target.build_context == (tmp_path / "app").resolve()
    assert target.dockerfile == "Containerfile.prod"
    assert target.build_args == {"PYTHON_VERSION": "3.12", "PIP_INDEX": "https://pypi.org/simple"}


def test_build_as_a_string_and_list_args(tmp_path):
    text = services("""\
    app:
      build: ../src
    other:
      build:
        args: [VERSION=2, FROM_HOST]
    """)
    assert load(tmp_path, text).target.build_context == (tmp_path.parent / "src").resolve()
    other = load(tmp_path, text, service="other").target
    assert other.build_context == tmp_path.resolve()
    assert other.dockerfile == ""
    assert other.build_args == {"VERSION": "2"}


def test_build_of_the_wrong_type(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app\.build: must be a path or a map"):
        load(tmp_path, services("app: {build: 3}\n"))


def test_environment_overrides_env_file(stack):
    env = stack.target.environment
    assert env["SHARED"] == "from-environment"
    assert env["WORKERS"] == "4"
    assert env["LOG_LEVEL"] == "info"


def test_env_file_values_are_interpolated(stack):
    assert stack.target.environment["GREETING"] == "hello info"


def test_env_file_is_relative_to_the_compose_file(tmp_path):
    project = tmp_path / "deploy"
    (project / "env").mkdir(parents=True)
    (project / "env" / "app.env").write_text("A=1\n")
    path = write(project, services("app: {image: a, env_file: env/app.env}\n"))
    assert load_compose(path, "app", environ={}).target.environment == {"A": "1"}


def test_later_env_files_win(tmp_path):
    (tmp_path / "one.env").write_text("A=1\nB=1\n")
    (tmp_path / "two.env").write_text("B=2\n")
    assert load(tmp_path, services("app: {image: a, env_file: [one.env, two.env]}\n")).target.environment == {"A": "1", "B": "2"}


def test_missing_required_env_file(tmp_path):
    with pytest.raises(ComposeError, match=r"services.app.env_file: .*missing.env does not exist.*required: false"):
        load(tmp_path, services("app: {image: a, env_file: missing.env}\n"))


def test_missing_env_file_in_long_syntax_is_required_by_default(tmp_path):
    with pytest.raises(ComposeError, match=r"missing\.env does not exist"):
        load(tmp_path, services("app: {image: a, env_file: [{path: missing.env}]}\n"))


def test_missing_optional_env_file_is_skipped(tmp_path):
    text = services("app: {image: a, env_file: [{path: missing.env, required: false}], environment: [A=1]}\n")
    assert load(tmp_path, text).target.environment == {"A": "1"}


def test_environment_list_and_map_syntax(stack):
    db = stack.dependencies["db"]
    # `- POSTGRES_DB` with no value is left out, as compose does for an unset variable.
    assert db.environment == {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": stack.generated["DB_PASSWORD"]}


def test_environment_map_values_become_text_and_null_is_left_out(tmp_path):
    text = services("app: {image: a, environment: {DEBUG: true, QUIET: false, WORKERS: 4, RATIO: 0.5, UNSET: null}}\n")
    assert load(tmp_path, text).target.environment == {"DEBUG": "true", "QUIET": "false", "WORKERS": "4", "RATIO": "0.5"}


def test_environment_list_value_may_hold_equals_signs(tmp_path):
    text = services("app: {image: a, environment: ['DSN=host=db user=app', 'EMPTY=']}\n")
    assert load(tmp_path, text).target.environment == {"DSN": "host=db user=app", "EMPTY": ""}


def test_environment_of_the_wrong_type(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app\.environment: must be a map or a list"):
        load(tmp_path, services("app: {image: a, environment: A=1}\n"))


def test_secret_values_are_random_and_shared_between_services(stack):
    password = stack.generated["DB_PASSWORD"]
    assert password != "the-real-one"
    assert stack.target.environment["DATABASE_URL"] == f"postgres://app:{password}@db:5432/app"
    assert stack.dependencies["cache"].environment == {"REDIS_PASSWORD": stack.generated["REDIS_PASSWORD"]}
    assert set(stack.generated) == {"DB_PASSWORD", "REDIS_PASSWORD"}


def test_secrets_short_and_long_syntax(stack):
    short, long = stack.target.secrets
    assert (short.name, short.target, short.mode) == ("api_key", "/run/secrets/api_key", 0o444)
    assert (long.name, long.target, long.mode, long.uid) == ("tls_cert", "/etc/tls/cert.pem", 0o400, "1000")
    assert long.mode == 256


@pytest.mark.parametrize("mode", ["0400", "'0400'", "256"])
def test_secret_mode_as_octal_number_or_string(tmp_path, mode):
    text = f"""\
    services:
      app:
        image: a
        secrets: [{{source: key, target: key, mode: {mode}}}]
    secrets:
      key: {{file: ./key}}
    """
    (secret,) = load(tmp_path, text).target.secrets
    assert (secret.target, secret.mode) == ("/run/secrets/key", 0o400)


def test_long_secret_without_target_uses_its_name(tmp_path):
    text = "services:\n  app: {image: a, secrets: [{source: key}]}\nsecrets:\n  key: {file: ./key}\n"
    (secret,) = load(tmp_path, text).target.secrets
    assert (secret.target, secret.mode) == ("/run/secrets/key", 0o444)


def test_undefined_secret_is_an_error(tmp_path):
    with pytest.raises(ComposeError, match="`key` is not defined in the file's top-level `secrets:`"):
        load(tmp_path, services("app: {image: a, secrets: [key]}\n"))


def test_malformed_secret_entry(tmp_path):
    with pytest.raises(ComposeError, match="each entry is a name or a map with `source`"):
        load(tmp_path, "services:\n  app: {image: a, secrets: [{target: x}]}\nsecrets:\n  x: {file: ./x}\n")


def test_top_level_secrets_must_be_a_map(tmp_path):
    with pytest.raises(ComposeError, match="top-level `secrets` must be a map"):
        load(tmp_path, "services:\n  app: {image: a}\nsecrets: [key]\n")


def test_mounts_of_the_target(stack, tmp_path):
    data, config, cache, scratch = stack.target.mounts
    assert (data.kind, data.target, data.source) == ("volume", "/data", None)
    assert data.replaces.startswith(f"host path {HOME}/.local/share/ai-stack/app outside the compose project")
    assert config == Mount("copy", "/etc/app", source=(tmp_path / "config").resolve())
    assert (cache.kind, cache.target, cache.replaces) == ("volume", "/cache", "named volume app-cache: a fresh empty one")
    assert scratch == Mount("tmpfs", "/scratch")


def test_mounts_of_a_dependency(stack, tmp_path):
    pg, init = stack.dependencies["db"].mounts
    assert pg.kind == "volume" and pg.target == "/var/lib/postgresql" and pg.source is None
    assert f"host path {HOME}/.local/share/ai-stack/pg outside" in pg.replaces
    assert init == Mount("copy", "/docker-entrypoint-initdb.d/init.sql", source=(tmp_path / "init.sql").resolve())
    assert init.source.is_absolute()


def test_data_dir_inside_the_project_is_copied(tmp_path):
    text = services("app: {image: a, volumes: ['${AI_STACK_DATA:-${HOME}/.local/share/x}/pg:/var/lib/postgresql:Z']}\n")
    (mount,) = load(tmp_path, text, environ={"AI_STACK_DATA": str(tmp_path / "data")}).target.mounts
    assert mount == Mount("copy", "/var/lib/postgresql", source=(tmp_path / "data" / "pg").resolve())


def test_data_dir_from_home_when_ai_stack_data_is_unset(tmp_path):
    text = services("app: {image: a, volumes: ['${AI_STACK_DATA:-${HOME}/.local/share/x}/pg:/var/lib/postgresql:Z']}\n")
    stack = load(tmp_path, text, environ={"HOME": "/home/someone"})
    (mount,) = stack.target.mounts
    assert mount.kind == "volume" and "host path /home/someone/.local/share/x/pg outside" in mount.replaces
    assert stack.unset == ()


def test_relative_path_escaping_the_project_is_a_fresh_volume(tmp_path):
    (mount,) = load(tmp_path, services("app: {image: a, volumes: ['../secrets:/secrets:ro']}\n")).target.mounts
    assert mount.kind == "volume" and mount.source is None
    assert "host path ../secrets outside the compose project" in mount.replaces


def test_symlink_pointing_outside_the_project_is_a_fresh_volume(tmp_path):
    project, outside = tmp_path / "project", tmp_path / "real-data"
    project.mkdir()
    outside.mkdir()
    (project / "data").symlink_to(outside)
    path = write(project, services("app: {image: a, volumes: ['./data:/data']}\n"))
    (mount,) = load_compose(path, "app", environ={}).target.mounts
    assert mount.kind == "volume" and "outside the compose project" in mount.replaces


def test_the_project_folder_itself_is_copied(tmp_path):
    (mount,) = load(tmp_path, services("app: {image: a, volumes: ['.:/src']}\n")).target.mounts
    assert mount == Mount("copy", "/src", source=tmp_path.resolve())


def test_long_syntax_mounts(tmp_path):
    text = services("""\
    app:
      image: a
      volumes:
        - {type: bind, source: ./conf, target: /conf, read_only: true}
        - {type: bind, source: /etc/ssl/certs, target: /certs}
        - {type: volume, source: models, target: /models}
        - {type: volume, target: /anon}
        - {type: tmpfs, target: /tmp, tmpfs: {size: 1000}}
    """)
    conf, certs, models, anon, tmp = load(tmp_path, text).target.mounts
    assert conf == Mount("copy", "/conf", source=(tmp_path / "conf").resolve())
    assert certs.kind == "volume" and "host path /etc/ssl/certs outside" in certs.replaces
    assert models == Mount("volume", "/models", replaces="named volume models: a fresh empty one")
    assert anon == Mount("volume", "/anon")
    assert tmp == Mount("tmpfs", "/tmp")


def test_anonymous_volume_needs_no_replacement(tmp_path):
    assert load(tmp_path, services("app: {image: a, volumes: [/var/cache/app]}\n")).target.mounts == (
        Mount("volume", "/var/cache/app"),)


def test_replaced_mounts_are_listed_for_the_report(stack):
    replaced = stack.replaced_mounts()
    assert "app: /cache (named volume app-cache: a fresh empty one)" in replaced
    assert any(line.startswith("db: /var/lib/postgresql (host path ") for line in replaced)
    assert not any("/etc/app" in line or "init.sql" in line or "/scratch" in line for line in replaced)
    assert len(replaced) == 3


@pytest.mark.parametrize("entry", ["'./data:data'", "{type: bind, source: ./data, target: data}", "'named:relative/x'"])
def test_relative_mount_target_is_an_error(tmp_path, entry):
    with pytest.raises(ComposeError, match=r"services.app.volumes\[0\]: the target .* must be an absolute path"):
        load(tmp_path, services(f"app: {{image: a, volumes: [{entry}]}}\n"))


def test_unsupported_mount_type(tmp_path):
    with pytest.raises(ComposeError, match="type 'npipe' is not one the gate supports"):
        load(tmp_path, services("app: {image: a, volumes: [{type: npipe, source: x, target: /x}]}\n"))


def test_malformed_mount_entry(tmp_path):
    with pytest.raises(ComposeError, match=r"volumes\[0\]: must be a string or a map"):
        load(tmp_path, services("app: {image: a, volumes: [3]}\n"))


def test_resources(stack):
    target, db = stack.target, stack.dependencies["db"]
    assert (target.mem_limit, target.cpus) == (3 * 1024**3, 2.0)
    assert (db.mem_limit, db.cpus) == (512 * 1024**2, 0.5)
    assert (stack.dependencies["cache"].mem_limit, stack.dependencies["cache"].cpus) == (None, None)


def test_mem_limit_wins_over_deploy_limits(tmp_path):
    text = services("app: {image: a, mem_limit: 1g, cpus: 1.5, deploy: {resources: {limits: {memory: 2g, cpus: '3'}}}}\n")
    target = load(tmp_path, text).target
    assert (target.mem_limit, target.cpus) == (1024**3, 1.5)


def test_bad_memory_and_cpus(tmp_path):
    with pytest.raises(ComposeError, match=r"services.app.mem_limit: 'lots' is not a size"):
        load(tmp_path, services("app: {image: a, mem_limit: lots}\n"))
    with pytest.raises(ComposeError, match=r"services.app.cpus: 'two' is not a number of CPUs"):
        load(tmp_path, services("app: {image: a, cpus: two}\n"))


def test_security_user_read_only_and_tmpfs(stack):
    target = stack.target
    assert target.security_opt == ("no-new-privileges:true",)
    assert target.user == "1000:1000"
    assert target.read_only is True
    assert target.tmpfs == {"/tmp": "size=64m", "/run": ""}


def test_defaults_of_a_bare_service(tmp_path):
    target = load(tmp_path, services("app: {image: 'app:1'}\n")).target
    assert (target.security_opt, target.user, target.read_only, target.tmpfs, target.ports) == ((), "", False, {}, ())
    assert (target.mounts, target.secrets, target.depends_on, target.healthcheck) == ((), (), {}, None)
    assert (target.command, target.entrypoint, target.build_context) == (None, None, None)


def test_tmpfs_as_a_string(tmp_path):
    assert load(tmp_path, services("app: {image: a, tmpfs: /run}\n")).target.tmpfs == {"/run": ""}


def test_tmpfs_of_the_wrong_type(tmp_path):
    with pytest.raises(ComposeError, match="tmpfs: must be a path or a list"):
        load(tmp_path, services("app: {image: a, tmpfs: {size: 1}}\n"))


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("yes", True), ("'no'", False),
                                                ("'${RO:-false}'", False), ("'${RO:-true}'", True), ("'On'", True)])
def test_read_only_as_compose_reads_booleans(tmp_path, text, expected):
    assert load(tmp_path, services(f"app: {{image: a, read_only: {text}}}\n")).target.read_only is expected


def test_read_only_that_is_not_a_boolean(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app\.read_only: 'maybe' is not a boolean"):
        load(tmp_path, services("app: {image: a, read_only: maybe}\n"))


def test_interpolated_env_file_required_false_is_honoured(tmp_path):
    text = services("app: {image: a, env_file: [{path: missing.env, required: '${STRICT:-false}'}]}\n")
    assert load(tmp_path, text).target.environment == {}
    with pytest.raises(ComposeError, match="does not exist"):
        load(tmp_path, text, environ={"STRICT": "true"})


def test_user_as_a_number_is_text(tmp_path):
    assert load(tmp_path, services("app: {image: a, user: 1000}\n")).target.user == "1000"


def test_command_and_entrypoint(stack, tmp_path):
    password = stack.generated["REDIS_PASSWORD"]
    assert stack.dependencies["cache"].command == ["redis-server", "--requirepass", password, "--appendonly", "yes"]
    text = services("app: {image: a, entrypoint: [/bin/sh, -c], command: ['echo \"a b\"']}\n")
    target = load(tmp_path, text).target
    assert (target.entrypoint, target.command) == (["/bin/sh", "-c"], ['echo "a b"'])


def test_string_command_is_split_like_a_shell(tmp_path):
    assert load(tmp_path, services("app: {image: a, command: \"serve --name 'my app'\"}\n")).target.command == [
        "serve", "--name", "my app"]


def test_command_of_the_wrong_type(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app\.command: must be a string or a list"):
        load(tmp_path, services("app: {image: a, command: {a: 1}}\n"))


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ("['127.0.0.1:8091:8091']", (8091,)),
        ("['8080']", (8080,)),
        ("[8080]", (8080,)),
        ("['9000:80']", (80,)),
        ("['53:53/udp']", (53,)),
        ("['[::1]:8443:443']", (443,)),
        ("['8000-8001:8000-8001']", (8000,)),
        ("[{target: 80, published: 8080}]", (80,)),
        ("['80', '9000:80']", (80,)),
    ],
)
def test_ports(tmp_path, ports, expected):
    assert load(tmp_path, services(f"app: {{image: a, ports: {ports}}}\n")).target.ports == expected


def test_ports_then_expose(tmp_path):
    assert load(tmp_path, services("app: {image: a, ports: ['8080:80'], expose: ['9090', 3000]}\n")).target.ports == (
        80, 9090, 3000)


def test_bad_port(tmp_path):
    with pytest.raises(ComposeError, match=r"services\.app\.ports: cannot read a container port"):
        load(tmp_path, services("app: {image: a, ports: ['127.0.0.1:8080:http']}\n"))


def test_expose_on_a_dependency(stack):
    assert stack.dependencies["vectors"].ports == (6333,)


# -- healthchecks -------------------------------------------------------------------------------

def test_healthcheck_cmd_with_timing(stack):
    assert stack.target.healthcheck == Healthcheck(("CMD", "curl", "-fsS", "http://localhost:8091/health"), 30.0, 10.0, 3, 90.0)


def test_healthcheck_cmd_shell(stack):
    hc = stack.dependencies["db"].healthcheck
    assert hc == Healthcheck(("CMD-SHELL", "pg_isready -U app -d app"), 10.0, 5.0, 5, 0.0)
    assert hc.argv() == ["/bin/sh", "-c", "pg_isready -U app -d app"]
    assert hc.quoted() == "pg_isready -U app -d app"


def test_healthcheck_string_is_cmd_shell_and_keeps_escaped_dollars(stack):
    hc = stack.dependencies["cache"].healthcheck
    assert hc.test == ("CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" ping')
    assert hc.argv() == ["/bin/sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" ping']
    assert (hc.interval_s, hc.timeout_s, hc.retries, hc.start_period_s) == (30.0, 30.0, 3, 0.0)


def test_healthcheck_disabled(stack):
    assert stack.dependencies["vectors"].healthcheck is None


def test_healthcheck_cmd_argv_and_quoted():
    hc = Healthcheck(("CMD", "curl", "-f", "http://localhost/health"))
    assert hc.argv() == ["curl", "-f", "http://localhost/health"]
    assert hc.quoted() == "curl -f http://localhost/health"


def test_healthcheck_cmd_shell_with_several_words_is_joined():
    assert Healthcheck(("CMD-SHELL", "pg_isready", "-U app")).argv() == ["/bin/sh", "-c", "pg_isready -U app"]


@pytest.mark.parametrize("raw", [None, {"disable": True}, {"test": ["NONE"]}, {"test": ["NONE"], "interval": "bad"}])
def test_healthcheck_absent_or_off(raw):
    assert healthcheck(raw, "w") is None


def test_interpolated_disable_false_keeps_the_healthcheck(tmp_path):
    text = services("app: {image: a, healthcheck: {test: [CMD, 'true'], disable: '${NO_HEALTHCHECK:-false}'}}\n")
    assert load(tmp_path, text).target.healthcheck.test == ("CMD", "true")
    assert load(tmp_path, text, environ={"NO_HEALTHCHECK": "true"}).target.healthcheck is None


def test_healthcheck_numbers_and_string_retries():
    hc = healthcheck({"test": ["CMD", "true"], "interval": 5, "timeout": 1.5, "retries": "7", "start_period": "2m"}, "w")
    assert (hc.interval_s, hc.timeout_s, hc.retries, hc.start_period_s) == (5.0, 1.5, 7, 120.0)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("curl -f localhost", "must be a map with `test`"),
        ({"interval": "10s"}, r"w.test: write it as"),
        ({"test": []}, r"w.test: write it as"),
        ({"test": ["CMD"]}, "must start with CMD or CMD-SHELL and name a command"),
        ({"test": ["curl", "-f", "x"]}, "must start with CMD or CMD-SHELL"),
        ({"test": ["CMD", "true"], "interval": "often"}, r"w.interval: 'often' is not a duration"),
        ({"test": ["CMD", "true"], "start_period": "5 minutes"}, r"w.start_period: .* is not a duration"),
    ],
)
def test_bad_healthcheck(raw, match):
    with pytest.raises(ComposeError, match=match):
        healthcheck(raw, "w")


def test_healthcheck_errors_name_the_service(tmp_path):
    with pytest.raises(ComposeError, match=r"compose.yml: services.db.healthcheck.timeout: '5 s'"):
        load(tmp_path, services("app: {image: a, depends_on: [db]}\ndb: {image: b, healthcheck: {test: [CMD, x], timeout: 5 s}}\n"))


# -- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h2m3s", 3723.0), ("1.5s", 1.5), ("2m", 120.0),
     ("1h", 3600.0), (" 10s ", 10.0), (45, 45.0), (2.5, 2.5)],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value, "w") == pytest.approx(seconds)


def test_parse_duration_microseconds():
    assert parse_duration("250us", "w") == pytest.approx(0.00025)


@pytest.mark.parametrize("value", ["", "30", "soon", "1m30", "10 s", "-1s", "1d", True, "1s2x"])
def test_bad_duration(value):
    with pytest.raises(ComposeError, match=r"where: .* is not a duration; write it like 30s"):
        parse_duration(value, "where")


@pytest.mark.parametrize(
    ("value", "size"),
    [("3G", 3 * 1024**3), ("512m", 512 * 1024**2), ("1gb", 1024**3), ("1GB", 1024**3), ("64k", 65536), ("2kb", 2048),
     ("1t", 1024**4), ("100b", 100), ("100", 100), ("1.5g", int(1.5 * 1024**3)), (" 2 M ", 2 * 1024**2), (4096, 4096)],
)
def test_parse_bytes(value, size):
    assert parse_bytes(value, "w") == size


@pytest.mark.parametrize("value", ["", "lots", "3X", "-1g", "1 g b x", True, "g"])
def test_bad_bytes(value):
    with pytest.raises(ComposeError, match=r"where: .* is not a size; write it like 512m or 3G"):
        parse_bytes(value, "where")


@pytest.mark.parametrize(
    ("ref", "qualified", "repo"),
    [
        ("redis:8", "docker.io/library/redis:8", "redis"),
        ("redis", "docker.io/library/redis", "redis"),
        ("postgres:16", "docker.io/library/postgres:16", "postgres"),
        ("pgvector/pgvector:0.8.1-pg18", "docker.io/pgvector/pgvector:0.8.1-pg18", "pgvector/pgvector"),
        ("qdrant/qdrant:v1.16.2", "docker.io/qdrant/qdrant:v1.16.2", "qdrant/qdrant"),
        ("ghcr.io/x/y:1", "ghcr.io/x/y:1", "x/y"),
        ("ghcr.io/ggml-org/llama.cpp:server", "ghcr.io/ggml-org/llama.cpp:server", "ggml-org/llama.cpp"),
        ("localhost/a/b:1", "localhost/a/b:1", "a/b"),
        ("localhost:5000/team/app:1", "localhost:5000/team/app:1", "team/app"),
        ("docker.io/library/redis:7", "docker.io/library/redis:7", "redis"),
        ("redis@sha256:abc123", "docker.io/library/redis@sha256:abc123", "redis"),
        ("redis:7@sha256:abc123", "docker.io/library/redis:7@sha256:abc123", "redis"),
    ],
)
def test_qualified_image_and_repository(ref, qualified, repo):
    assert qualified_image(ref) == qualified
    assert repository(ref) == repo


# -- through the configuration ------------------------------------------------------------------

def gate(tmp_path: Path, compose: str, toml: str = "") -> Path:
    (tmp_path / "gate.toml").write_text(f'compose = "compose.yml"\nservice = "app"\n{toml}')
    write(tmp_path, compose)
    return tmp_path


CONFIG_STACK = services("""\
app:
  build:
    context: ./src
    dockerfile: Containerfile
    args: {VERSION: "1.0"}
  ports: ["127.0.0.1:9000:9000"]
  environment:
    DB_URL: postgres://app:${DB_PASSWORD}@db/app
  depends_on:
    db: {condition: service_healthy}
    cache: {condition: service_started}
    vectors: {condition: service_started}
    tracer: {condition: service_healthy}
db:
  image: postgres:16
  environment: {POSTGRES_PASSWORD: "${DB_PASSWORD}"}
  volumes: ["./init.sql:/docker-entrypoint-initdb.d/init.sql:ro", "pgdata:/var/lib/postgresql/data"]
  healthcheck: {test: ["CMD-SHELL", "pg_isready"], interval: 2s}
cache:
  image: redis:7
  command: redis-server --save ""
vectors:
  image: qdrant/qdrant:v1.16.2
tracer:
  image: ghcr.io/acme/tracer:2.1
  expose: ["4317"]
""")


def test_config_derives_dependencies_with_plugin_kinds(tmp_path):
    cfg = load_config(gate(tmp_path, CONFIG_STACK), environ={"HOME": HOME})
    deps = cfg.dependencies
    assert list(deps) == ["db", "cache", "vectors", "tracer"]
    assert {n: (d.kind, d.recipe) for n, d in deps.items()} == {
        "db": ("postgres", "postgres"), "cache": ("redis", "redis"), "vectors": ("qdrant", "qdrant-api"),
        "tracer": ("generic", "")}
    assert {n: d.port for n, d in deps.items()} == {"db": 5432, "cache": 6379, "vectors": 6333, "tracer": 4317}
    assert all(d.from_compose and d.enabled for d in deps.values())


def test_config_dependency_images_conditions_and_runtime(tmp_path):
    cfg = load_config(gate(tmp_path, CONFIG_STACK), environ={"HOME": HOME})
    db, cache, tracer = cfg.dependencies["db"], cfg.dependencies["cache"], cfg.dependencies["tracer"]
    assert db.image == "docker.io/library/postgres:16"
    assert tracer.image == "ghcr.io/acme/tracer:2.1"
    assert {n: d.condition for n, d in cfg.dependencies.items()} == {
        "db": "service_healthy", "cache": "service_started", "vectors": "service_started", "tracer": "service_healthy"}
    assert db.critical and not cache.critical
    assert cache.command == ("redis-server", "--save", "")
    assert db.healthcheck.interval_s == 2.0
    assert [m.kind for m in db.mounts] == ["copy", "volume"]
    assert db.environment["POSTGRES_PASSWORD"] == cfg.compose.generated["DB_PASSWORD"]


def test_config_target_from_the_build_section(tmp_path):
    cfg = load_config(gate(tmp_path, CONFIG_STACK), environ={"HOME": HOME})
    assert cfg.target == (tmp_path / "src").resolve()
    assert cfg.containerfile == "Containerfile"
    assert cfg.image == ""
    assert cfg.build_args == {"VERSION": "1.0"}
    assert cfg.port == 9000
    assert cfg.compose is not None and cfg.compose.target.name == "app"


def test_config_user_settings_win_over_compose(tmp_path):
    compose = services("""\
    app: {build: ., ports: ["8000"], depends_on: [postgres, redis]}
    postgres: {image: "postgres:16", environment: {POSTGRES_PASSWORD: "${DB_PASSWORD}"}}
    redis: {image: "redis:7"}
    """)
    toml = """\
    port = 9100
    [dependencies.postgres]
    image = "localhost/my/postgres:16"
    critical = false
    [dependencies.redis]
    enabled = false
    [compose_variables]
    DB_PASSWORD = "fixed"
    """
    cfg = load_config(gate(tmp_path, compose, textwrap.dedent(toml)), environ={})
    assert cfg.port == 9100
    assert list(cfg.dependencies) == ["postgres"]
    postgres = cfg.dependencies["postgres"]
    assert (postgres.image, postgres.critical, postgres.recipe) == ("localhost/my/postgres:16", False, "postgres")
    assert postgres.environment["POSTGRES_PASSWORD"] == "fixed"
    assert cfg.compose.generated == {}


def test_config_build_args_from_the_configuration_win(tmp_path):
    cfg = load_config(gate(tmp_path, CONFIG_STACK, '[build_args]\nVERSION = "2.0"\nEXTRA = "x"\n'), environ={"HOME": HOME})
    assert cfg.build_args == {"VERSION": "2.0", "EXTRA": "x"}


def test_config_target_from_an_image(tmp_path):
    cfg = load_config(gate(tmp_path, services("app: {image: 'ghcr.io/acme/app:3', ports: ['8080', '9090']}\n")), environ={})
    assert cfg.image == "ghcr.io/acme/app:3"
    assert cfg.target is None
    assert cfg.port == 8091  # two ports: the contract's default stays
    assert cfg.dependencies == {}


def test_config_dependency_with_only_build_is_an_error(tmp_path):
    compose = services("app: {image: a, depends_on: [worker]}\nworker: {build: ./worker}\n")
    with pytest.raises(ConfigError, match="`worker` is a dependency of the gated service but has no `image:`"):
        load_config(gate(tmp_path, compose), environ={})


def test_config_passes_compose_errors_through(tmp_path):
    with pytest.raises(ComposeError, match="no service `app`"):
        load_config(gate(tmp_path, services("web: {image: a}\n")), environ={})


def test_bundled_reference_stack(tmp_path):
    compose = REPO / "fixtures" / "aidb" / "compose.yml"
    (tmp_path / "gate.toml").write_text(f'compose = "{compose}"\nservice = "aidb"\n')
    cfg = load_config(tmp_path, environ={"HOME": HOME})
    stack = cfg.compose
    assert list(stack.dependencies) == ["postgres", "redis", "qdrant"]
    assert set(stack.not_started) == {"llama-cpp", "embeddings"}
    assert stack.not_started == {"llama-cpp": ["LLAMA_CPP_BASE_URL"], "embeddings": ["EMBEDDING_SERVICE_URL"]}
    assert {n: d.kind for n, d in cfg.dependencies.items()} == {"postgres": "postgres", "redis": "redis", "qdrant": "qdrant"}
    assert set(stack.generated) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY"}
    assert cfg.target == compose.parent.resolve() and cfg.containerfile == "Containerfile" and cfg.port == 8091


def test_bundled_reference_stack_details(tmp_path):
    stack = load_compose(REPO / "fixtures" / "aidb" / "compose.yml", "aidb", environ={"HOME": HOME}, make_secret=counter())
    target = stack.target
    assert target.environment["AIDB_QDRANT_COLLECTION"] == "aidb_documents"  # from aidb.env
    assert target.environment["AIDB_POSTGRES_DB"] == "mcp"
    (secret,) = target.secrets
    assert (secret.target, secret.mode) == ("/run/secrets/stack_api_key", 0o400)
    assert (target.mem_limit, target.cpus, target.ports) == (1024**3, 2.0, (8091,))
    assert stack.dependencies["redis"].command[:2] == ["redis-server", "--requirepass"]
    assert all(m.kind != "copy" or stack.project_dir in m.source.parents for svc in [target, *stack.dependencies.values()]
               for m in svc.mounts)
    assert stack.unset == ()


def test_a_file_variable_into_run_secrets_needs_a_secret_with_that_target() -> None:
    from aidb_gate.compose import Secret, unmounted_secret_files

    env = {"API_KEY_FILE": "/run/secrets/api_key", "CERT_FILE": "/etc/ssl/cert.pem", "X": "/run/secrets/y"}
    assert unmounted_secret_files(env, (Secret("api_key", "/run/secrets/api_key"),), "app") == []
    problems = unmounted_secret_files(env, (), "app")
    assert len(problems) == 1 and problems[0].startswith("`API_KEY_FILE` names /run/secrets/api_key, but no secret of `app`")


def test_extends_and_include_are_refused_and_file_configs_are_copied(tmp_path: Path) -> None:
    from aidb_gate.compose import ComposeError, load_compose

    (tmp_path / "app.conf").write_text("x=1\n")
    (tmp_path / "c.yml").write_text("services:\n  app:\n    image: a\n    configs: [{source: appconf, target: /etc/app.conf}]\n"
                                    "configs:\n  appconf: {file: ./app.conf}\n")
    stack = load_compose(tmp_path / "c.yml", "app", environ={})
    assert [(m.kind, m.target, m.source) for m in stack.target.mounts] == [("copy", "/etc/app.conf",
                                                                             (tmp_path / "app.conf").resolve())]
    (tmp_path / "e.yml").write_text("services:\n  app:\n    extends: {file: base.yml, service: app}\n")
    with pytest.raises(ComposeError, match="uses `extends`"):
        load_compose(tmp_path / "e.yml", "app", environ={})
    (tmp_path / "i.yml").write_text("include: [other.yml]\nservices:\n  app:\n    image: a\n")
    with pytest.raises(ComposeError, match="`include` is not supported"):
        load_compose(tmp_path / "i.yml", "app", environ={})


def test_values_of_secret_looking_variables_are_known_to_the_redactor(tmp_path: Path) -> None:
    from aidb_gate.compose import load_compose

    (tmp_path / "c.yml").write_text("services:\n  app:\n    image: a\n    environment:\n"
                                    "      SENTRY_TOKEN: literal-token-value\n      DB_PASSWORD: ${DB_PASSWORD}\n"
                                    "      KEY_FILE: /run/secrets/k\n      PORT: '80'\n")
    stack = load_compose(tmp_path / "c.yml", "app", {"DB_PASSWORD": "configured-pw"}, environ={})
    assert sorted(stack.secret_values()) == ["configured-pw", "literal-token-value"]


# -- secrets in plain sight ---------------------------------------------------------------------

def test_secrets_on_command_lines_are_named_by_variable_never_by_value(tmp_path):
    text = services("""\
    app:
      image: app:1
      depends_on: [cache, db]
      environment: {CACHE_AUTH: "${CACHE_TOKEN}"}
    cache:
      image: keydb:6
      command: ["keydb-server", "--requirepass", "${CACHE_TOKEN}", "--port", "7000"]
      environment: {CACHE_TOKEN: "${CACHE_TOKEN}"}
      healthcheck:
        test: ["CMD-SHELL", "keydb-cli -p 7000 -a \\"$$CACHE_TOKEN\\" ping"]
    db:
      image: mariadb:11
      environment: {MARIADB_ROOT_PASSWORD_FILE: /run/secrets/root, MARIADB_PASSWORD: "${DB_PASS}"}
      healthcheck:
        test: ["CMD-SHELL", "healthcheck.sh --connect --innodb_initialized"]
    """)
    stack = load(tmp_path, text)
    assert list(stack.secrets_in_plain_sight()) == ["cache"]
    shown = stack.secrets_in_plain_sight()["cache"]
    assert len(shown) == 2, shown
    assert shown[0].startswith("`cache` puts CACHE_TOKEN on its `command:` line")
    assert shown[1].startswith("`cache`'s healthcheck puts CACHE_TOKEN on a command line")
    assert not any(v in line for v in stack.secret_values() for line in shown)
    assert stack.facts()["secrets on command lines"] == shown


def test_a_stack_that_keeps_secrets_in_files_has_nothing_in_plain_sight(tmp_path):
    text = services("""\
    app:
      image: app:1
      command: ["serve", "--password-file", "/run/secrets/pw", "--token-ttl", "30"]
      environment: {API_KEY_FILE: /run/secrets/pw}
      healthcheck:
        test: ["CMD-SHELL", "curl -fsS -H @/run/secrets/hdr http://localhost:8000/health || exit 1"]
    """)
    stack = load(tmp_path, text)
    assert stack.secrets_in_plain_sight() == {} and "secrets on command lines" not in stack.facts()
