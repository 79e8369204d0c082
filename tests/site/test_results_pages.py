"""The Results section and the method pages: tables equal their files, math is rendered, figures exist.

Two sites are checked: one built from the fixture of tests/site/results_fixture.py (two methods, two
suites, one figure: always present, so the checks never pass for want of data) and this repository's
(``real_site``), whose committed results files and figures are checked whenever they exist.
"""

from __future__ import annotations

import copy
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from modl.catalog import load_catalog
from modl.site import results as R
from modl.site.data import SiteError, method_facts
from tests.site.conftest import REPO_ROOT, build_site, internal_targets, parse_page
from tests.site.results_fixture import (
    FIGURE,
    HOSTILE_CPU,
    HOSTILE_REASON,
    MODELS,
    SINGLE,
    html_tables,
    table_mismatches,
    write_fixture,
    write_suites,
)


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> tuple[Path, Path]:
    """(repository root, built site) of the fixture."""
    base = tmp_path_factory.mktemp("results-fixture")
    root = write_fixture(base / "repo")
    site = base / "site"
    done = build_site(site, catalog_root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, site


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


# -- tables against their files ------------------------------------------------------------------


def test_fixture_tables_equal_their_files(fixture_site) -> None:
    """Every cell of both suite tables, and of each method page's row of them, is the file's mean ± std
    in the metric's format (rows in the file's order, seeds column, header with the better direction)."""
    root, site = fixture_site
    problems, compared = table_mismatches(site, root)
    assert problems == []
    # toy-single: 3 rows × 4 metrics, plain's row again on its page; models-biquad: 2 × 2, plain again
    assert compared == (3 * 4 + 4) + (2 * 2 + 2)
    lonely = [t for t in html_tables((site / "results" / "toy-single" / "index.html").read_text(encoding="utf-8"))][0][3]
    assert lonely == ["lonely", "1", "-2", "0.00e+00", "100.0%", "–"]  # one seed: the mean alone


def test_a_changed_file_value_fails_the_table_check(fixture_site, tmp_path: Path) -> None:
    """The check is not vacuous: after one mean, one std, one seed count and the row order change in the
    files (the site is not rebuilt), it reports exactly those cells."""
    root, site = fixture_site
    changed = tmp_path / "repo"
    shutil.copytree(root / "benchmarks", changed / "benchmarks")
    single, models = copy.deepcopy(SINGLE), copy.deepcopy(MODELS)
    single["rows"][0]["metrics"]["loss_mean"]["mean"] = 0.1245  # shown as 0.123 before, 0.124 (.3g) now
    single["rows"][1]["metrics"]["accuracy"]["std"] = 0.2  # 25.0% -> 20.0%
    single["rows"][1]["seeds"] = 3
    models["rows"].reverse()
    write_suites(changed, [single, models])
    problems, _ = table_mismatches(site, changed)
    assert any("toy-single: plain, loss_mean: shows '0.123 ± 0.0123', the file holds '0.124 ± 0.0123'" in p for p in problems)
    assert any("methods/plain (toy-single): plain, loss_mean" in p for p in problems)  # the method page too
    assert any("toy-single: ghost, accuracy: shows '50.0% ± 25.0%'" in p for p in problems)
    assert any("ghost seeds '2' != 3" in p for p in problems)
    assert any("models-biquad: rows ['ghost', 'plain'] != ['plain', 'ghost']" in p for p in problems)
    assert len(problems) == 5, problems
    single["rows"][2]["seeds"] = 2  # now the std of lonely's row must show
    write_suites(changed, [single, models])
    problems, _ = table_mismatches(site, changed)
    assert any("toy-single: lonely, loss_mean: shows '-2', the file holds '-2 ± 0'" in p for p in problems)


def test_committed_tables_equal_their_files(real_site: Path) -> None:
    folder = REPO_ROOT / R.SUITES_DIR
    if not any(p.name != "index.json" for p in folder.glob("*.json")):
        pytest.skip("no committed results in benchmarks/results/suites/ yet (`modl bench` writes them)")
    problems, compared = table_mismatches(real_site, REPO_ROOT)
    assert problems == []
    assert compared >= sum(len(s.rows) * len(s.metrics) for s in R.load_suites(REPO_ROOT).suites)


# -- what the pages show ----------------------------------------------------------------------------


def test_suite_page_shows_settings_environment_na_failures_and_commands(fixture_site) -> None:
    root, site = fixture_site
    page = site / "results" / "toy-single" / "index.html"
    text = _text(page)
    assert SINGLE["title"] in parse_page(page).h1
    for value in SINGLE["environment"].values():
        assert str(value) in text
    assert "steps = 100" in text and "optimizer = adam" in text and "cagrad-toy with scale = 1" in text
    assert "Seeds: 0, 1, 2" in text and "Mode: full" in text
    assert "other: bi-level method: needs a validation split" in text  # only n/a cells: not in the table
    assert f"ghost, seed 2: {HOSTILE_REASON}" in text
    raw = page.read_text(encoding="utf-8")
    assert "<script>alert" not in raw and "<img src=x" not in raw and "href=\"javascript" not in raw and "<em>em" not in raw
    environment = [t for t in html_tables(raw) if t[0] == ["Key", "Value"]][0]
    assert ["cpu", HOSTILE_CPU] in environment and all(len(row) == 2 for row in environment)
    assert "modl bench --suite toy-single" in text
    assert "<math" in page.read_text(encoding="utf-8")  # the description's $..$ is rendered
    metrics = [t for t in html_tables(page.read_text(encoding="utf-8")) if t[0] == ["Metric", "Better", "Description"]]
    assert [len(row) for row in metrics[0]] == [3] * 5  # a | in a description's TeX does not split its cell
    assert metrics[0][2][2].startswith("Norm") and metrics[0][2][2].endswith("convex hull of the gradients.")
    targets = internal_targets(site, page)
    assert "methods/plain/" in targets and "methods/other/" in targets  # registered methods link to their pages
    assert "methods/ghost/" not in targets  # an unregistered one is plain text


def test_results_index_lists_the_suites_in_the_index_order_with_the_commands(fixture_site) -> None:
    root, site = fixture_site
    page = site / "results" / "index.html"
    text = _text(page)
    assert text.index(SINGLE["title"]) < text.index(MODELS["title"])  # index.json's order, not the file names'
    for command in ("modl bench", "modl bench --quick", "modl bench --suite ID", "modl bench --shard i/n"):
        assert command in text
    assert "1234 cells in 12.2 min of wall time (23.4 min of CPU time) with 2 worker processes" in text
    assert "6 / 3 / 1" in text  # toy-single's ok / n/a / failed cells
    assert {"results/toy-single/", "results/models-biquad/", "results/figures/", "results/speed/"} <= internal_targets(site, page)
    nav = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="results/"' in nav and 'href="results/toy-single/"' in nav  # Results in the navigation


def test_method_page_shows_rule_usage_results_figure_deviations_and_commands(fixture_site) -> None:
    root, site = fixture_site
    page = site / "methods" / "plain" / "index.html"
    raw = page.read_text(encoding="utf-8")
    text = _text(page)
    rule = raw[raw.index('id="update-rule"') : raw.index('id="usage"')]
    assert re.search(r"<math[^>]*display=\"block\"", rule) and "<munderover>" in rule  # the docstring's \sum_{i=1}^{K} block
    assert "modl bench --method plain" in text and "modl run plain --problem cagrad-toy" in text
    assert 'reference_impls.create("plain")' in text
    deviations = raw[raw.index('id="deviations-from-the-paper-and-the-official-code"') : raw.index('id="tests"')]
    assert deviations.count("<li>") == 2 and "<math" in deviations  # numbered, :math:`K` rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is text" in deviations and "<code>code_i</code>" in deviations
    assert FIGURE["match"] in text and FIGURE["command"] in text and FIGURE["settings"] in text
    assert "Figure 1 of Plain" in text
    other = _text(site / "methods" / "other" / "index.html")
    assert "has no Update rule: section yet" in other
    assert "Not applicable:" in other and "bi-level method: needs a validation split" in other


def test_figures_referenced_by_pages_exist_in_the_built_site(fixture_site, real_site: Path) -> None:
    """Every <img> of the Results and method pages resolves to a file of the built site (fixture and real);
    the fixture's figure is on its method's page and on the figures page, byte for byte."""
    root, site = fixture_site
    seen = {}
    for built in (site, real_site):
        images = 0
        for page in [*(built / "results").rglob("index.html"), *(built / "methods").rglob("index.html")]:
            for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text(encoding="utf-8")):
                target = (page.parent / html.unescape(src)).resolve()
                assert target.is_file(), (page, src)
                images += 1
        seen[built] = images
    assert seen[site] == 2
    png = site / "results" / "figures" / f"{FIGURE['id']}.png"
    assert png.read_bytes() == (root / "benchmarks" / "results" / "figures" / f"{FIGURE['id']}.png").read_bytes()
    # this repository: each figure of the figures page is also on the page of each method it names
    figures_page = real_site / "results" / "figures" / "index.html"
    shown = re.findall(r'<img[^>]*\ssrc="([^"]+)"', figures_page.read_text(encoding="utf-8"))
    assert len(shown) == len(R.load_figures(REPO_ROOT))
    for figure in R.load_figures(REPO_ROOT):
        for method in figure.methods:
            page = (real_site / "methods" / method / "index.html").read_text(encoding="utf-8")
            assert f'src="../../results/figures/{figure.id}.png"' in page, (figure.id, method)


