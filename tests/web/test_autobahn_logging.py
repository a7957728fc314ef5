"""portal.autobahn_logging: autobahn's debug-line arguments are built only when a line is written."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from portal import autobahn_logging


@pytest.fixture
def installed():
    modules = [importlib.import_module(name) for name in autobahn_logging.MODULES]
    before = {(m, h): getattr(m, h) for m in modules for h in autobahn_logging.HELPERS}
    autobahn_logging.install()
    yield modules
    for (module, helper), original in before.items():
        setattr(module, helper, original)


def test_the_helpers_daphne_uses_are_replaced_once_and_format_exactly_as_before(installed) -> None:
    import autobahn.util

    for module in installed:
        for helper in autobahn_logging.HELPERS:
            assert hasattr(getattr(module, helper), "eager"), f"{module.__name__}.{helper} not lazy"
    assert autobahn_logging.install() == []  # a second install changes nothing
    protocol = installed[0]
    method = protocol.WebSocketProtocol.sendData
    assert f"{protocol.hltype(method)}" == autobahn.util.hltype(method)
    assert str(protocol.hlval(1234)) == autobahn.util.hlval(1234)
    assert "{x:>12}".format(x=protocol.hlval("ab")) == "{x:>12}".format(x=autobahn.util.hlval("ab"))


def test_nothing_is_computed_until_a_line_is_formatted(installed) -> None:
    calls = []
    deferred = autobahn_logging.lazy(lambda value: calls.append(value) or f"<{value}>")
    value = deferred("peer")
    assert calls == []
    assert str(value) == "<peer>" and calls == ["peer"]


@pytest.mark.parametrize("name", autobahn_logging.MODULES)
def test_the_installed_autobahn_uses_the_helpers_only_as_arguments_of_its_log_calls(name) -> None:
    # The patch is safe only while this holds: a lazy value anywhere else (a string operation, a
    # return value) would change behaviour. A new autobahn that breaks it fails here.
    tree = ast.parse(inspect.getsource(importlib.import_module(name)))
    in_log_calls, everywhere = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "log":
                for argument in [*node.args, *(k.value for k in node.keywords)]:
                    in_log_calls.add(id(argument))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in autobahn_logging.HELPERS:
            everywhere.append(node)
    assert everywhere, f"{name} no longer calls {autobahn_logging.HELPERS}: the patch can go"
    stray = [node.lineno for node in everywhere if id(node) not in in_log_calls]
    assert stray == [], f"{name} uses a helper outside a log call at lines {stray}"
