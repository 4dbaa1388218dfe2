"""Loads the aidb-gate plugin; everything else lives in plugins/ and aidb_gate/."""

pytest_plugins = ["plugins.gate"]
