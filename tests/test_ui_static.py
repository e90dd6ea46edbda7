"""What the app's code must never do, checked on its source: no cached function shows Streamlit's
default spinner ("Running `registry()`": an internal name) — each says nothing or says, in words,
what the person waits for."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

APP_FILES = sorted([ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")])


def _cache_decorators(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                    yield node.name, dec


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: p.name)
def test_cached_functions_never_show_their_name(path):
    for name, dec in _cache_decorators(path):
        spinner = next((k.value for k in getattr(dec, "keywords", []) if k.arg == "show_spinner"), None)
        assert spinner is not None, f"{path.name}: @{ast.unparse(dec)} on {name}() shows 'Running `{name}()`'"
        if isinstance(spinner, ast.Constant):
            assert spinner.value is False or isinstance(spinner.value, str), f"{path.name}: {name}()"
