"""README rendering: layout, item format, cross-listing, reference-implementation links, escaping.

``hostile_catalog`` (also used by test_awesome_lint.py) replaces titles, authors, venue notes and
summaries of a few real records with text that would be markup, HTML or a link if it were not
escaped; the tests render it and parse the result with Python-Markdown.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from html.parser import HTMLParser
from unittest import mock

import markdown
import pytest

from modl.catalog import REPO_ROOT, Catalog, load_catalog
from modl.render.markdown import escape_html, escape_markdown_text, github_slug, markdown_url, Slugger
from modl.render.readme import (
    format_authors,
    format_venue,
    later_version_label,
    reference_impl_links,
    render_readme,
    site_page_url,
)
from reference_impls.registry import MethodInfo

# Strings that become markup, HTML or links when pasted into Markdown unescaped. None repeats
# punctuation or leaves a quote open, so a README holding them can still pass awesome-lint.
HOSTILE_TITLES = [
    "<script>alert(1)</script>",
    "](javascript:alert(1))",
    "*bold* [x](y) _it_ `code` <b>b</b>",
    "See https://evil.example.com/x and www.evil.example.org or mail a@evil.example.net :smile:",
    "![img](https://evil.example.com/i.png) {: onclick=alert(1) } ~del~ ^sup^ $x$ | cell | &amp; &#60;",
    "C# \\*not bold\\* <!-- comment --> [ref][1] <https://evil.example.com>",
]
HOSTILE_AUTHORS = [
    "<img src=x onerror=alert(1)>",
    "[Evil](javascript:alert(1))",
    "https://evil.example.com",
    "Al_ice_ *Bob* `Eve`",
    "Mallory www.evil.example.org a@evil.example.net :smile:",
]
HOSTILE_NOTE = "<script>x</script> [x](javascript:y) *em*"
HOSTILE_SUMMARY = "<script>alert('summary')</script> [click](javascript:alert(1))"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT)


def replace_papers(catalog: Catalog, updates: dict[str, dict]) -> Catalog:
    """A copy of ``catalog`` with fields of some papers replaced (no validation: hostile text allowed)."""
    papers = dict(catalog.papers)
    for pid, update in updates.items():
        papers[pid] = papers[pid].model_copy(update=update)
    return Catalog(
        root=catalog.root, project=catalog.project, venues=catalog.venues, categories=catalog.categories,
        papers=papers, source_files=catalog.source_files,
    )


def hostile_updates(catalog: Catalog, plain: bool = False) -> dict[str, dict]:
    """Updates for the first few papers (by id): hostile text, or ``plain`` harmless text of the same shape."""
    ids = sorted(catalog.papers)
    # Always include a cross-listed paper, so the cross-listed form is exercised too.
    ids = ["imtl"] + [i for i in ids if i != "imtl"]
    updates: dict[str, dict] = {}
    for n, (pid, title) in enumerate(zip(ids, HOSTILE_TITLES)):
        updates[pid] = {
            "title": f"Plain Title Number {n}" if plain else title,
            "authors": [f"Plain Author {k}" for k in range(len(HOSTILE_AUTHORS))] if plain else list(HOSTILE_AUTHORS),
            "venue_note": "Plain note" if plain else HOSTILE_NOTE,
            "summary": "Plain summary." if plain else HOSTILE_SUMMARY,
        }
    return updates


HOSTILE_SECTION = "Loss <b>Balancing</b> & [x](javascript:y) *Methods*"
PLAIN_SECTION = "Loss bBalancingb -xjavascripty Methods"  # harmless, with the same GitHub anchor


def retitle_category(catalog: Catalog, category_id: str, title: str) -> Catalog:
    """A copy of ``catalog`` whose category ``category_id`` has another title (no validation)."""

    def visit(cats: list) -> list:
        return [c.model_copy(update={"title": title if c.id == category_id else c.title, "children": visit(c.children)})
                for c in cats]

    return Catalog(root=catalog.root, project=catalog.project, venues=catalog.venues, categories=visit(catalog.categories),
                   papers=catalog.papers, source_files=catalog.source_files)


def hostile_catalog(catalog: Catalog) -> Catalog:
    """Hostile titles, authors, venue notes, summaries, and a hostile section title (loss-balancing,
    the primary section of the cross-listed IMTL, so the cross-reference link carries it too)."""
    return retitle_category(replace_papers(catalog, hostile_updates(catalog)), "loss-balancing", HOSTILE_SECTION)


class _Elements(HTMLParser):
    """Counts elements, collects hrefs/srcs/event-handler attributes and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.urls: list[str] = []
        self.handlers: list[str] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            if name in ("href", "src"):
                self.urls.append(value or "")
            if name.startswith("on"):
                self.handlers.append(name)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


