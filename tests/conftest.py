"""Self-tests of aidb-gate: unit tests of the library, and pytester tests of the plugin."""

pytest_plugins = ["pytester"]
