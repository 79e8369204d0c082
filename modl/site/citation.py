"""Scholarly metadata of a paper page: citation_* meta tags, the page description and search links.

Pure functions of a record (and its venue); no network, no torch. The paper page passes their output
to the template (overrides/main.html) through its front matter.

Meta tags (:func:`citation_tags`) are the Highwire Press tags that Google Scholar's inclusion guidelines
(https://scholar.google.com/intl/en/scholar/inclusion.html) and Zotero's "Embedded Metadata" translator
(zotero/translators, ``Embedded Metadata.js``) read:

* ``citation_title``; one ``citation_author`` per author, in the paper's order (:func:`highwire_author`):
  "First Last" as the record writes it, except a family name that starts with a particle ("Luc Van
  Gool"), written "Van Gool, Luc" as the paper's .bib has it: Zotero reads a name without a comma as
  first names and a one-word family name ("Luc Van" / "Gool"), and one with a comma as "Last, First"
  (Scholar's own example is "Last, First"). ``citation_publication_date``: the year alone
  (Scholar accepts "2010" as well as "2010/5/12"; the records have no finer date).
* The container by the venue's ``kind`` (catalog/venues.yaml), with the venue's full name:
  conference and workshop -> ``citation_conference_title`` (Scholar: "conference and workshop papers";
  Zotero: item type conferencePaper), journal -> ``citation_journal_title`` (Zotero: journalArticle).
  Preprints get no container tag. This is what arXiv's own abstract pages do (title, authors, date,
  ``citation_pdf_url``, ``citation_arxiv_id``); ``citation_technical_report_institution`` "arXiv" would
  make Zotero file a preprint as a *report* of the "institution" arXiv, which it is not, and Scholar
  reserves that tag for technical reports.
* From ``bibtex.fields`` when present: ``citation_volume``, ``citation_issue`` (``number``),
  ``citation_firstpage``/``citation_lastpage`` (``pages`` "a--b"; an article number alone gives the first
  page only), ``citation_publisher``.
* ``citation_doi``, ``citation_arxiv_id`` (Scholar and Zotero ignore the latter; arXiv emits it and other
  readers use it), ``citation_pdf_url`` (:func:`pdf_url`), ``citation_abstract_html_url`` (the record's
  paper link, unless that link is itself the PDF).

Search links (:func:`scholar_links`) are built from the title: Semantic Scholar's, DBLP's and Google
Scholar's documented search pages take a ``q`` query. Identifier-based addresses (Semantic Scholar's
``/arxiv/<id>``, Scholar's ``scholar_lookup``) were not found documented, so none is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote_plus, urlparse

from modl.render.bibtex import _particle_split  # the .bib's reading of "First von Last" names
from modl.schema import Links, Paper, Venue
from modl.site.docmath import _DOLLAR  # inline $tex$ of record summaries, as the pages find it

DESCRIPTION_LIMIT = 300  # characters of a page's <meta name="description">; search engines cut near 160-320

# Containers by venue kind (Highwire Press tag names); preprints: none (see the module docstring).
CONTAINER_TAG = {
    "conference": "citation_conference_title",
    "workshop": "citation_conference_title",
    "journal": "citation_journal_title",
}

# TeX commands of record summaries as plain text (the description is plain text; MathML cannot go there).
_TEX_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Sigma": "Σ", "Phi": "Φ",
    "Psi": "Ψ", "Omega": "Ω", "ell": "ℓ", "infty": "∞", "to": "→", "rightarrow": "→", "leftarrow": "←",
    "cdot": "·", "times": "×", "pm": "±", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠",
    "approx": "≈", "in": "∈", "nabla": "∇", "partial": "∂", "sim": "∼", "sum": "Σ", "min": "min",
    "max": "max", "log": "log", "exp": "exp", "top": "ᵀ", "lVert": "‖", "rVert": "‖", "Vert": "‖",
    "lvert": "|", "rvert": "|", "mid": "|", "star": "⋆", "ast": "∗", "circ": "∘", "odot": "⊙",
    "langle": "⟨", "rangle": "⟩",
}
_TEX_SPACES = {",", ";", ":", "!", " ", "quad", "qquad"}
_TEX_DROPPED = {"left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr", "displaystyle"}
_TEX_FONTS = {"mathrm", "mathbf", "mathit", "mathsf", "mathcal", "boldsymbol", "text", "textrm", "operatorname"}
_DOUBLE_STRUCK = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "E": "𝔼", "Q": "ℚ", "C": "ℂ"}
_SUBSCRIPT_DIGITS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_SUPERSCRIPT_DIGITS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_GROUP = r"\{([^{}]*)\}"


@dataclass(frozen=True)
class ScholarLink:
    service: str  # data-service of the link: semantic-scholar, dblp, google-scholar
    label: str
    url: str


def pdf_url(links: Links) -> str | None:
    """The paper's PDF address, derived without network, the published version first: the record's paper
    link when its path ends in ".pdf", else OpenReview's ``/pdf?id=<id>``, else arXiv's ``/pdf/<id>``
    (the latest version), else None."""
    if urlparse(links.paper).path.lower().endswith(".pdf"):
        return links.paper
    if links.openreview:
        return f"https://openreview.net/pdf?id={links.openreview}"
    if links.arxiv:
        return f"https://arxiv.org/pdf/{links.arxiv}"
    return None


def page_range(pages: str) -> tuple[str, str | None]:
    """(first, last) of a BibTeX ``pages`` value: "5824--5836" -> ("5824", "5836"); "100700" -> ("100700", None)."""
    first, _, last = pages.partition("--")
    return first.strip(), (last.strip() or None)


def highwire_author(name: str, only_author: bool = False) -> str:
    """``name`` for a ``citation_author`` tag: "Last, First" when the family name starts with a particle
    ("Luc Van Gool" -> "Van Gool, Luc", as the .bib writes it), else as the record writes it.

    Zotero's Embedded Metadata translator splits a name at its last space unless it holds a comma, and
    splits the content of a page's ONLY author tag at commas when both sides hold a space (a list of
    names); such a single author keeps "First Last"."""
    if "," in name:
        return name  # a suffix ("King, Jr."): kept as written
    split = _particle_split(name.split())
    if split is None:
        return name
    last, first = split
    if only_author and " " in last and " " in first:
        return name
    return f"{last}, {first}"


def citation_tags(paper: Paper, venue: Venue) -> list[tuple[str, str]]:
    """The (name, content) Highwire Press meta tags of a paper's page, in order (see the module docstring)."""
    tags = [("citation_title", paper.title)]
    only = len(paper.authors) == 1
    tags += [("citation_author", highwire_author(author, only)) for author in paper.authors]  # in order
    tags.append(("citation_publication_date", str(paper.year)))
    if venue.kind in CONTAINER_TAG:
        tags.append((CONTAINER_TAG[venue.kind], venue.name))
    fields = paper.bibtex.fields
    if "volume" in fields:
        tags.append(("citation_volume", fields["volume"]))
    if "number" in fields:
        tags.append(("citation_issue", fields["number"]))
    if "pages" in fields:
        first, last = page_range(fields["pages"])
        tags.append(("citation_firstpage", first))
        if last is not None:
            tags.append(("citation_lastpage", last))
    if "publisher" in fields:
        tags.append(("citation_publisher", fields["publisher"]))
    if paper.links.doi:
        tags.append(("citation_doi", paper.links.doi))
    if paper.links.arxiv:
        tags.append(("citation_arxiv_id", paper.links.arxiv))
    pdf = pdf_url(paper.links)
    if pdf is not None:
        tags.append(("citation_pdf_url", pdf))
    if pdf != paper.links.paper:
        tags.append(("citation_abstract_html_url", paper.links.paper))
    return tags