MD_EXTENSIONS = [
    "fenced_code", "tables", "attr_list", "md_in_html", "pymdownx.tilde", "pymdownx.caret",
    "pymdownx.mark", "pymdownx.keys", "pymdownx.magiclink", "pymdownx.arithmatex",
]


def parse(text: str, extensions: list[str]) -> _Elements:
    parser = _Elements()
    parser.feed(markdown.markdown(text, extensions=extensions))
    parser.close()
    return parser


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_clean(catalog: Catalog) -> None:
    text = render_readme(catalog)
    assert text == render_readme(catalog)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\r" not in text and "\t" not in text
    assert all(line == line.rstrip() for line in text.splitlines()), "no trailing spaces (no hard breaks)"
    assert "\n\n\n" not in text
    # Reversing the insertion order of the papers changes nothing.
    shuffled = dict(reversed(list(catalog.papers.items())))
    assert render_readme(Catalog(
        root=catalog.root, project=catalog.project, venues=catalog.venues, categories=catalog.categories,
        papers=shuffled, source_files=catalog.source_files)) == text


def test_begins_with_title_then_the_fresh_machine_commands(catalog: Catalog) -> None:
    lines = render_readme(catalog).splitlines()
    assert lines[0] == f"# {catalog.project.name} [![Awesome](https://awesome.re/badge.svg)](https://awesome.re)"
    assert lines[1] == ""
    assert lines[2].startswith("```")
    commands = [line.split("#")[0].strip() for line in lines[3:6]]
    assert commands == ["make all", "make test", "make serve"]
    assert lines[6] == "```"
    assert sum(1 for line in lines if line.startswith("# ")) == 1, "exactly one H1"


