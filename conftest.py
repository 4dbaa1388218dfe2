"""Loads the aidb-gate plugin (also registered as an installed pytest11 plugin under the same name,
so this is a no-op once the project is installed); everything else lives in plugins/ and aidb_gate/."""

pytest_plugins = ["plugins.gate"]
