"""Shared fixtures of the catalog-engine tests.

``tests/catalog/fixtures/base/`` is a tiny valid catalog (three venues, a four-node taxonomy, two
records). Tests copy it to ``tmp_path`` and break one thing at a time; the line numbers they expect
refer to the fixture files as committed, so edit those files only together with the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_impls.registry import MethodInfo  # a static table: no torch

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "fixtures" / "base"

# The registry the tiny catalog is checked against: base-paper plans method 'base'.
TEST_REGISTRY = {
    "base": MethodInfo("base", "base-paper", "gradient-manipulation", "gradient_manipulation.base", "Base", "aggregator"),
}

Edit = Callable[[str], str | bytes]


def copy_base(dest: Path) -> Path:
    shutil.copytree(BASE, dest, dirs_exist_ok=True)
    return dest


def apply_edit(root: Path, rel: str, edit: Edit | str | bytes | None) -> None:
    """Rewrite ``root/rel``: with a function of its text, or with new content (str or raw bytes);
    ``None`` deletes the file."""
    path = root / rel
    if edit is None:
        path.unlink()
        return
    if callable(edit):
        edit = edit(path.read_text(encoding="utf-8"))
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        path.write_text(edit, encoding="utf-8")


@pytest.fixture
def base_root(tmp_path: Path) -> Path:
    """A fresh copy of the tiny valid catalog."""
    return copy_base(tmp_path / "repo")


@pytest.fixture
def make_catalog(tmp_path: Path) -> Callable[[dict[str, Edit | str | bytes | None]], Path]:
    """``make_catalog({"catalog/papers/x.yaml": edit, ...})``: the tiny catalog with those edits."""

    def make(edits: dict[str, Edit | str | bytes | None]) -> Path:
        root = copy_base(tmp_path / "repo")
        for rel, edit in edits.items():
            apply_edit(root, rel, edit)
        return root

    return make


@pytest.fixture
def test_registry() -> dict[str, MethodInfo]:
    return dict(TEST_REGISTRY)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def _run_modl(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modl", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def run_modl() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_modl(*args)``: ``python -m modl ARGS`` in a fresh interpreter, as a user runs it."""
    return _run_modl
