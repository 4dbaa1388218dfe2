"""A server that answers Qdrant's routes with something that is not Qdrant's shape gets one
paragraph from the backup CLI, never a KeyError or TypeError from inside it."""

from __future__ import annotations

import pytest

from aidb_gate import cli
from tests.unit.http_doubles import answer, handler_from, serving


@pytest.mark.parametrize("result", [
    {"collections": [{"nom": "docs"}]},                # no `name`
    {"collections": [{"name": 7}, {"name": "docs"}]},  # a name that is no string (and mixed types)
    {"collections": {"docs": {}}},                     # not a list
    ["docs"],                                          # not an object
])
def test_a_collection_list_not_shaped_as_qdrants_is_one_paragraph(result, tmp_path, capsys):
    with serving(handler_from(lambda h: answer(h, 200, {"result": result, "status": "ok"}))) as url:
        code = cli.main(["backup", "--qdrant-url", url, "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "not Qdrant's list of collections" in err
    assert not (tmp_path / "b").exists()  # the folder this call made is gone again
