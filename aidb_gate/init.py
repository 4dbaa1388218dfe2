"""init: set a service repository up for the gate - a starter configuration and two CI jobs.

Guarantees: `aidb-gate init` reads the repository it runs in (its Containerfile or Dockerfile,
the port it EXPOSEs, the client libraries it depends on) and writes
- a `[tool.aidb-gate]` table appended to pyproject.toml, or a gate.toml where there is no
  pyproject.toml, that `pytest -m p1` accepts as it is;
- a GitHub Actions job and a GitLab CI job, each running `pytest -m p1`, keeping the whole
  reports folder and publishing the JUnit XML;
- `reports/` in the build's ignore file, so the gate's own output never enters the image.
It never overwrites a file or a table that already exists (unless forced) and says what it
wrote and what it left alone.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from aidb_gate.config import DEFAULTS, find_config_file
from aidb_gate.errors import ConfigError
from aidb_gate.stages.build import find_containerfile

GITHUB_JOB = Path(".github/workflows/aidb-gate.yml")
GITLAB_JOB = Path(".gitlab/aidb-gate.gitlab-ci.yml")

#: Words in the service's own code that say it talks to a backing service (some talk REST, no client).
MENTIONS = {"postgres": r"postgres|psycopg|asyncpg|pgx|libpq|\"pg\"", "redis": r"redis", "qdrant": r"qdrant"}
#: The service's own code and manifests, in the languages services are commonly written in.
SOURCES = {".py", ".js", ".mjs", ".cjs", ".ts", ".go", ".rs", ".java", ".kt", ".rb", ".php", ".cs"}
MANIFESTS = {"package.json", "go.mod", "Cargo.toml", "pom.xml", "build.gradle", "build.gradle.kts", "Gemfile",
             "composer.json"}
SKIP_DIRS = {".venv", "venv", ".git", "node_modules", "vendor", "target", "dist", "build", "reports", ".tox"}
#: Client libraries that tell which backing service a Python service talks to.
CLIENTS = {
    "postgres": ("psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary", "asyncpg", "pg8000"),
    "redis": ("redis", "aioredis", "hiredis"),
    "qdrant": ("qdrant-client", "qdrant_client"),
}


@dataclass
class Found:
    """What init learned about the service in the repository."""

    containerfile: Path
    port: int | None
    dependencies: dict[str, bool]
    requirement_files: list[str] = field(default_factory=list)
    #: Python code or requirements in the repository: the imports stage has something to import.
    python: bool = True
    #: The repository's compose file and the service in it that builds this repository, if any.
    compose: str = ""
    service: str = ""


#: The names compose itself looks for, in its order.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def compose_service(root: Path) -> tuple[str, str]:
    """(compose file, service) when the repository's compose file has exactly one service built
    from the repository itself; ("", "") otherwise (no file, no such service, or several)."""
    from aidb_gate.compose import ComposeError, load_yaml

    for name in COMPOSE_FILES:
        path = root / name
        if not path.is_file():
            continue
        try:
            services = load_yaml(path)["services"]
        except ComposeError:
            return "", ""
        built = []
        for svc, spec in services.items():
            build = spec.get("build") if isinstance(spec, dict) else None
            context = build if isinstance(build, str) else build.get("context", ".") if isinstance(build, dict) else None
            if isinstance(context, str) and "$" not in context and (root / context).resolve() == root:
                built.append(svc)
        return (name, built[0]) if len(built) == 1 else ("", "")
    return "", ""


def exposed_port(containerfile: Path) -> int | None:
    """The first TCP port the Containerfile EXPOSEs (`EXPOSE 8091`, `EXPOSE 8091/tcp`)."""
    for line in containerfile.read_text(errors="replace").splitlines():
        m = re.match(r"\s*EXPOSE\s+(\d+)(?:/tcp)?\b", line, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


def requirement_names(root: Path) -> tuple[set[str], list[str]]:
    """Distribution names from requirements*.txt and pyproject's [project] dependencies."""
    names: set[str] = set()
    files: list[str] = []
    for path in sorted(root.glob("requirements*.txt")):
        files.append(path.name)
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
            if m:
                names.add(_normal(m.group(1)))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
        except tomllib.TOMLDecodeError:
            deps = []
        if deps:
            files.append("pyproject.toml")
        for dep in deps:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", dep)
            if m:
                names.add(_normal(m.group(1)))
    return names, files


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def mentioned(root: Path, limit: int = 2000) -> tuple[set[str], list[str], bool]:
    """The backing services the service's own code and manifests name (first `limit` files), the
    manifests read, and whether any of the code is Python. Python, JavaScript/TypeScript, Go, Rust,
    Java/Kotlin, Ruby, PHP and C# alike."""
    found: set[str] = set()
    manifests: list[str] = []
    python = False
    files = (p for p in root.rglob("*") if p.is_file() and (p.suffix in SOURCES or p.name in MANIFESTS)
             and not SKIP_DIRS & set(p.relative_to(root).parts))
    for i, path in enumerate(files):
        if i >= limit:
            break
        if path.name in MANIFESTS:
            manifests.append(path.relative_to(root).as_posix())
        python = python or path.suffix == ".py"
        text = path.read_text(errors="replace").lower()
        found |= {dep for dep, pattern in MENTIONS.items() if re.search(pattern, text)}
    return found, sorted(manifests), python


