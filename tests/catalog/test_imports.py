"""The import graph: data flows one way through the catalog engine, and reference_impls stands alone.

Every ``import`` statement of every module counts, including those inside functions (a lazy import
is still a dependency). The graph is read from the source with :mod:`ast`, so nothing is executed.

- No cycles among the modules of ``modl`` (the issue: catalog -> validate -> catalog, yamlload ->
  catalog -> validate -> yamlload).
- The layers of the catalog engine: ``modl.errors`` <- ``modl.yamlload`` (loading) <- ``modl.validate``
  (validation) <- ``modl.catalog`` (the model); no module imports one of a later layer.
- ``reference_impls`` imports nothing from ``modl`` (plotting.py imported modl.io).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["modl.errors", "modl.yamlload", "modl.validate", "modl.catalog"]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path, known: set[str]) -> set[str]:
    """Modules (of ``known``, or any top-level name) that the file at ``path`` imports anywhere."""
    this = module_name(root, path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports the module pkg.mod when there is one.
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            out.update(subs or {target})
    return out


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    files = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    known = set(files)
    return {name: imports_of(root, path, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle among the graph's own modules (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name] & graph.keys()):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``a imports b`` for every module a of a layer that imports a module b of a later layer."""
    out = []
    for i, lower in enumerate(LAYERS):
        for upper in LAYERS[i + 1:]:
            if upper in graph.get(lower, set()):
                out.append(f"{lower} imports {upper}")
    return out


def modl_imports_in_reference_impls(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in graph.items() if name.split(".")[0] == "reference_impls"
        for target in targets if target.split(".")[0] == "modl"
    )


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n", encoding="utf-8")
    (pkg / "b.py").write_text("from .c import x\n", encoding="utf-8")
    (pkg / "c.py").write_text("import pkg.a\nx = 1\n", encoding="utf-8")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_modl_has_no_import_cycle() -> None:
    graph = import_graph(REPO_ROOT, ("modl",))
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_loading_then_validation_then_the_catalog_model() -> None:
    graph = import_graph(REPO_ROOT, ("modl",))
    assert set(LAYERS) <= graph.keys()
    assert layer_violations(graph) == []
    # The bottom layer imports nothing of modl at all.
    assert {t for t in graph["modl.errors"] if t.split(".")[0] == "modl"} == set()


def test_reference_impls_import_nothing_from_modl() -> None:
    graph = import_graph(REPO_ROOT, ("reference_impls",))
    assert modl_imports_in_reference_impls(graph) == []
