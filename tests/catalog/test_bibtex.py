"""BibTeX export: parses back with bibtexparser 1.x into the records' data."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import bibtexparser
import pytest
from bibtexparser.bparser import BibTexParser

from modl.catalog import REPO_ROOT, Catalog, load_catalog
from modl.render.bibtex import escape_latex, latex_to_text, render_bibtex
from tests.catalog.test_readme import replace_papers


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT)


def parse(text: str) -> list[dict[str, str]]:
    parser = BibTexParser(common_strings=False, ignore_nonstandard_types=False)
    return bibtexparser.loads(text, parser=parser).entries


def _title(value: str) -> str:
    assert value.startswith("{") and value.endswith("}"), "the title is protected by a second pair of braces"
    return latex_to_text(value[1:-1], dashes=True)


def _author(value: str) -> str:
    """A BibTeX name back in the record's order: 'Van Gansbeke, Wouter' -> 'Wouter Van Gansbeke'."""
    last, comma, first = value.partition(", ")
    return latex_to_text(f"{first} {last}" if comma else value)


def _spaced_initials(name: str) -> str:
    return re.sub(r"(?<=\b[^\W\d_])\.(?=[^\W\d_])", ". ", name)


def test_every_record_round_trips(catalog: Catalog) -> None:
    text = render_bibtex(catalog)
    entries = parse(text)
    papers = sorted(catalog.papers.values(), key=lambda p: p.id)
    assert [e["ID"] for e in entries] == [p.bibtex.key for p in papers], "one entry per record, in id order"
    for entry, paper in zip(entries, papers):
        assert entry["ENTRYTYPE"] == paper.bibtex.type
        assert _title(entry["title"]) == paper.title
        assert [_author(a) for a in entry["author"].split(" and ")] == [_spaced_initials(a) for a in paper.authors]
        assert entry["year"] == str(paper.year)
        assert entry["url"] == paper.links.paper
        assert entry.get("doi") == paper.links.doi
        assert entry.get("eprint") == paper.links.arxiv
        assert entry.get("archiveprefix") == ("arXiv" if paper.links.arxiv else None)
        for name, value in paper.bibtex.fields.items():
            assert latex_to_text(entry[name]) == value, (paper.id, name)
        expected = {"ENTRYTYPE", "ID", "title", "author", "year", "url", *paper.bibtex.fields}
        expected |= {"doi"} if paper.links.doi else set()
        expected |= {"eprint", "archiveprefix"} if paper.links.arxiv else set()
        if paper.bibtex.type == "misc" and paper.links.arxiv:
            expected.add("howpublished")
            assert entry["howpublished"] == f"arXiv preprint arXiv:{paper.links.arxiv}"
        assert set(entry) == expected, paper.id


def test_output_is_deterministic_and_ascii(catalog: Catalog) -> None:
    text = render_bibtex(catalog)
    assert text == render_bibtex(catalog)
    assert text == render_bibtex(catalog, sorted(catalog.papers, reverse=True))
    assert "Val{\\'e}rian Rey" in text and text.isascii()  # accented letters as BibTeX special characters


def test_hostile_text_round_trips(catalog: Catalog) -> None:
    title = "{PCGrad} & 100% $x$ #1 a_b ~c ^d \\e \\{ } <script>"
    authors = ["José Müller", "Barnes and Noble", "A\\B {C}"]
    cat = replace_papers(catalog, {"pcgrad": {"title": title, "authors": authors}})
    (entry,) = parse(render_bibtex(cat, ["pcgrad"]))
    assert _title(entry["title"]) == title
    assert "\\{PCGrad\\}" in entry["title"] and "\\&" in entry["title"] and "\\%" in entry["title"]
    assert entry["author"] == "Jos{\\'e} M{\\\"u}ller and {Barnes and Noble} and A\\textbackslash{}B \\{C\\}"
    assert [latex_to_text(n) for n in ("José Müller", "{Barnes and Noble}", "A\\textbackslash{}B \\{C\\}")] == authors


@pytest.mark.parametrize("seed", range(3))
def test_escape_latex_inverts(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "aZ &%$#_{}~^\\-éłϵ₁²"
    for _ in range(500):
        text = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))).split())
        assert latex_to_text(escape_latex(text)) == text
        braces = escape_latex(text).replace("\\{", "").replace("\\}", "")
        depth = 0
        for ch in braces:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0
        assert depth == 0, "escaped text keeps the entry's braces balanced"


def test_latex_to_text_resolves_common_markup() -> None:
    assert latex_to_text("{PCGrad}: Val{\\'e}rian M{\\\"u}ller \\c{c} Lu{\\'\\i}s \\ss{} x~y") == (
        "PCGrad: Valérian Müller ç Luís ß x y")
    assert latex_to_text("1--10") == "1--10"
    assert latex_to_text("A -- B --- C", dashes=True) == "A – B — C"


def test_unknown_id_is_an_error(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="unknown record id"):
        render_bibtex(catalog, ["no-such-paper"])


def _modl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modl", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_bib() -> None:
    one = _modl("bib", "pcgrad")
    assert one.returncode == 0, one.stderr
    (entry,) = parse(one.stdout)
    assert entry["ID"] == "yu2020gradient" and _title(entry["title"]) == "Gradient Surgery for Multi-Task Learning"
    assert one.stdout.count("@") == 1
    bad = _modl("bib", "no-such-paper")
    assert bad.returncode == 1 and "unknown record id" in bad.stderr and "Traceback" not in bad.stderr
