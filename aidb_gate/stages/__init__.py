"""stages: the gate's pipeline, one module per stage, each defining its steps next to its logic.

The table of stages (names, order, markers) is aidb_gate/pipeline.py, below everything that
names a stage; `python -m aidb_gate.stages.graph` draws the steps by their needs.
"""
