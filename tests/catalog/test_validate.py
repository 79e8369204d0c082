"""modl.validate: every kind of broken record is reported with its file, line, field and reason.

Each case copies the tiny valid catalog of ``fixtures/base`` (see conftest.py), applies ONE edit,
and expects one precise problem. Line numbers refer to the fixture files:
``base-paper.yaml`` (32 lines: id 2, title 3, authors 5-8, venue 9, year 10, categories 11, links 12-16,
later_versions 17-20, summary 21-22, bibtex 23-28, implementation 29-31, added 32) and
``other-paper.yaml`` (21 lines: id 2, title 3, links.paper 10, links.arxiv 11, bibtex.key 15,
implementation 18-20).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from modl.catalog import CatalogError, Problem, load_and_validate, load_catalog
from modl.validate import doi_key, normalise_title, url_key
from modl.yamlload import FILE_FIELD, _PySafeLoader, format_path, line_of, load_yaml_file

BASE = "catalog/papers/base-paper.yaml"
OTHER = "catalog/papers/other-paper.yaml"
SCHEMA_LINE = "# yaml-language-server: $schema=../schema/paper.schema.json\n"


def sub(old: str, new: str) -> Callable[[str], str]:
    """Replace exactly one occurrence of ``old`` (fails loudly if the fixture changed)."""

    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the fixture"
        return text.replace(old, new)

    return edit


@dataclass
class Case:
    name: str
    edits: dict[str, Any]
    file: str
    line: int
    field: str
    reason: str  # substring of the problem's reason
    registry_extra: dict[str, Any] = field(default_factory=dict)
    only_file: bool = True  # every problem found concerns ``file`` (nothing spills over)


CASES = [
    # ---- fields of one record ------------------------------------------------------------------
    Case("missing-title", {BASE: sub("title: Balancing Gradients for a Base Case\n", "")}, BASE, 1, "title", "required field is missing"),
    Case("missing-nested-field", {OTHER: sub("  paper: https://proceedings.example.org/v139/other21a.html\n", "")},
         OTHER, 9, "links.paper", "required field is missing"),
    Case("empty-authors", {BASE: sub("authors:\n  - Ada Lovelace\n  - Alan Turing\n  - Grace Hopper\n", "authors: []\n")},
         BASE, 5, "authors", "must not be empty"),
    Case("empty-author-string", {BASE: sub("  - Alan Turing\n", '  - ""\n')}, BASE, 7, "authors[1]", "must not be empty"),
    Case("unknown-field", {BASE: sub("year: 2020\n", "year: 2020\npublisher: ACM\n")}, BASE, 11, "publisher", "unknown field 'publisher'"),
    Case("unknown-field-typo", {OTHER: sub("summary:", "sumary:")}, OTHER, 12, "sumary", "did you mean 'summary'"),
    Case("unknown-nested-field", {BASE: sub("  code:", "  slides:")}, BASE, 14, "links.slides", "unknown field 'slides'"),
    Case("year-not-a-number", {BASE: sub("year: 2020", 'year: "20x"')}, BASE, 10, "year", "must be a whole number (got '20x')"),
    Case("year-out-of-range", {BASE: sub("year: 2020", "year: 1900")}, BASE, 10, "year", "outside 1950.."),
    Case("non-https-url", {BASE: sub("  paper: https://papers", "  paper: http://papers")}, BASE, 13, "links.paper", "https://"),
    Case("malformed-url", {BASE: sub("paper/2020/base-paper", "paper/2020 base-paper")}, BASE, 13, "links.paper", "well-formed"),
    Case("unknown-venue", {BASE: sub("venue: neurips", "venue: neurip")}, BASE, 9, "venue", "unknown venue 'neurip'"),
    Case("unknown-later-venue", {BASE: sub("  - venue: tmlr", "  - venue: jmlr")}, BASE, 18, "later_versions[0].venue", "unknown venue 'jmlr'"),
    Case("unknown-category", {BASE: sub("[gradient-manipulation]", "[gradient-manipulaton]")},
         BASE, 11, "categories[0]", "unknown category 'gradient-manipulaton'"),
    Case("non-leaf-category", {BASE: sub("[gradient-manipulation]", "[single-solution]")},
         BASE, 11, "categories[0]", "section with subsections; use one of its leaves: loss-balancing, gradient-manipulation"),
    Case("repeated-category", {BASE: sub("[gradient-manipulation]", "[gradient-manipulation, gradient-manipulation]")},
         BASE, 11, "categories", "more than once"),
    Case("bad-id-pattern", {OTHER: sub("id: other-paper", "id: Other-Paper")}, OTHER, 2, "id", "must be kebab-case"),
    Case("stem-differs-from-id", {OTHER: sub("id: other-paper", "id: another-paper")}, OTHER, 2, "id", "differs from the file name 'other-paper.yaml'"),
    Case("bad-arxiv-id", {BASE: sub('"2001.00001"', '"arXiv:2001.00001"')}, BASE, 15, "links.arxiv", "new-style arXiv id"),
    Case("bad-doi", {BASE: sub("doi: 10.1000/base.2020.1", "doi: https://doi.org/10.1000/base.2020.1")}, BASE, 16, "links.doi", "bare DOI"),
    Case("summary-multi-line", {BASE: sub("summary: >-\n", "summary: |-\n  First line.\n")}, BASE, 21, "summary", "single line"),
    Case("later-version-before-year", {BASE: sub("    year: 2022", "    year: 2019")}, BASE, 17, "later_versions", "before the paper's year 2020"),
    Case("bibtex-derived-field", {BASE: sub("    volume:", "    title: Balancing\n    volume:")}, BASE, 26, "bibtex.fields", "['title'] are derived"),
    Case("article-without-journal", {BASE: sub("type: inproceedings", "type: article")}, BASE, 26, "bibtex.fields", "needs a 'journal'"),
    Case("article-without-fields", {OTHER: sub("type: inproceedings\n  key: noether2021another\n  fields:\n    booktitle: International Conference on Machine Learning\n", "type: article\n  key: noether2021another\n")},
         OTHER, 13, "bibtex.fields", "needs a 'journal'"),
    Case("bibtex-field-not-text", {BASE: sub('volume: "33"', "volume: 33")}, BASE, 28, "bibtex.fields.volume", "must be text; quote it (got 33)"),
    Case("bad-date", {BASE: sub("added: 2026-11-22", "added: 2026-13-01")}, BASE, 32, "added", "cannot read '2026-13-01'"),
    Case("bad-literal", {OTHER: sub("status: not-applicable", "status: done")}, OTHER, 19, "implementation.status", "must be one of"),
    # ---- implementation vs registry ------------------------------------------------------------
    Case("implemented-unknown-registry-id", {BASE: sub("status: planned\n  methods: [base]", "status: implemented\n  methods: [bse]")},
         BASE, 31, "implementation.methods[0]", "unknown registry id 'bse'"),
    Case("implemented-without-methods", {BASE: sub("status: planned\n  methods: [base]", "status: implemented\n  methods: []")},
         BASE, 29, "implementation", "needs at least one registry id"),
    Case("not-applicable-without-reason", {OTHER: sub("  reason: Analysis paper without a new method.\n", "")},
         OTHER, 18, "implementation", "needs a 'reason'"),
    Case("method-of-another-paper", {OTHER: sub("status: not-applicable\n  reason: Analysis paper without a new method.", "status: planned\n  methods: [base]")},
         OTHER, 20, "implementation.methods[0]", "belongs to paper 'base-paper'"),
    Case("registry-entry-without-record", {}, "reference_impls/registry.py", 1, "REGISTRY['ghost'].paper",
         "paper 'ghost-paper' has no record", registry_extra={"ghost": "ghost-paper"}),
    Case("implemented-but-registry-has-more", {BASE: sub("status: planned", "status: implemented")},
         BASE, 31, "implementation.methods", "also has ['base-extra']", registry_extra={"base-extra": "base-paper"}),
    # ---- across records ------------------------------------------------------------------------
    Case("duplicate-id-across-files", {OTHER: sub("id: other-paper", "id: base-paper")}, OTHER, 2, "id", "duplicate id 'base-paper': also in catalog/papers/base-paper.yaml"),
    Case("duplicate-normalised-title", {OTHER: sub("Another Look at Loss Weights", "balancing gradients for a BASE case!")},
         OTHER, 3, "title", "same normalised title as base-paper (catalog/papers/base-paper.yaml:3)"),
    Case("duplicate-doi", {OTHER: sub('  arxiv: "2102.00002"\n', '  arxiv: "2102.00002"\n  doi: 10.1000/BASE.2020.1\n')},
         OTHER, 12, "links.doi", "same DOI as base-paper"),
    Case("duplicate-arxiv-id", {OTHER: sub('"2102.00002"', '"2001.00001"')}, OTHER, 11, "links.arxiv", "same arXiv id as base-paper"),
    Case("duplicate-arxiv-via-pdf-url", {OTHER: sub("https://proceedings.example.org/v139/other21a.html", "https://arxiv.org/pdf/2001.00001v2.pdf")},
         OTHER, 10, "links.paper", "same arXiv id as base-paper (catalog/papers/base-paper.yaml:15)"),
    Case("duplicate-paper-url-trailing-slash", {OTHER: sub("https://proceedings.example.org/v139/other21a.html", "https://www.papers.example.org/paper/2020/base-paper/#abstract")},
         OTHER, 10, "links.paper", "same paper URL (normalised) as base-paper"),
    Case("duplicate-later-version-url", {OTHER: sub("https://proceedings.example.org/v139/other21a.html", "https://journal.example.org/forum/base-journal")},
         OTHER, 10, "links.paper", "same paper URL (normalised) as base-paper (catalog/papers/base-paper.yaml:20)"),
    Case("duplicate-bibtex-key", {OTHER: sub("key: noether2021another", "key: Lovelace2020Balancing")},
         OTHER, 15, "bibtex.key", "duplicate BibTeX key 'Lovelace2020Balancing'"),
    # ---- file level ----------------------------------------------------------------------------
    Case("yaml-syntax-error", {BASE: sub("venue: neurips", "venue: neurips: icml")}, BASE, 9, FILE_FIELD, "YAML syntax error"),
    Case("empty-file", {BASE: ""}, BASE, 1, FILE_FIELD, "file is empty"),
    Case("comments-only-file", {BASE: SCHEMA_LINE + "# nothing here\n"}, BASE, 1, FILE_FIELD, "file is empty"),
    Case("non-utf8-bytes", {BASE: lambda t: t.replace("Alan Turing", "Alan Tur\u00efng").encode("latin-1")},
         BASE, 7, FILE_FIELD, "is not valid UTF-8 (byte 0xef"),
    Case("duplicate-key", {BASE: sub("year: 2020\n", "year: 2020\nyear: 2021\n")}, BASE, 11, "year", "duplicate key 'year' (first at line 10)"),
    Case("python-tag", {BASE: sub(">-\n  Balances the task gradients of a base case.", "!!python/object/apply:os.system ['echo pwned']")},
         BASE, 21, "summary", "tag '!!python/object/apply:os.system' is not allowed"),
    Case("custom-tag", {BASE: sub("year: 2020", "year: !year 2020")}, BASE, 10, "year", "tag '!year' is not allowed"),
    Case("alias", {BASE: lambda t: t.replace("short_name: BASE", "short_name: &n BASE").replace("venue: neurips\n", "venue: neurips\nvenue_note: *n\n")},
         BASE, 10, "venue_note", "alias"),
    Case("merge-key", {BASE: sub("  code: https://github.com/example/base-paper\n", "  <<: {code: https://github.com/example/base-paper}\n")},
         BASE, 14, "links", "merge keys (<<) are not allowed"),
    Case("top-level-list", {BASE: SCHEMA_LINE + "- id: base-paper\n- title: Balancing\n"}, BASE, 2, FILE_FIELD, "top level must be a mapping of fields, not a list"),
    Case("top-level-string", {BASE: SCHEMA_LINE + "just a sentence\n"}, BASE, 2, FILE_FIELD, "not a single string"),
    Case("tab-indentation", {BASE: sub("  - Alan Turing", "\t- Alan Turing")}, BASE, 7, FILE_FIELD, "indentation uses a tab"),
    Case("two-documents", {BASE: lambda t: t + "---\nid: again\n"}, BASE, 33, FILE_FIELD, "expected a single document"),
    Case("missing-schema-line", {BASE: sub(SCHEMA_LINE, "")}, BASE, 1, FILE_FIELD, "first line must be '# yaml-language-server: $schema=../schema/paper.schema.json'"),
    Case("yml-extension", {"catalog/papers/stray.yml": SCHEMA_LINE + "id: stray\n"}, "catalog/papers/stray.yml", 1, FILE_FIELD, "use the .yaml extension"),
    # ---- vocabularies --------------------------------------------------------------------------
    Case("duplicate-venue-id", {"catalog/venues.yaml": sub("{id: tmlr,", "{id: icml,")}, "catalog/venues.yaml", 5, "venues[2].id",
         "duplicate venue id 'icml' (first at line 3)", only_file=False),
    Case("venue-unknown-field", {"catalog/venues.yaml": sub("kind: journal}", "kind: journal, rank: A}")}, "catalog/venues.yaml", 5, "venues[2].rank",
         "unknown field 'rank'", only_file=False),
    Case("duplicate-category-id", {"catalog/taxonomy.yaml": sub("- id: related-survey", "- id: loss-balancing")},
         "catalog/taxonomy.yaml", 10, "categories[1].children[0].id", "duplicate category id 'loss-balancing' (first at line 3)"),
    Case("taxonomy-missing-title", {"catalog/taxonomy.yaml": sub("    title: Related Survey\n", "")},
         "catalog/taxonomy.yaml", 3, "categories[0].title", "required field is missing"),
    Case("project-bad-url", {"catalog/project.yaml": sub("site_url: https://", "site_url: ftp://")},
         "catalog/project.yaml", 4, "site_url", "https://"),
    Case("project-missing", {"catalog/project.yaml": None}, "catalog/project.yaml", 1, FILE_FIELD, "file is missing"),
]


def _registry(test_registry: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    from reference_impls.registry import MethodInfo

    out = dict(test_registry)
    for name, paper in extra.items():
        out[name] = MethodInfo(name, paper, "gradient-manipulation", f"gradient_manipulation.{name}", "X", "aggregator")
    return out


def _problems(root: Path, registry: dict[str, Any]) -> list[Problem]:
    with pytest.raises(CatalogError) as info:
        load_and_validate(root, registry)
    return info.value.problems


def test_base_catalog_is_valid(base_root: Path, test_registry: dict[str, Any]) -> None:
    catalog = load_and_validate(base_root, test_registry)
    assert list(catalog.papers) == ["base-paper", "other-paper"]
    assert catalog.source_files["base-paper"] == base_root / BASE
    assert catalog.leaf_ids() == ["related-survey", "loss-balancing", "gradient-manipulation"]
    assert list(catalog.venues) == ["icml", "neurips", "tmlr"]
    assert catalog.papers["base-paper"].added == dt.date(2026, 11, 22)
    assert catalog.project.name == "Test Catalog"


def test_enough_kinds_of_broken_record() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_catalog_reports_file_line_field_reason(
    case: Case, make_catalog: Callable[..., Path], test_registry: dict[str, Any]
) -> None:
    root = make_catalog(case.edits)
    problems = _problems(root, _registry(test_registry, case.registry_extra))
    wanted = [p for p in problems if (p.file, p.line, p.field) == (case.file, case.line, case.field) and case.reason in p.reason]
    assert wanted, "expected {}:{}: {}: ...{}...\ngot:\n{}".format(
        case.file, case.line, case.field, case.reason, "\n".join(map(str, problems))
    )
    if case.only_file:
        assert {p.file for p in problems} == {case.file}, "\n".join(map(str, problems))
    assert all("\n" not in str(p) for p in problems)


def test_every_problem_of_several_broken_files_is_reported(make_catalog: Callable[..., Path], test_registry: dict[str, Any]) -> None:
    root = make_catalog({
        BASE: lambda t: t.replace("year: 2020", 'year: "20x"').replace("venue: neurips", "venue: nope").replace("  code:", "  slides:"),
        OTHER: lambda t: t.replace("  - Emmy Noether", '  - ""').replace("summary:", "sumary:"),
        "catalog/papers/third-paper.yaml": "id: third-paper\ntitle: [unclosed\n",
        "catalog/papers/fourth-paper.yaml": "",
    })
    problems = _problems(root, test_registry)
    got = {(p.file, p.line, p.field) for p in problems}
    assert {
        (BASE, 10, "year"), (BASE, 9, "venue"), (BASE, 14, "links.slides"),
        (OTHER, 5, "authors[0]"), (OTHER, 12, "sumary"), (OTHER, 1, "summary"),
        ("catalog/papers/third-paper.yaml", 1, FILE_FIELD),  # no schema line
        ("catalog/papers/fourth-paper.yaml", 1, FILE_FIELD),
    } <= got, "\n".join(map(str, problems))
    syntax = [p for p in problems if p.file.endswith("third-paper.yaml") and "YAML syntax error" in p.reason]
    assert syntax and syntax[0].line == 3  # the mark of an unclosed flow sequence: end of input
    assert problems == sorted(problems, key=lambda p: (p.file, p.line, p.field, p.reason))


def test_problem_prints_as_file_line_field_reason() -> None:
    assert str(Problem("catalog/papers/x.yaml", 3, "links.paper", "must be an https:// URL")) == (
        "catalog/papers/x.yaml:3: links.paper: must be an https:// URL"
    )


def test_no_registry_means_implemented_cannot_be_checked(make_catalog: Callable[..., Path]) -> None:
    root = make_catalog({BASE: sub("status: planned", "status: implemented")})
    with pytest.raises(CatalogError) as info:
        load_and_validate(root, None, use_default_registry=False)
    assert [(p.line, p.field) for p in info.value.problems] == [(30, "implementation.status")]
    assert "cannot check" in info.value.problems[0].reason


def test_implemented_record_with_its_registry_entry_is_valid(make_catalog: Callable[..., Path], test_registry: dict[str, Any]) -> None:
    root = make_catalog({BASE: sub("status: planned", "status: implemented")})
    assert load_and_validate(root, test_registry).papers["base-paper"].implementation.status == "implemented"


def test_missing_papers_folder(base_root: Path) -> None:
    import shutil

    shutil.rmtree(base_root / "catalog" / "papers")
    with pytest.raises(CatalogError, match="catalog/papers:1: \\(file\\): folder is missing"):
        load_and_validate(base_root, {})


# ---- the line-aware loader, with both the libyaml and the pure-Python safe loader ------------------

LOADERS = [pytest.param(_PySafeLoader, id="python")]
if getattr(yaml, "__with_libyaml__", False):
    from modl.yamlload import _CSafeLoader

    LOADERS.append(pytest.param(_CSafeLoader, id="libyaml"))

LOADER_CASES = [
    ("a: 1\nb: [1, 2\n", 3, "YAML syntax error"),
    ("a: 1\na: 2\n", 2, "duplicate key 'a' (first at line 1)"),
    ("a: !!python/object/apply:os.system ['true']\n", 1, "not allowed"),
    ("a: !!python/name:os.system\n", 1, "not allowed"),
    ("a: !!binary aGVsbG8=\n", 1, "not allowed"),
    ("a: &x [1]\nb: *x\n", 2, "alias"),
    ("a:\n\t- 1\n", 2, "tab"),
    ("", 1, "empty"),
    ("- 1\n", 1, "not a list"),
    ("a: 1\n--- \nb: 2\n", 2, "single document"),
    ("a: \x07\n", 1, "YAML syntax error"),
]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("text,line,reason", LOADER_CASES)
def test_loader_rejects_cleanly(tmp_path: Path, loader: type, text: str, line: int, reason: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_yaml_file(path, tmp_path, loader)
    assert loaded.data is None
    assert [(p.file, p.line) for p in loaded.problems][:1] == [("f.yaml", line)], loaded.problems
    assert reason in loaded.problems[0].reason, loaded.problems


@pytest.mark.parametrize("loader", LOADERS)
def test_loader_values_and_lines(tmp_path: Path, loader: type) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("# c\nid: x\nlist:\n  - a\n  - {k: 2020-01-02, v: 1.5}\nmap:\n  inner: yes\n", encoding="utf-8")
    loaded = load_yaml_file(path, tmp_path, loader)
    assert loaded.problems == []
    assert loaded.data == {"id": "x", "list": ["a", {"k": dt.date(2020, 1, 2), "v": 1.5}], "map": {"inner": True}}
    assert loaded.line(("id",)) == 2
    assert loaded.line(("list", 1, "v")) == 5
    assert loaded.line(("map", "inner")) == 7
    assert loaded.line(("map", "absent")) == 6  # a missing field points at its parent
    assert loaded.line(("absent",)) == 1
    assert line_of(None, ("x",)) == 1


def test_format_path() -> None:
    assert format_path(("links", "paper")) == "links.paper"
    assert format_path(("authors", 2)) == "authors[2]"
    assert format_path(("later_versions", 0, "year")) == "later_versions[0].year"
    assert format_path(()) == FILE_FIELD


def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "f.yaml"
    path.write_text(f"a: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    assert load_yaml_file(path, tmp_path).problems
    assert not marker.exists()


# ---- normalisation used by duplicate detection -----------------------------------------------------


def test_normalise_title() -> None:
    assert normalise_title("Multi-Task Learning as a Bargaining Game!") == normalise_title("multi task learning, as a bargaining  game")
    assert normalise_title("A  B") != normalise_title("A C")


@pytest.mark.parametrize(
    "url,key",
    [
        ("https://arxiv.org/abs/2001.06782", ("arxiv", "2001.06782")),
        ("https://arxiv.org/abs/2001.06782v3", ("arxiv", "2001.06782")),
        ("https://arxiv.org/pdf/2001.06782v1.pdf", ("arxiv", "2001.06782")),
        ("https://www.arxiv.org/pdf/2001.06782/", ("arxiv", "2001.06782")),
        ("https://openreview.net/forum?id=AbC_1-x", ("openreview", "AbC_1-x")),
        ("https://openreview.net/pdf?id=AbC_1-x", ("openreview", "AbC_1-x")),
        ("https://doi.org/10.1109/TPAMI.2021.1", ("doi", "10.1109/tpami.2021.1")),
        ("https://www.example.org/a/b/#sec", ("url", "example.org/a/b")),
        ("https://Example.org/a/b", ("url", "example.org/a/b")),
        ("https://example.org/a?x=1", ("url", "example.org/a?x=1")),
    ],
)
def test_url_key(url: str, key: tuple[str, str]) -> None:
    assert url_key(url) == key


def test_doi_key() -> None:
    assert doi_key("10.1000/ABC") == ("doi", "10.1000/abc")
    assert doi_key("10.48550/arXiv.2001.06782") == ("arxiv", "2001.06782")


def test_load_catalog_uses_load_and_validate(base_root: Path) -> None:
    # load_catalog(root) for a root outside this checkout uses no registry; the base records plan only.
    assert sorted(load_catalog(base_root).papers) == ["base-paper", "other-paper"]


# ---- robustness: random damage never escapes as anything but a CatalogError -----------------------

ODD_VALUES = ["null", "[]", "{}", "[1, [2]]", "{a: {b: c}}", "2020-01-01", "1.5", "yes", '""', "'  x '", ".inf",
              "99999999999999999999999", "!!str x", "!!binary aGk=", "*nope", "&a x", "|\n  a\n  b", "\"\\u0000\""]


def _damage(text: str, rng: Any) -> str:
    lines = text.splitlines(keepends=True)
    action = rng.randrange(5)
    i = rng.randrange(1, len(lines))
    if action == 0:  # replace a value
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {rng.choice(ODD_VALUES)}\n" if ":" in lines[i] else f"  - {rng.choice(ODD_VALUES)}\n"
    elif action == 1:  # delete a line
        del lines[i]
    elif action == 2:  # duplicate a line
        lines.insert(i, lines[i])
    elif action == 3:  # shift indentation
        lines[i] = ("  " + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
    else:  # drop a character
        j = rng.randrange(len(lines[i]))
        lines[i] = lines[i][:j] + lines[i][j + 1 :]
    return "".join(lines)


def test_random_damage_is_always_reported_cleanly(base_root: Path, test_registry: dict[str, Any]) -> None:
    import random

    rng = random.Random(20261122)
    paths = [base_root / BASE, base_root / OTHER]
    originals = [p.read_text(encoding="utf-8") for p in paths]
    reported = 0
    for _ in range(100):
        for path, original in zip(paths, originals):
            text = original
            for _ in range(rng.randrange(1, 4)):
                text = _damage(text, rng)
            path.write_text(text, encoding="utf-8")
        try:
            load_and_validate(base_root, test_registry)
        except CatalogError as error:
            reported += 1
            for p in error.problems:
                assert p.file in (BASE, OTHER, "reference_impls/registry.py"), p
                assert 1 <= p.line <= 40 and p.field and p.reason and "\n" not in str(p), p
    assert reported > 70  # most damage is caught (some edits, e.g. a dropped space, stay valid)
