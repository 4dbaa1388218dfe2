"""The checkout's root conftest. The aidb-gate plugin itself is loaded through its installed
pytest11 entry point (`aidb_gate.plugins.gate`, from plugins/gate.py), exactly as in a service
repository that pip-installed the gate; loading it here as well would register it twice."""
