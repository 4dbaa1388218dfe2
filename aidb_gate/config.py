"""config: one validated `GateConfig`, parsed once per run.

Sources, lowest precedence first: built-in defaults (the reference AIDB's contract), the
`[tool.aidb-gate]` table of pyproject.toml or a `gate.toml`, command-line options, and
`AIDB_GATE_*` environment variables. Every key and type is checked against the defaults, so a
typo is a one-paragraph `ConfigError` naming the key and the nearest valid one, never a
KeyError later in the run.
"""

from __future__ import annotations

import copy
import difflib
import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aidb_gate.compose import ComposeStack, Healthcheck, Mount, load_compose, qualified_image
from aidb_gate.errors import ConfigError

ENV_PREFIX = "AIDB_GATE_"

#: The contract's defaults. The shape of this dict is the schema: a user's key must exist here
#: and its value must have the same type (tables marked FREE accept any string keys).
DEFAULTS: dict[str, Any] = {
    "target": ".",
    "containerfile": "",
    "image": "",
    "build_args": {},
    "ca_bundle": "auto",
    "base_image": "localhost/aidb-gate/base:bookworm",
    "port": 8091,
    "startup_timeout_s": 120.0,
    "response_budget_ms": 2000,
    "keep": False,
    "rebuild": False,
    "reports_dir": "reports",
    "suites": True,
    "compose": "",
    "service": "",
    "compose_variables": {},
    "imports": {"enabled": True, "modules": [], "interpreter": "", "pip_check": True},
    "health": {
        "live": "/health/live",
        "ready": "/health/ready",
        "startup": "/health/startup",
        "detailed": "/health/detailed",
        "legacy": "/health",
        "metrics": "/metrics",
    },
    "backup": {"postgres_command": "", "qdrant_command": "", "postgres_restore_command": "",
               "qdrant_restore_command": "", "command_timeout_s": 600.0},
    "faults": {"budget_s": 15.0, "actions": ["stop", "pause", "kill"]},
    "data": {
        "documents": True,
        "create_path": "/documents",
        "get_path": "/documents/{id}",
        "key_header": "X-API-Key",
        "search": True,
        "search_path": "/vector/search",
        "count": 20,
        "rows_per_table": 5,
    },
    "auth": {
        "enabled": True,
        "method": "POST",
        "path": "/documents",
        "body": {"title": "aidb-gate auth probe", "content": "written by the deployment gate"},
        "header": "X-API-Key",
    },
    "dependencies": {
        "postgres": {
            "enabled": True,
            "image": "docker.io/pgvector/pgvector:0.8.1-pg18",
            "recipe": "postgres",
            "port": 5432,
            "critical": True,
            "reported": True,
            "db": "mcp",
            "user": "mcp",
        },
        "redis": {
            "enabled": True,
            "image": "docker.io/library/redis:7",
            "recipe": "redis",
            "port": 6379,
            "critical": False,
            "reported": True,
        },
        "qdrant": {
            "enabled": True,
            "image": "docker.io/qdrant/qdrant:v1.12.6",
            "recipe": "qdrant-api",
            "port": 6333,
            "critical": False,
            "reported": True,
        },
    },
    "env": {
        "AIDB_POSTGRES_HOST": "{postgres.host}",
        "AIDB_POSTGRES_PORT": "{postgres.port}",
        "AIDB_POSTGRES_DB": "{postgres.db}",
        "AIDB_POSTGRES_USER": "{postgres.user}",
        "AIDB_POSTGRES_PASSWORD": "{postgres.password}",
        "AIDB_REDIS_HOST": "{redis.host}",
        "AIDB_REDIS_PORT": "{redis.port}",
        "AIDB_REDIS_PASSWORD": "{redis.password}",
        "QDRANT_URL": "{qdrant.url}",
        "QDRANT_HOST": "{qdrant.host}",
        "QDRANT_PORT": "{qdrant.port}",
        "AIDB_QDRANT_CRITICAL": "{qdrant.critical}",
        "AIDB_QDRANT_API_KEY": "{qdrant.api_key}",
        "AIDB_API_KEY": "{api_key}",
    },
}

