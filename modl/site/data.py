"""Facts the site needs beyond the records: the catalog, the registry, sources, tests, deviations.

Nothing here imports torch. The registry module ``reference_impls/registry.py`` is executed on its
own (it is a static table that imports only the standard library), never through the
``reference_impls`` package; implementation modules and test files are read as text and parsed with
:mod:`ast`.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modl.catalog import REPO_ROOT, Catalog, CatalogError
from modl.site.docmath import Block, Deviation, parse_deviations, parse_update_rule  # noqa: F401 - re-exported
from modl.validate import exec_module_file

# A record's implementation status as the pages and the /papers/ table show it.
STATUS_TEXT = {"implemented": "implemented", "planned": "planned", "not-applicable": "not applicable"}

CATALOG_ROOT_ENV = "MODL_CATALOG_ROOT"


class SiteError(Exception):
    """A problem that stops the site build, reported in one line."""


def catalog_root() -> Path:
    """The repository root whose ``catalog/`` the site shows (``$MODL_CATALOG_ROOT`` or this checkout)."""
    value = os.environ.get(CATALOG_ROOT_ENV)
    return Path(value).resolve() if value else REPO_ROOT


def load(root: Path) -> Catalog:
    """Load and validate the catalog, turning validation problems into one :class:`SiteError`.

    A catalog root other than this checkout that has its own ``reference_impls/registry.py`` is
    validated against that registry (tests build sites from such temporary roots).
    """
    from modl.catalog import load_and_validate

    if not (root / "catalog").is_dir():
        raise SiteError(f"{root}: no catalog/ folder (check {CATALOG_ROOT_ENV})")
    registry = None
    if root.resolve() != REPO_ROOT and (root / "reference_impls" / "registry.py").is_file():
        registry = load_registry(root)
    try:
        return load_and_validate(root, registry)
    except CatalogError as error:
        lines = [str(p) for p in error.problems]
        raise SiteError(f"the catalog has {len(lines)} problem(s); run `modl validate`:\n" + "\n".join(lines)) from None


# ------------------------------------------------------------------------------------------------
# Reference implementations
# ------------------------------------------------------------------------------------------------


@dataclass
class MethodFacts:
    """What the site shows about one registered reference implementation."""

    name: str
    paper: str
    family: str
    module: str
    cls: str
    interface: str
    source_path: str  # relative to the code root
    source: str | None  # the module's text, None when the file is missing
    deviations: list[Deviation] = field(default_factory=list)
    update_rule: list[Block] | None = None  # the blocks of the docstring's "Update rule:" section, None without one
    test_path: str = ""
    test_count: int = 0  # test functions in test_path (0 when the file is missing)
    bilevel: bool = False  # the class derives from BilevelLossWeighting: it needs a validation split

    @property
    def tested(self) -> bool:
        return self.source is not None and self.test_count > 0


def code_root(catalog_root_: Path) -> Path:
    """Where reference_impls/ and tests/ are read: the catalog root when it has a registry, else this checkout."""
    return catalog_root_ if (catalog_root_ / "reference_impls" / "registry.py").is_file() else REPO_ROOT


def load_registry(root: Path) -> dict[str, Any]:
    """``REGISTRY`` of ``root/reference_impls/registry.py``, executed alone (it imports no torch)."""
    path = root / "reference_impls" / "registry.py"
    if not path.is_file():
        return {}
    try:
        module = exec_module_file(path, "_modl_site_registry")
    except Exception as error:  # a broken registry is a build error, not a traceback
        raise SiteError(f"{path}: cannot be read: {type(error).__name__}: {error}") from None
    return dict(getattr(module, "REGISTRY", {}))


def load_properties(root: Path) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, Any]]]:
    """``PROPERTIES`` and ``TABLE`` of ``root/reference_impls/properties.py`` (plain data, no torch), or empty."""
    path = root / "reference_impls" / "properties.py"
    if not path.is_file():
        return {}, {}
    try:
        module = exec_module_file(path, "_modl_site_properties")
    except Exception as error:  # a broken table is a build error, not a traceback
        raise SiteError(f"{path}: cannot be read: {type(error).__name__}: {error}") from None
    return dict(getattr(module, "PROPERTIES", {})), dict(getattr(module, "TABLE", {}))




def count_tests(path: Path) -> int:
    """Number of test functions (``test_*`` at module level or in ``Test*`` classes) in a test file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return 0
    count = 0
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            count += 1
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            count += sum(
                1
                for sub in node.body
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub.name.startswith("test")
            )
    return count


def method_facts(root: Path) -> dict[str, MethodFacts]:
    """Facts on every registered method, read from ``root`` (see :func:`code_root`)."""
    out: dict[str, MethodFacts] = {}
    for name, entry in sorted(load_registry(root).items()):
        module = str(entry.module)
        source_path = "reference_impls/" + module.replace(".", "/") + ".py"
        file = root / source_path
        source = file.read_text(encoding="utf-8") if file.is_file() else None
        deviations: list[Deviation] = []
        update_rule = None
        bilevel = False
        if source is not None:
            try:
                tree = ast.parse(source)
            except SyntaxError as error:
                raise SiteError(f"{source_path}:{error.lineno}: cannot be parsed: {error.msg}") from None
            docstring = ast.get_docstring(tree)
            deviations = parse_deviations(docstring)
            update_rule = parse_update_rule(docstring)
            bilevel = _derives_from(tree, str(entry.cls), "BilevelLossWeighting")
        test_path = f"tests/reference_impls/test_{module.rsplit('.', 1)[-1]}.py"
        out[name] = MethodFacts(
            name=name,
            paper=str(entry.paper),
            family=str(entry.family),
            module=module,
            cls=str(entry.cls),
            interface=str(entry.interface),
            source_path=source_path,
            source=source,
            deviations=deviations,
            update_rule=update_rule,
            test_path=test_path,
            test_count=count_tests(root / test_path),
            bilevel=bilevel,
        )
    return out


def _derives_from(tree: ast.Module, cls: str, base: str) -> bool:
    """Whether class ``cls`` of a parsed module names ``base`` among its bases (directly or through a class of the module)."""
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    seen: set[str] = set()
    todo = [cls]
    while todo:
        name = todo.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        for node in classes[name].bases:
            base_name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
            if base_name == base:
                return True
            todo.append(base_name)
    return False
