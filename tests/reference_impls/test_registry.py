"""Every registered method is complete: module, class, docstring sections, tests, golden input, record."""

import ast
import inspect
from pathlib import Path

import pytest
import yaml

import reference_impls
from reference_impls.core.aggregator import Aggregator

ROOT = Path(__file__).resolve().parents[2]
NAMES = reference_impls.names()


@pytest.mark.parametrize("name", NAMES)
def test_registered_class_exists_and_carries_its_id(name):
    cls = reference_impls.load_class(name)
    assert getattr(cls, "name", None) == name
    method = reference_impls.create(name)  # the paper's defaults need no argument
    assert method is not None


@pytest.mark.parametrize("name", NAMES)
def test_module_docstring_names_paper_equations_defaults_and_deviations(name):
    entry = reference_impls.info(name)
    module = inspect.getmodule(reference_impls.load_class(name))
    doc = module.__doc__ or ""
    record = yaml.safe_load((ROOT / "catalog" / "papers" / f"{entry.paper}.yaml").read_text(encoding="utf-8"))
    assert record["title"].split(":")[0].lower()[:30] in " ".join(doc.lower().split()), "docstring must name the paper"
    assert "Deviations:" in doc, "docstring must list its deviations (Deviations: D1, D2, ...)"
    assert "D1" in doc


@pytest.mark.parametrize("name", NAMES)
def test_each_method_has_a_test_file_using_the_golden_input(name):
    entry = reference_impls.info(name)
    test_file = ROOT / "tests" / "reference_impls" / f"test_{entry.module.rsplit('.', 1)[1]}.py"
    assert test_file.exists(), f"missing {test_file.relative_to(ROOT)}"
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert len(tests) >= 5, "a method needs property, toy and degenerate-input tests"
    if issubclass(reference_impls.load_class(name), Aggregator):
        assert "j_base" in test_file.read_text(encoding="utf-8").lower(), "pin the output on the golden J_BASE"


@pytest.mark.parametrize("name", NAMES)
def test_record_lists_the_method(name):
    entry = reference_impls.info(name)
    record = yaml.safe_load((ROOT / "catalog" / "papers" / f"{entry.paper}.yaml").read_text(encoding="utf-8"))
    assert name in record["implementation"]["methods"]
    assert entry.family in record["categories"]
