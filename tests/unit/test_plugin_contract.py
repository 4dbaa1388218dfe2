"""Every dependency plug-in keeps one typed contract (services/base.py): this package's are
checked by mypy and at load; an installed one that lacks a name is refused in one paragraph."""

from __future__ import annotations

import types

import pytest

from aidb_gate import services
from aidb_gate.errors import GateError
from aidb_gate.services.base import CONTRACT


def test_every_plugin_of_the_package_defines_the_whole_contract():
    kinds = services.registry()
    assert {"postgres", "redis", "qdrant", "generic"} <= set(kinds)
    for kind, plugin in kinds.items():
        assert [name for name in CONTRACT if not hasattr(plugin, name)] == [], kind
        assert kind == plugin.KIND and callable(plugin.offer) and callable(plugin.is_ready)


def test_a_plugin_missing_names_is_refused_naming_them():
    module = types.ModuleType("half_plugin")
    module.KIND, module.IMAGES, module.IMAGE = "half", ("half",), "docker.io/half:1"
    with pytest.raises(GateError, match=r"half_plugin lacks RECIPE, PORT, CRITICAL, FAULTS, DATA, REFUSALS, offer, "
                                        r"is_ready: a plug-in defines every name") as err:
        services._checked(module, "half_plugin")
    assert err.value.stage == "config"
