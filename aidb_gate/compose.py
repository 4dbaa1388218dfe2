"""compose: the stack as production defines it, read from the user's compose file.

Guarantees: `load_compose` reads a compose file per the compose specification and returns the
target service and the closure of its `depends_on`, every value interpolated, with nothing
started and nothing on the host touched. It never returns a value the gate cannot use safely:
- Interpolation supports `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`,
  `${VAR?msg}`, `${VAR:+alt}`, `${VAR+alt}`, nesting and `$$`. A variable whose name looks like a
  secret gets a random per-run value (never the host's real one) unless the configuration's
  `compose_variables` sets it; others come from `compose_variables`, the environment, then the
  project's `.env`. A required variable that none of them gives is a `ComposeError` naming it.
- A bind mount inside the compose project becomes a read-only per-run copy; anything outside it
  (the user's real data) and every named volume become fresh volumes; the report lists them.
- Secrets become per-run random files mounted at `/run/secrets/<target>` with their mode.
- Services outside the closure are listed with the target's variables that name them.
Every malformed input is one `ComposeError` that names the file, the service and the key.
"""

from __future__ import annotations

import re
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aidb_gate.errors import ConfigError

#: Names the compose issue calls secret-looking: they get random per-run values.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|KEY|SECRET|TOKEN", re.IGNORECASE)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class ComposeError(ConfigError):
    """The compose file cannot be gated as written; the message says what to change."""


@dataclass(frozen=True)
class Healthcheck:
    """A compose (or image) healthcheck: the command and its timing, in seconds."""

    test: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0

    def argv(self) -> list[str]:
        """What to exec: CMD runs as given, CMD-SHELL (or a plain string) through /bin/sh -c."""
        kind, *rest = self.test
        if kind == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)]
        return list(rest)

    def quoted(self) -> str:
        return " ".join(self.argv()) if self.test[0] == "CMD" else " ".join(self.test[1:])


@dataclass(frozen=True)
class Mount:
    """A mount of the running container, as the gate makes it.

    kind: "copy" (a read-only per-run copy of a file or folder inside the project), "volume" (a
    fresh labelled volume) or "tmpfs". `replaces` says what production mounts there instead."""

    kind: str
    target: str
    source: Path | None = None
    replaces: str = ""


@dataclass(frozen=True)
class Secret:
    """A compose secret: per-run random content at /run/secrets/<target> with this mode."""

    name: str
    target: str
    mode: int = 0o444
    uid: str = ""
    gid: str = ""


