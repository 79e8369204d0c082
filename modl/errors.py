"""The problems a catalog check reports: the bottom layer of the catalog engine.

Imports flow one way: ``modl.errors`` <- ``modl.yamlload`` (loading) <- ``modl.validate``
(validation) <- ``modl.catalog`` (the catalog model); tests/catalog/test_imports.py enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """Raised by the catalog loaders with every problem found (never only the first)."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.field, p.reason))
        super().__init__("\n".join(str(p) for p in self.problems))
