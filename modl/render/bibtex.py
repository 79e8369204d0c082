"""BibTeX export (``modl bib``, ``modl bib ID ...``) and the inverse used by ``modl add``.

One entry per record, in id order::

    @inproceedings{yu2020gradient,
      title = {{Gradient Surgery for Multi-Task Learning}},
      author = {Tianhe Yu and Saurabh Kumar and Abhishek Gupta and Sergey Levine and Karol Hausman and Chelsea Finn},
      booktitle = {Advances in Neural Information Processing Systems},
      ...                                   (bibtex.fields: booktitle/journal first, then sorted)
      year = {2020},
      url = {https://papers.nips.cc/...},
      doi = {...},                          (when the record has one)
      eprint = {2001.06782},                (when the record has an arXiv id)
      archivePrefix = {arXiv},
    }

- The title is wrapped in a second pair of braces, so bibliography styles keep its capitals
  (``{PCGrad}``-style protection for the whole title).
- Text fields (title, author, bibtex.fields) have the LaTeX specials ``& % $ # _ { } ~ ^ \\``
  escaped; non-ASCII stays UTF-8 (use biber, or bibtex8 / a UTF-8-aware BibTeX).
- url, doi and eprint are written verbatim (the url package reads them verbatim); only braces and
  backslashes, which would break the entry, are percent-encoded.
- An author containing the word "and" is braced so BibTeX does not split it.
"""

from __future__ import annotations

import re
import unicodedata

from modl.catalog import Catalog
from modl.schema import Paper, Survey

# bibtex.fields written right after the author, in this order; the others follow sorted by name.
_FIELD_ORDER = ("booktitle", "journal", "volume", "number", "pages", "publisher", "organization", "address")
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def escape_latex(text: str) -> str:
    """Escape the LaTeX special characters of plain ``text``; other characters stay as they are."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _verbatim(value: str) -> str:
    """A url/doi/eprint value: verbatim, but it must not unbalance the entry's braces."""
    return value.replace("\\", "%5C").replace("{", "%7B").replace("}", "%7D")


def _author_field(authors: list[str]) -> str:
    names = []
    for name in authors:
        escaped = escape_latex(name)
        if re.search(r"\band\b", name, flags=re.IGNORECASE):
            escaped = "{" + escaped + "}"
        names.append(escaped)
    return " and ".join(names)


def bibtex_fields(paper: Paper) -> list[tuple[str, str]]:
    """(name, value) pairs of ``paper``'s entry, in output order, values already escaped."""
    fields: list[tuple[str, str]] = [
        ("title", "{" + escape_latex(paper.title) + "}"),
        ("author", _author_field(paper.authors)),
    ]
    extra = paper.bibtex.fields
    ordered = [name for name in _FIELD_ORDER if name in extra] + sorted(n for n in extra if n not in _FIELD_ORDER)
    fields += [(name, escape_latex(extra[name])) for name in ordered]
    fields.append(("year", str(paper.year)))
    fields.append(("url", _verbatim(paper.links.paper)))
    if paper.links.doi:
        fields.append(("doi", _verbatim(paper.links.doi)))
    if paper.links.arxiv:
        fields.append(("eprint", _verbatim(paper.links.arxiv)))
        fields.append(("archivePrefix", "arXiv"))
    return fields


