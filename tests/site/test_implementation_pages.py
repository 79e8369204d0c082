"""Reference-implementation facts on the site: deviations, test counts, source and status."""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

from modl.site.data import count_tests, load_registry, method_facts, parse_deviations
from tests.site.conftest import build_site, make_catalog, parse_page, record

MODULE = '''\
"""Fake aggregator: sums the rows of J.

Paper: A Plain Method for Multi-Task Learning (ICML 2021), Eq. (1).

Deviations:
    D1. Sums instead of averaging; the paper's Eq. (1)
        divides by K.
    D2. <script>alert(1)</script> is text, not markup.

Usage:
    >>> d = Plain()(J)
"""


class Plain:
    def __call__(self, J):
        return J.sum(0)  # Eq. (1): d = sum_i g_i
'''

TESTS = '''\
def test_one():
    assert True


def helper():
    pass


class TestPlain:
    def test_two(self):
        pass

    def test_three(self):
        pass

    def not_a_test(self):
        pass
'''

REGISTRY = '''\
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    name: str
    paper: str
    family: str
    module: str
    cls: str
    interface: str


REGISTRY = {
    "plain": MethodInfo("plain", "plain-method", "gradient-manipulation", "gradient_manipulation.plain", "Plain", "aggregator"),
    "planned-one": MethodInfo("planned-one", "other-method", "gradient-manipulation", "gradient_manipulation.other", "Other", "aggregator"),
}
'''


def _code_root(root: Path) -> Path:
    (root / "reference_impls" / "gradient_manipulation").mkdir(parents=True)
    (root / "tests" / "reference_impls").mkdir(parents=True)
    (root / "reference_impls" / "registry.py").write_text(REGISTRY, encoding="utf-8")
    (root / "reference_impls" / "gradient_manipulation" / "plain.py").write_text(MODULE, encoding="utf-8")
    (root / "tests" / "reference_impls" / "test_plain.py").write_text(TESTS, encoding="utf-8")
    return root


def test_parse_deviations_reads_the_numbered_list() -> None:
    doc = textwrap.dedent(
        """\
        Title.

        Deviations:
          D1. First line
              continues here; 2. is not an item
          D2: Second.
          3) Third, numbered plainly.

        Usage:
          1. not a deviation
        """
    )
    got = parse_deviations(doc)
    assert [(d.label, d.text) for d in got] == [
        ("D1", "First line continues here; 2. is not an item"),
        ("D2", "Second."),
        ("D3", "Third, numbered plainly."),
    ]
    assert parse_deviations("No such heading.\n  D1. x") == []
    assert parse_deviations("Deviations: none.") == []
    assert parse_deviations(None) == []


def test_count_tests_counts_functions_and_methods(tmp_path: Path) -> None:
    path = tmp_path / "test_x.py"
    path.write_text(TESTS, encoding="utf-8")
    assert count_tests(path) == 3
    path.write_text("def test_broken(:\n", encoding="utf-8")
    assert count_tests(path) == 0
    assert count_tests(tmp_path / "missing.py") == 0


def test_registry_is_read_without_the_package(tmp_path: Path) -> None:
    root = _code_root(tmp_path)
    registry = load_registry(root)
    assert sorted(registry) == ["plain", "planned-one"]
    facts = method_facts(root)
    plain = facts["plain"]
    assert plain.test_count == 3 and plain.tested
    assert [d.label for d in plain.deviations] == ["D1", "D2"]
    assert facts["planned-one"].source is None and not facts["planned-one"].tested