def test_contents_lists_h2_and_h3_in_order_with_github_anchors(catalog: Catalog) -> None:
    text = render_readme(catalog)
    body = text.split("## Contents\n", 1)[1]
    toc, sections = body.split("\n## ", 1)
    toc_items = re.findall(r"^( *)- \[(.+)\]\(#([^)]+)\)$", toc, flags=re.MULTILINE)
    headings = re.findall(r"^(#{2,4}) (.+)$", "## " + sections, flags=re.MULTILINE)
    slugger = Slugger()
    slugger.slug("Contents")
    expected = [(len(h) - 2, t, slugger.slug(t)) for h, t in headings]
    assert [(len(i) // 2, t, a) for i, t, a in toc_items] == [e for e in expected if e[0] <= 1 and e[1] != "Contributing"]
    # Gradient Weighting / Manipulation are H4 under the H3 "Gradient Balancing Methods", not in Contents.
    assert ("####", "Gradient Weighting Methods") in [(h, t) for h, t in headings]
    assert "Gradient Weighting Methods" not in toc
    order = [t for _, t in headings]
    assert order.index("Gradient Balancing Methods") < order.index("Gradient Weighting Methods") < order.index(
        "Gradient Manipulation Methods") < order.index("Finding a Finite Set of Solutions")
    assert order[-1] == "Contributing" and "CONTRIBUTING.md" in text.rsplit("## Contributing", 1)[1]
    # The survey citation precedes the Contents.
    head = text.split("## Contents", 1)[0]
    assert "@article{chen2025modl," in head and "arXiv:2501.10945" in head


def test_github_slug_matches_github_anchors() -> None:
    assert github_slug("Preference-Conditioned Network-based Methods") == "preference-conditioned-network-based-methods"
    assert github_slug("Finding a Single Solution") == "finding-a-single-solution"
    assert github_slug("Q&A: Ünïcode (2024)!") == "qa-ünïcode-2024"
    slugger = Slugger()
    assert [slugger.slug("Software"), slugger.slug("Software"), slugger.slug("Software")] == [
        "software", "software-1", "software-2"]


def _items(text: str) -> list[tuple[str, str, str, str]]:
    """(section heading, main link text, main link URL, description) of every numbered item."""
    out = []
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        match = re.match(r"^\d+\. \[((?:\\.|[^\]\\])*)\]\(([^)\s]+)\) - (.*)$", line)
        if match:
            out.append((section, match.group(1), match.group(2), match.group(3)))
    return out


def test_every_record_listed_in_each_of_its_sections_in_entry_order(catalog: Catalog) -> None:
    text = render_readme(catalog)
    items = _items(text)
    assert len(items) == sum(len(p.categories) for p in catalog.papers.values())
    for leaf in catalog.leaf_ids():
        title = catalog.category(leaf).title
        listed = [t for s, t, _, _ in items if s == title]
        assert listed == [escape_markdown_text(p.title) for p in catalog.papers_in(leaf)]
        numbers = [int(m) for m in re.findall(r"^(\d+)\. ", text.split(f" {title}\n", 1)[1].split("\n#", 1)[0], re.M)]
        assert numbers == list(range(1, len(listed) + 1))


def test_primary_item_format(catalog: Catalog) -> None:
    pcgrad = catalog.papers["pcgrad"]
    line = next(i for i in _items(render_readme(catalog)) if i[1] == pcgrad.title)
    section, _, url, description = line
    assert section == "Gradient Manipulation Methods"
    assert url == pcgrad.links.paper
    assert description.startswith(f"{format_authors(pcgrad.authors)}. *NeurIPS 2020.* [Code]({pcgrad.links.code})")
    assert description.endswith(f"[Catalog page]({catalog.project.site_url}papers/pcgrad/)")


def test_cross_listed_papers_do_not_repeat_links(catalog: Catalog) -> None:
    text = render_readme(catalog)
    items = _items(text)
    main_urls = [url for _, _, url, _ in items]
    assert len(main_urls) == len(set(main_urls)), "a main link is repeated"
    for paper in catalog.papers.values():
        # The paper URL (and code URL) is linked exactly once in the whole README.
        assert text.count(f"]({paper.links.paper})") == 1, paper.id
        if paper.links.code:
            assert text.count(f"]({paper.links.code})") == 1, paper.id
    cross = [p for p in catalog.papers.values() if len(p.categories) > 1]
    assert {p.id for p in cross} >= {"imtl", "db-mtl"}
    for paper in cross:
        primary = catalog.category(paper.categories[0]).title
        for leaf in paper.categories[1:]:
            section = catalog.category(leaf).title
            (item,) = [i for i in items if i[0] == section and i[1] == escape_markdown_text(paper.title)]
            assert item[2] == site_page_url(catalog, paper)
            assert f"Cross-listed from [{primary}](#{github_slug(primary)})" in item[3]
            assert paper.links.paper not in item[3]


def test_reference_implementation_links(catalog: Catalog) -> None:
    registry = {
        "pcgrad": MethodInfo("pcgrad", "pcgrad", "gradient-manipulation", "gradient_manipulation.pcgrad", "PCGrad", "aggregator"),
        "imtl-l": MethodInfo("imtl-l", "imtl", "loss-balancing", "loss_balancing.imtl", "IMTLL", "loss-weighting"),
        "imtl-g": MethodInfo("imtl-g", "imtl", "gradient-weighting", "gradient_weighting.imtl_g", "IMTLG", "weighting"),
    }
    implemented = {"status": "implemented"}
    cat = replace_papers(catalog, {
        "pcgrad": {"implementation": catalog.papers["pcgrad"].implementation.model_copy(
            update={**implemented, "methods": ["pcgrad"], "reconstructed": None})},
        "imtl": {"implementation": catalog.papers["imtl"].implementation.model_copy(
            update={**implemented, "methods": ["imtl-l", "imtl-g"], "reconstructed": "Step 2 is ours."})},
        "mgda": {"implementation": catalog.papers["mgda"].implementation.model_copy(update={"status": "planned", "methods": ["mgda"]})},
    })
    repo = catalog.project.repo_url
    # The real registry, with these three entries replaced (other records may be implemented already).
    with mock.patch.dict("reference_impls.registry.REGISTRY", registry):
        text = render_readme(cat)
        assert reference_impl_links(cat, cat.papers["mgda"]) == []
    assert f"[Reference implementation]({repo}/blob/main/reference_impls/gradient_manipulation/pcgrad.py)" in text
    assert (f"Reference implementations: [imtl-l]({repo}/blob/main/reference_impls/loss_balancing/imtl.py), "
            f"[imtl-g]({repo}/blob/main/reference_impls/gradient_weighting/imtl_g.py) (reconstructed)") in text
    pcgrad_line = next(line for line in text.splitlines() if "papers/pcgrad/" in line)
    assert "(reconstructed)" not in pcgrad_line, "only records with a reconstruction are flagged"
    mgda_line = next(line for line in text.splitlines() if "papers/mgda/" in line)
    assert "Reference implementation" not in mgda_line, "planned methods get no link"
    imtl_cross = [line for line in text.splitlines() if "(https://modl-catalog.github.io/modl/papers/imtl/) - " in line]
    assert imtl_cross and "Reference implementation" not in imtl_cross[0], "cross-listed items repeat no link"
    with mock.patch.dict("reference_impls.registry.REGISTRY", {}, clear=True):
        with pytest.raises(ValueError, match="not in reference_impls.registry"):
            render_readme(cat)


# ----------------------------------------------------------------------------------------------
# Formatting helpers
# ----------------------------------------------------------------------------------------------


def test_format_authors() -> None:
    assert format_authors(["A"]) == "A"
    assert format_authors(["A", "B"]) == "A and B"
    assert format_authors(["A", "B", "C"]) == "A, B, and C"


def test_format_venue(catalog: Catalog) -> None:
    papers, venues = catalog.papers, catalog.venues
    assert format_venue(papers["mgda"], venues["neurips"]) == "NeurIPS 2018"
    assert format_venue(papers["mtl-survey-zhang-yang"], venues["tkde"]) == (
        "IEEE Transactions on Knowledge and Data Engineering (TKDE), 2022")  # print volume 34(12)
    assert format_venue(papers["db-mtl"], venues["arxiv"]) == "arXiv:2308.12029, 2023"
    assert format_venue(papers["libmoon"], venues["neurips"]) == "NeurIPS 2024 Datasets and Benchmarks Track"
    assert later_version_label(venues["aij"], 2024) == "Journal version in AIJ 2024"
    text = render_readme(catalog)
    assert "*NeurIPS 2021.* [Journal version in AIJ 2024](https://doi.org/10.1016/j.artint.2024.104184)" in text


# ----------------------------------------------------------------------------------------------
# Escaping
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extensions", [["fenced_code"], MD_EXTENSIONS], ids=["markdown", "markdown+pymdownx"])
def test_hostile_records_render_as_literal_text(catalog: Catalog, extensions: list[str]) -> None:
    hostile = parse(render_readme(hostile_catalog(catalog)), extensions)
    plain = parse(render_readme(retitle_category(replace_papers(catalog, hostile_updates(catalog, plain=True)),
                                                 "loss-balancing", PLAIN_SECTION)), extensions)
    assert hostile.tags["script"] == 0 and hostile.tags["img"] == plain.tags["img"]
    assert not [u for u in hostile.urls if not u.startswith(("https://", "#", "catalog/", "reference_impls/", "requirements/", "CONTRIBUTING"))]
    assert not hostile.handlers
    assert set(hostile.comments) <= {" "}, "only the empty comments that stop GFM autolinks"
    # Same elements as the same catalog with harmless text: no extra links, emphasis, code, ...
    assert hostile.tags == plain.tags
    assert sorted(hostile.urls) == sorted(plain.urls)
    visible = "".join(hostile.text)
    for title in HOSTILE_TITLES:
        assert title in visible, title
    for author in HOSTILE_AUTHORS:
        assert author in visible, author
    assert HOSTILE_NOTE in visible
    # Contents, heading, the cross-references of IMTL and DB-MTL, and the family counts of "Reference implementations"
    assert visible.count(HOSTILE_SECTION) == 5
    assert github_slug(HOSTILE_SECTION) == github_slug(PLAIN_SECTION) == "loss-bbalancingb--xjavascripty-methods"


@pytest.mark.parametrize("seed", range(3))
def test_escape_markdown_text_random_strings(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab <>&\"'`*_[](){}#+-.!|~^$=:@/\\w;é"
    for _ in range(300):
        text = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))).split())
        if not text:
            continue
        for extensions in (["fenced_code"], MD_EXTENSIONS):
            parsed = parse(f"1. [{escape_markdown_text(text)}](https://x.example.org/) - {escape_markdown_text(text)}.",
                           extensions)
            assert parsed.tags["a"] == 1 and parsed.urls == ["https://x.example.org/"], text
            assert set(parsed.tags) <= {"ol", "li", "a", "p"}, (text, parsed.tags)
            assert set(parsed.comments) <= {" "}, text
            assert "".join(parsed.text).strip() == f"{text} - {text}.", text


