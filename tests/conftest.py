"""Self-tests of aidb-gate: unit tests of the library, and pytester tests of the plugin."""

import os

pytest_plugins = ["pytester"]

# tests/engines needs the Docker engine scripts/engines-selftest.sh starts (`make engines`), which
# says where it is; elsewhere those tests are not collected rather than skipped.
collect_ignore = [] if os.environ.get("SELFTEST_DOCKER_SOCKET") else ["engines"]