def test_implemented_record_shows_code_deviations_and_tests(tmp_path: Path) -> None:
    root = _code_root(tmp_path / "repo")
    implemented = record(
        implementation={"status": "implemented", "methods": ["plain"], "reconstructed": "Step 3's schedule, left open by the paper.",
                        "toy_scale": "A 4-unit MLP stands in for the paper's ResNet."}
    )
    other = record(
        id="other-method", title="Another Method", links={"paper": "https://example.org/other"},
        bibtex={"type": "misc", "key": "other2021"}, implementation={"status": "planned", "methods": ["planned-one"]},
    )
    survey = record(
        id="a-survey", title="A Survey", categories=["related-survey"], links={"paper": "https://example.org/survey"},
        bibtex={"type": "misc", "key": "survey2021"}, implementation={"status": "not-applicable", "reason": "A survey."},
    )
    make_catalog(root, [implemented, other, survey])
    site = tmp_path / "site"
    done = build_site(site, catalog_root=root)
    assert done.returncode == 0, done.stdout + done.stderr

    # The paper page keeps the record's caveats and links to the method's page, which has the rest.
    paper_page = site / "papers" / "plain-method" / "index.html"
    text = html.unescape(re.sub(r"<[^>]+>", "", paper_page.read_text(encoding="utf-8")))
    assert "../../methods/plain/" in parse_page(paper_page).hrefs
    assert "Reconstructed" in text and "Step 3's schedule, left open by the paper." in text  # the record's caveat
    assert "At toy scale" in text and "A 4-unit MLP stands in for the paper's ResNet." in text  # what stands in
    assert "class Plain" in text and "3 test functions" in text

    page = (site / "methods" / "plain" / "index.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # highlighted code is split into spans
    assert 'method = reference_impls.create("plain")' in text and "d = method(J)" in text  # usage snippet
    assert "Sums instead of averaging; the paper's Eq. (1) divides by K." in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is text" in page and "<script>alert" not in page
    assert "3 test functions" in text
    assert "return J.sum(0)  # Eq. (1): d = sum_i g_i" in text  # the source itself, pulled from the file
    assert "tests/reference_impls/test_plain.py" in text
    assert "Reconstructed" in text and "At toy scale" in text
    assert "../../papers/plain-method/" in parse_page(site / "methods" / "plain" / "index.html").hrefs

    other_page = (site / "papers" / "other-method" / "index.html").read_text(encoding="utf-8")
    assert "Planned" in other_page and 'id="method-' not in other_page and "Reconstructed" not in other_page
    assert "At toy scale" not in other_page
    survey_page = (site / "papers" / "a-survey" / "index.html").read_text(encoding="utf-8")
    assert "Not applicable: A survey." in survey_page

    impls = site / "implementations" / "index.html"
    text = impls.read_text(encoding="utf-8")
    assert "plain" in text and "planned-one" in text
    assert "../methods/plain/" in parse_page(impls).hrefs and "../methods/planned-one/" in parse_page(impls).hrefs

    stats = (site / "statistics" / "index.html").read_text(encoding="utf-8")
    assert "With a tested reference implementation" in stats


def test_docstring_literals_become_escaped_code() -> None:
    """Deviations reach method pages through docmath.markdown: ``literals`` become escaped code, the rest
    escaped text (no emphasis, no markup)."""
    from modl.site.docmath import markdown

    got = markdown("Set ``reg_eps = 0`` here; ``<script>alert(1)</script>`` and *x*.")
    assert got.startswith("Set <code>reg_eps = 0</code> here; <code>&lt;script&gt;")
    assert "<script>" not in got and "\\*x\\*" in got


def _write_speed_results(root: Path) -> None:
    import json

    results = root / "benchmarks" / "results"
    results.mkdir(parents=True)
    meta = {"threads": 2, "clock": "wall", "torch": "2.13.0", "torchjd": "0.18.0", "load_before": [1.5, 1.0, 0.5]}
    agg_rows = [
        {"jacobian": "gaussian", "method": "upgrad", "K": 2, "n": 10000, "ours_s": 0.0015, "torchjd_s": 0.003,
         "floor_s": 0.0002, "ours_over_torchjd": 0.5, "ours_over_floor": 7.5},
        {"jacobian": "gaussian", "method": "upgrad", "K": 8, "n": 10000, "ours_s": 0.004, "torchjd_s": 0.002,
         "floor_s": 0.0003, "ours_over_torchjd": 2.0, "ours_over_floor": 13.3},
        {"jacobian": "gaussian", "method": "famo", "K": 2, "n": 10000, "ours_s": 0.0001, "torchjd_s": None,
         "floor_s": 0.00025, "ours_over_torchjd": None, "ours_over_floor": 0.4},
        {"jacobian": "gaussian", "method": "floor", "K": 2, "n": 10000, "ours_s": 0.0002},
        {"jacobian": "mlp-trained", "method": "upgrad", "K": 2, "n": 148224, "ours_s": 0.0079, "torchjd_s": 0.0037,
         "floor_s": 0.001, "ours_over_torchjd": 2.135, "ours_over_floor": 7.9},
    ]  # fmt: skip
    step_rows = [
        {"network": "mlp", "method": "jacobian-batched", "K": 2, "n": 148224, "ours_s": 0.002, "torchjd_s": 0.004,
         "floor_s": 0.001, "ours_over_torchjd": 0.5, "ours_over_floor": 2.0},
        {"network": "mlp", "method": "mgda", "K": 2, "n": 148224, "ours_s": 0.006, "torchjd_s": 0.012,
         "floor_s": 0.001, "ours_over_torchjd": 0.5, "ours_over_floor": 6.0},
    ]  # fmt: skip
    (results / "aggregators.json").write_text(json.dumps({**meta, "trained_steps": 20, "rows": agg_rows}))
    (results / "training_step.json").write_text(json.dumps({**meta, "trained_steps": 20, "rows": step_rows}))


def _tables(html_text: str) -> list[list[list[str]]]:
    """Every <table> of an HTML fragment as rows of cell texts (header row first)."""
    tables = []
    for table in re.findall(r"<table>(.*?)</table>", html_text, flags=re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
        cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S) for row in rows]
        tables.append([[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row] for row in cells])
    return tables