def render_entry(paper: Paper) -> str:
    lines = [f"@{paper.bibtex.type}{{{paper.bibtex.key},"]
    lines += [f"  {name} = {{{value}}}," for name, value in bibtex_fields(paper)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_survey_entry(survey: Survey) -> str:
    """The BibTeX entry of the survey the list follows (catalog/project.yaml), as an arXiv article."""
    fields = [
        ("title", "{" + escape_latex(survey.title) + "}"),
        ("author", _author_field(survey.authors)),
        ("journal", f"arXiv preprint arXiv:{survey.arxiv}"),
        ("year", str(survey.year)),
        ("url", _verbatim(survey.url)),
        ("eprint", _verbatim(survey.arxiv)),
        ("archivePrefix", "arXiv"),
    ]
    lines = [f"@article{{{survey.bibtex_key},"] + [f"  {name} = {{{value}}}," for name, value in fields] + ["}"]
    return "\n".join(lines) + "\n"


def render_bibtex(catalog: Catalog, ids: list[str] | None = None) -> str:
    """BibTeX of every record (``ids`` None) or of the given record ids, sorted by id."""
    wanted = sorted(catalog.papers) if ids is None else sorted(set(ids))
    unknown = [i for i in wanted if i not in catalog.papers]
    if unknown:
        raise ValueError(f"unknown record id(s): {', '.join(unknown)}")
    keys: dict[str, str] = {}
    for paper in catalog.papers.values():
        other = keys.setdefault(paper.bibtex.key, paper.id)
        if other != paper.id:
            raise ValueError(f"BibTeX key {paper.bibtex.key!r} is used by both {other!r} and {paper.id!r}")
    return "\n".join(render_entry(catalog.papers[i]) for i in wanted)


# ----------------------------------------------------------------------------------------------
# LaTeX -> text (for BibTeX that people paste into `modl add`, and for round-trip tests)
# ----------------------------------------------------------------------------------------------

_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "c": "\u0327",
    "k": "\u0328",
    "r": "\u030a",
    "d": "\u0323",
    "b": "\u0331",
}
_LETTERS = {
    "i": "ı", "j": "ȷ", "o": "ø", "O": "Ø", "l": "ł", "L": "Ł", "ss": "ß", "ae": "æ", "AE": "Æ",
    "oe": "œ", "OE": "Œ", "aa": "å", "AA": "Å",
}
_SYMBOLS = {
    "textbackslash": "\\", "textasciitilde": "~", "textasciicircum": "^", "textendash": "–",
    "textemdash": "—", "textquoteright": "’", "textquoteleft": "‘", "textquotedblleft": "“",
    "textquotedblright": "”", "S": "§", "P": "¶", "dag": "†", "ddag": "‡", "copyright": "©",
    "pounds": "£", "textregistered": "®", "texttrademark": "™", "ldots": "…", "dots": "…",
}
_ACCENT_RE = re.compile(r"""\\([`'^"~=.]|[uvHckrdb](?![A-Za-z]))\s*(?:\{\s*(\\?[A-Za-z]{1,2}|\S)\s*\}|(\\?[A-Za-z]))""")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)(?:\{\}|\s+)?")


def _accented(match: re.Match[str]) -> str:
    accent, base = match.group(1), match.group(2) or match.group(3)
    if base.startswith("\\"):  # an accent on a dotless i/j is an accent on i/j
        base = {"i": "i", "j": "j"}.get(base[1:]) or _LETTERS.get(base[1:], base[1:])
    return unicodedata.normalize("NFC", base + _ACCENTS[accent])


def latex_to_text(value: str, *, dashes: bool = False) -> str:
    """Plain text of a BibTeX field value: escapes, accents and grouping braces resolved.

    ``{PCGrad}: A \\& B`` -> ``PCGrad: A & B``; ``Val{\\'e}rian`` -> ``Valérian``; with
    ``dashes``, ``--``/``---`` become en/em dashes (for titles; page ranges keep ``--``).
    Unknown commands keep their name without the backslash; whitespace runs become one space.
    Inverse of :func:`escape_latex` for any text.
    """
    protected: list[str] = []

    def keep(text: str) -> str:
        protected.append(text)
        return f"\0{len(protected) - 1}\0"

    text = re.sub(r"\\([&%$#_{}])", lambda m: keep(m.group(1)), value)
    text = _ACCENT_RE.sub(lambda m: keep(_accented(m)), text)

    def command(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _SYMBOLS:
            return keep(_SYMBOLS[name])
        if name in _LETTERS:
            return keep(_LETTERS[name])
        return name

    text = _COMMAND_RE.sub(command, text)
    text = text.replace("{", "").replace("}", "")
    if dashes:
        text = text.replace("---", "—").replace("--", "–")
    text = re.sub(r"(?<!\\)~", " ", text)  # a tie is a space
    text = re.sub(r"\0(\d+)\0", lambda m: protected[int(m.group(1))], text)
    return re.sub(r"\s+", " ", text).strip()