# -- every registered method of this repository ---------------------------------------------------------

_RAW_TEX = re.compile(r"\\[A-Za-z]+")


def _outside_math_and_code(page_html: str) -> str:
    body = page_html[page_html.index("<article") : page_html.index("</article>")]
    for tag in ("math", "pre", "code", "script"):
        body = re.sub(rf"<{tag}\b.*?</{tag}>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_every_registered_method_has_a_page_with_rendered_math(real_site: Path) -> None:
    """A page per registry id; its update rule (when the docstring has one) is MathML, and no TeX command
    (``\\alpha``) is left outside <math> and code on method pages and paper pages."""
    methods = method_facts(REPO_ROOT)
    assert methods
    for name, facts in methods.items():
        page = real_site / "methods" / name / "index.html"
        assert page.is_file(), name
        raw = page.read_text(encoding="utf-8")
        rule = raw[raw.index('id="update-rule"') : raw.index('id="usage"')]
        if facts.update_rule and any(b.kind == "math" for b in facts.update_rule):
            assert re.search(r"<math[^>]*display=\"block\"", rule), name
        leftovers = _RAW_TEX.findall(_outside_math_and_code(raw))
        assert leftovers == [], (name, leftovers[:5])
        assert f"methods/{name}/" in internal_targets(real_site, real_site / "implementations" / "index.html")
    for paper in load_catalog(REPO_ROOT).papers.values():
        raw = (real_site / "papers" / paper.id / "index.html").read_text(encoding="utf-8")
        assert _RAW_TEX.findall(_outside_math_and_code(raw)) == [], paper.id


def test_paper_pages_link_their_methods_pages(real_site: Path) -> None:
    catalog = load_catalog(REPO_ROOT)
    methods = method_facts(REPO_ROOT)
    for paper in catalog.papers.values():
        if paper.implementation.status != "implemented":
            continue
        targets = internal_targets(real_site, real_site / "papers" / paper.id / "index.html")
        for name in paper.implementation.methods:
            if name in methods:
                assert f"methods/{name}/" in targets, (paper.id, name)


# -- without results, and with broken ones -------------------------------------------------------------


def test_pages_without_results_say_so(tmp_path: Path) -> None:
    from modl.site.data import load
    from modl.site.pages import build_site_model

    root = write_fixture(tmp_path / "repo")
    shutil.rmtree(root / "benchmarks")
    model = build_site_model(load(root))
    pages = model.pages()
    assert "No results yet: run `modl bench`" in pages[R.INDEX_URI]
    assert "*No results yet:*" in pages["methods/plain.md"]
    assert "No figures yet" in pages[R.FIGURES_URI] and "No speed measurements" in pages[R.SPEED_URI]
    assert [p for p in pages if p.startswith("results/")] == [R.INDEX_URI, R.FIGURES_URI, R.SPEED_URI]
    assert model.images() == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["rows"][0]["metrics"]["ps"].update(mean=float("nan")), "non-finite number NaN"),
        (lambda s: s["rows"][0]["metrics"]["ps"].update(std=float("inf")), "non-finite number Infinity"),
        (lambda s: s["rows"][0]["metrics"].update(bogus={"mean": 1.0}), "metrics ['bogus'] are not among"),
        (lambda s: s["metrics"][0].update(format="{}"), "is not a number format"),
        (lambda s: s.update(suite="other-name"), "does not match the file name"),
        (lambda s: s.update(format=2), "format 2 is not 1"),
        (lambda s: s["cells"][0].update(status="done"), "status must be ok, n/a or error"),
        (lambda s: s["rows"].append(copy.deepcopy(s["rows"][0])), "a method has two rows"),
        (lambda s: s["rows"][0]["metrics"]["ps"].update(mean="0.1"), "is not a finite number"),
    ],
)
def test_a_malformed_results_file_is_one_clear_error(tmp_path: Path, change, message: str) -> None:
    suite = copy.deepcopy(SINGLE)
    change(suite)
    folder = tmp_path / R.SUITES_DIR
    folder.mkdir(parents=True)
    path = folder / "toy-single.json"
    path.write_text(json.dumps(suite), encoding="utf-8")  # json writes NaN / Infinity, as a careless writer would
    with pytest.raises(SiteError, match=re.escape(message)) as error:
        R.load_suites(tmp_path)
    assert str(error.value).startswith(str(path))


