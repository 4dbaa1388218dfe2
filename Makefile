# aidb-gate: `make gate` runs the p1 deployment gate on the bundled reference AIDB;
# `make test` runs the project's whole test suite. Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: gate test setup engine images lint unit selftest p1 p2 bench clean doctor

gate: setup
	@mkdir -p reports
	$(BIN)/pytest -m p1 suites; status=$$?; \
	  echo "[aidb-gate] reports: $(CURDIR)/reports/gate.html and $(CURDIR)/reports/junit.xml"; exit $$status

test: setup lint unit p1 p2

setup: $(STAMP) engine images

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

engine:
	@bash scripts/install-engine.sh

images: $(STAMP) engine
	$(BIN)/aidb-gate prepare

doctor: $(STAMP)
	$(BIN)/aidb-gate doctor

lint: $(STAMP)
	$(BIN)/ruff check .

# The self-tests: unit, plugin (real child gate runs), integration and the known-bad corpus; two
# workers, because most of their time is spent waiting on containers.
unit: setup
	$(BIN)/pytest tests -n 2 --html=reports/selftest.html --junitxml=reports/selftest-junit.xml

p1: setup
	$(BIN)/pytest -m p1 suites

p2: setup
	$(BIN)/pytest -m p2 suites --html=reports/gate-p2.html --junitxml=reports/junit-p2.xml

bench: setup
	$(BIN)/python bench/gate_bench.py --repeat 10

clean: $(STAMP)
	$(BIN)/aidb-gate clean
