"""Every third-party module the project imports is declared, runtime and test dependencies apart
(pyproject.toml's ``dependencies`` and ``test`` extra), and requirements.txt, the file users
install from, lists exactly the runtime ones. Read with ``ast`` and ``tomllib``: nothing is run."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_CODE = ("perco_viz", "ui", "pages", "app.py")  # tools/ measure: they may use the test extra
# bring-your-own-training integrations and their examples: runtime plus these optional extras
# (`make setup` installs them, so tests/ may import them too)
EXTRA_CODE = ("perco_viz/integrations", "examples")
EXTRAS = ("lightning", "hf")
# our own top-level modules: the packages, the test helpers, and each tool script (tests import them)
OURS = ({"perco_viz", "ui", "tests", "conftest"} | {p.stem for p in (ROOT / "tools").glob("*.py")}
        | {p.stem for p in (ROOT / "tests").glob("*.py")})  # test helper modules (tests/ is on sys.path)


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement line (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _imported(*tops: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """Top-level names of the third-party modules imported anywhere under ``tops`` but ``exclude``."""
    found = set()
    skip = [ROOT / e for e in exclude]
    for top in tops:
        p = ROOT / top
        for f in [p] if p.is_file() else p.rglob("*.py"):
            if any(f.is_relative_to(e) for e in skip):
                continue
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.partition(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    found.add(node.module.partition(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in OURS and m != "__future__"}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    """``{module: the installed distributions that provide it}`` (normalized names)."""
    provided = packages_distributions()
    return {m: {_name(d) for d in provided.get(m, [])} for m in modules}


def _undeclared(modules: set[str], declared: set[str]) -> list[str]:
    return sorted(f"{m} (from {sorted(d) or 'nothing installed'})"
                  for m, d in _distributions(modules).items() if not d & declared)


def test_requirements_txt_is_the_runtime_list():
    assert _requirements() == _pyproject()["dependencies"]


def test_every_runtime_import_is_a_runtime_dependency():
    declared = {_name(r) for r in _pyproject()["dependencies"]}
    missing = _undeclared(_imported(*RUNTIME_CODE, exclude=EXTRA_CODE), declared)
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"


def _with_extras(*groups: str) -> set[str]:
    project = _pyproject()
    return {_name(r) for r in project["dependencies"] + [r for g in groups for r in project["optional-dependencies"][g]]}


def test_integrations_and_examples_import_only_runtime_and_their_extras():
    missing = _undeclared(_imported(*EXTRA_CODE), _with_extras(*EXTRAS))
    assert not missing, f"imported by {EXTRA_CODE} but in neither dependencies nor the {EXTRAS} extras: {missing}"
    assert {"lightning", "transformers"} <= _imported(*EXTRA_CODE)  # the check sees them
    assert not _imported("perco_viz", exclude=EXTRA_CODE) & {"lightning", "transformers", "pytorch_lightning"}


def test_every_test_and_tool_import_is_declared():
    project = _pyproject()
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    missing = _undeclared(_imported("tests", "tools"), declared | _with_extras(*EXTRAS))
    assert not missing, f"imported by tests/tools but in neither dependencies nor the test/{EXTRAS} extras: {missing}"


def test_test_tools_stay_out_of_the_runtime():
    runtime = {_name(r) for r in _pyproject()["dependencies"]}
    assert not runtime & {"pytest", "hypothesis", "playwright", "ruff"}
    assert not _imported(*RUNTIME_CODE) & {"pytest", "hypothesis"}