def test_a_lone_equals_sign_stays_readable_and_a_mark_run_is_escaped() -> None:
    """"n = 2" stays as typed in the Markdown source (the README's suite texts); "==" (pymdownx.mark)
    is written as character references, so it never becomes <mark>."""
    assert escape_markdown_text("K-Quad, n = 2, a=b") == "K-Quad, n = 2, a=b"
    text = "a ==mark== b === c = d"
    escaped = escape_markdown_text(text)
    assert "==" not in escaped and escaped.count("&#61;") == 7 and " c = d" in escaped
    parsed = parse(escaped, MD_EXTENSIONS)
    assert "mark" not in parsed.tags and "".join(parsed.text).strip() == text


def test_markdown_url_and_escape_html() -> None:
    for bad in ("javascript:alert(1)", "data:text/html,x", "/relative", "JaVaScRiPt:x", " https://x.org"):
        with pytest.raises(ValueError):
            markdown_url(bad)
    assert markdown_url("https://a.org/x(1)?q=a b&c=[d]") == "https://a.org/x%281%29?q=a%20b&c=%5Bd%5D"
    assert markdown_url("https://openreview.net/forum?id=_61Qh8tULj_") == "https://openreview.net/forum?id=_61Qh8tULj_"
    assert escape_html("<a href=\"x\" onclick='y'>&</a>") == "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"


