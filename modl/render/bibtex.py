"""BibTeX export (``modl bib``, ``modl bib ID ...``) and the inverse used by ``modl add``.

One entry per record, in id order::

    @inproceedings{yu2020gradient,
      title = {{Gradient Surgery for Multi-Task Learning}},
      author = {Tianhe Yu and Saurabh Kumar and Abhishek Gupta and Sergey Levine and Karol Hausman and Chelsea Finn},
      booktitle = {Advances in Neural Information Processing Systems},
      ...                                   (bibtex.fields: booktitle/journal first, then volume, number,
                                             pages, publisher, ..., then the rest sorted)
      year = {2020},
      url = {https://papers.nips.cc/...},
      doi = {...},                          (when the record has one)
      eprint = {2001.06782},                (when the record has an arXiv id)
      archivePrefix = {arXiv},
    }

The output pastes into a LaTeX document without fixes, for BibTeX with the classic styles (plain,
abbrv, unsrt, alpha) as well as for biber/biblatex:

- The title is wrapped in a second pair of braces, so bibliography styles keep its capitals
  (``{PCGrad}``-style protection for the whole title).
- Text fields (title, author, bibtex.fields) have the LaTeX specials ``& % $ # _ { } ~ ^ \\``
  escaped, and are written in ASCII: accented Latin letters become BibTeX special characters
  (``Valérian`` -> ``Val{\\'e}rian``, ``François`` -> ``Fran{\\c{c}}ois``), dashes and quotes their
  LaTeX ligatures, so classic 8-bit BibTeX sorts, abbreviates and prints them. A character with no
  ASCII form (e.g. CJK) is kept as UTF-8; that entry then needs biber or a UTF-8 engine, and the
  catalog's test requires the export to be pure ASCII, so such a record is noticed.
- Authors are written so BibTeX splits them as the paper means: a capitalised family-name particle
  (``Wouter Van Gansbeke``) gives the ``Last, First`` form ``Van Gansbeke, Wouter`` (BibTeX would
  otherwise read ``Van`` as a first name and ``Gansbeke`` alone as the last name); run-together
  initials get their spaces (``Frank J.W.M. Dankers`` -> ``Frank J. W. M. Dankers``), else
  abbreviating styles read ``J.W.M.`` as one name; an author containing the word "and" is braced.
- An ``@misc`` entry with an arXiv id gets ``howpublished = {arXiv preprint arXiv:ID}``: classic
  styles print neither ``eprint`` nor ``url``, so without it the entry names no identifier.
- url, doi and eprint are written verbatim (the url package reads them verbatim); only braces and
  backslashes, which would break the entry, are percent-encoded.
"""

from __future__ import annotations

import re
import unicodedata

from modl.catalog import Catalog
from modl.schema import Paper, Survey

# bibtex.fields written right after the author, in this order; the others follow sorted by name.
_FIELD_ORDER = (
    "howpublished", "booktitle", "journal", "series", "volume", "number", "pages", "publisher", "organization",
    "address",
)
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
# Non-ASCII characters with an ASCII LaTeX form (accented letters are composed in _special_char).
_CHAR_COMMANDS = {
    "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "\u00a0": "~",
    "…": r"\ldots{}", "§": r"{\S}", "¶": r"{\P}", "†": r"{\dag}", "‡": r"{\ddag}", "©": r"{\copyright}",
    "£": r"{\pounds}", "®": r"{\textregistered}", "™": r"{\texttrademark}",
    "ı": r"{\i}", "ȷ": r"{\j}", "ø": r"{\o}", "Ø": r"{\O}", "ł": r"{\l}", "Ł": r"{\L}", "ß": r"{\ss}",
    "æ": r"{\ae}", "Æ": r"{\AE}", "œ": r"{\oe}", "Œ": r"{\OE}",
}
# Symbols that titles hold as plain Unicode (`modl add` turns simple title math such as {$\epsilon$} into
# "ϵ"): written back as LaTeX math, so classic BibTeX reads ASCII and LaTeX prints the symbol.
_MATH_COMMANDS = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ϵ": "epsilon", "ε": "varepsilon", "ζ": "zeta",
    "η": "eta", "θ": "theta", "ϑ": "vartheta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu",
    "ξ": "xi", "π": "pi", "ρ": "rho", "σ": "sigma", "τ": "tau", "υ": "upsilon", "ϕ": "phi", "φ": "varphi",
    "χ": "chi", "ψ": "psi", "ω": "omega", "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda", "Ξ": "Xi",
    "Π": "Pi", "Σ": "Sigma", "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega", "ℓ": "ell", "∞": "infty", "·": "cdot",
    "×": "times", "±": "pm", "≤": "leq", "≥": "geq", "≠": "neq", "≈": "approx", "→": "rightarrow",
    "←": "leftarrow", "∈": "in", "∇": "nabla", "∂": "partial", "∼": "sim",
}
_MATH_SYMBOLS = {command: symbol for symbol, command in _MATH_COMMANDS.items()}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ", "0123456789+-=()n"))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎", "0123456789+-=()"))
_FROM_SUPERSCRIPT = {plain: raised for raised, plain in _SUPERSCRIPTS.items()}
_FROM_SUBSCRIPT = {plain: lowered for lowered, plain in _SUBSCRIPTS.items()}
# Family-name particles: "Wouter Van Gansbeke" has the last name "Van Gansbeke", but BibTeX reads a
# capitalised word before the last one as a first name, so such names are written "Last, First".
_PARTICLES = frozenset({
    "da", "das", "de", "degli", "del", "della", "den", "der", "des", "di", "do", "dos", "du", "la", "le",
    "ten", "ter", "van", "vande", "vander", "vom", "von", "zu",
})