def survey(root: Path) -> Found:
    """Read the repository; a missing Containerfile is the one-paragraph error of the build stage."""
    containerfile = find_containerfile(root, "")
    names, files = requirement_names(root)
    named, manifests, python_code = mentioned(root)
    files += manifests
    if files or named:
        deps = {dep: dep in named or any(_normal(c) in names for c in clients) for dep, clients in CLIENTS.items()}
    else:
        deps = dict.fromkeys(CLIENTS, True)  # nothing to read: the contract's stack, as documented
    compose, service = compose_service(root)
    return Found(containerfile, exposed_port(containerfile), deps, files, python=bool(names) or python_code,
                 compose=compose, service=service)


def _toml(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'


def _line(setting: str, comment: str) -> str:
    return f"{setting:<34}# {comment}"


def starter_table(found: Found, root: Path) -> str:
    """The `[tool.aidb-gate]` text for this service, with the keys a user most often changes."""
    lines = ["[tool.aidb-gate]",
             "# Written by `aidb-gate init`. Every key and its default: docs/CONFIGURATION.md of aidb-gate."]
    if found.compose:
        lines.append(_line(f'compose = "{found.compose}"', "the stack as production defines it"))
        lines.append(_line(f'service = "{found.service}"', "the service built from this repository"))
    else:
        lines.append(_line('target = "."', "the build context"))
        lines.append(f'containerfile = "{found.containerfile.relative_to(root).as_posix()}"')
    port = found.port or DEFAULTS["port"]
    why = "EXPOSEd by the Containerfile" if found.port else "no EXPOSE found: set the port the service listens on"
    lines.append(_line(f"port = {port}", why))
    lines.append(f"startup_timeout_s = {DEFAULTS['startup_timeout_s']}")
    lines.append('reports_dir = "reports"')
    if not found.python:
        lines.append("")
        lines.append("[tool.aidb-gate.imports]")
        lines.append(_line("enabled = false", "no Python here: nothing for the imports stage to import"))
    lines.append("")
    lines.append("# The health contract's paths; point them at what the service serves.")
    lines.append("[tool.aidb-gate.health]")
    lines += [f'{key} = "{value}"' for key, value in DEFAULTS["health"].items()]
    lines.append("")
    lines.append("# The protected request the auth stage sends; enabled = false if the service has no API key.")
    lines.append("[tool.aidb-gate.auth]")
    lines += [f"{k} = {_toml(DEFAULTS['auth'][k])}" for k in ("enabled", "method", "path", "header")]
    lines.append("")
    lines.append("# The data API the backup and restore stages seed through; documents = false if there is none")
    lines.append("# (the checks that need it are then deselected and listed as switched off, never skipped).")
    lines.append("[tool.aidb-gate.data]")
    lines += [f"{k} = {_toml(DEFAULTS['data'][k])}" for k in ("documents", "create_path", "get_path", "search",
                                                              "search_path")]
    if found.compose:
        lines.append("")
        lines.append(f"# The dependencies, the environment, secrets and limits are {found.compose}'s: the gate starts")
        lines.append(f"# what `{found.service}` depends on. Values for its required variables, if the environment has")
        lines.append("# none: [tool.aidb-gate.compose_variables] (names that look like secrets get random values).")
        return "\n".join(lines) + "\n"
    seen = ", ".join(found.requirement_files) or "no requirements file"
    for dep, used in found.dependencies.items():
        lines.append("")
        lines.append(f"[tool.aidb-gate.dependencies.{dep}]")
        note = (f"the service's code or requirements ({seen}) name {dep}" if used
                else f"neither the code nor {seen} names {dep}")
        lines.append(_line(f"enabled = {'true' if used else 'false'}", note))
        lines.append(f"critical = {'true' if DEFAULTS['dependencies'][dep]['critical'] else 'false'}")
    lines.append("")
    lines.append("# The service's environment, as templates the gate fills in per run; rename the variables to")
    lines.append("# the ones the service reads. Placeholders: docs/CONFIGURATION.md of aidb-gate.")
    lines.append("[tool.aidb-gate.env]")
    enabled = {d for d, used in found.dependencies.items() if used}
    for var, template in DEFAULTS["env"].items():
        names = set(re.findall(r"\{(\w+)\.", template))
        if names <= enabled:
            lines.append(f'{var} = "{template}"')
    return "\n".join(lines) + "\n"


def _job(template: str, **values: str) -> str:
    text = (resources.files("aidb_gate") / "templates" / template).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def init(root: Path, requirement: str = "aidb-gate", force: bool = False) -> list[str]:
    """Write the configuration and the CI jobs into root; returns one line per file, for the user."""
    root = root.resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder. Run `aidb-gate init` in the service's repository (or pass --root).")
    found = survey(root)
    done: list[str] = []
    source, _table = find_config_file(root)
    if source is not None and not force:
        done.append(f"kept   {source.name}: it already has the gate's configuration")
    else:
        text = starter_table(found, root)
        pyproject = root / "pyproject.toml"
        if pyproject.is_file() and source != root / "gate.toml":
            current = pyproject.read_text()
            if source is not None:  # forced: replace the old table and its sub-tables
                current = _without_gate_tables(current)
            pyproject.write_text(current.rstrip("\n") + "\n\n" + text)
            done.append(f"wrote  pyproject.toml: [tool.aidb-gate] for {found.containerfile.name}, port "
                        f"{found.port or DEFAULTS['port']}")
        else:
            (root / "gate.toml").write_text(text)
            done.append(f"wrote  gate.toml: [tool.aidb-gate] for {found.containerfile.name}")
    done.append(keep_reports_out_of_the_build(root, "reports"))
    for rel, template, extra in ((GITHUB_JOB, "github-actions.yml", {}),
                                 (GITLAB_JOB, "gitlab-ci.yml", {"path": GITLAB_JOB.as_posix()})):
        path = root / rel
        if path.exists() and not force:
            done.append(f"kept   {rel}: it exists")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_job(template, requirement=requirement, reports_dir="reports", **extra))
        done.append(f"wrote  {rel}")
    if not (root / ".gitlab-ci.yml").exists():
        done.append(f"note   GitLab: add `include: [{{local: {GITLAB_JOB.as_posix()}}}]` to a .gitlab-ci.yml")
    done.append("next   pytest -m p1   (reports/gate.html, reports/junit.xml, reports/summary.json)")
    return done


def keep_reports_out_of_the_build(root: Path, reports_dir: str) -> str:
    """The gate writes its reports (and logs, while it builds) inside a repository that gates itself:
    they must not reach the build context, or a `COPY . /app` bakes a stale report into the image.
    Appends the folder to the ignore file the engines read (.containerignore wins over
    .dockerignore in Podman; Docker reads .dockerignore), or starts a .dockerignore."""
    line = f"{reports_dir.strip('/')}/"
    path = next((root / name for name in (".containerignore", ".dockerignore") if (root / name).is_file()),
                root / ".dockerignore")
    text = path.read_text() if path.is_file() else ""
    if any(entry.strip().strip("/") == reports_dir.strip("/") for entry in text.splitlines()):
        return f"kept   {path.name}: it already leaves {line} out of the build"
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + f"# aidb-gate's reports\n{line}\n")
    return f"wrote  {path.name}: {line} stays out of the build context"


def _without_gate_tables(text: str) -> str:
    """pyproject text without [tool.aidb-gate] and its sub-tables (for --force)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            skipping = header.group(1).startswith("tool.aidb-gate")
        if not skipping:
            out.append(line)
    return "".join(out)
