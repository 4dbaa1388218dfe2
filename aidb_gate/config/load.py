"""load: `load_config`, the one way a run gets its configuration.

Guarantees: defaults, then the file, then options, then AIDB_GATE_* variables, merged and
checked (shape.py), then built section by section into one GateConfig; whatever the inputs
hold, the result is a GateConfig or a ConfigError - never another exception.
"""

from __future__ import annotations

import copy
import math
import os
import stat
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aidb_gate.compose import ComposeStack, load_compose
from aidb_gate.config.reports import _check_reports_dir
from aidb_gate.config.schema import (
    _TOKEN,
    COUNTS,
    DEFAULTS,
    DURATIONS,
    HTTP_TOKENS,
    MAX_DURATION_S,
    PLACEHOLDER_FIELDS,
    REQUEST_PATHS,
    STANDALONE_FIELDS,
    GateConfig,
)
from aidb_gate.config.shape import deep_merge, validate_shape
from aidb_gate.config.sources import (
    _check_compose_files,
    _env_settings,
    _file_kind,
    _gate_table,
    _present,
    _read_toml,
    _reason,
    check_run_id,
    find_config_file,
    shown_path,
)
from aidb_gate.config.words import _dotted, _show, _text
from aidb_gate.errors import ConfigError
from aidb_gate.services.base import DependencyConfig
from aidb_gate.services.compose import compose_dependencies

# ---- loading -------------------------------------------------------------------------------------


def load_config(
    root: Path,
    options: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> GateConfig:
    """Parse, merge and validate the configuration for a run rooted at `root`.

    Guarantees: a GateConfig, or a ConfigError whose message is one paragraph naming where the bad
    input is (file, option or variable) and what to write instead - never another exception for
    anything a file, an option or an AIDB_GATE_* variable can hold. AIDB_GATE_RUN_ID is checked
    here, before anything uses it (see `check_run_id`)."""
    environ = os.environ if environ is None else environ
    check_run_id(environ)
    source, table = _chosen_file(root, config_file, environ)
    root = source.parent if source is not None else root  # a named file's folder is the project's
    origin = _text(str(source)) if source else "built-in defaults"
    validate_shape(table, DEFAULTS, origin)
    # Checked by identity: 0 and 0.0 equal False, and a chosen 0 must reach validation, not vanish.
    cli = {k: v for k, v in (options or {}).items() if v is not None and v is not False and v != ""}
    validate_shape(cli, DEFAULTS, "command-line options")
    named_deps = [*table.get("dependencies", {}), *cli.get("dependencies", {})]
    env, setters = _env_settings(environ, named_deps)
    # A file's `env` table is the service's whole environment: merged into the contract's, a
    # service with its own names would also get AIDB_*_PASSWORD - its secrets in `inspect` for no use.
    base = {k: v for k, v in DEFAULTS.items() if k != "env" or "env" not in table}
    merged = deep_merge(deep_merge(deep_merge(base, table), cli), env)
    merged.setdefault("env", {})
    chosen = deep_merge(deep_merge(table, cli), env)  # what the user said, without the defaults

    def blame(path: tuple[str, ...]) -> str:
        """Where the value at `path` came from, for the message: the variable, the options or the file."""
        for n in range(len(path), 0, -1):
            if path[:n] in setters:
                return f"environment variable {_text(setters[path[:n]])}"
        if _has(cli, path):
            return "command-line options"
        return origin if _has(table, path) else f"{origin} (the default)" if source else "built-in defaults"

    return _build(root, origin, merged, chosen, environ, blame)


def _chosen_file(root: Path, config_file: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """The configuration file and its gate table: --gate-config, else AIDB_GATE_CONFIG, else the
    first of gate.toml and pyproject.toml under root. Guarantees: a named file that is missing,
    a folder, a FIFO, a device, a link to nothing, a name too long for the system, unreadable,
    over MAX_CONFIG_BYTES, not TOML, or a pyproject.toml without [tool.aidb-gate], is a ConfigError
    naming the option or variable that chose it; nothing is opened before it is known to be a
    regular file, and no read blocks."""
    given = config_file or (Path(environ["AIDB_GATE_CONFIG"]) if environ.get("AIDB_GATE_CONFIG") else None)
    if given is None:
        return find_config_file(root)
    how = "--gate-config" if config_file else "AIDB_GATE_CONFIG"
    path = given if given.is_absolute() else root / given
    shown = shown_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        link = " is a link to nothing" if os.path.lexists(path) else " does not exist"
        raise ConfigError(f"The configuration file {shown} ({how}){link}. Pass an existing gate.toml.") from None
    except NotADirectoryError:
        raise ConfigError(f"The configuration file {shown} ({how}) does not exist: part of its path is a file, not a "
                          "folder. Pass an existing gate.toml.") from None
    except OSError as err:
        raise ConfigError(f"{how} names {shown}, which cannot be looked up ({_reason(err)}). Point it at an existing "
                          "gate.toml.") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{how} names {shown}, which is a folder; it must name the configuration file itself. "
                          f"Point it at the gate.toml (or pyproject.toml) inside, e.g. {shown_path(path / 'gate.toml')}.")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{how} names {shown}, which is {_file_kind(st.st_mode)}, not a regular file. Point it at "
                          "a gate.toml.")
    table = _gate_table(path, _read_toml(path, f"{shown} ({how})"), whole_file=path.name != "pyproject.toml")
    if table is None:
        raise ConfigError(f"{shown} ({how}) has no [tool.aidb-gate] table. Add one, or point {how} at a gate.toml.")
    return path, table