def _script(text: str) -> str:
    """A sub- or superscript's text, parenthesised unless it is one character or a number: w^{-1/α} -> (-1/α)."""
    return text if len(text) <= 1 or text.isdigit() else f"({text})"


def math_text(tex: str) -> str:
    r"""Inline TeX as readable plain text: ``G G^\top w = w^{-1/\alpha}`` -> ``G Gᵀ w = w^(-1/α)``."""
    text = tex
    text = re.sub(r"\\[dt]?frac" + _GROUP + _GROUP, lambda m: f"{_script(m[1])}/{_script(m[2])}", text)  # \tfrac{1}{2} -> 1/2
    text = re.sub(r"\\mathbb\{(\w)\}", lambda m: _DOUBLE_STRUCK.get(m[1], m[1]), text)  # \mathbb{R} -> ℝ
    text = re.sub(r"\\(" + "|".join(_TEX_FONTS) + r")" + _GROUP, r"\2", text)  # \mathrm{diag} -> diag
    text = re.sub(r"\^\s*\\top\b", "ᵀ", text)  # G^\top -> Gᵀ

    def command(match: re.Match) -> str:
        name = match[1]
        if name in _TEX_SPACES:
            return " "
        if name in _TEX_DROPPED:
            return ""
        return _TEX_SYMBOLS.get(name, name)

    text = re.sub(r"\\([A-Za-z]+|.)", command, text)
    for _ in range(3):  # nested groups, innermost first
        text = re.sub(r"([\^_])" + _GROUP, lambda m: m[1] + _script(m[2]), text)
    text = text.replace("{", "").replace("}", "")
    text = re.sub(r"_(\d+)(?!\d)", lambda m: m[1].translate(_SUBSCRIPT_DIGITS), text)  # J_1 -> J₁
    text = re.sub(r"\^(\d+)(?!\d)", lambda m: m[1].translate(_SUPERSCRIPT_DIGITS), text)  # x^2 -> x²
    return " ".join(text.split())


def plain_text(summary: str) -> str:
    """A record's text with ``$tex$`` reduced to :func:`math_text` and whitespace collapsed."""
    return " ".join(_DOLLAR.sub(lambda m: math_text(m[1]), summary).split())


def shorten(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at the last word boundary before it, with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]  # room for the ellipsis
    if " " in cut and not text[limit - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:–—-(") + "…"


def page_description(paper: Paper) -> str:
    """The paper page's description: its summary as plain text, at most DESCRIPTION_LIMIT characters."""
    return shorten(plain_text(paper.summary))


def method_description(name: str, paper: Paper | None, venue: Venue | None) -> str:
    """A method page's description: the method (a paper may have several), the paper it implements, its summary."""
    if paper is None or venue is None:
        return shorten(f"Reference implementation {name} in PyTorch (reference_impls).")
    label = paper.short_name or paper.title
    return shorten(f"{name}, PyTorch reference implementation of {label} ({venue.short} {paper.year}): {plain_text(paper.summary)}")


def scholar_links(paper: Paper) -> list[ScholarLink]:
    """Searches for the paper's title on Semantic Scholar, DBLP and Google Scholar (a phrase search there)."""
    title = " ".join(paper.title.split())
    return [
        ScholarLink("semantic-scholar", "Semantic Scholar", f"https://www.semanticscholar.org/search?q={quote_plus(title)}"),
        ScholarLink("dblp", "DBLP", f"https://dblp.org/search?q={quote_plus(title)}"),
        ScholarLink("google-scholar", "Google Scholar", f"https://scholar.google.com/scholar?q={quote_plus(chr(34) + title + chr(34))}"),
    ]