def test_a_figure_without_its_image_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / R.FIGURES_DIR
    folder.mkdir(parents=True)
    (folder / f"{FIGURE['id']}.json").write_text(json.dumps(FIGURE), encoding="utf-8")
    with pytest.raises(SiteError, match="plain-toy-trajectories.png is missing"):
        R.load_figures(tmp_path)
    (folder / f"{FIGURE['id']}.json").write_text(json.dumps({**FIGURE, "match": ""}), encoding="utf-8")
    with pytest.raises(SiteError, match="lacks match"):
        R.load_figures(tmp_path)


def test_a_method_with_only_failed_cells_is_listed_as_failed_not_as_not_applicable() -> None:
    suite = R.Suite(
        id="s", path=Path("s.json"), title="S", description="", kind="single", problem="", problem_params={},
        settings={}, mode="full", seeds=[0, 1], environment={}, metrics=[], rows=[],
        cells=[R.Cell("a", 0, "n/a", "why"), R.Cell("b", 0, "n/a", "bi-level"), R.Cell("b", 1, "error", "boom")],
    )
    assert suite.not_applicable() == {"a": "why"}
    assert [c.method for c in suite.errors()] == ["b"]


def test_speed_tables_are_in_the_results_section(real_site: Path) -> None:
    """The speed tables against TorchJD have one page, in Results, linked from the implementations page."""
    speed = _text(real_site / "results" / "speed" / "index.html")
    impls = real_site / "implementations" / "index.html"
    assert "results/speed/" in internal_targets(real_site, impls)
    assert "Aggregation of one Jacobian" not in _text(impls)  # one generator, shown once
    if (REPO_ROOT / "benchmarks" / "results" / "aggregators.json").is_file():
        assert "Aggregation of one Jacobian" in speed and "Ours / TorchJD, K = 2" in speed
    if (REPO_ROOT / "benchmarks" / "results" / "training_step.json").is_file():
        assert "Training step" in speed


def test_method_pages_give_a_run_command_on_a_problem_the_method_accepts(real_site: Path) -> None:
    """Bi-level methods (derived from BilevelLossWeighting, found by parsing their module) run on bilevel-ridge,
    the only toy with a validation split; set methods on VLMOP2, Pareto-set models on the bi-quadratic."""
    methods = method_facts(REPO_ROOT)
    assert {n for n, m in methods.items() if m.bilevel} == {"auto-lambda", "moml", "forum"}
    for name, problem in (("auto-lambda", "bilevel-ridge"), ("mgda", "cagrad-toy"), ("uw", "cagrad-toy"),
                          ("epo", "vlmop2"), ("phn-ls", "biquad")):  # fmt: skip
        assert f"modl run {name} --problem {problem}" in _text(real_site / "methods" / name / "index.html")
