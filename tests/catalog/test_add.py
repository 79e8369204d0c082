"""``modl add``: a record from one BibTeX entry, in a temporary copy of the catalog."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

import modl.validate
import modl.add
from modl.add import AddError, _write_new, add_from_bibtex
from modl.catalog import REPO_ROOT, CatalogError, load_catalog
from modl.cli import main
from modl.render.readme import render_readme
from reference_impls.registry import REGISTRY

MODO = r"""
@inproceedings{chen2023threeway,
  title     = {Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance},
  author    = {Chen, Lisha and Fernando, Heshan Devaka and Ying, Yiming and Chen, Tianyi},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {36},
  pages     = {70045--70093},
  year      = {2023},
  url       = {https://openreview.net/forum?id=yPkbdJxQ0o},
  abstract  = {Dropped by modl add.},
}
"""

PSMGD = r"""
@article{xu2024psmgd,
  title   = {{PSMGD}: Periodic Stochastic Multi-Gradient Descent for Fast Multi-Objective Optimization},
  author  = {Mingjing Xu and Peizhong Ju and Jia Liu and Haibo Yang},
  journal = {arXiv preprint arXiv:2412.10961},
  year    = {2024},
}
"""

SMG = r"""
@article{liu2021stochastic,
  title   = {The stochastic multi-gradient algorithm for multi-objective optimization and its application to supervised machine learning},
  author  = {Liu, Suyun and Vicente, Lu{\'\i}s Nunes},
  journal = {Annals of Operations Research},
  year    = {2021},
  doi     = {10.1007/s10479-021-04033-z},
}
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this repository's catalog, checked against this repository's registry."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "catalog", repo / "catalog")
    # The example entries are papers the upstream list added after the seed (now records): the copy
    # leaves them and their registry entries out, so that adding them is adding new papers.
    left_out = {"smg", "cr-mogm", "modo", "psmgd", "mgda-gs"}
    for record_id in left_out:
        (repo / "catalog" / "papers" / f"{record_id}.yaml").unlink(missing_ok=True)
    registry = {name: entry for name, entry in REGISTRY.items() if entry.paper not in left_out}
    monkeypatch.setattr(modl.validate, "default_registry", lambda _root: registry)
    return repo


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_bib(root: Path, text: str, name: str = "entry.bib") -> Path:
    path = root.parent / name
    path.write_text(text, encoding="utf-8")
    return path


def test_adds_a_valid_record_and_touches_nothing_else(root: Path) -> None:
    before = snapshot(root)
    path = add_from_bibtex(root, write_bib(root, MODO), category=["gradient-weighting"], record_id="modo",
                           code="https://github.com/heshandevaka/Trade-Off-MOL", summary="Stochastic MGDA variant.")
    assert path == root / "catalog" / "papers" / "modo.yaml"
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "catalog/papers/modo.yaml"} == before
    assert set(after) - set(before) == {"catalog/papers/modo.yaml"}, "no temporary file left behind"

    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../schema/paper.schema.json\n")
    record = yaml.safe_load(text)
    assert record["title"].startswith("Three-Way Trade-Off in Multi-Objective Learning")
    assert record["authors"] == ["Lisha Chen", "Heshan Devaka Fernando", "Yiming Ying", "Tianyi Chen"]
    assert record["venue"] == "neurips" and record["year"] == 2023
    assert record["links"] == {"paper": "https://openreview.net/forum?id=yPkbdJxQ0o",
                               "code": "https://github.com/heshandevaka/Trade-Off-MOL"}
    assert record["bibtex"] == {"type": "inproceedings", "key": "chen2023threeway", "fields": {
        "booktitle": "Advances in Neural Information Processing Systems", "pages": "70045--70093", "volume": "36"}}
    assert record["implementation"] == {"status": "planned", "methods": []}
    assert record["added"] == dt.date.today() and record["summary"] == "Stochastic MGDA variant."

    catalog = load_catalog(root)
    assert "modo" in catalog.papers
    assert "[Three-Way Trade-Off in Multi-Objective Learning" in render_readme(catalog)


def test_derives_id_short_name_and_arxiv(root: Path) -> None:
    path = add_from_bibtex(root, write_bib(root, PSMGD), category=["gradient-weighting"], summary="Periodic MGDA.")
    record = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert path.name == "psmgd.yaml" and record["id"] == "psmgd" and record["short_name"] == "PSMGD"
    assert record["title"] == "PSMGD: Periodic Stochastic Multi-Gradient Descent for Fast Multi-Objective Optimization"
    assert record["venue"] == "arxiv"
    assert record["links"] == {"paper": "https://arxiv.org/abs/2412.10961", "arxiv": "2412.10961"}
    assert record["summary"] == "Periodic MGDA."
    # No method name before a colon: first author's family name, the year and the first title word.
    fallback = add_from_bibtex(root, write_bib(root, MODO), category=["gradient-weighting"], summary="S.")
    assert fallback.name == "chen-2023-three-way.yaml" and "short_name" not in yaml.safe_load(fallback.read_text(encoding="utf-8"))


def test_unknown_venue_asks_for_venue_then_doi_link(root: Path) -> None:
    unknown = write_bib(root, SMG.replace("Annals of Operations Research", "Journal of Unlisted Studies"), "unknown.bib")
    before = snapshot(root)
    with pytest.raises(AddError, match=r"unknown\.bib: venue 'Journal of Unlisted Studies' is not in .*--venue"):
        add_from_bibtex(root, unknown, category=["gradient-weighting"], summary="S.")
    with pytest.raises(AddError, match="--venue 'no-such-venue' is not in catalog/venues.yaml"):
        add_from_bibtex(root, unknown, category=["gradient-weighting"], summary="S.", venue="no-such-venue")
    assert snapshot(root) == before
    path = add_from_bibtex(root, write_bib(root, SMG), category=["gradient-weighting"], record_id="smg", summary="S.")
    record = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert record["venue"] == "anor"
    assert record["authors"] == ["Suyun Liu", "Luís Nunes Vicente"]
    assert record["links"] == {"paper": "https://doi.org/10.1007/s10479-021-04033-z", "doi": "10.1007/s10479-021-04033-z"}
    assert record["bibtex"]["fields"] == {"journal": "Annals of Operations Research"}


def test_refuses_duplicates_and_existing_files(root: Path) -> None:
    before = snapshot(root)
    pcgrad = (REPO_ROOT / "catalog" / "papers" / "pcgrad.yaml").read_text(encoding="utf-8")
    record = yaml.safe_load(pcgrad)
    same_title = f"""@inproceedings{{other2020,
  title = {{{record['title']}}}, author = {{A. Person}}, year = {{2020}},
  booktitle = {{Advances in Neural Information Processing Systems}}, url = {{https://example.org/other}} }}"""
    with pytest.raises(AddError, match=r"already in the catalog: catalog/papers/pcgrad.yaml \(same title\)"):
        add_from_bibtex(root, write_bib(root, same_title), category=["gradient-manipulation"], record_id="other",
                        summary="S.")
    same_arxiv = PSMGD.replace("2412.10961", record["links"]["arxiv"])
    with pytest.raises(AddError, match=r"pcgrad.yaml \(same arxiv\)"):
        add_from_bibtex(root, write_bib(root, same_arxiv), category=["gradient-weighting"], summary="S.")
    with pytest.raises(AddError, match="already exists"):
        add_from_bibtex(root, write_bib(root, MODO), category=["gradient-weighting"], record_id="pcgrad", summary="S.")
    assert snapshot(root) == before
    target = root / "catalog" / "papers" / "pcgrad.yaml"
    with pytest.raises(AddError, match="already exists"):
        _write_new(target, "overwritten?")
    assert target.read_text(encoding="utf-8") == pcgrad


def test_rolls_back_when_the_catalog_does_not_validate(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every rule that involves the new record is checked before writing, so only a change made by
    # someone else between the checks and the write can fail the final validation: simulate one.
    before = snapshot(root)
    real_load = modl.add.load_catalog
    calls = []

    def load_then_break(where: Path) -> object:
        calls.append(where)
        if len(calls) == 2:  # after the write: another record appears with the same title
            other = root / "catalog" / "papers" / "copy.yaml"
            text = (root / "catalog" / "papers" / "modo.yaml").read_text(encoding="utf-8")
            other.write_text(text.replace("id: modo", "id: copy"), encoding="utf-8")
        return real_load(where)

    monkeypatch.setattr(modl.add, "load_catalog", load_then_break)
    with pytest.raises(CatalogError) as caught:
        add_from_bibtex(root, write_bib(root, MODO), category=["gradient-weighting"], record_id="modo", summary="S.")
    reasons = str(caught.value)
    assert "catalog/papers/modo.yaml" in reasons and "removed" in reasons
    (root / "catalog" / "papers" / "copy.yaml").unlink()
    assert snapshot(root) == before


@pytest.mark.parametrize("text, message", [
    ("", "no BibTeX entry found"),
    ("not bibtex at all", "no BibTeX entry found"),
    (MODO + PSMGD, "holds 2 entries"),
    (MODO.replace("title     =", "note ="), "no 'title' field"),
    (MODO.replace("year      = {2023}", "year = {twenty}"), "not a four-digit year"),
    (MODO.replace("url       = {https://openreview.net/forum?id=yPkbdJxQ0o},", ""), "no paper link"),
    (MODO.replace("@inproceedings", "@patent"), "not supported"),
])
def test_bad_input_is_one_line_error_exit_1(root: Path, text: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)
    bib = write_bib(root, text)
    status = main(["--root", str(root), "add", "--bibtex", str(bib), "--category", "gradient-weighting", "--id", "x-y",
                   "--summary", "S."])
    err = capsys.readouterr().err
    assert status == 1
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(root) == before


def test_cli_add_success_and_missing_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bib = write_bib(root, MODO)
    assert main(["--root", str(root), "add", "--bibtex", str(bib), "--category", "gradient-weighting",
                 "--category", "preference-vector-free", "--id", "modo", "--summary", "S."]) == 0
    assert "catalog/papers/modo.yaml" in capsys.readouterr().out
    assert load_catalog(root).papers["modo"].categories == ["gradient-weighting", "preference-vector-free"]
    assert main(["--root", str(root), "add", "--bibtex", str(root / "missing.bib"), "--category", "software",
                 "--summary", "S."]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
