"""imports: every module of the app imports inside the image, with the image's own interpreter.

Guarantees: each module is imported in a fresh interpreter process, one at a time, in the
image's WORKDIR, with the service's environment but no dependency reachable (the container
has no network), so a module that needs a live dependency at import time is itself a finding.
`pip check` runs where pip exists. Failures carry the traceback and, for a missing package,
the distribution to add.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aidb_gate.core import api
from aidb_gate.core.engine import Engine
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.core.text import clip
from aidb_gate.pipeline import StageName
from aidb_gate.stages.build import BUILD

#: Import names whose distribution on PyPI is named differently.
DISTRIBUTIONS = {
    "yaml": "PyYAML", "PIL": "Pillow", "cv2": "opencv-python", "sklearn": "scikit-learn",
    "dotenv": "python-dotenv", "jwt": "PyJWT", "bs4": "beautifulsoup4", "dateutil": "python-dateutil",
    "psycopg2": "psycopg2-binary", "google.protobuf": "protobuf", "jose": "python-jose",
    "multipart": "python-multipart", "magic": "python-magic", "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL", "attr": "attrs", "pkg_resources": "setuptools", "zmq": "pyzmq",
}

# Runs inside the image: lists the top-level modules of the working directory (unless given)
# and imports each in its own interpreter, printing one JSON line per module.
DRIVER = r"""
import json, os, subprocess, sys
mods = sys.argv[1:] or sorted(f[:-3] for f in os.listdir(".")
                              if f.endswith(".py") and f != "setup.py" and f[:-3].isidentifier())
print(json.dumps({"cwd": os.getcwd(), "python": sys.version.split()[0], "modules": mods}), flush=True)
for m in mods:
    try:
        p = subprocess.run([sys.executable, "-c", "import " + m], capture_output=True, text=True, timeout=120)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        code, err = -1, "import did not finish within 120 s (blocked on a dependency at import time?)"
    print(json.dumps({"module": m, "code": code, "stderr": err[-6000:]}), flush=True)
if os.environ.get("AIDB_GATE_PIP_CHECK") == "1":
    has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
    if has_pip:
        p = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                           env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        print(json.dumps({"pip_check": p.returncode, "output": (p.stdout + p.stderr)[-6000:]}), flush=True)
"""


@dataclass
class ModuleImport:
    module: str
    ok: bool
    traceback: str = ""

    @property
    def cause(self) -> str:
        return explain_import_error(self.traceback) if not self.ok else ""


@dataclass
class ImportReport:
    """The outcome of the imports stage for one image."""

    interpreter: str = ""
    python_version: str = ""
    workdir: str = ""
    modules: list[ModuleImport] = field(default_factory=list)
    pip_check: str | None = None  # None: pip not in the image
    pip_check_ok: bool = True
    error: str = ""

    @property
    def failed(self) -> list[ModuleImport]:
        return [m for m in self.modules if not m.ok]


def explain_import_error(traceback: str) -> str:
    """One line: what failed to import and what to do, read from the traceback's last lines."""
    missing = re.findall(r"ModuleNotFoundError: No module named '([^']+)'", traceback)
    if missing:
        name = missing[-1]
        top = name.split(".")[0]
        dist = DISTRIBUTIONS.get(name) or DISTRIBUTIONS.get(top) or top
        return (f"module `{name}` is not installed in the image: add the distribution `{dist}` to the "
                "requirements the Containerfile installs (or fix the import if it is a local module)")
    symbol = re.findall(r"ImportError: cannot import name '([^']+)' from '([^']+)'", traceback)
    if symbol:
        name, module = symbol[-1]
        return (f"`{module}` has no `{name}`: the code imports a symbol that this version of `{module}` "
                "does not define (renamed, removed, or a version mismatch)")
    last = [ln for ln in traceback.strip().splitlines() if ln.strip()]
    return f"import raised {last[-1].strip()}" if last else "import failed with no output"


