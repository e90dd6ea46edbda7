"""The layout's rules, read from the source with ``ast`` (nothing is imported or run):

* perco_viz's modules import each other without a cycle (module-level and function-level
  imports alike; only ``if TYPE_CHECKING:`` blocks are left out);
* no module uses another module's ``_private`` names (``from m import _x`` or ``m._x``), in the
  library, the app (``app.py``, ``pages/``, ``ui/``) and ``tools/``;
* the library never imports streamlit; ``perco_viz/analysis`` never imports plotly.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "perco_viz"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources(*tops: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every .py under the given folders/files of the repo."""
    out = {}
    for top in tops:
        p = ROOT / top
        for f in [p] if p.is_file() else sorted(p.rglob("*.py")):
            if "__pycache__" not in f.parts:
                out[_module_name(f)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement reads from."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


class Module:
    """One source file: what it imports (``targets``: modules, ``names``: (module, name) pairs)
    and which local names are bound to modules."""

    def __init__(self, name: str, path: Path, known: set[str]) -> None:
        self.name, self.path = name, path
        self.tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        self.targets: set[str] = set()  # absolute module names imported
        self.names: list[tuple[str, str, int]] = []  # (module, imported name, line)
        self.aliases: dict[str, str] = {}  # local name -> module it is bound to
        for node in _imports(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.targets.add(alias.name)
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        self.aliases.setdefault(alias.name.partition(".")[0], alias.name.partition(".")[0])
                continue
            base = _base(name, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:  # ``from pkg import module``
                    self.targets.add(sub)
                    self.aliases[alias.asname or alias.name] = sub
                else:
                    self.targets.add(base)
                    self.names.append((base, alias.name, node.lineno))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@functools.cache  # the files are parsed once per test session
def _modules(*tops: str) -> dict[str, Module]:
    sources = _sources(*tops)
    known = set(sources) | set(_sources(LIBRARY))
    return {name: Module(name, path, known) for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), each
    sorted: Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    out.append(sorted(component))
    return out


def library_graph() -> dict[str, set[str]]:
    """``{module: the perco_viz modules it imports}``; importing ``pkg.sub`` is an edge to
    ``pkg.sub`` only (the parent package's ``__init__`` is not counted as imported)."""
    modules = _modules(LIBRARY)
    return {name: {t for t in m.targets if t in modules and t != name}
            for name, m in modules.items()}


def private_uses(*tops: str) -> list[str]:
    """``file:line: module._name`` for every use of another perco_viz/ui module's private name."""
    modules = _modules(*tops)
    ours = (LIBRARY, "ui", "pages", "tools")
    out = []
    for name, m in modules.items():
        rel = m.path.relative_to(ROOT)
        for base, imported, line in m.names:
            if base != name and base.partition(".")[0] in ours and _private(imported):
                out.append(f"{rel}:{line}: from {base} import {imported}")
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr)
                    and node.value.id in m.aliases):
                target = m.aliases[node.value.id]
                if target != name and target.partition(".")[0] in ours:
                    out.append(f"{rel}:{node.lineno}: {target}.{node.attr}")
    return sorted(out)


def forbidden_imports(top: str, banned: str) -> list[str]:
    """``file: module`` for each import of ``banned`` (or a submodule of it) under ``top``."""
    out = []
    for m in _modules(top).values():
        for target in sorted(m.targets):
            if target == banned or target.startswith(banned + "."):
                out.append(f"{m.path.relative_to(ROOT)}: {target}")
    return out


# --------------------------------------------------------------------------- the rules
def test_the_graph_sees_the_library():
    graph = library_graph()
    assert {"perco_viz.runs", "perco_viz.config", "perco_viz.checks"} <= set(graph)
    assert "perco_viz.config" in graph["perco_viz.runs"]


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_library():
    cycles = _cycles(library_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("top", [LIBRARY, "ui", "pages", "app.py", "tools"])
def test_no_private_names_of_other_modules(top):
    found = private_uses(top)
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_library_never_imports_streamlit():
    found = forbidden_imports(LIBRARY, "streamlit")
    assert not found, "\n".join(found)


def test_analysis_never_imports_plotly():
    found = forbidden_imports(f"{LIBRARY}/analysis", "plotly")
    assert not found, "\n".join(found)


# the data flow: data + models -> engine -> run store -> analysis -> figures -> pages (and the
# commands on top). A module never imports one of a later stage.
UPPER = ("perco_viz.analysis", "perco_viz.figures", "perco_viz.bench", "perco_viz.cli", "perco_viz.methods")


def test_the_library_flows_one_way():
    graph = library_graph()
    found = []
    for module, targets in sorted(graph.items()):
        if module == LIBRARY or module.startswith(UPPER) or module == "perco_viz.__main__":
            if module.startswith("perco_viz.analysis"):
                found += [f"{module} -> {t}" for t in sorted(targets) if t.startswith("perco_viz.figures")]
            continue
        found += [f"{module} -> {t}" for t in sorted(targets) if t.startswith(UPPER)]
    assert not found, "imports against the data flow:\n" + "\n".join(found)