#: Tables whose keys are the user's own (build args, environment, request bodies).
FREE_TABLES = {("build_args",), ("env",), ("auth", "body"), ("compose_variables",)}

#: What an env template may name, per dependency; `{api_key}` stands alone.
PLACEHOLDER_FIELDS = {
    "postgres": {"host", "port", "db", "user", "password", "critical"},
    "redis": {"host", "port", "password", "critical"},
    "qdrant": {"host", "port", "url", "api_key", "critical"},
}


@dataclass(frozen=True)
class DependencyConfig:
    """One backing service: which image to prefer, which recipe builds it, how it is judged."""

    name: str
    enabled: bool
    image: str
    recipe: str
    port: int
    critical: bool
    db: str = ""
    user: str = ""
    #: The service's readiness lists it by this name (the health and faults stages check that).
    reported: bool = True
    #: The plug-in that runs it (services/<kind>.py); "generic" for any other compose service.
    kind: str = ""
    #: Read from a compose file: the container runs with the service's own environment and
    #: command, and its plug-in reads what it offers from them.
    from_compose: bool = False
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: tuple[str, ...] | None = field(default=None, repr=False)
    healthcheck: Healthcheck | None = None
    #: The compose depends_on condition the target waits for.
    condition: str = "service_started"
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class GateConfig:
    """Everything a run needs to know, validated. Paths are absolute."""

    root: Path
    source: str
    target: Path | None
    containerfile: str
    image: str
    build_args: dict[str, str]
    ca_bundle: Path | None
    base_image: str
    port: int
    startup_timeout_s: float
    response_budget_ms: int
    keep: bool
    rebuild: bool
    reports_dir: Path
    import_modules: tuple[str, ...]
    import_interpreter: str
    pip_check: bool
    health: dict[str, str]
    auth: dict[str, Any]
    data: dict[str, Any]
    backup_commands: dict[str, str]
    restore_commands: dict[str, str]
    backup_timeout_s: float
    fault_budget_s: float
    fault_actions: tuple[str, ...]
    dependencies: dict[str, DependencyConfig]
    env_templates: dict[str, str]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    #: The stack as the compose file defines it (None: the contract's three dependencies).
    compose: ComposeStack | None = field(default=None, repr=False)

    @property
    def enabled_dependencies(self) -> list[DependencyConfig]:
        return [d for d in self.dependencies.values() if d.enabled]

    def render_env(self, endpoints: dict[str, dict[str, str]], api_key: str) -> dict[str, str]:
        """The target's environment: templates filled from the running dependencies.

        A variable whose template names a disabled dependency is left out rather than set to an
        empty string, so the service sees the dependency as absent, not misconfigured.
        """
        namespaces = {name: SimpleNamespace(**values) for name, values in endpoints.items()}
        env: dict[str, str] = {}
        for var, template in self.env_templates.items():
            names = {f.split(".")[0] for f in _template_fields(template)}
            if any(n != "api_key" and n not in namespaces for n in names):
                continue
            env[var] = template.format(api_key=api_key, **namespaces)
        return env


def _template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def find_config_file(root: Path) -> tuple[Path | None, dict[str, Any]]:
    """The first of gate.toml and pyproject.toml ([tool.aidb-gate]) under root, and its table."""
    gate_toml = root / "gate.toml"
    if gate_toml.is_file():
        data = _read_toml(gate_toml)
        return gate_toml, data.get("tool", {}).get("aidb-gate", data)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("aidb-gate")
        if table is not None:
            return pyproject, table
    return None, {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}). Fix the syntax and run the gate again.") from None


