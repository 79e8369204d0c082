"""``modl add``: the defects of issue 10, one test each (venues and aliases, malformed BibTeX, math in
titles, placeholder summaries, default ids, categories checked before writing, errors that name the
file, real dates). Every test works on a temporary copy of the catalog."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

import modl.add
from modl.add import AddError, add_from_bibtex, check_bibtex_syntax, default_ids, load_venues, venue_for_text
from modl.catalog import REPO_ROOT, CatalogError, load_catalog
from modl.cli import main
from modl.render.readme import render_readme
from modl.schema import Paper, VenueFile
from tests.catalog.test_add import root, snapshot, write_bib  # noqa: F401  (root is the shared fixture)


def entry(title: str = "A Paper on Something", booktitle: str = "International Conference on Machine Learning",
          author: str = "Zhang, Qi and Xiao, Peiyao", key: str = "zhang2025something", year: str = "2025") -> str:
    return (f"@inproceedings{{{key},\n  title = {{{title}}},\n  author = {{{author}}},\n  booktitle = {{{booktitle}}},\n"
            f"  year = {{{year}}},\n  url = {{https://openreview.net/forum?id=abc{abs(hash(title)) % 10**6}}},\n}}\n")


# -- venues ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("booktitle, venue", [
    # OpenReview exports (the reported defect: NeurIPS was an unknown venue).
    ("The Thirty-ninth Annual Conference on Neural Information Processing Systems", "neurips"),
    ("Thirty-seventh Conference on Neural Information Processing Systems", "neurips"),
    ("The Thirteenth International Conference on Learning Representations", "iclr"),
    ("Forty-second International Conference on Machine Learning", "icml"),
    ("Advances in Neural Information Processing Systems", "neurips"),
    # Venues that were missing from the vocabulary.
    ("Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)", "iccv"),
    ("Computer Vision -- ECCV 2022: 17th European Conference, Tel Aviv, Israel", "eccv"),
    ("Proceedings of the 29th ACM SIGKDD Conference on Knowledge Discovery and Data Mining", "kdd"),
    ("Proceedings of the 25th ACM SIGKDD International Conference on Knowledge Discovery & Data Mining", "kdd"),
    ("Proceedings of The 27th International Conference on Artificial Intelligence and Statistics", "aistats"),
    ("Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)", "acl"),
    # Existing ones stay as they were; the longest label wins (CVPR's name contains 'Conference on Computer Vision').
    ("Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)", "cvpr"),
    ("Proceedings of the AAAI Conference on Artificial Intelligence", "aaai"),
    ("arXiv preprint arXiv:2412.10961", "arxiv"),
])
def test_booktitles_and_journals_map_to_venues(booktitle: str, venue: str) -> None:
    assert venue_for_text(load_venues(REPO_ROOT), booktitle) == venue


def test_a_workshop_never_matches_its_main_conference_nor_a_journal_a_longer_name() -> None:
    venues = load_venues(REPO_ROOT)
    assert venue_for_text(venues, "Artificial Intelligence Review") is None  # not AIJ ('Artificial Intelligence')
    assert venue_for_text(venues, "Artificial Intelligence") == "aij"
    assert venue_for_text(venues, "NeurIPS 2022 Workshop on Distribution Shifts") is None
    assert venue_for_text(venues, "ICML Workshop on Localized Learning") is None


def test_openreview_neurips_booktitle_is_added(root: Path) -> None:
    bib = write_bib(root, entry(booktitle="The Thirty-ninth Annual Conference on Neural Information Processing Systems"))
    path = add_from_bibtex(root, bib, category=["gradient-weighting"], summary="S.")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["venue"] == "neurips"


def test_a_venue_label_may_name_one_venue_only() -> None:
    data = yaml.safe_load((REPO_ROOT / "catalog" / "venues.yaml").read_text(encoding="utf-8"))
    data["venues"].append({"id": "nips-again", "short": "NIPS2", "name": "Other", "kind": "conference",
                           "aliases": ["Neural Information Processing Systems"]})
    with pytest.raises(ValueError, match="names both 'neurips' and 'nips-again'"):
        VenueFile.model_validate(data)


# -- malformed BibTeX -------------------------------------------------------------------------------

GOOD = """% a comment line
@inproceedings{key2025,
  title = {A Title},
  author = {Zhang, Qi},
  year = {2025},
  booktitle = {International Conference on Machine Learning},
  url = {https://example.org/paper},
}
"""


@pytest.mark.parametrize("broken, where, what", [
    (GOOD.replace("title = {A Title}", "title = {A Title"), "3:11", "field 'title' holds 'author = ...'"),
    (GOOD.replace("{Zhang, Qi},", "{Zhang, Qi}"), "5:3", "missing ',' after field 'author'"),
    (GOOD.replace("year = {2025}", "year {2025}"), "5:8", "expected '=' after the field name 'year'"),
    (GOOD.replace("@inproceedings{key2025,", "@inproceedings{,"), "2:16", "has no citation key"),
    (GOOD.replace("@inproceedings{key2025,", "@inproceedings{key2025"), "3:3", "expected ',' after the citation key"),
    (GOOD.rstrip().removesuffix("}"), "2:1", "never closed"),
    (GOOD.replace("url = {https://example.org/paper}", 'url = "https://example.org/paper'), "7:9", "never closed"),
    (GOOD.replace("@inproceedings", "@ inproceedings"), "2:1", "'@' must be followed by an entry type"),
])
def test_malformed_bibtex_says_what_and_where(root: Path, broken: str, where: str, what: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bib = write_bib(root, broken)
    before = snapshot(root)
    status = main(["--root", str(root), "add", "--bibtex", str(bib), "--category", "gradient-weighting", "--summary", "S."])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{bib}:{where}: malformed BibTeX" in err and what in err, err
    assert snapshot(root) == before


def test_well_formed_bibtex_passes_the_structure_check() -> None:
    assert check_bibtex_syntax(GOOD, "x.bib") == 1
    assert check_bibtex_syntax('@string{nips = "NeurIPS"}\n' + GOOD.replace("{A Title}", '"A {B} " # nips'), "x.bib") == 1
    assert check_bibtex_syntax("no entries here", "x.bib") == 0
    # The catalog's own export (every entry modl writes) passes the check.
    from modl.render.bibtex import render_bibtex

    catalog = load_catalog(REPO_ROOT)
    assert check_bibtex_syntax(render_bibtex(catalog), "export.bib") == len(catalog.papers)


# -- math in titles -----------------------------------------------------------------------------------


def test_math_in_the_title_is_kept_as_plain_text_and_renders_as_such(root: Path) -> None:
    bib = write_bib(root, entry(title=r"Learning {$\epsilon$}-Pareto Sets with $\ell_1$ Penalties"))
    path = add_from_bibtex(root, bib, category=["gradient-weighting"], summary="S.")
    title = yaml.safe_load(path.read_text(encoding="utf-8"))["title"]
    assert title == "Learning ϵ-Pareto Sets with ℓ₁ Penalties"
    readme = render_readme(load_catalog(root))
    line = next(line for line in readme.splitlines() if "Pareto Sets with" in line)
    assert "ϵ-Pareto Sets with ℓ₁ Penalties" in line
    assert "epsilon" not in line and "&#36;" not in line and "$" not in line
    # The BibTeX export writes the math back (modl/render/bibtex.py), and reading it back gives the title.
    from modl.render.bibtex import latex_to_text, render_bibtex

    exported = render_bibtex(load_catalog(root), [path.stem])
    assert r"{$\epsilon$}" in exported
    assert latex_to_text(re.search(r"title = \{(.*)\},\n", exported).group(1)) == title


def test_math_without_a_plain_text_form_asks_for_title(root: Path) -> None:
    bib = write_bib(root, entry(title=r"An $\mathcal{O}(1/T)$ Rate for Something"))
    before = snapshot(root)
    with pytest.raises(AddError, match=r"entry\.bib: the title holds math .*--title"):
        add_from_bibtex(root, bib, category=["gradient-weighting"], summary="S.")
    assert snapshot(root) == before
    path = add_from_bibtex(root, bib, category=["gradient-weighting"], summary="S.", title="An O(1/T) Rate for Something")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["title"] == "An O(1/T) Rate for Something"


# -- placeholder summaries ----------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["Summary to be written.", "TODO", "TBD."])
def test_validation_rejects_a_placeholder_summary(root: Path, placeholder: str) -> None:
    path = root / "catalog" / "papers" / "pcgrad.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("summary: >-")
    end = text.index("bibtex:")
    path.write_text(text[:start] + f"summary: {placeholder}\n" + text[end:], encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(root)
    [problem] = caught.value.problems
    assert (problem.file, problem.field) == ("catalog/papers/pcgrad.yaml", "summary")
    assert problem.line == text[:start].count("\n") + 1 and "placeholder" in problem.reason


@pytest.mark.parametrize("summary", [None, "", "Summary to be written.", "todo"])
def test_add_refuses_a_missing_or_placeholder_summary(root: Path, summary: str | None) -> None:
    before = snapshot(root)
    with pytest.raises(AddError, match=r"entry\.bib: .*(give --summary|is a placeholder)"):
        add_from_bibtex(root, write_bib(root, entry()), category=["gradient-weighting"], summary=summary)
    assert snapshot(root) == before


# -- default ids -----------------------------------------------------------------------------------


def test_default_ids_come_from_the_method_name_or_author_year_and_title_word() -> None:
    assert default_ids("FAMO: Fast Adaptive Multitask Optimization", ["Bo Liu"], 2023)[0] == "famo"
    assert default_ids("MGDA Converges under Generalized Smoothness, Provably", ["Qi Zhang"], 2025)[0] == "zhang-2025-mgda"
    assert default_ids("The stochastic multi-gradient algorithm", ["Suyun Liu"], 2021)[0] == "liu-2021-stochastic"


def test_two_papers_by_the_same_first_author_and_year_get_different_ids(root: Path) -> None:
    first = add_from_bibtex(root, write_bib(root, entry(title="MGDA Converges under Generalized Smoothness, Provably",
                                                        key="zhang2025mgda")),
                            category=["gradient-weighting"], summary="S.")
    second = add_from_bibtex(root, write_bib(root, entry(title="Robust Multi-Objective Learning", key="zhang2025robust")),
                             category=["gradient-weighting"], summary="S.")
    assert (first.name, second.name) == ("zhang-2025-mgda.yaml", "zhang-2025-robust.yaml")


def test_a_taken_default_id_is_an_error_naming_the_other_record(root: Path) -> None:
    before = snapshot(root)
    bib = write_bib(root, entry(title="FAMO: Something Else Entirely", key="other2025famo"))
    with pytest.raises(AddError, match=r"entry\.bib: the default id 'famo' is taken by catalog/papers/famo\.yaml "
                                       r"\('FAMO: Fast Adaptive Multitask Optimization'\), another paper; pass --id"):
        add_from_bibtex(root, bib, category=["gradient-weighting"], summary="S.")
    assert snapshot(root) == before


def test_a_taken_bibtex_key_is_refused_before_writing(root: Path) -> None:
    before = snapshot(root)
    key = load_catalog(root).papers["pcgrad"].bibtex.key
    with pytest.raises(AddError, match=f"BibTeX key '{key}' is already used by catalog/papers/pcgrad.yaml"):
        add_from_bibtex(root, write_bib(root, entry(key=key)), category=["gradient-weighting"], summary="S.")
    assert snapshot(root) == before


# -- categories are checked before anything is written ------------------------------------------------


@pytest.mark.parametrize("category, message", [
    ("gradient-weightin", "not a leaf id of catalog/taxonomy.yaml; did you mean 'gradient-weighting'?"),
    ("finite-set", "is a section with subsections; use one of its leaves"),
])
def test_unknown_category_is_reported_before_anything_is_written(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 category: str, message: str) -> None:
    def no_write(*_args: object) -> None:
        raise AssertionError("the record was written before the category was checked")

    monkeypatch.setattr(modl.add, "_write_new", no_write)
    with pytest.raises(AddError) as caught:
        add_from_bibtex(root, write_bib(root, entry()), category=["gradient-weighting", category], summary="S.")
    assert str(caught.value).startswith(f"{root.parent / 'entry.bib'}: --category {category!r}")
    assert message in str(caught.value) and ".yaml:" not in str(caught.value)


# -- every error names the file --------------------------------------------------------------------


@pytest.mark.parametrize("text, extra", [
    ("", []),
    (entry().replace("title =", "note ="), []),
    (entry().replace("year = {2025}", "year = {soon}"), []),
    (entry().replace("@inproceedings", "@patent"), []),
    (entry(booktitle="Journal of Unlisted Studies"), []),
    (entry(), ["--category", "nope"]),
    (entry(), ["--venue", "nope"]),
    (entry(), ["--id", "Not_Kebab"]),
])
def test_every_error_names_the_bibtex_file(root: Path, text: str, extra: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bib = write_bib(root, text)
    status = main(["--root", str(root), "add", "--bibtex", str(bib), "--category", "gradient-weighting",
                   "--summary", "S.", *extra])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"modl add: error: {bib}:"), err


# -- dates -----------------------------------------------------------------------------------------


def test_added_is_today_and_updated_is_absent_on_a_new_record(root: Path) -> None:
    path = add_from_bibtex(root, write_bib(root, entry()), category=["gradient-weighting"], summary="S.",
                           today=dt.date(2026, 12, 1))
    record = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert record["added"] == dt.date(2026, 12, 1) and "updated" not in record
    assert add_from_bibtex(root, write_bib(root, entry(title="Another One", key="k2")), category=["software"],
                           summary="S.").read_text(encoding="utf-8").endswith(f"added: {dt.date.today().isoformat()}\n")


def test_updated_must_not_precede_added() -> None:
    data = yaml.safe_load((REPO_ROOT / "catalog" / "papers" / "pcgrad.yaml").read_text(encoding="utf-8"))
    Paper.model_validate({**data, "updated": data["added"]})
    with pytest.raises(ValueError, match="before 'added'"):
        Paper.model_validate({**data, "updated": data["added"] - dt.timedelta(days=1)})