@dataclass(frozen=True)
class Service:
    """One compose service, interpolated and normalised."""

    name: str
    image: str = ""
    build_context: Path | None = None
    dockerfile: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: Healthcheck | None = None
    depends_on: dict[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    mounts: tuple[Mount, ...] = ()
    security_opt: tuple[str, ...] = ()
    mem_limit: int | None = None
    cpus: float | None = None
    user: str = ""
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class ComposeStack:
    """The target, the closure of its depends_on (start order), and what was left out or replaced."""

    path: Path
    target: Service
    dependencies: dict[str, Service]
    #: Services outside the closure: {service: [target variables whose value names it]}.
    not_started: dict[str, list[str]]
    #: Secret-looking variables filled with random per-run values: {name: value}.
    generated: dict[str, str] = field(repr=False, default_factory=dict)
    #: Variables that were unset and became "" (compose's rule), by name.
    unset: tuple[str, ...] = ()

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    def secret_values(self) -> list[str]:
        """Every value a report must never show: the random per-run ones, and whatever the file
        (or `compose_variables`) gives a variable whose name looks like a secret."""
        found = list(self.generated.values())
        for svc in [self.target, *self.dependencies.values()]:
            found += [v for k, v in svc.environment.items() if v and SECRET_NAME.search(k) and not k.endswith("_FILE")]
        return found

    def facts(self) -> dict[str, Any]:
        """How the gated stack differs from the file's, for the report's evidence (no values)."""
        found: dict[str, Any] = {"file": str(self.path), "service": self.target.name,
                                 "started": ", ".join(self.dependencies) or "(no dependencies)"}
        if self.not_started:
            found["not started (outside depends_on)"] = {
                name: ("named by " + ", ".join(names) if names else "not named by the service's environment")
                for name, names in self.not_started.items()}
        shown = [line for lines in self.secrets_in_plain_sight().values() for line in lines]
        if shown:
            found["secrets on command lines"] = shown
        replaced = self.replaced_mounts()
        if replaced:
            found["mounts replaced"] = replaced
        if self.generated:
            found["random per-run values"] = ", ".join(sorted(self.generated))
        if self.unset:
            found["unset variables (empty, as compose does)"] = ", ".join(self.unset)
        return found

    def secrets_in_plain_sight(self) -> dict[str, list[str]]:
        """{service: each place where the file puts a secret on its command lines, in words}: the
        gate runs the stack as written, so its random values show there as production's real
        ones do (`ps` shows every host user the command lines of containers' processes)."""
        found = {svc.name: _plain_sight(svc, self.generated) for svc in [self.target, *self.dependencies.values()]}
        return {name: lines for name, lines in found.items() if lines}

    def replaced_mounts(self) -> list[str]:
        """Each mount production makes that the gate replaced, in words, for the report."""
        return [f"{svc.name}: {m.target} ({m.replaces})" for svc in [self.target, *self.dependencies.values()]
                for m in svc.mounts if m.replaces]


def _plain_sight(svc: Service, generated: Mapping[str, str]) -> list[str]:
    named = {v: k for k, v in svc.environment.items() if v and SECRET_NAME.search(k) and not k.endswith("_FILE")}
    named.update({v: k for k, v in generated.items()})
    found: list[str] = []
    for what, argv in (("command", svc.command), ("entrypoint", svc.entrypoint)):
        shown = sorted({name for value, name in named.items() for arg in argv or () if value in arg})
        if shown:
            found.append(f"`{svc.name}` puts {', '.join(shown)} on its `{what}:` line, where `ps` on the host and "
                         "`inspect` show it: give the program the secret in a file instead (a compose secret, or a "
                         "config file the program reads).")
    if svc.healthcheck is not None and svc.healthcheck.test[0] == "CMD-SHELL":
        # `$$VAR` in the file is `$VAR` here: the shell in the container expands it onto the
        # command line of the program it starts, every interval.
        script = " ".join(svc.healthcheck.test[1:])
        expanded = sorted({m.group(1) or m.group(2) for m in re.finditer(rf"\$\{{({_NAME})[^}}]*\}}|\$({_NAME})", script)
                           if SECRET_NAME.search(m.group(1) or m.group(2)) and (m.group(1) or m.group(2)) in svc.environment})
        shown = sorted(set(expanded) | {name for value, name in named.items() if value in script})
        if shown:
            found.append(f"`{svc.name}`'s healthcheck puts {', '.join(shown)} on a command line at every check, where "
                         "`ps` on the host shows it: have the check read the secret from a file or the environment "
                         "(e.g. REDISCLI_AUTH for redis-cli).")
    return found


# -- interpolation ----------------------------------------------------------------------------

class Variables:
    """Where `${VAR}` gets its value: configuration, random secret, environment, `.env`."""

    def __init__(self, configured: Mapping[str, str], environ: Mapping[str, str], dotenv: Mapping[str, str],
                 make_secret: Callable[[], str] | None = None):
        self.configured, self.environ, self.dotenv = configured, environ, dotenv
        # Letters and digits only: a value that starts with "-" would read as an option wherever a
        # compose file puts it on a command line (`--requirepass ${REDIS_PASSWORD}`).
        self.make_secret = make_secret or (lambda: _secrets.token_hex(16))
        self.generated: dict[str, str] = {}
        self.unset: set[str] = set()

    def get(self, name: str) -> str | None:
        if name in self.configured:
            return str(self.configured[name])
        if SECRET_NAME.search(name):
            if name not in self.generated:
                self.generated[name] = self.make_secret()
            return self.generated[name]
        if name in self.environ:
            return self.environ[name]
        return self.dotenv.get(name)


def interpolate(text: str, variables: Variables, where: str) -> str:
    """`text` with every compose variable reference replaced (see the module docstring)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2, where)
            out.append(_expand(text[i + 2:end], variables, where))
            i = end + 1
        else:
            match = re.match(_NAME, text[i + 1:])
            if not match:
                out.append("$")
                i += 1
                continue
            out.append(_value(match.group(0), variables))
            i += 1 + match.end()
    return "".join(out)


def _closing_brace(text: str, start: int, where: str) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text.startswith("${", j):
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ComposeError(f"{where}: `{text}` has a `${{` without its closing `}}`. Close the variable reference.")


def _value(name: str, variables: Variables) -> str:
    value = variables.get(name)
    if value is None:
        variables.unset.add(name)
        return ""
    return value


def _expand(body: str, variables: Variables, where: str) -> str:
    match = re.match(rf"({_NAME})(:?[-?+])?(.*)\Z", body, re.DOTALL)
    if not match:
        raise ComposeError(f"{where}: `${{{body}}}` is not a variable reference compose understands "
                           "(use ${VAR}, ${VAR:-default}, ${VAR:?message} or ${VAR:+alternative}).")
    name, op, rest = match.group(1), match.group(2), match.group(3)
    if op is None:
        if rest:
            raise ComposeError(f"{where}: `${{{body}}}` is not a variable reference compose understands.")
        return _value(name, variables)
    value = variables.get(name)
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")
    if op.endswith("-"):
        return interpolate(rest, variables, where) if missing else value or ""
    if op.endswith("+"):
        return "" if missing else interpolate(rest, variables, where)
    if missing:  # ? and :?
        message = interpolate(rest, variables, where) or "required"
        raise ComposeError(
            f"{where}: the variable `{name}` is required ({message}) and the gate cannot provide it: it is not "
            f"set in the environment, in the project's .env, or in the configuration. Set "
            f"`compose_variables.{name} = \"...\"` in [tool.aidb-gate] (or export {name}) to the value a test "
            "stack should use. Names that look like secrets (PASSWORD, KEY, SECRET, TOKEN) get random values.")
    return value or ""


def _interpolate_tree(node: Any, variables: Variables, where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, variables, where) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, variables, f"{where}.{k}") for k, v in node.items()}
    return node


# -- values -----------------------------------------------------------------------------------

def parse_duration(value: Any, where: str) -> float:
    """Compose durations (`30s`, `1m30s`, `500ms`) or plain numbers, in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(f"{where}: {value!r} is not a duration; write it like 30s, 1m30s or 500ms.")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_bytes(value: Any, where: str) -> int:
    """Compose byte values (`3G`, `512m`, `1gb`, a number of bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ComposeError(f"{where}: {value!r} is not a size; write it like 512m or 3G.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower() or "b"])


def _argv(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        import shlex

        return shlex.split(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ComposeError(f"{where}: must be a string or a list, got {type(value).__name__}.")


def _mapping(value: Any, where: str) -> dict[str, str]:
    """A compose `environment`/`args` map in either syntax; `KEY` alone (no value) is left out,
    as compose does when the variable is unset."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else _scalar(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        out = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            if sep:
                out[key] = val
        return out
    raise ComposeError(f"{where}: must be a map or a list of KEY=VALUE, got {type(value).__name__}.")


def _bool(value: Any, where: str) -> bool:
    """A compose boolean: YAML's own, or text after interpolation (`${RO:-false}`), as compose reads it."""
    if not isinstance(value, str):
        return bool(value)
    if value.lower() in ("y", "yes", "true", "on"):
        return True
    if value.lower() in ("n", "no", "false", "off"):
        return False
    raise ComposeError(f"{where}: {value!r} is not a boolean; write true or false.")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def healthcheck(raw: Any, where: str) -> Healthcheck | None:
    """A compose healthcheck block (None when absent or disabled)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ComposeError(f"{where}: must be a map with `test`, got {type(raw).__name__}.")
    if _bool(raw.get("disable", False), f"{where}.disable"):
        return None
    test = raw.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not isinstance(test, list) or not test:
        raise ComposeError(f"{where}.test: write it as [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or a string.")
    test = [str(t) for t in test]
    if test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise ComposeError(f"{where}.test: must start with CMD or CMD-SHELL and name a command, got {test!r}.")
    return Healthcheck(
        test=tuple(test),
        interval_s=parse_duration(raw.get("interval", "30s"), f"{where}.interval"),
        timeout_s=parse_duration(raw.get("timeout", "30s"), f"{where}.timeout"),
        retries=int(raw.get("retries", 3)),
        start_period_s=parse_duration(raw.get("start_period", "0s"), f"{where}.start_period"),
    )


# -- the file ---------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    """An env_file / .env as compose reads it (python-dotenv's parser, without its own expansion)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def _yaml_loader() -> type:
    """PyYAML's SafeLoader with YAML 1.2 scalars, as compose (go-yaml v3) reads them: only
    true/false are booleans (`FLAG: yes` stays "yes", a key `ON` stays "ON"), and `22:22` is a
    string, not the base-60 number 1342. Leading-zero octal (`mode: 0400`) is kept, as compose does."""
    import yaml

    class ComposeLoader(yaml.SafeLoader):
        pass

    bool_tag, int_tag = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"
    ComposeLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (bool_tag, int_tag)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    ComposeLoader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    ComposeLoader.add_implicit_resolver(
        int_tag, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
        list("-+0123456789"))
    return ComposeLoader


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader())  # a SafeLoader: no object tags
    except FileNotFoundError:
        raise ComposeError(f"The compose file {path} does not exist. Set `compose` (or --gate-compose) to the "
                           "stack's compose.yml.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ComposeError(f"The compose file {path} cannot be read ({err}).") from None
    except yaml.YAMLError as err:
        raise ComposeError(f"The compose file {path} is not valid YAML: {err}. Fix the syntax.") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise ComposeError(f"The compose file {path} has no `services:` map; it is not a compose file.")
    return data


def load_compose(path: Path, service: str, configured: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None, make_secret: Callable[[], str] | None = None) -> ComposeStack:
    """Read `path`, pick `service` as the target, and return it with its depends_on closure."""
    import os

    path = path.resolve()
    data = _load_yaml(path)
    services: dict[str, Any] = data["services"]
    if not service:
        names = ", ".join(services)
        raise ComposeError(f"{path}: say which service to gate: set `service` (or --gate-service) to one of {names}.")
    if service not in services:
        raise ComposeError(f"{path}: there is no service `{service}`; the file defines {', '.join(services)}. "
                           "Set `service` (or --gate-service) to the one to gate.")
    dotenv_path = path.parent / ".env"
    dotenv = read_env_file(dotenv_path) if dotenv_path.is_file() else {}
    variables = Variables(configured or {}, os.environ if environ is None else environ, dotenv, make_secret)

    if data.get("include"):
        raise ComposeError(f"{path}: the top-level `include` is not supported by the gate; point `compose` at a file "
                           "that holds the gated service and its dependencies (or merge them with `docker compose config`).")
    order = _closure(services, service, path)
    for name in order:
        if isinstance(services[name], dict) and services[name].get("extends"):
            raise ComposeError(f"{path.name}: services.{name} uses `extends`, which the gate does not resolve; write the "
                               "service out in full (`docker compose config` prints it resolved).")
    top_configs = data.get("configs") or {}
    if not isinstance(top_configs, dict):
        raise ComposeError(f"{path}: the top-level `configs` must be a map of names.")
    top_secrets = data.get("secrets") or {}
    if not isinstance(top_secrets, dict):
        raise ComposeError(f"{path}: the top-level `secrets` must be a map of names.")
    parsed = {name: _service(path, name, _interpolate_tree(services[name], variables, f"{path.name}: services.{name}"),
                             top_secrets, variables, top_configs) for name in order}
    target = parsed.pop(service)
    not_started = {name: _variables_naming(target.environment, name) for name in services if name not in order}
    return ComposeStack(path, target, parsed, not_started, dict(variables.generated), tuple(sorted(variables.unset)))


def _closure(services: dict[str, Any], root: str, path: Path) -> list[str]:
    """The depends_on closure of root, dependencies first, root last; cycles and unknown names are errors."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"{path}: depends_on forms a cycle: {' -> '.join([*visiting, name])}.")
        if name not in services:
            raise ComposeError(f"{path}: `{visiting[-1]}` depends on `{name}`, which the file does not define.")
        visiting.append(name)
        for dep in _depends_on(services[name], f"{path.name}: services.{name}"):
            visit(dep)
        visiting.pop()
        order.append(name)

    visit(root)
    return order


def _depends_on(raw: Any, where: str) -> dict[str, str]:
    value = raw.get("depends_on") if isinstance(raw, dict) else None
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(v): "service_started" for v in value}
    if isinstance(value, dict):
        out = {}
        for name, spec in value.items():
            condition = (spec or {}).get("condition", "service_started") if isinstance(spec, dict) else "service_started"
            if condition not in ("service_started", "service_healthy", "service_completed_successfully"):
                raise ComposeError(f"{where}.depends_on.{name}: unknown condition {condition!r}; use service_started, "
                                   "service_healthy or service_completed_successfully.")
            out[str(name)] = condition
        return out
    raise ComposeError(f"{where}.depends_on: must be a list or a map of service names.")


def _variables_naming(environment: dict[str, str], service: str) -> list[str]:
    """The target's variables whose value names `service` as a host (a URL, host:port or the bare name)."""
    pattern = re.compile(rf"(^|[/@]){re.escape(service)}(:\d+|/|$)")
    return sorted(var for var, value in environment.items() if pattern.search(value))


def _service(path: Path, name: str, raw: Any, top_secrets: dict[str, Any], variables: Variables,
             top_configs: dict[str, Any] | None = None) -> Service:
    where = f"{path.name}: services.{name}"
    if not isinstance(raw, dict):
        raise ComposeError(f"{where}: must be a map, got {type(raw).__name__}.")
    project = path.parent
    top_configs = top_configs or {}
    environment: dict[str, str] = {}
    env_files = raw.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        file = entry.get("path") if isinstance(entry, dict) else entry
        required = _bool(entry.get("required", True), f"{where}.env_file.required") if isinstance(entry, dict) else True
        env_path = (project / str(file)).resolve()
        if not env_path.is_file():
            if required:
                raise ComposeError(f"{where}.env_file: {env_path} does not exist. Create it, or mark it "
                                   "`required: false`.")
            continue
        environment.update({k: interpolate(v, variables, f"{where}.env_file") for k, v in read_env_file(env_path).items()})
    environment.update(_mapping(raw.get("environment"), f"{where}.environment"))

    build = raw.get("build")
    context, dockerfile, args = None, "", {}
    if isinstance(build, str):
        context = (project / build).resolve()
    elif isinstance(build, dict):
        context = (project / str(build.get("context", "."))).resolve()
        dockerfile = str(build.get("dockerfile", ""))
        args = _mapping(build.get("args"), f"{where}.build.args")
    elif build is not None:
        raise ComposeError(f"{where}.build: must be a path or a map with `context`.")

    return Service(
        name=name,
        image=str(raw.get("image") or ""),
        build_context=context,
        dockerfile=dockerfile,
        build_args=args,
        environment=environment,
        command=_argv(raw.get("command"), f"{where}.command"),
        entrypoint=_argv(raw.get("entrypoint"), f"{where}.entrypoint"),
        healthcheck=healthcheck(raw.get("healthcheck"), f"{where}.healthcheck"),
        depends_on=_depends_on(raw, where),
        secrets=tuple(_secret(s, top_secrets, where) for s in raw.get("secrets") or []),
        mounts=tuple(_mounts(raw, project, name, where)) + tuple(_configs(raw, top_configs, project, where)),
        security_opt=tuple(str(s) for s in raw.get("security_opt") or []),
        mem_limit=_memory(raw, where),
        cpus=_cpus(raw, where),
        user=str(raw.get("user") or ""),
        read_only=_bool(raw.get("read_only", False), f"{where}.read_only"),
        tmpfs=_tmpfs(raw.get("tmpfs"), where),
        ports=tuple(_container_ports(raw, where)),
    )


def _secret(entry: Any, top: dict[str, Any], where: str) -> Secret:
    if isinstance(entry, str):
        name, target, mode, uid, gid = entry, entry, 0o444, "", ""
    elif isinstance(entry, dict) and entry.get("source"):
        name = str(entry["source"])
        target = str(entry.get("target") or name)
        raw_mode = entry.get("mode", 0o444)
        mode = int(raw_mode, 8) if isinstance(raw_mode, str) else int(raw_mode)
        uid, gid = str(entry.get("uid", "")), str(entry.get("gid", ""))
    else:
        raise ComposeError(f"{where}.secrets: each entry is a name or a map with `source`, got {entry!r}.")
    if name not in top:
        raise ComposeError(f"{where}.secrets: `{name}` is not defined in the file's top-level `secrets:`. "
                           "Define it there (file: or environment:).")
    if not target.startswith("/"):
        target = f"/run/secrets/{target}"
    return Secret(name, target, mode, uid, gid)


def _mounts(raw: dict[str, Any], project: Path, service: str, where: str) -> list[Mount]:
    out = []
    for i, entry in enumerate(raw.get("volumes") or []):
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:  # an anonymous volume: fresh per container already
                out.append(Mount("volume", parts[0]))
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        elif isinstance(entry, dict):
            kind, source, target = str(entry.get("type", "volume")), str(entry.get("source", "")), str(entry.get("target", ""))
        else:
            raise ComposeError(f"{where}.volumes[{i}]: must be a string or a map, got {entry!r}.")
        if not target.startswith("/"):
            raise ComposeError(f"{where}.volumes[{i}]: the target {target!r} must be an absolute path in the container.")
        if kind == "tmpfs":
            out.append(Mount("tmpfs", target))
        elif kind == "bind":
            host = (project / Path(source).expanduser()).resolve()
            if host == project or project in host.parents:
                out.append(Mount("copy", target, source=host))
            else:
                out.append(Mount("volume", target, replaces=f"host path {source} outside the compose project: "
                                                            "a fresh empty volume instead, so the gate never touches it"))
        elif kind == "volume":
            out.append(Mount("volume", target, replaces=f"named volume {source}: a fresh empty one" if source else ""))
        else:
            raise ComposeError(f"{where}.volumes[{i}]: type {kind!r} is not one the gate supports (bind, volume, tmpfs).")
    return out


def _configs(raw: dict[str, Any], top: dict[str, Any], project: Path, where: str) -> list[Mount]:
    """A service's compose `configs`: each file-based config is a read-only per-run copy at its
    target (default `/<name>`), like a bind mount inside the project."""
    out = []
    for entry in raw.get("configs") or []:
        name = entry if isinstance(entry, str) else entry.get("source") if isinstance(entry, dict) else None
        if not name or name not in top:
            raise ComposeError(f"{where}.configs: {entry!r} names no config of the file's top-level `configs:`.")
        spec = top[name] or {}
        if not isinstance(spec, dict) or not spec.get("file"):
            raise ComposeError(f"{where}.configs: config `{name}` is not file-based (`file:`); the gate supports file "
                               "configs only.")
        target = (entry.get("target") if isinstance(entry, dict) else None) or f"/{name}"
        out.append(Mount("copy", target if target.startswith("/") else f"/{target}",
                         source=(project / str(spec["file"])).resolve()))
    return out


def _memory(raw: dict[str, Any], where: str) -> int | None:
    value = raw.get("mem_limit")
    if value is None:
        value = (((raw.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory")
    return None if value is None else parse_bytes(value, f"{where}.mem_limit")


def _cpus(raw: dict[str, Any], where: str) -> float | None:
    value = raw.get("cpus")
    if value is None:
        value = (((raw.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("cpus")
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ComposeError(f"{where}.cpus: {value!r} is not a number of CPUs.") from None


def _tmpfs(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ComposeError(f"{where}.tmpfs: must be a path or a list of paths.")
    out = {}
    for item in items:
        target, _, options = str(item).partition(":")
        out[target] = options
    return out


def _container_ports(raw: dict[str, Any], where: str) -> list[int]:
    """Container-side ports from `ports` and `expose` (what a generic dependency answers on)."""
    found: list[int] = []
    for entry in [*(raw.get("ports") or []), *(raw.get("expose") or [])]:
        # From YAML, so anything: int() turns away what is not a port (None included, with TypeError).
        value: Any = entry.get("target") if isinstance(entry, dict) else str(entry).split("/")[0].rsplit(":", 1)[-1].split("-")[0]
        try:
            port = int(value)
        except (TypeError, ValueError):
            raise ComposeError(f"{where}.ports: cannot read a container port from {entry!r}.") from None
        if port not in found:
            found.append(port)
    return found


def qualified_image(ref: str) -> str:
    """An image reference as Docker resolves a short name: `redis:8` -> `docker.io/library/redis:8`."""
    first, _, rest = ref.partition("/")
    if first == "docker.io" and rest and "/" not in rest:
        return f"docker.io/library/{rest}"
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def repository(ref: str) -> str:
    """The repository of an image reference without registry, tag or digest: `pgvector/pgvector`."""
    name = qualified_image(ref).split("@")[0]
    path = PurePosixPath(name.split("/", 1)[1])
    last = path.name.split(":")[0]
    repo = str(path.parent / last) if str(path.parent) != "." else last
    return repo.removeprefix("library/")


def unmounted_secret_files(environment: dict[str, str], secrets: tuple[Secret, ...], service: str) -> list[str]:
    """The `*_FILE` variables that name a file under /run/secrets/ which none of the service's
    secrets puts there: the service will find no file (environment, not code)."""
    given = {s.target for s in secrets}
    found = []
    for var, value in sorted(environment.items()):
        if var.endswith("_FILE") and value.startswith("/run/secrets/") and value not in given:
            have = ", ".join(sorted(given)) or "none"
            found.append(f"`{var}` names {value}, but no secret of `{service}` has that target (its secrets: "
                         f"{have}): add the secret to the service's `secrets:` in the compose file")
    return found