def test_ordinary_titles_stay_readable(catalog: Catalog) -> None:
    for paper in catalog.papers.values():
        # Record text of the real catalog needs no escaping except in rare characters.
        escaped = escape_markdown_text(paper.title)
        assert escaped == paper.title or re.search(r"[\\&]", escaped), paper.title



def test_citation_cff_matches_the_survey_cited_in_the_readme(catalog: Catalog) -> None:
    """CITATION.cff's preferred citation and the README's BibTeX block name the same survey."""
    import yaml

    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["title"] == "modl"
    assert cff["authors"] == [{"name": "The modl contributors"}]
    assert cff["repository-code"] == catalog.project.repo_url and cff["url"] == catalog.project.site_url
    survey = cff["preferred-citation"]
    block = render_readme(catalog).split("```bibtex\n", 1)[1].split("```", 1)[0]
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},$", block, flags=re.MULTILINE))
    assert fields["title"].strip("{}") == survey["title"] == catalog.project.survey.title
    assert fields["author"].split(" and ") == [f"{a['given-names']} {a['family-names']}" for a in survey["authors"]]
    assert fields["year"] == str(survey["year"]) and fields["journal"] == survey["journal"]
    assert survey["url"] == catalog.project.survey.url


def test_reference_implementation_links_point_to_files_in_this_repository(catalog: Catalog) -> None:
    prefix = f"{catalog.project.repo_url}/blob/main/"
    for paper in catalog.papers.values():
        for name, url in reference_impl_links(catalog, paper):
            assert url.startswith(prefix)
            assert (REPO_ROOT / url[len(prefix):]).is_file(), f"{paper.id}: {name} links to a missing file {url}"