def env_overrides(environ: dict[str, str] | os._Environ) -> dict[str, Any]:
    """`AIDB_GATE_A__B=v` becomes {"a": {"b": v}}; values are read as TOML literals when they parse."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in {"AIDB_GATE_CONFIG", "AIDB_GATE_RUN_ID"}:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _parse_literal(value)
    return out


def _parse_literal(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_shape(data: dict[str, Any], schema: dict[str, Any], origin: str, path: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for the first unknown key or wrongly typed value."""
    for key, value in data.items():
        here = (*path, key)
        dotted = ".".join(here)
        if path in FREE_TABLES:
            if path != ("auth", "body") and not isinstance(value, (str, int, float, bool)):
                raise ConfigError(
                    f"{origin}: `{dotted}` must be a string, got {type(value).__name__}. "
                    f"Write it as `{key} = \"...\"`."
                )
            continue
        if key not in schema and path == ("dependencies",) and isinstance(value, dict):
            # Any compose service may be configured by name; the shape is every dependency's.
            validate_shape(value, schema["postgres"], origin, here)
            continue
        if key not in schema:
            near = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" Did you mean `{'.'.join((*path, near[0]))}`?" if near else ""
            known = ", ".join(sorted(schema))
            raise ConfigError(
                f"{origin}: unknown key `{dotted}`.{hint} Known keys here: {known}. "
                "Remove or rename it; see the README's Configuration section."
            )
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: `{dotted}` must be a table, got {value!r}.")
            validate_shape(value, expected, origin, here)
        elif not _type_ok(value, expected):
            raise ConfigError(
                f"{origin}: `{dotted}` must be {_type_name(expected)}, got {value!r} "
                f"({type(value).__name__}). Example: `{key} = {_example(expected)}`."
            )


def _type_ok(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(expected))


def _type_name(expected: Any) -> str:
    if isinstance(expected, bool):
        return "true or false"
    if isinstance(expected, float):
        return "a number"
    if isinstance(expected, int):
        return "a whole number"
    if isinstance(expected, list):
        return "a list of strings"
    return "a string"


def _example(expected: Any) -> str:
    if isinstance(expected, bool):
        return "true"
    if isinstance(expected, list):
        return '["server", "health_check"]'
    if isinstance(expected, str):
        return f'"{expected}"' if expected else '"..."'
    return str(expected)


def load_config(
    root: Path,
    options: dict[str, Any] | None = None,
    environ: dict[str, str] | os._Environ | None = None,
    config_file: Path | None = None,
) -> GateConfig:
    """Parse, merge and validate the configuration for a run rooted at `root`."""
    environ = os.environ if environ is None else environ
    explicit = config_file or (Path(environ["AIDB_GATE_CONFIG"]) if environ.get("AIDB_GATE_CONFIG") else None)
    if explicit is not None:
        explicit = explicit if explicit.is_absolute() else root / explicit
        if not explicit.is_file():
            raise ConfigError(f"The configuration file {explicit} does not exist. Pass an existing gate.toml.")
        data = _read_toml(explicit)
        source, table = explicit, data.get("tool", {}).get("aidb-gate", data)
        root = explicit.parent
    else:
        source, table = find_config_file(root)
    origin = str(source) if source else "built-in defaults"
    validate_shape(table, DEFAULTS, origin)
    merged = deep_merge(DEFAULTS, table)
    cli = {k: v for k, v in (options or {}).items() if v not in (None, "", False)}
    validate_shape(cli, DEFAULTS, "command-line options")
    merged = deep_merge(merged, cli)
    env = env_overrides(environ)
    validate_shape(env, DEFAULTS, f"environment ({ENV_PREFIX}*)")
    merged = deep_merge(merged, env)
    chosen = deep_merge(deep_merge(table, cli), env)  # what the user said, without the defaults
    return _build(root, origin, merged, chosen, environ)


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path).resolve()


