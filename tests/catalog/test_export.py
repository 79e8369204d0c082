"""JSON export: every record, the vocabularies, computed sections/site_url; round-trips into the models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modl.catalog import REPO_ROOT, Catalog, load_catalog
from modl.render.jsonexport import COMPUTED_PAPER_KEYS, render_json
from modl.schema import Category, Paper, Project, Venue


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT)


@pytest.fixture(scope="module")
def data(catalog: Catalog) -> dict:
    return json.loads(render_json(catalog))


def test_top_level_shape(data: dict, catalog: Catalog) -> None:
    assert set(data) == {"generated_by", "project", "taxonomy", "venues", "papers"}
    assert data["generated_by"].startswith("modl ")
    assert Project.model_validate(data["project"]) == catalog.project
    assert [Venue.model_validate(v) for v in data["venues"]] == list(catalog.venues.values())
    assert [Category.model_validate(c) for c in data["taxonomy"]] == catalog.categories


def test_every_record_round_trips_into_paper(data: dict, catalog: Catalog) -> None:
    assert [p["id"] for p in data["papers"]] == sorted(catalog.papers)
    for item in data["papers"]:
        record = {k: v for k, v in item.items() if k not in COMPUTED_PAPER_KEYS}
        assert set(record) == set(Paper.model_fields), "every field of the record, nothing else"
        assert Paper.model_validate(record) == catalog.papers[item["id"]]


def test_computed_fields(data: dict, catalog: Catalog) -> None:
    papers = {p["id"]: p for p in data["papers"]}
    assert papers["pcgrad"]["site_url"] == catalog.project.site_url + "papers/pcgrad/"
    assert papers["pcgrad"]["sections"] == [{
        "id": "gradient-manipulation", "title": "Gradient Manipulation Methods", "primary": True,
        "path": ["Finding a Single Solution", "Gradient Balancing Methods", "Gradient Manipulation Methods"],
    }]
    imtl = papers["imtl"]["sections"]
    assert [(s["id"], s["primary"]) for s in imtl] == [("loss-balancing", True), ("gradient-weighting", False)]
    for item in data["papers"]:
        assert [s["id"] for s in item["sections"]] == item["categories"]


def test_deterministic_text(catalog: Catalog) -> None:
    text = render_json(catalog)
    assert text == render_json(catalog)
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert "Valérian" in text  # UTF-8 kept


def test_cli_export_json(tmp_path: Path, catalog: Catalog) -> None:
    out = tmp_path / "catalog.json"
    result = subprocess.run([sys.executable, "-m", "modl", "export", "json", "--output", str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == render_json(catalog)


def test_renderers_never_import_torch() -> None:
    code = (
        "import sys\n"
        "from modl.catalog import load_catalog\n"
        "from modl.render.readme import render_readme\n"
        "from modl.render.bibtex import render_bibtex\n"
        "from modl.render.jsonexport import render_json\n"
        "import modl.add, modl.render.markdown\n"
        "c = load_catalog(); render_readme(c); render_bibtex(c); render_json(c)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