def test_former_section_titles_keep_their_anchors(catalog: Catalog) -> None:
    # A renamed section (the upstream list renamed both finite-set subsections) keeps the GitHub anchor
    # of each former heading, placed right under its current heading, so old links still land on it.
    text = render_readme(catalog)
    lines = text.splitlines()
    renamed = [cat for _, cat in catalog.walk_categories() if cat.former_titles]
    assert renamed, "the taxonomy records former titles (the two renamed finite-set subsections)"
    for cat in renamed:
        heading = next(i for i, line in enumerate(lines) if line.lstrip("#").strip() == escape_markdown_text(cat.title, html_breaks=False) and line.startswith("#"))
        for title in cat.former_titles:
            anchor = f'<a id="{Slugger().slug(title)}"></a>'
            assert text.count(anchor) == 1, (cat.id, title)
            assert anchor in lines[heading + 2], (cat.id, title, lines[heading + 2])


def test_earlier_versions_are_listed_after_the_venue(catalog: Catalog) -> None:
    text = render_readme(catalog)
    papers = [p for p in catalog.papers.values() if p.earlier_versions]
    assert papers
    for paper in papers:
        item = next(line for line in text.splitlines() if f"({paper.links.paper})" in line)
        for version in paper.earlier_versions:
            assert f"[Earlier version: {catalog.venues[version.venue].short} {version.year}]({version.url})" in item, paper.id


# ----------------------------------------------------------------------------------------------
# "Reference implementations": a summary generated from the registry, the tests and the results
# ----------------------------------------------------------------------------------------------


def test_reference_implementations_section_counts_come_from_the_data(tmp_path) -> None:
    """On a repository of two registered methods (one tested) and two suites, the section says so; with
    the suites removed it says where results will appear. Links: the site's Results page only."""
    from modl.render.readme import render_implementations
    from tests.site.results_fixture import MODELS, SINGLE, write_fixture

    root = write_fixture(tmp_path / "repo")
    catalog = load_catalog(root)
    text = render_implementations(catalog)
    assert text.startswith("## Reference implementations\n")
    assert "holds 2 methods of 2 papers" in text
    assert "1 Loss Balancing Methods, 1 Gradient Manipulation Methods." in text  # taxonomy order
    assert "1 of the 2 have tests" in text
    assert f"on those of the 2 benchmark suites it applies to, over 3 seeds ({SINGLE['title']}; {MODELS['title']})" in text
    assert re.findall(r"\]\(([^)]+)\)", text) == [catalog.project.site_url.rstrip("/") + "/results/"]
    (root / "benchmarks" / "results" / "suites" / "index.json").unlink()
    for suite in (root / "benchmarks" / "results" / "suites").glob("*.json"):
        suite.unlink()
    assert "runs every method on the benchmark suites it applies to; its tables" in render_implementations(catalog)


def test_reference_implementations_section_of_this_repository(catalog: Catalog) -> None:
    """The counts of the real README match the registry and the test files, counted here independently."""
    from reference_impls.registry import REGISTRY

    text = render_readme(catalog)
    section = text.split("\n## Reference implementations\n", 1)[1].split("\n## ", 1)[0]
    papers = {info.paper for info in REGISTRY.values()}
    assert f"holds {len(REGISTRY)} methods of {len(papers)} papers" in section
    families = Counter(info.family for info in REGISTRY.values())
    for family, count in families.items():
        assert f"{count} {catalog.category(family).title}" in section, family
    tested = 0
    for info in REGISTRY.values():
        test_file = REPO_ROOT / "tests" / "reference_impls" / f"test_{info.module.rsplit('.', 1)[-1]}.py"
        source = REPO_ROOT / info.source_path
        if source.is_file() and test_file.is_file() and re.search(r"^\s*def test", test_file.read_text(), re.M):
            tested += 1
    assert f"{tested} of the {len(REGISTRY)} have tests" in section
    assert "- [Reference implementations](#reference-implementations)" in text.split("\n## Contents\n", 1)[1]