def _build(root: Path, origin: str, m: dict[str, Any], chosen: dict[str, Any] | None = None,
           environ: dict[str, str] | os._Environ | None = None) -> GateConfig:
    def positive(key: str, value: float) -> None:
        if value <= 0:
            raise ConfigError(f"{origin}: `{key}` must be greater than 0, got {value}.")

    positive("startup_timeout_s", m["startup_timeout_s"])
    positive("response_budget_ms", m["response_budget_ms"])
    positive("faults.budget_s", m["faults"]["budget_s"])
    positive("backup.command_timeout_s", m["backup"]["command_timeout_s"])
    unknown = set(m["faults"]["actions"]) - {"stop", "pause", "kill"}
    if unknown:
        raise ConfigError(f"{origin}: `faults.actions` may hold stop, pause and kill; {sorted(unknown)} is not one of them.")
    if not 1 <= m["port"] <= 65535:
        raise ConfigError(f"{origin}: `port` must be a TCP port (1-65535), got {m['port']}.")

    deps: dict[str, DependencyConfig] = {}
    for name, d in m["dependencies"].items():
        if name not in DEFAULTS["dependencies"]:
            if not m["compose"]:
                known = ", ".join(DEFAULTS["dependencies"])
                raise ConfigError(f"{origin}: `dependencies.{name}` is not a dependency the gate knows ({known}). Remove "
                                  "it, or set `compose` to the stack's compose file, where any service can be one.")
            continue
        if not 1 <= d["port"] <= 65535:
            raise ConfigError(f"{origin}: `dependencies.{name}.port` must be 1-65535, got {d['port']}.")
        deps[name] = DependencyConfig(name=name, kind=name, **d)
    compose = None
    if m["compose"]:
        compose = load_compose(_resolve(root, m["compose"]), m["service"], m["compose_variables"],
                               os.environ if environ is None else environ)
        deps = compose_dependencies(compose, (chosen or {}).get("dependencies", {}))
        m = _compose_target(compose, m, chosen or {})
    # Facts of the stack that switch checks on or off (`gate_requires("stack.…")`), derived, not set:
    # a Qdrant that production runs without an API key cannot be checked for refusing bad keys.
    m = {**m, "stack": {"qdrant_api_key": all(d.kind != "qdrant" or not d.from_compose
                                              or bool(d.environment.get("QDRANT__SERVICE__API_KEY"))
                                              for d in deps.values())}}

    for var, template in m["env"].items():
        for fld in _template_fields(template):
            dep, _, attr = fld.partition(".")
            if fld == "api_key":
                continue
            if dep not in PLACEHOLDER_FIELDS or attr not in PLACEHOLDER_FIELDS[dep]:
                known = ["{api_key}"] + [f"{{{d}.{a}}}" for d in PLACEHOLDER_FIELDS for a in sorted(PLACEHOLDER_FIELDS[d])]
                raise ConfigError(
                    f"{origin}: `env.{var}` uses the placeholder {{{fld}}}, which the gate does not provide. "
                    f"Use one of: {', '.join(known)}."
                )

    ca_bundle: Path | None = None
    if m["ca_bundle"] == "auto":
        candidate = Path("/etc/ssl/certs/ca-certificates.crt")
        ca_bundle = candidate if candidate.is_file() else None
    elif m["ca_bundle"]:
        ca_bundle = _resolve(root, m["ca_bundle"])
        if not ca_bundle.is_file():
            raise ConfigError(
                f"{origin}: `ca_bundle` points at {ca_bundle}, which does not exist. Set it to your host's CA "
                'bundle (Debian: /etc/ssl/certs/ca-certificates.crt), to "auto", or to "" to build without it.'
            )

    for key in ("live", "ready", "startup", "detailed", "legacy", "metrics"):
        if m["health"][key] and not m["health"][key].startswith("/"):
            raise ConfigError(f"{origin}: `health.{key}` must be a path starting with '/', got {m['health'][key]!r}.")

    return GateConfig(
        root=root,
        source=origin,
        target=None if m["image"] else _resolve(root, m["target"]),
        containerfile=m["containerfile"],
        image=m["image"],
        build_args={k: str(v) for k, v in m["build_args"].items()},
        ca_bundle=ca_bundle,
        base_image=m["base_image"],
        port=m["port"],
        startup_timeout_s=float(m["startup_timeout_s"]),
        response_budget_ms=m["response_budget_ms"],
        keep=m["keep"],
        rebuild=m["rebuild"],
        reports_dir=_resolve(root, m["reports_dir"]),
        import_modules=tuple(m["imports"]["modules"]),
        import_interpreter=m["imports"]["interpreter"],
        pip_check=m["imports"]["pip_check"],
        health=dict(m["health"]),
        auth=dict(m["auth"]),
        data=dict(m["data"]),
        backup_commands={k: m["backup"][f"{k}_command"] for k in ("postgres", "qdrant") if m["backup"][f"{k}_command"]},
        restore_commands={k: m["backup"][f"{k}_restore_command"] for k in ("postgres", "qdrant")
                          if m["backup"][f"{k}_restore_command"]},
        backup_timeout_s=float(m["backup"]["command_timeout_s"]),
        fault_budget_s=float(m["faults"]["budget_s"]),
        fault_actions=tuple(m["faults"]["actions"]),
        dependencies=deps,
        env_templates=dict(m["env"]),
        raw=m,
        compose=compose,
    )


