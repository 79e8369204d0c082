"""The catalog model: records, vocabularies and the orderings every renderer shares.

``load_catalog(root)`` reads ``catalog/`` under the repository root, validates every file and the
cross-record rules (:mod:`modl.validate`), and returns a :class:`Catalog`, or raises
:class:`CatalogError` carrying *all* problems found (never only the first). Renderers (README, site,
BibTeX, JSON) take a Catalog. Imports flow one way: modl.errors <- modl.yamlload (loading) <-
modl.validate (validation) <- this module (the model); nothing below imports this module.

:func:`find_root` finds the repository a command acts on: the nearest folder, from the current
directory upwards, that holds both ``catalog/`` and ``pyproject.toml``.

Order of entries within a section (README and site): by year, oldest first; ties by title,
case-insensitive. The order of sections is the order of ``catalog/taxonomy.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modl.errors import CatalogError, Problem
from modl.schema import Category, Paper, Project, Venue
from modl.validate import validate_catalog

__all__ = ["REPO_ROOT", "Catalog", "CatalogError", "NotACheckoutError", "Problem", "entry_order", "find_root",
           "is_checkout", "load_and_validate", "load_catalog"]

# The checkout this package was imported from: the default of the library functions below, and the
# one tests use. The command line does not use it: it acts on find_root() or --root.
REPO_ROOT = Path(__file__).resolve().parent.parent
ROOT_MARKERS = ("catalog", "pyproject.toml")  # a folder and a file that every checkout has


class NotACheckoutError(Exception):
    """No modl checkout at or above the given folder."""


def is_checkout(folder: Path) -> bool:
    """Whether ``folder`` holds ``catalog/`` and ``pyproject.toml`` (the root of a modl checkout)."""
    return (folder / ROOT_MARKERS[0]).is_dir() and (folder / ROOT_MARKERS[1]).is_file()


def find_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current directory) that is a checkout.

    Raises :class:`NotACheckoutError` when there is none, up to the file-system root.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_checkout(folder):
            return folder
    raise NotACheckoutError(
        f"{here} is not inside a modl checkout (no folder at or above it holds catalog/ and pyproject.toml); "
        "cd into one or pass --root"
    )


@dataclass
class Catalog:
    root: Path  # repository root (the folder that holds catalog/)
    project: Project
    venues: dict[str, Venue]  # id -> venue, in file order
    categories: list[Category]  # top-level sections, in display order
    papers: dict[str, Paper]  # id -> paper, sorted by id
    source_files: dict[str, Path] = field(default_factory=dict)  # paper id -> its YAML file

    # -- taxonomy ------------------------------------------------------------------------------

    def walk_categories(self) -> list[tuple[int, Category]]:
        """Every category with its depth (0 = top level), depth-first in display order."""
        out: list[tuple[int, Category]] = []

        def visit(cats: list[Category], depth: int) -> None:
            for cat in cats:
                out.append((depth, cat))
                visit(cat.children, depth + 1)

        visit(self.categories, 0)
        return out

    def category(self, category_id: str) -> Category:
        for _, cat in self.walk_categories():
            if cat.id == category_id:
                return cat
        raise KeyError(category_id)

    def leaf_ids(self) -> list[str]:
        return [cat.id for _, cat in self.walk_categories() if not cat.children]

    def parents(self, category_id: str) -> list[Category]:
        """Ancestors of a category, outermost first."""
        path: list[Category] = []

        def visit(cats: list[Category], trail: list[Category]) -> bool:
            for cat in cats:
                if cat.id == category_id:
                    path.extend(trail)
                    return True
                if visit(cat.children, trail + [cat]):
                    return True
            return False

        visit(self.categories, [])
        return path

    # -- papers --------------------------------------------------------------------------------

    def papers_in(self, category_id: str) -> list[Paper]:
        """Papers listed in a leaf category (primary or cross-listed), in the catalog's stated order."""
        return sorted((p for p in self.papers.values() if category_id in p.categories), key=entry_order)

    def is_primary(self, paper: Paper, category_id: str) -> bool:
        return paper.categories[0] == category_id


def entry_order(paper: Paper) -> tuple[int, str, str]:
    """Order of entries within a section: year ascending, then title (case-insensitive), then id."""
    return (paper.year, paper.title.casefold(), paper.id)


def load_and_validate(
    root: Path | str, registry: Mapping[str, Any] | None = None, *, use_default_registry: bool = True
) -> Catalog:
    """Validate ``root/catalog`` (see :func:`modl.validate.validate_catalog`) and build the model."""
    parts = validate_catalog(root, registry, use_default_registry=use_default_registry)
    return Catalog(
        root=parts.root,
        project=parts.project,
        venues=parts.venues,
        categories=parts.categories,
        papers=parts.papers,
        source_files=parts.source_files,
    )


def load_catalog(root: Path | str | None = None) -> Catalog:
    """Load and validate the catalog under ``root`` (default: the checkout this package came from)."""
    return load_and_validate(Path(root) if root is not None else REPO_ROOT)
