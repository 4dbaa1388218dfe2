"""aidb-gate: a pytest deployment gate for containerized services.

The package is the library the pytest plugin and the CLI call; its modules read as the pipeline:
config -> engine -> images -> build -> stack -> imports -> boot -> health -> backup -> restore
-> diagnose -> report.
"""

__version__ = "0.1.0"