def _has(table: dict[str, Any], path: tuple[str, ...]) -> bool:
    """True when the nested `table` holds a value at `path`."""
    node: Any = table
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _get(table: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` of a table whose shape validate_shape accepted."""
    for part in path:
        table = table[part]
    return table


def _resolve(root: Path, value: str, key: str = "", origin: str = "") -> Path:
    """`value` as an absolute path (relative ones against root, `~` expanded). Guarantees: a `~user`
    that does not exist, or a path the system cannot resolve, is a ConfigError naming `key`."""
    try:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (root / path).resolve()
    except (RuntimeError, OSError, ValueError) as err:
        raise ConfigError(f"{origin}: `{key}` is {_show(value)}, which is not a usable path ({err}). Write a path "
                          "relative to the project, or an absolute one.") from None

def _build(root: Path, origin: str, m: dict[str, Any], chosen: dict[str, Any] | None = None,
           environ: Mapping[str, str] | None = None, blame: Callable[[tuple[str, ...]], str] | None = None,
           ) -> GateConfig:
    where = blame or (lambda _path: origin)
    environ = os.environ if environ is None else environ

    for path in DURATIONS:
        _check_duration(_get(m, path), path, where(path))
    for path, (low, high, meaning, instead) in COUNTS.items():
        value = _get(m, path)
        if not low <= value <= high:
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` is {meaning}; it must be {low}-{high}, got "
                              f"{_show(value)}.{instead}")
    unknown = set(m["faults"]["actions"]) - {"stop", "pause", "kill"}
    if unknown:
        raise ConfigError(f"{where(('faults', 'actions'))}: `faults.actions` may hold stop, pause and kill; "
                          f"{_show(sorted(unknown))} is not one of them.")
    if not 1 <= m["port"] <= 65535:
        raise ConfigError(f"{where(('port',))}: `port` must be a TCP port (1-65535), got {_show(m['port'])}.")
    for name, d in m["dependencies"].items():
        here = ("dependencies", name, "port")
        # A compose service named only to override, say, its image has no port of its own here.
        if "port" in d and not 1 <= d["port"] <= 65535:
            raise ConfigError(f"{where(here)}: `{_dotted(here)}` must be 1-65535, got {_show(d['port'])}.")
    for path in REQUEST_PATHS:
        value = _get(m, path)
        if value and not value.startswith("/"):
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` must be a path starting with '/', got {value!r}.")
    for path in HTTP_TOKENS:
        value = _get(m, path)
        if not _TOKEN.fullmatch(value):
            what = "method" if path[-1] == "method" else "header name"
            raise ConfigError(f"{where(path)}: `{_dotted(path)}` is sent as an HTTP {what} and must be one word of "
                              f"letters, digits and !#$%&'*+.^_`|~-, got {_show(value)}.")
    for var, template in m["env"].items():
        _check_template(var, template, where(("env", var)))
    reports_dir = _check_reports_dir(_resolve(root, m["reports_dir"], "reports_dir", where(("reports_dir",))),
                                     where(("reports_dir",)), environ)

    deps: dict[str, DependencyConfig] = {}
    for name, d in m["dependencies"].items():
        if name not in DEFAULTS["dependencies"]:
            if not m["compose"]:
                known = ", ".join(DEFAULTS["dependencies"])
                raise ConfigError(f"{where(('dependencies', name))}: `{_dotted(('dependencies', name))}` is not a "
                                  f"dependency the gate knows ({known}). Remove it, or set `compose` to the stack's "
                                  "compose file, where any service can be one.")
            continue
        deps[name] = DependencyConfig(name=name, kind=name, **d)
    compose = None
    if m["compose"]:
        compose_file = _resolve(root, m["compose"], "compose", where(("compose",)))
        _check_compose_files(compose_file, where(("compose",)))
        compose = load_compose(compose_file, m["service"], m["compose_variables"], environ)
        deps = compose_dependencies(compose, (chosen or {}).get("dependencies", {}))
        m = _compose_target(compose, m, chosen or {})
    # Facts of the stack that switch checks on or off (`gate_requires("stack.…")`), derived, not set:
    # a Qdrant that production runs without an API key cannot be checked for refusing bad keys.
    m = {**m, "stack": {"qdrant_api_key": all(d.kind != "qdrant" or not d.from_compose
                                              or bool(d.environment.get("QDRANT__SERVICE__API_KEY"))
                                              for d in deps.values())}}

    ca_bundle: Path | None = None
    if m["ca_bundle"] == "auto":
        candidate = Path("/etc/ssl/certs/ca-certificates.crt")
        ca_bundle = candidate if candidate.is_file() else None
    elif m["ca_bundle"]:
        ca_bundle = _resolve(root, m["ca_bundle"], "ca_bundle", where(("ca_bundle",)))
        if not _present(ca_bundle, f"{where(('ca_bundle',))}: `ca_bundle`",
                        "Set it to your host's CA bundle file (Debian: /etc/ssl/certs/ca-certificates.crt)."):
            raise ConfigError(
                f"{where(('ca_bundle',))}: `ca_bundle` points at {shown_path(ca_bundle)}, which does not exist. Set it "
                "to your host's CA bundle (Debian: /etc/ssl/certs/ca-certificates.crt), to \"auto\", or to \"\" to "
                "build without it."
            )

    return GateConfig(
        root=root,
        source=origin,
        target=None if m["image"] else _resolve(root, m["target"], "target", where(("target",))),
        containerfile=m["containerfile"],
        image=m["image"],
        build_args={k: str(v) for k, v in m["build_args"].items()},
        ca_bundle=ca_bundle,
        base_image=m["base_image"],
        port=m["port"],
        startup_timeout_s=float(m["startup_timeout_s"]),
        build_timeout_s=float(m["build_timeout_s"]),
        response_budget_ms=m["response_budget_ms"],
        keep=m["keep"],
        rebuild=m["rebuild"],
        reports_dir=reports_dir,
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


def _check_duration(value: float, path: tuple[str, ...], where: str) -> None:
    """Return only for a usable deadline: finite, greater than 0 and at most MAX_DURATION_S."""
    key = _dotted(path)
    unit, scale = ("milliseconds", 1000) if path[-1].endswith("_ms") else ("seconds", 1)
    default = _get(DEFAULTS, path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: `{key}` is {value}, but it is a deadline in {unit}, and a wait bounded by nan or "
                          f"inf never ends. Set a finite number greater than 0 (the default is {default}).")
    if value <= 0:
        raise ConfigError(f"{where}: `{key}` must be greater than 0, got {_show(value)}: it is a deadline in {unit}, "
                          f"and one of 0 or less ends the wait before it starts. The default is {default}.")
    if value > MAX_DURATION_S * scale:
        raise ConfigError(f"{where}: `{key}` is {_show(value)} {unit}, longer than the {MAX_DURATION_S * scale} {unit} "
                          f"(one day) the gate allows any wait. Set a shorter deadline (the default is {default}).")


def _check_template(var: str, template: str, where: str) -> None:
    """Return only for a template `render_env` can fill: literal text, `{{`/`}}`, and placeholders
    from PLACEHOLDER_FIELDS or `{api_key}`, each without conversion or format spec."""
    known = [f"{{{f}}}" for f in STANDALONE_FIELDS] + [f"{{{d}.{a}}}" for d in PLACEHOLDER_FIELDS
                                                         for a in sorted(PLACEHOLDER_FIELDS[d])]
    here = _dotted(("env", var))
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{where}: `{here}` = {_show(template)} is not a template the gate can fill ({err}). Write "
                          f"a literal brace as {{{{ or }}}}, and placeholders as one of: {', '.join(known)}.") from None
    for _, fld, spec, conversion in parts:
        if fld is None:
            continue
        dep, _, attr = fld.partition(".")
        if (fld in STANDALONE_FIELDS or attr in PLACEHOLDER_FIELDS.get(dep, ())) and not spec and conversion is None:
            continue
        written = "{" + fld + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        raise ConfigError(f"{where}: `{here}` uses the placeholder {_text(written)}, which the gate does not provide. "
                          f"Use one of: {', '.join(known)} (a literal brace is {{{{ or }}}}).")

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