def _special_char(ch: str) -> str | None:
    """BibTeX special character for an accented Latin letter: é -> {\\'e}, ç -> {\\c{c}}, í -> {\\'\\i}."""
    decomposed = unicodedata.normalize("NFD", ch)
    base, marks = decomposed[0], decomposed[1:]
    if len(marks) != 1 or not ("A" <= base <= "Z" or "a" <= base <= "z") or marks not in _ACCENT_COMMANDS:
        return None  # stacked accents (Vietnamese) or not a Latin letter: no classic BibTeX form
    command = _ACCENT_COMMANDS[marks]
    if base in "ij" and command in "'`^\"~=.uvH":
        base = "\\" + base  # accents go on the dotless i and j
    if command.isalpha():
        return f"{{\\{command}{{{base}}}}}"
    return f"{{\\{command}{base}}}"


def escape_latex(text: str) -> str:
    """LaTeX for plain ``text``: specials escaped, non-ASCII written in ASCII where LaTeX has a form for it."""
    out = []
    for ch in text:
        if ch in _LATEX_SPECIALS:
            out.append(_LATEX_SPECIALS[ch])
        elif ch.isascii():
            out.append(ch)
        elif ch in _CHAR_COMMANDS:
            out.append(_CHAR_COMMANDS[ch])
        elif ch in _MATH_COMMANDS:
            out.append(f"{{$\\{_MATH_COMMANDS[ch]}$}}")  # ϵ -> {$\epsilon$}
        elif ch in _SUPERSCRIPTS:
            out.append(f"{{$^{{{_SUPERSCRIPTS[ch]}}}$}}")  # ² -> {$^{2}$}
        elif ch in _SUBSCRIPTS:
            out.append(f"{{$_{{{_SUBSCRIPTS[ch]}}}$}}")  # ₁ -> {$_{1}$}
        else:
            out.append(_special_char(unicodedata.normalize("NFC", ch)) or ch)  # no ASCII form: UTF-8
    return "".join(out)


def _verbatim(value: str) -> str:
    """A url/doi/eprint value: verbatim, but it must not unbalance the entry's braces."""
    return value.replace("\\", "%5C").replace("{", "%7B").replace("}", "%7D")


def _particle_split(words: list[str]) -> tuple[str, str] | None:
    """(last, first) when a family-name particle starts the last name ("Van Gansbeke"), else None."""
    for index in range(1, len(words) - 1):
        if words[index].lower() in _PARTICLES:
            return " ".join(words[index:]), " ".join(words[:index])
    return None


def bibtex_name(name: str) -> str:
    """One author as BibTeX must see it (see the module docstring): escaped, initials spaced,
    ``Last, First`` when the family name starts with a particle, ``Last, Jr., First`` for a suffix,
    braced when it contains "and" or another comma."""
    name = re.sub(r"(?<=\b[^\W\d_])\.(?=[^\W\d_])", ". ", name)  # J.W.M. -> J. W. M.
    if re.search(r"\band\b", name, flags=re.IGNORECASE):
        return "{" + escape_latex(name) + "}"
    suffix = re.fullmatch(r"(\S.*?),?\s+(Jr\.?|Sr\.?|II|III|IV)", name)
    if suffix and len(suffix.group(1).split()) >= 2:  # "Martin Luther King, Jr." -> "King, Jr., Martin Luther"
        words = suffix.group(1).split()
        last, first = _particle_split(words) or (words[-1], " ".join(words[:-1]))
        return f"{escape_latex(last)}, {suffix.group(2)}, {escape_latex(first)}"
    if "," in name:  # any other comma would be read as "Last, First": keep the name whole
        return "{" + escape_latex(name) + "}"
    split = _particle_split(name.split())
    if split:
        return f"{escape_latex(split[0])}, {escape_latex(split[1])}"
    return escape_latex(name)


def _author_field(authors: list[str]) -> str:
    return " and ".join(bibtex_name(name) for name in authors)


def bibtex_fields(paper: Paper) -> list[tuple[str, str]]:
    """(name, value) pairs of ``paper``'s entry, in output order, values already escaped."""
    fields: list[tuple[str, str]] = [
        ("title", "{" + escape_latex(paper.title) + "}"),
        ("author", _author_field(paper.authors)),
    ]
    extra = dict(paper.bibtex.fields)
    if paper.bibtex.type == "misc" and paper.links.arxiv:
        extra["howpublished"] = f"arXiv preprint arXiv:{paper.links.arxiv}"  # what classic styles print
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
_ACCENT_COMMANDS = {mark: command for command, mark in _ACCENTS.items()}
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

    def math(match: re.Match[str]) -> str:  # the math escape_latex writes: $\epsilon$, $^{2}$, $_{1}$
        command, script, char = match.group(1), match.group(2), match.group(3)
        if command:
            return keep(_MATH_SYMBOLS[command]) if command in _MATH_SYMBOLS else match.group(0)
        table = _FROM_SUPERSCRIPT if script == "^" else _FROM_SUBSCRIPT
        return keep(table[char]) if char in table else match.group(0)

    text = re.sub(r"(?<!\\)\$(?:\\([A-Za-z]+)|([\^_])\{(.)\})\$", math, value)
    text = re.sub(r"\\([&%$#_{}])", lambda m: keep(m.group(1)), text)
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
