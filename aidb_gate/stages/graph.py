"""graph: the pipeline as docs/ARCHITECTURE.md shows it, generated from the code.

Guarantees: `steps()` finds every `Step` the stage modules (and the stack) define; `table()` is
the stage table and `mermaid()` the graph of steps by their `needs`, grouped by stage, both in
the table's order. `python -m aidb_gate.stages.graph --write docs/ARCHITECTURE.md` rewrites the
generated parts between their markers; a self-test fails when the document is out of date.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from aidb_gate import pipeline
from aidb_gate import stages as package
from aidb_gate.core.steps import Step

#: Modules besides this package's that define steps (the images and dependencies stages).
OTHER_STEP_MODULES = ("aidb_gate.stack",)
BEGIN, END = "<!-- generated: {} (python -m aidb_gate.stages.graph --write) -->", "<!-- end: {} -->"


def steps() -> list[Step[Any]]:
    """Every step defined at module level, in pipeline order (stage, then needs before dependants)."""
    names = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)] + list(OTHER_STEP_MODULES)
    found: dict[str, Step[Any]] = {}
    for name in names:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, Step):
                found.setdefault(value.name, value)
    ordered: list[Step[Any]] = []

    def visit(step: Step[Any]) -> None:
        if step not in ordered:
            for need in step.needs:
                visit(need)
            ordered.append(step)

    for step in sorted(found.values(), key=lambda s: (pipeline.order(s.stage), s.name)):
        visit(step)
    return ordered


def table() -> str:
    """The stage table as markdown: name, what must hold, marker."""
    rows = ["| stage | holds | marker |", "|---|---|---|"]
    unmarked = "(no marker: the session runs it)"
    rows += [f"| {s.name} | {s.holds} | {f'`{s.name}`' if s.marker else unmarked} |" for s in pipeline.PIPELINE]
    return "\n".join(rows)


def mermaid() -> str:
    """The steps and their needs as a mermaid flowchart, one box per stage that has steps."""
    found = steps()
    lines = ["```mermaid", "flowchart LR"]
    for stage in pipeline.NAMES:
        mine = [s for s in found if s.stage == stage]
        if mine:
            lines.append(f"  subgraph {stage}")
            lines += [f"    {s.name}_step[{s.name}]" for s in mine]
            lines.append("  end")
    lines += [f"  {need.name}_step --> {s.name}_step" for s in found for need in s.needs]
    lines.append("```")
    return "\n".join(lines)


def render(document: str) -> str:
    """`document` with each generated part replaced by what the code says now."""
    for key, text in (("stage table", table()), ("step graph", mermaid())):
        begin, end = BEGIN.format(key), END.format(key)
        head, found, rest = document.partition(begin)
        if not found:
            raise ValueError(f"the document has no {begin!r} marker")
        _, found_end, tail = rest.partition(end)
        if not found_end:
            raise ValueError(f"the document has no {end!r} marker after {begin!r}")
        document = f"{head}{begin}\n{text}\n{end}{tail}"
    return document


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(render(path.read_text()))
        return 0
    print(table(), mermaid(), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
