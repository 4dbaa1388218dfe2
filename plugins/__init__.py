"""pytest plugins of aidb-gate; installed as aidb_gate.plugins."""
