"""load: `load_compose`, the one way the gate reads a compose file.

Guarantees: the target service and the closure of its `depends_on`, every value interpolated,
mounts and secrets planned (see the package docstring), with nothing started and nothing on the
host touched; every malformed input is one ComposeError naming the file, service and key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aidb_gate.compose.interpolation import Variables, _interpolate_tree, interpolate
from aidb_gate.compose.model import ComposeError, ComposeStack, Mount, Secret, Service
from aidb_gate.compose.values import _argv, _bool, _mapping, healthcheck, parse_bytes


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


def load_yaml(path: Path) -> dict[str, Any]:
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
    data = load_yaml(path)
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