def compose_dependencies(compose: ComposeStack, chosen: dict[str, Any]) -> dict[str, DependencyConfig]:
    """The closure of the target's depends_on as dependencies: each with the plug-in that stands
    for its image (generic otherwise); `dependencies.<name>` keys the user set still win."""
    from aidb_gate.services import kind_for_image, plugin

    # The strictest condition anyone waits for wins: a healthy wait is never weakened to "started"
    # because another service lists the same dependency in the short syntax.
    strictness = ["service_started", "service_completed_successfully", "service_healthy"]
    conditions: dict[str, str] = {}
    for svc in [compose.target, *compose.dependencies.values()]:
        for name, cond in svc.depends_on.items():
            conditions[name] = max(conditions.get(name, cond), cond, key=strictness.index)
    deps: dict[str, DependencyConfig] = {}
    for name, svc in compose.dependencies.items():
        if not svc.image:
            raise ConfigError(
                f"{compose.path}: `{name}` is a dependency of the gated service but has no `image:` (only `build:`). "
                "The gate starts dependencies from images: build it once (`podman build -t <name> ...`), name that "
                "image in the compose file, and run the gate again.")
        kind = kind_for_image(svc.image)
        module = plugin(kind)
        user = chosen.get(name, {})
        port = module.PORT or (svc.ports[0] if svc.ports else 0)
        deps[name] = DependencyConfig(
            name=name, enabled=user.get("enabled", True), image=user.get("image") or qualified_image(svc.image),
            recipe=user.get("recipe", module.RECIPE), port=user.get("port", port),
            critical=user.get("critical", module.CRITICAL), reported=user.get("reported", kind != "generic"),
            kind=kind, from_compose=True,
            environment=dict(svc.environment), command=tuple(svc.command) if svc.command else None,
            healthcheck=svc.healthcheck, condition=conditions.get(name, "service_started"), mounts=svc.mounts,
        )
    return {name: d for name, d in deps.items() if d.enabled}


def _compose_target(compose: ComposeStack, m: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """The merged configuration with the target's build (or image) taken from the compose file,
    unless the user set `target`, `containerfile` or `image` themselves."""
    m = copy.deepcopy(m)
    svc = compose.target
    if svc.build_context is not None and "target" not in chosen and "image" not in chosen:
        m["target"] = str(svc.build_context)
        m["containerfile"] = chosen.get("containerfile", svc.dockerfile)
    elif svc.build_context is None and svc.image and "target" not in chosen:
        m["image"] = chosen.get("image", svc.image)
    m["build_args"] = {**svc.build_args, **m["build_args"]}
    if "port" not in chosen and len(svc.ports) == 1:
        m["port"] = svc.ports[0]
    return m
