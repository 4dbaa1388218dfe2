# aidb-gate: `make gate` runs the p1 deployment gate on the bundled reference AIDB;
# `make test` runs the project's whole test suite. Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: gate test setup engine images lint unit selftest p1 p2 engines docker-engine bench bench-smoke clean doctor chromium tools tox

# The venv's bin first: the self-tests' backup scripts call pg_dump and psql as production's do,
# and install-tools.sh puts PostgreSQL 18's there (Debian 12's 15 refuses an 18 server).
export PATH := $(abspath $(BIN)):$(PATH)

# doctor runs after the engine install and before any build (images depends on it too, so the
# order holds under -j); its ERR lines say what to fix, and make stops there.
gate: doctor setup
	@mkdir -p reports
	$(BIN)/pytest -m p1 suites; status=$$?; \
	  echo "[aidb-gate] reports: $(CURDIR)/reports/gate.html and $(CURDIR)/reports/junit.xml"; exit $$status

test: setup lint unit p2 engines

setup: $(STAMP) engine images

# Dependencies at the versions constraints.txt pins: the ones the last green run tested.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Installs nothing where `podman info` or `docker info` already works.
engine:
	@bash scripts/install-engine.sh

# debootstrap only where Podman must build the base image (no registry here) and it is missing.
images: $(STAMP) engine doctor
	@command -v debootstrap >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1 \
	  || podman image exists localhost/aidb-gate/base:bookworm || bash scripts/install-engine.sh --debootstrap
	$(BIN)/aidb-gate prepare

# The real engine check: a build, a labelled network with two containers reaching each other by
# name, an exec and a published port reached from here. Exit 3 (a check could not run: on a fresh
# machine there is no image yet) lets set-up go on; `aidb-gate prepare` runs those checks once the
# base image exists.
doctor: $(STAMP) engine
	@$(BIN)/aidb-gate doctor || [ $$? -eq 3 ]

# Headless Chromium for the self-test that renders reports/gate.html (tests/plugin/test_report_html.py);
# without /usr/bin/chromium it skips, and fails in CI (CI=true). Debian's package.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; log=$$(mktemp); \
	  echo "[aidb-gate] installing chromium with apt-get (for the report self-test)"; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium fonts-liberation; } >"$$log" 2>&1 || { tail -n 20 "$$log"; rm -f "$$log"; exit 1; }; \
	  rm -f "$$log"; }

# Host tools the backup-procedure self-tests call (tests/plugin/test_user_backup.py): curl, jq,
# and PostgreSQL 18 client tools in the venv. Installs nothing already there.
tools: $(STAMP)
	@bash scripts/install-tools.sh $(VENV)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The self-tests: unit, plugin (real child gate runs), integration and the known-bad corpus; two
# workers, because most of their time is spent waiting on containers. worksteal, not load: load
# hands each worker one contiguous first batch, and the first quarter of the collection holds
# every slow test (corpus, integration, plugin), so one worker ran them all while the other sat
# idle after the unit tests (19 min instead of about 10 here).
unit: setup chromium tools
	$(BIN)/pytest tests -n 2 --dist worksteal --html=reports/selftest.html --junitxml=reports/selftest-junit.xml

p1: setup
	$(BIN)/pytest -m p1 suites

p2: setup
	$(BIN)/pytest -m p2 suites --html=reports/gate-p2.html --junitxml=reports/junit-p2.xml

# The p1 gate where users' CI runs it (root): the bench's smoke (p1 on this Podman and on Docker
# over TCP, a small backup at scale: make test's p1), Docker with every engine CLI masked, doctor
# on Docker's firewall, and a Podman socket shared with a run in namespaces of its own (see the
# script). Not root: the bench's smoke on this engine only.
engines: setup
	@bash scripts/engines-selftest.sh $(BIN)/pytest

docker-engine:
	@bash scripts/docker-netns.sh start

# The same checks from environments that install the gate from its sdist (not editable).
tox: setup
	$(BIN)/tox -e lint,unit,gate

# The full benchmark (docs/PERFORMANCE.md): cold and 10 warm p1 runs on Podman and on Docker,
# backup at scale, the Qdrant engines side by side; reports/bench/bench.json and bench.md.
bench: setup
	$(BIN)/python bench/gate_bench.py --repeat 10 --docker

# The same code paths at the smallest size (one run per engine, a small scale), run by make test
# (engines, step 1) so that the bench can never silently break; reports/bench/bench-smoke.json.
bench-smoke: setup
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python bench/gate_bench.py --smoke --docker; \
	  else $(BIN)/python bench/gate_bench.py --smoke; fi

clean: $(STAMP)
	$(BIN)/aidb-gate clean