def run_py(engine: Engine, image: str, interp: str, args: list[str], env: dict[str, str],
           labels: dict[str, str], volumes: dict[str, dict[str, str]] | None = None) -> tuple[int, str, str]:
    return api.run_once(engine, image, [interp, *args], env=env, labels=labels, volumes=volumes)


def check_imports(engine: Engine, image: str, env: dict[str, str], labels: dict[str, str],
                  modules: tuple[str, ...] = (), interpreter: str = "", pip_check: bool = True,
                  volumes: dict[str, dict[str, str]] | None = None) -> ImportReport:
    """Import every module inside the image, with the service's environment and (compose) secret
    files, but no network: what fails here fails in the code or the image, not the stack."""
    report = ImportReport()
    # One container does everything (imports, then pip check); the next interpreter is tried only
    # when this one does not exist in the image.
    env = {**env, "AIDB_GATE_PIP_CHECK": "1" if pip_check else "0"}
    for interp in [interpreter] if interpreter else ["python3", "python"]:
        try:
            code, out, err = run_py(engine, image, interp, ["-c", DRIVER, *modules], env, labels, volumes)
        except Exception as exc:  # the engine refuses to start a missing executable
            code, out, err = 127, "", str(exc)
        if '"modules"' in out:
            report.interpreter = interp
            break
    else:
        tried = interpreter or "python3, python"
        report.error = (f"No Python interpreter ({tried}) runs in {image} ({clip(err.strip(), 300, tail=True)}). Set "
                        "`imports.interpreter` to the image's interpreter, or install Python in the image.")
        return report
    for line in out.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "modules" in row:
            report.workdir, report.python_version = row["cwd"], row["python"]
        elif "module" in row:
            report.modules.append(ModuleImport(row["module"], row["code"] == 0, row["stderr"]))
        elif "pip_check" in row:
            report.pip_check, report.pip_check_ok = row["output"].strip(), row["pip_check"] == 0
    if code != 0 and not report.modules:
        report.error = f"the import driver failed (exit {code}): {clip((err or out).strip(), 1500, tail=True)}"
    elif not report.modules:
        report.error = (f"no Python modules found in the image's working directory {report.workdir or '?'}. "
                        "Set WORKDIR in the Containerfile to the app's folder, or list `imports.modules`.")
    return report


def _unreachable(cfg: Any) -> dict[str, dict[str, str]]:
    """Endpoints for the imports check, which runs with no network: every dependency at a host
    that is not there, with placeholder secrets."""
    return {d.name: {"host": f"{d.name}.invalid", "port": str(d.port), "db": d.db, "user": d.user,
                     "password": "x", "api_key": "x", "url": f"http://{d.name}.invalid:{d.port}",
                     "critical": str(d.critical).lower()} for d in cfg.enabled_dependencies}


def import_env(cfg: Any, api_key: str) -> dict[str, str]:
    """The service's environment for the imports check: the compose environment as written, or
    the contract's templates filled from unreachable endpoints."""
    from aidb_gate.stages.boot import service_env

    return service_env(cfg, _unreachable(cfg), api_key)


def _imports(session: Pipeline) -> ImportReport:
    from aidb_gate.stages.boot import secret_volumes, service_files

    image, cfg, engine = session.target_image(), session.cfg, session.connect()
    session.progress("imports: importing every module inside the image")
    files = service_files(cfg, _unreachable(cfg), session.api_key)
    return check_imports(engine, image, import_env(cfg, session.api_key), session.run.labels("imports"),
                         cfg.import_modules, cfg.import_interpreter, cfg.pip_check,
                         volumes=secret_volumes(cfg, session.mounts, engine, "imports", image, files))


#: Every module imported inside the image, with the service's environment and secrets, no network.
IMPORTS: Step[ImportReport] = Step("imports", StageName.IMPORTS, _imports, needs=(BUILD,),
                                   passed=lambda r: not (r.error or r.failed or not r.pip_check_ok))