def test_speed_tables_put_times_and_ratios_in_separate_labelled_columns(tmp_path: Path) -> None:
    """Rendered as HTML: one table per Jacobian and per network; for each K the columns are labelled
    ours (ms), TorchJD (ms) and ours / TorchJD, each cell holds one number (no "0.102 (×0.57 floor)"),
    a method TorchJD lacks has empty TorchJD cells, the floor is its own row, and the training-step
    table lists the methods before the Jacobian-only rows."""
    import markdown

    from modl.site.pages import speed_section

    _write_speed_results(tmp_path)
    text = speed_section(tmp_path)
    page = markdown.markdown(text, extensions=["tables"])
    assert "(×" not in page and "floor)" not in page
    gaussian, mlp_jacobian, step = _tables(page)
    assert gaussian[0] == ["Method", "Ours (ms), K = 2", "TorchJD (ms), K = 2", "Ours / TorchJD, K = 2",
                           "Ours (ms), K = 8", "TorchJD (ms), K = 8", "Ours / TorchJD, K = 8"]  # fmt: skip
    assert gaussian[1] == ["famo", "0.100", "", "", "", "", ""]
    assert gaussian[2] == ["upgrad", "1.500", "3.000", "0.50", "4.000", "2.000", "2.00"]
    assert gaussian[3] == ["floor (J Jᵀ + wᵀJ)", "0.200", "", "", "0.300", "", ""]
    assert "Gaussian J, n = 10,000" in page and "MLP after 20 SGD steps, n = 148,224" in page
    assert mlp_jacobian[1] == ["upgrad", "7.900", "3.700", "2.13"]
    assert [row[0] for row in step[1:]] == ["mgda", "jacobian-batched", "floor (Σ f_i backward)"]
    assert step[1][1:] == ["6.000", "12.000", "0.50"] and step[3][1] == "1.000"
    assert "TorchJD 0.18.0" in page and "load average 1.5" in page


def test_no_speed_section_without_results(tmp_path: Path) -> None:
    from modl.site.pages import speed_section

    assert speed_section(tmp_path) == ""


def test_properties_table_is_rendered_from_the_checked_data() -> None:
    """The implementations page shows reference_impls/properties.py as it is: one row per method, one
    column per property, ✓/✗ from the entry's status, and every ✗ of a method with its reason."""
    import markdown

    from modl.site.data import load_properties
    from modl.site.pages import properties_section

    root = Path(__file__).resolve().parents[2]
    properties, table = load_properties(root)
    page = markdown.markdown(properties_section(root), extensions=["tables", "md_in_html"])
    definitions, grid = _tables(page)[:2]
    titles = [properties[p][0] for p in properties]
    assert [row[0] for row in definitions[1:]] == titles
    assert grid[0] == ["Method", *titles]
    assert [row[0] for row in grid[1:]] == sorted(table)
    marks = {"holds": "✓", "fails": "✗", "n/a": "–"}
    for row in grid[1:]:
        for pid, cell in zip(properties, row[1:]):
            entry = table[row[0]].get(pid)
            assert cell.startswith(marks[entry.status] if entry else "–"), (row[0], pid, cell)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for method, entries in table.items():
        for pid, entry in entries.items():
            if entry.status == "fails":
                assert f"{properties[pid][0]} ✗: {entry.reason}" in text, (method, pid)


def test_no_properties_section_without_the_table(tmp_path: Path) -> None:
    from modl.site.pages import properties_section

    assert properties_section(tmp_path) == ""
