"""The generated JSON Schemas (catalog/schema/*.json): committed files are fresh, output is
deterministic, and the paper schema carries the vocabularies as enums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modl.catalog import CatalogError
from modl.cli import main
from modl.schema_export import schema_files

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = {"paper.schema.json", "taxonomy.schema.json", "venues.schema.json", "project.schema.json"}


def test_committed_schemas_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(REPO_ROOT), "schema", "--check"]) == 0, capsys.readouterr().err


def test_schema_files_are_deterministic_and_formatted() -> None:
    first, second = schema_files(REPO_ROOT), schema_files(REPO_ROOT)
    assert first == second
    assert {p.name for p in first} == NAMES
    assert all(p.parent == REPO_ROOT / "catalog" / "schema" for p in first)
    for text in first.values():
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_paper_schema_has_vocabulary_enums(base_root: Path) -> None:
    paper = json.loads(schema_files(base_root)[base_root / "catalog/schema/paper.schema.json"])
    assert paper["properties"]["venue"]["enum"] == ["icml", "neurips", "tmlr"]
    assert paper["$defs"]["LaterVersion"]["properties"]["venue"]["enum"] == ["icml", "neurips", "tmlr"]
    assert paper["properties"]["categories"]["items"]["enum"] == ["related-survey", "loss-balancing", "gradient-manipulation"]
    assert paper["additionalProperties"] is False  # unknown fields are flagged in the editor too
    assert set(paper["required"]) >= {"id", "title", "authors", "venue", "year", "categories", "links", "summary", "bibtex"}


def test_enums_follow_the_vocabulary_files(base_root: Path) -> None:
    venues = base_root / "catalog" / "venues.yaml"
    venues.write_text(venues.read_text(encoding="utf-8") + "  - {id: aaai, short: AAAI, name: AAAI, kind: conference}\n", encoding="utf-8")
    paper = json.loads(schema_files(base_root)[base_root / "catalog/schema/paper.schema.json"])
    assert paper["properties"]["venue"]["enum"][-1] == "aaai"


def test_broken_vocabulary_is_a_catalog_error(base_root: Path) -> None:
    (base_root / "catalog" / "taxonomy.yaml").write_text("categories: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="catalog/taxonomy.yaml:"):
        schema_files(base_root)


def test_every_catalog_yaml_names_its_schema() -> None:
    for path in sorted((REPO_ROOT / "catalog").rglob("*.yaml")):
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        ref = "../schema/paper.schema.json" if path.parent.name == "papers" else f"schema/{path.stem}.schema.json"
        assert first == f"# yaml-language-server: $schema={ref}", path
        assert (path.parent / ref).resolve().exists(), ref


def test_real_records_fit_the_enums() -> None:
    """The real records use only the ids the paper schema offers (what the editor would accept)."""
    paper = json.loads((REPO_ROOT / "catalog/schema/paper.schema.json").read_text(encoding="utf-8"))
    venues = set(paper["properties"]["venue"]["enum"])
    leaves = set(paper["properties"]["categories"]["items"]["enum"])
    allowed = set(paper["properties"])
    for path in sorted((REPO_ROOT / "catalog" / "papers").glob("*.yaml")):
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(record) <= allowed, path
        assert record["venue"] in venues, path
        assert set(record["categories"]) <= leaves, path
