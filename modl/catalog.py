"""The loaded catalog: records, vocabularies and the orderings every renderer shares.

``load_catalog(root)`` reads ``catalog/`` under the repository root, validates every file and the
cross-record rules, and returns a :class:`Catalog`, or raises :class:`CatalogError` carrying *all*
problems found (never only the first). Renderers (README, site, BibTeX, JSON) take a Catalog.

Order of entries within a section (README and site): by year, oldest first; ties by title,
case-insensitive. The order of sections is the order of ``catalog/taxonomy.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modl.schema import Category, Paper, Project, Venue

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Problem:
    """One validation problem, printed as ``file:line: field: reason``."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class CatalogError(Exception):
    """Raised by :func:`load_catalog` with every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.field, p.reason))
        super().__init__("\n".join(str(p) for p in self.problems))


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


def load_catalog(root: Path | str | None = None) -> Catalog:
    """Load and validate the catalog under ``root`` (default: this repository)."""
    from modl.validate import load_and_validate

    return load_and_validate(Path(root) if root is not None else REPO_ROOT)
