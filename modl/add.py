r"""``modl add``: write a new record ``catalog/papers/<id>.yaml`` from one BibTeX entry.

    modl add --bibtex FILE --category ID [--category ID2] --summary S [--id ID] [--venue V] [--code URL] [--title T]

From the entry (parsed with bibtexparser 1.x after a structural check of our own, which reports a
malformed entry as ``FILE:LINE:COLUMN: malformed BibTeX: <what>``; LaTeX escapes, accents and braces
resolved):

- ``title`` (``--``/``---`` become dashes; simple math such as ``{$\epsilon$}`` or ``$\ell_1$``
  becomes plain Unicode text, ``ϵ`` and ``ℓ₁``, because records hold plain text: math that has no
  plain-text form is an error that asks for ``--title``), ``authors`` ("Last, First" -> "First Last",
  "Last, Jr., First" -> "First Last Jr."), ``year``;
- ``venue``: ``--venue``, or the venue of ``catalog/venues.yaml`` whose name, short name or one of
  whose ``aliases`` matches the ``booktitle``/``journal`` (exactly, or contained in it as whole words,
  as in "Proceedings of the ..." or OpenReview's "The Thirty-ninth Annual Conference on Neural
  Information Processing Systems"), or arXiv for an arXiv-only entry; otherwise an error asks for
  ``--venue``. A workshop booktitle never matches a main-conference venue;
- ``links.paper``: the ``url`` field, else ``https://doi.org/<doi>``, else
  ``https://arxiv.org/abs/<eprint>``; ``links.arxiv`` / ``links.doi`` from eprint, doi or an arXiv URL;
  ``links.code`` from ``--code``;
- ``bibtex``: the entry type, its key and every remaining field (minus the fields the record
  derives, and bookkeeping fields such as abstract, keywords, file, timestamp, biburl, bibsource);
- ``id``: ``--id``, or the method name before a colon in the title ("FAMO: Fast ..." -> ``famo``,
  also stored as ``short_name``), or first author's family name, year and first significant title
  word ("MGDA Converges under ..." by Zhang, 2025 -> ``zhang-2025-mgda``). A default id that is taken
  by another record is an error naming that record (never a silent collision): pass ``--id``;
- ``summary``: ``--summary`` is required; placeholders ("Summary to be written.", "TODO", ...) are
  rejected, here and by ``modl validate`` (:func:`modl.schema.is_placeholder_summary`);
- ``implementation: {status: planned, methods: []}``, ``added``: today (``updated`` is absent: the
  tools set it when they change the record later, e.g. ``modl import-awesome --write``).

Everything is checked before anything is written: the entry, the record on its own, its categories
(taxonomy leaves) and venue, the id and BibTeX key against existing records, duplicates (same
normalised title, DOI, arXiv id or paper URL), and that the catalog is valid without it. Every
error names the file it concerns (the BibTeX file, with line and column for syntax errors, or the
record). The file is then written atomically without overwriting anything, and the whole catalog is
validated again; if that fails (a concurrent change) the new file is removed and the problems are
reported. No other file is touched.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modl.catalog import CatalogError, Problem, load_catalog
from modl.io import atomic_write_bytes
from modl.render.bibtex import latex_to_text
from modl.schema import (
    BIBKEY_PATTERN,
    BIBTEX_DERIVED_FIELDS,
    ID_PATTERN,
    SUMMARY_PLACEHOLDER,
    Paper,
    TaxonomyFile,
    Venue,
    VenueFile,
    is_placeholder_summary,
)

__all__ = ["SUMMARY_PLACEHOLDER", "AddError", "add_from_bibtex", "check_bibtex_syntax", "default_ids", "match_venue",
           "parse_single_entry", "record_from_entry", "title_text"]
SCHEMA_LINE = "# yaml-language-server: $schema=../schema/paper.schema.json\n"
_ENTRY_TYPES = {
    "article": "article",
    "inproceedings": "inproceedings",
    "conference": "inproceedings",
    "incollection": "incollection",
    "book": "book",
    "techreport": "techreport",
    "misc": "misc",
    "online": "misc",
    "unpublished": "misc",
    "phdthesis": "misc",
    "mastersthesis": "misc",
}
# Fields a record never keeps: derived from the record, or bookkeeping of reference managers.
_DROPPED_FIELDS = set(BIBTEX_DERIVED_FIELDS) | {
    "abstract", "keywords", "keyword", "file", "timestamp", "biburl", "bibsource", "urldate",
    "owner", "annote", "mendeley-groups", "langid", "eprinttype", "eprintclass", "primaryclass",
}
_ARXIV_URL = re.compile(r"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?/?$")
_ARXIV_ID = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5})(?:v\d+)?$", re.IGNORECASE)


class AddError(ValueError):
    """A one-line reason why the record was not added (the CLI prints it, exit status 1)."""


# ----------------------------------------------------------------------------------------------
# BibTeX syntax check: bibtexparser 1.x drops a malformed entry silently (an unclosed brace or a
# missing comma yields "no entries"), so the structure is checked first and the first fault is
# reported with its line and column.
# ----------------------------------------------------------------------------------------------

_SPECIAL_BLOCKS = {"comment", "string", "preamble"}


class _Scanner:
    def __init__(self, text: str, source: str):
        self.text, self.source, self.pos = text, source, 0

    def where(self, pos: int | None = None) -> str:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return f"{self.source}:{line}:{column}"

    def fail(self, reason: str, pos: int | None = None) -> AddError:
        return AddError(f"{self.where(pos)}: malformed BibTeX: {reason}")

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the file"
        return repr(self.text[self.pos])

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def name(self) -> str:
        match = re.compile(r"[A-Za-z0-9_:.+/'-]+").match(self.text, self.pos)
        if not match:
            return ""
        self.pos = match.end()
        return match.group(0)

    def braced(self, what: str) -> str:
        """A ``{...}`` group starting at ``pos``; returns its content."""
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return self.text[start + 1:self.pos - 1]
            self.pos += 1
        raise self.fail(f"the '{{' that opens {what} is never closed (a '}}' is missing)", start)

    def quoted(self, what: str) -> str:
        start = self.pos
        self.pos += 1
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == '"' and depth == 0:
                self.pos += 1
                return self.text[start + 1:self.pos - 1]
            self.pos += 1
        raise self.fail(f"the '\"' that opens {what} is never closed", start)


_SWALLOWED_FIELD = re.compile(
    r",\s*(author|title|year|journal|booktitle|volume|number|pages|url|doi|eprint|publisher|month|note|editor|"
    r"series|address|organization|archiveprefix|primaryclass|isbn|issn)\s*=\s*[{\"0-9]",
    re.IGNORECASE,
)


def check_bibtex_syntax(text: str, source: str) -> int:
    """Check the structure of every ``@type{key, name = value, ...}`` entry of ``text``.

    Returns the number of bibliography entries (not counting @comment, @string, @preamble);
    raises :class:`AddError` naming ``source:line:column`` and the fault at the first problem.
    Text outside entries is a comment, as in BibTeX.
    """
    scan = _Scanner(text, source)
    count = 0
    while True:
        at = text.find("@", scan.pos)
        if at < 0:
            return count
        scan.pos = at + 1
        entry_type = scan.name()
        if not entry_type or not entry_type.isalpha():
            raise scan.fail("'@' must be followed by an entry type such as 'article'", at)
        scan.skip_space()
        if scan.pos >= len(text) or text[scan.pos] not in "{(":
            raise scan.fail(f"expected '{{' after '@{entry_type}', found {scan.found()}")
        if entry_type.lower() in _SPECIAL_BLOCKS:
            if text[scan.pos] == "{":
                scan.braced(f"@{entry_type}")
            else:
                end = text.find(")", scan.pos)
                if end < 0:
                    raise scan.fail(f"the '(' that opens @{entry_type} is never closed", scan.pos)
                scan.pos = end + 1
            continue
        closer = "}" if text[scan.pos] == "{" else ")"
        opened = scan.pos
        scan.pos += 1
        scan.skip_space()
        key = scan.name()
        if not key:
            raise scan.fail(f"@{entry_type} has no citation key (expected '@{entry_type}{{key, ...')")
        scan.skip_space()
        if scan.pos < len(text) and text[scan.pos] == closer:
            raise scan.fail(f"entry {key!r} has no fields")
        if scan.pos >= len(text) or text[scan.pos] != ",":
            raise scan.fail(f"expected ',' after the citation key {key!r}, found {scan.found()}")
        scan.pos += 1
        count += 1
        seen: dict[str, str] = {}
        while True:
            scan.skip_space()
            if scan.pos >= len(text):
                raise scan.fail(f"entry {key!r} that starts here is never closed (a '{closer}' is missing)", at)
            if text[scan.pos] == closer:
                scan.pos += 1
                break
            field_at = scan.pos
            field = scan.name()
            if not field:
                raise scan.fail(f"expected a field name in entry {key!r}, found {scan.found()}")
            scan.skip_space()
            if scan.pos >= len(text) or text[scan.pos] != "=":
                raise scan.fail(f"expected '=' after the field name {field!r}, found {scan.found()}")
            if field.lower() in seen:
                raise scan.fail(f"field {field!r} appears twice in entry {key!r}", field_at)
            seen[field.lower()] = field
            scan.pos += 1
            while True:  # value: parts joined by '#'
                scan.skip_space()
                part_at = scan.pos
                if scan.pos < len(text) and text[scan.pos] == "{":
                    content = scan.braced(f"field {field!r}")
                    swallowed = _SWALLOWED_FIELD.search(content)
                    if swallowed:
                        raise scan.fail(
                            f"field {field!r} holds '{swallowed.group(1)} = ...': its '}}' is probably missing", part_at
                        )
                elif scan.pos < len(text) and text[scan.pos] == '"':
                    scan.quoted(f"field {field!r}")
                elif not scan.name():
                    raise scan.fail(f"field {field!r} has no value (expected {{...}}, \"...\", a number or a @string name)")
                scan.skip_space()
                if scan.pos < len(text) and text[scan.pos] == "#":
                    scan.pos += 1
                    continue
                break
            if scan.pos < len(text) and text[scan.pos] == ",":
                scan.pos += 1
                continue
            if scan.pos < len(text) and text[scan.pos] == closer:
                scan.pos += 1
                break
            if scan.pos >= len(text):
                raise scan.fail(f"entry {key!r} that starts here is never closed (a '{closer}' is missing)", at)
            raise scan.fail(f"missing ',' after field {field!r} (found {scan.found()})")
        del opened


# ----------------------------------------------------------------------------------------------
# BibTeX parsing
# ----------------------------------------------------------------------------------------------


def parse_single_entry(text: str, source: str) -> dict[str, str]:
    """The one entry of ``text`` (fields lower-cased, ENTRYTYPE and ID included)."""
    import bibtexparser
    from bibtexparser.bparser import BibTexParser

    if check_bibtex_syntax(text, source) == 0:
        raise AddError(f"{source}: no BibTeX entry found (no '@type{{key, field = {{...}}, ...}}' in the file)")
    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False, interpolate_strings=True)
    try:
        database = bibtexparser.loads(text, parser=parser)
    except Exception as error:  # bibtexparser 1.x raises assorted pyparsing errors
        raise AddError(f"{source}: not valid BibTeX ({type(error).__name__}: {error})") from None
    entries = database.entries
    if not entries:  # the structure was fine, so bibtexparser rejected something subtler
        raise AddError(f"{source}: no BibTeX entry found (bibtexparser read none; check @string names and quotes)")
    if len(entries) > 1:
        keys = ", ".join(entry.get("ID", "?") for entry in entries)
        raise AddError(f"{source}: holds {len(entries)} entries ({keys}); give one entry per `modl add`")
    return {key if key in ("ENTRYTYPE", "ID") else key.lower(): value for key, value in entries[0].items()}


def split_authors(value: str) -> list[str]:
    """Split a BibTeX author list on ``and`` outside braces; each name as "First Last"."""
    names: list[str] = []
    depth, start, index = 0, 0, 0
    while index < len(value):
        ch = value[index]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            match = re.match(r"\s+and\s+", value[index:], flags=re.IGNORECASE)
            if match and index > start:
                names.append(value[start:index])
                index += match.end()
                start = index
                continue
        index += 1
    names.append(value[start:])
    out = []
    for raw in names:
        parts = [latex_to_text(part) for part in _split_top_level_commas(raw)]
        parts = [part for part in parts if part]
        if not parts:
            continue
        if len(parts) == 1:
            name = parts[0]
        elif len(parts) == 2:  # Last, First
            name = f"{parts[1]} {parts[0]}"
        else:  # Last, Jr, First
            name = f"{' '.join(parts[2:])} {parts[0]} {parts[1]}"
        out.append(re.sub(r"\s+", " ", name).strip())
    if not out:
        raise AddError("the BibTeX entry has an empty author field")
    return out


def _split_top_level_commas(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).casefold()
    return re.sub(r"[\W_]+", " ", text).strip()


def load_venues(root: Path) -> list[Venue]:
    data = yaml.safe_load((root / "catalog" / "venues.yaml").read_text(encoding="utf-8"))
    return list(VenueFile.model_validate(data).venues)


def venue_for_text(venues: list[Venue], where: str) -> str | None:
    """The venue id that ``where`` (a booktitle, journal or list venue line, plain text) names, or None.

    An exact name, short name or alias wins; else the longest one of a conference contained in
    ``where`` as whole words ("Proceedings of the Forty-first International Conference on Machine
    Learning" -> icml); a journal must match exactly.
    arXiv and CoRR are arXiv. A workshop ("... Workshop on ...") only matches a workshop venue.
    """
    folded = f" {_fold(where)} "
    if not folded.strip():
        return None
    if re.search(r"\barxiv\b", folded) or re.search(r"\bcorr\b", folded):
        return "arxiv"
    workshop = " workshop " in folded or " workshops " in folded
    candidates = [v for v in venues if v.kind == "workshop" or not workshop]
    for v in candidates:  # exact first
        if any(_fold(label) == folded.strip() for label in (v.name, v.short, *v.aliases)):
            return v.id
    best: tuple[str, str] | None = None
    for v in candidates:  # then contained as whole words, the longest label wins; journals match exactly only
        if v.kind == "journal":  # ("Artificial Intelligence Review" is not AIJ, "Artificial Intelligence")
            continue
        for label in (v.name, v.short, *v.aliases):
            if f" {_fold(label)} " in folded and (best is None or len(_fold(label)) > len(_fold(best[1]))):
                best = (v.id, label)
    return best[0] if best else None


def match_venue(root: Path, entry: dict[str, str], venue: str | None) -> str:
    """The venue id for the entry (see the module docstring)."""
    venues = load_venues(root)
    known = {v.id for v in venues}
    if venue is not None:
        if venue not in known:
            raise AddError(f"--venue {venue!r} is not in catalog/venues.yaml (known: {', '.join(sorted(known))})")
        return venue
    where = latex_to_text(entry.get("booktitle") or entry.get("journal") or "")
    if where:
        found = venue_for_text(venues, where)
        if found:
            return found
        raise AddError(f"venue {where!r} is not in catalog/venues.yaml; pass --venue ID (or add the venue, or an "
                       "alias of it, there first)")
    if _arxiv_id(entry):
        return "arxiv"
    raise AddError("the BibTeX entry has no booktitle or journal; pass --venue ID")


def _arxiv_id(entry: dict[str, str]) -> str | None:
    eprint = entry.get("eprint", "").strip()
    prefix = entry.get("archiveprefix", entry.get("eprinttype", "arxiv")).strip().lower()
    if eprint and prefix == "arxiv":
        match = _ARXIV_ID.match(eprint)
        if match:
            return match.group(1)
    match = _ARXIV_URL.match(entry.get("url", "").strip())
    if match:
        return match.group(1)
    match = re.search(r"arxiv[:\s]*(\d{4}\.\d{4,5})", entry.get("journal", ""), flags=re.IGNORECASE)
    return match.group(1) if match else None


def _doi(entry: dict[str, str]) -> str | None:
    doi = entry.get("doi", "").strip()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:"):
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix):]
    return doi or None


def _slug(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _short_name(title: str) -> str | None:
    """'PCGrad: Gradient ...' -> 'PCGrad': one capitalised token (letters, digits, '-', '+', '.')
    before the first colon; None otherwise ('Multi-Task Learning: A Survey')."""
    match = re.match(r"^([A-Z][A-Za-z0-9.+-]{1,29}):\s", title)
    return match.group(1) if match else None


_STOPWORDS = frozenset("a an the on of for in to with and or by from via towards toward is are do does be at as into".split())


def default_ids(title: str, authors: list[str], year: int | str) -> list[str]:
    """Default record ids, best first: the method name before a colon ('FAMO: Fast ...' -> famo),
    then first author's family name, year and first significant title word ('zhang-2025-mgda')."""
    ids = []
    short = _short_name(title)
    if short and _slug(short):
        ids.append(_slug(short))
    family = _slug(authors[0].split()[-1]) if authors else "anonymous"
    words = [_slug(w) for w in re.split(r"[\s:;,.!?()]+", title)]
    keyword = next((w for w in words if w and w not in _STOPWORDS), "")
    ids.append("-".join(part for part in (family, str(year), keyword) if part)[:60].strip("-"))
    return ids


# Simple math in titles -> plain text. Records hold plain text (rendered escaped in README.md and on
# the site; escaped back for BibTeX), so "{$\epsilon$}" is stored as "ε", never as "$epsilon$".
_MATH_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "ell": "ℓ", "infty": "∞", "cdot": "·",
    "times": "×", "pm": "±", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "approx": "≈",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "in": "∈", "nabla": "∇", "partial": "∂", "sim": "∼",
}
_SUPERSCRIPTS = dict(zip("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ"))
_SUBSCRIPTS = dict(zip("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎"))
_MATH_RE = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$")


def _math_to_text(math: str) -> str | None:
    """Plain Unicode for simple math ('\\epsilon', '\\ell_1', 'x^2', 'K=3'); None when there is none."""
    out: list[str] = []
    index = 0
    while index < len(math):
        ch = math[index]
        command = re.match(r"\\([A-Za-z]+)\s*", math[index:])
        if command:
            symbol = _MATH_SYMBOLS.get(command.group(1))
            if symbol is None:
                return None
            out.append(symbol)
            index += command.end()
        elif ch in "^_":
            table = _SUPERSCRIPTS if ch == "^" else _SUBSCRIPTS
            group = re.match(r"[\^_](?:\{([^{}]*)\}|(\S))", math[index:])
            if not group:
                return None
            body = group.group(1) if group.group(1) is not None else group.group(2)
            if not body or any(c not in table for c in body):
                return None
            out.append("".join(table[c] for c in body))
            index += group.end()
        elif ch in "{}":
            index += 1
        elif ch.isalnum() or ch in " +-=()<>,.|/":
            out.append(ch)
            index += 1
        else:
            return None
    return "".join(out).strip() or None


def title_text(raw: str) -> str:
    """The plain-text title of a BibTeX title value (see the module docstring)."""
    pieces: list[str] = []

    def keep(match: re.Match[str]) -> str:
        text = _math_to_text(match.group(1))
        if text is None:
            raise AddError(f"the title holds math {match.group(0)!r} that has no plain-text form; "
                           "pass the title as text with --title")
        pieces.append(text)
        return f"\ue000{len(pieces) - 1}\ue001"  # private-use marks: latex_to_text leaves them alone

    marked = _MATH_RE.sub(keep, raw)
    if re.search(r"(?<!\\)\$", marked):
        raise AddError("the title has an unpaired '$'; pass the title as text with --title")
    text = latex_to_text(marked, dashes=True)
    return re.sub("\ue000(\\d+)\ue001", lambda m: pieces[int(m.group(1))], text)


def record_from_entry(
    root: Path, entry: dict[str, str], *, category: list[str], record_id: str | None, venue: str | None,
    code: str | None, summary: str | None, today: _dt.date | None = None, title: str | None = None,
) -> dict[str, Any]:
    """The new record as plain data, in the field order of catalog/papers/pcgrad.yaml.

    ``record_id`` None: the first of :func:`default_ids` (the caller checks that it is free).
    """
    for required in ("title", "author", "year"):
        if required == "title" and title is not None:
            continue
        if not entry.get(required, "").strip():
            raise AddError(f"the BibTeX entry has no {required!r} field")
    title = title.strip() if title is not None else title_text(entry["title"])
    authors = split_authors(entry["author"])
    year_text = latex_to_text(entry["year"])
    if not re.fullmatch(r"\d{4}", year_text):
        raise AddError(f"the BibTeX year {year_text!r} is not a four-digit year")
    entry_type = _ENTRY_TYPES.get(entry.get("ENTRYTYPE", "").lower())
    if entry_type is None:
        raise AddError(f"BibTeX entry type @{entry.get('ENTRYTYPE')} is not supported (use @article, @inproceedings or @misc)")
    key = entry.get("ID", "")
    if not re.match(BIBKEY_PATTERN, key):
        raise AddError(f"BibTeX key {key!r} is not usable: it must start with a letter and hold letters, digits or '_:.-'")

    arxiv = _arxiv_id(entry)
    doi = _doi(entry)
    url = entry.get("url", "").strip()
    if url.startswith("http://"):
        url = "https://" + url[len("http://"):]
    paper_url = url or (f"https://doi.org/{doi}" if doi else None) or (f"https://arxiv.org/abs/{arxiv}" if arxiv else None)
    if not paper_url:
        raise AddError("the BibTeX entry has no url, doi or arXiv eprint, so there is no paper link")

    short_name = _short_name(title)
    if record_id is None:
        record_id = default_ids(title, authors, year_text)[0]
    if not re.match(ID_PATTERN, record_id):
        raise AddError(f"record id {record_id!r} is not kebab-case (lowercase letters and digits joined by '-'); pass --id")

    fields = {}
    for name in sorted(entry):
        if name in ("ENTRYTYPE", "ID") or name.lower() in _DROPPED_FIELDS:
            continue
        value = latex_to_text(entry[name])
        if value and re.fullmatch(r"[a-z]+", name):
            fields[name] = value

    if summary is None or not summary.strip():
        raise AddError("give --summary: one or two sentences on what the method does (a record without one is "
                       "not published)")
    if is_placeholder_summary(summary):
        raise AddError(f"--summary {summary!r} is a placeholder; write one or two sentences on what the method does")

    links: dict[str, Any] = {"paper": paper_url}
    if code:
        links["code"] = code
    if arxiv:
        links["arxiv"] = arxiv
    if doi:
        links["doi"] = doi
    record: dict[str, Any] = {"id": record_id, "title": title}
    if short_name:
        record["short_name"] = short_name
    record.update({
        "authors": authors,
        "venue": match_venue(root, entry, venue),
        "year": int(year_text),
        "categories": list(category),
        "links": links,
        "summary": summary.strip(),
        "bibtex": {"type": entry_type, "key": key, "fields": fields},
        "implementation": {"status": "planned", "methods": []},
        "added": today or _dt.date.today(),
    })
    return record


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences, as in the hand-written records."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    """Plain where YAML reads the text back as the same string; else double quotes, as the hand-written
    records have them ("2001.06782", "PCGrad: Gradient ...")."""
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    style = None if plain and value.strip() == value and value else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


class _Flow(list):  # type: ignore[type-arg]
    """A list written in flow style, as the hand-written records write categories: [a, b]."""


_Dumper.add_representer(_Flow, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value,
                                                                              flow_style=True))


def dump_record(record: dict[str, Any]) -> str:
    """The record as the hand-written ones look: one line per scalar (titles are never wrapped),
    ``categories`` and ``implementation.methods`` in flow style, the summary folded (``>-``) at 100."""
    import textwrap

    data = dict(record)
    if isinstance(data.get("categories"), list):
        data["categories"] = _Flow(data["categories"])
    if isinstance(data.get("implementation"), dict) and isinstance(data["implementation"].get("methods"), list):
        data["implementation"] = {**data["implementation"], "methods": _Flow(data["implementation"]["methods"])}
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**6, default_flow_style=False)
    summary = data.get("summary")
    if isinstance(summary, str) and "  " not in summary and len(summary) > 90:
        lines = textwrap.wrap(summary, width=98, break_long_words=False, break_on_hyphens=False)
        folded = "summary: >-\n" + "".join(f"  {line}\n" for line in lines)
        candidate = re.sub(r"(?m)^summary: .*\n", lambda _m: folded, body, count=1)
        if yaml.safe_load(candidate).get("summary") == summary:
            body = candidate
    return SCHEMA_LINE + body


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, failing if ``path`` exists (never overwrites)."""
    try:
        atomic_write_bytes(path, text.encode("utf-8"), exclusive=True)
    except FileExistsError:
        raise AddError(f"{path} already exists; choose another --id") from None


def _duplicates(root: Path, record: dict[str, Any]) -> list[str]:
    """Existing records that describe the same paper (title, DOI, arXiv id or paper URL)."""
    from modl.validate import doi_key, normalise_title, url_key

    wanted = {("title", normalise_title(record["title"])), url_key(record["links"]["paper"])}
    if record["links"].get("doi"):
        wanted.add(doi_key(record["links"]["doi"]))
    if record["links"].get("arxiv"):
        wanted.add(("arxiv", record["links"]["arxiv"]))
    found = []
    for path in sorted((root / "catalog" / "papers").glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if not isinstance(data, dict):
            continue
        links = data.get("links") if isinstance(data.get("links"), dict) else {}
        keys = set()
        if isinstance(data.get("title"), str):
            keys.add(("title", normalise_title(data["title"])))
        if isinstance(links.get("paper"), str):
            keys.add(url_key(links["paper"]))
        if isinstance(links.get("doi"), str):
            keys.add(doi_key(links["doi"]))
        if isinstance(links.get("arxiv"), str):
            keys.add(("arxiv", links["arxiv"]))
        same = sorted(k[0] for k in keys & wanted)
        if same:
            found.append(f"{path.relative_to(root).as_posix()} (same {', '.join(same)})")
    return found


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(record)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def taxonomy_leaves(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Leaf ids of catalog/taxonomy.yaml in display order, and each section's leaves (for hints)."""
    data = yaml.safe_load((root / "catalog" / "taxonomy.yaml").read_text(encoding="utf-8"))
    leaves: list[str] = []
    sections: dict[str, list[str]] = {}

    def visit(categories: list[Any]) -> list[str]:
        found: list[str] = []
        for category in categories:
            if category.children:
                sections[category.id] = visit(category.children)
                found += sections[category.id]
            else:
                leaves.append(category.id)
                found.append(category.id)
        return found

    visit(TaxonomyFile.model_validate(data).categories)
    return leaves, sections


def check_categories(root: Path, categories: list[str]) -> None:
    """Every category must be a taxonomy leaf (checked before anything is written)."""
    import difflib

    leaves, sections = taxonomy_leaves(root)
    for category in categories:
        if category in sections:
            raise AddError(f"--category {category!r} is a section with subsections; use one of its leaves: "
                           f"{', '.join(sections[category])}")
        if category not in leaves:
            close = difflib.get_close_matches(category, leaves, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AddError(f"--category {category!r} is not a leaf id of catalog/taxonomy.yaml{hint} "
                           f"(leaves: {', '.join(leaves)})")
    if len(set(categories)) != len(categories):
        raise AddError("a --category is given twice")


def _taken(root: Path, record: dict[str, Any], id_given: bool) -> None:
    """Refuse an id or BibTeX key that another record uses (before writing, never a silent collision)."""
    papers = root / "catalog" / "papers"
    target = papers / f"{record['id']}.yaml"
    if target.exists():
        rel = target.relative_to(root).as_posix()
        if id_given:
            raise AddError(f"{rel} already exists; choose another --id")
        other = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        raise AddError(f"the default id {record['id']!r} is taken by {rel} ({other.get('title', '?')!r}), another "
                       f"paper; pass --id (e.g. {default_ids(record['title'], record['authors'], record['year'])[-1]!r})")
    key = record["bibtex"]["key"].casefold()
    for path in sorted(papers.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        bib = data.get("bibtex") if isinstance(data, dict) else None
        if isinstance(bib, dict) and isinstance(bib.get("key"), str) and bib["key"].casefold() == key:
            raise AddError(f"the BibTeX key {record['bibtex']['key']!r} is already used by "
                           f"{path.relative_to(root).as_posix()}; change the key in the BibTeX file")


def add_from_bibtex(
    root: Path, bibtex_path: Path, *, category: list[str], record_id: str | None = None, venue: str | None = None,
    code: str | None = None, summary: str | None = None, title: str | None = None, today: _dt.date | None = None,
) -> Path:
    """Write ``catalog/papers/<id>.yaml`` from the entry in ``bibtex_path``; return its path.

    Raises :class:`AddError` (a ValueError) naming the file it concerns, or
    :class:`~modl.catalog.CatalogError` with the catalog's problems; nothing is written unless every
    check passed, and on any failure after writing the new file is removed again.
    """
    root = Path(root)
    bibtex_path = Path(bibtex_path)
    source = str(bibtex_path)
    try:
        text = bibtex_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AddError(f"{source}: no such file") from None
    except UnicodeDecodeError as error:
        line = bibtex_path.read_bytes()[: error.start].count(b"\n") + 1
        raise AddError(f"{source}:{line}: not UTF-8 text") from None
    papers_dir = root / "catalog" / "papers"
    if not papers_dir.is_dir():
        raise AddError(f"{papers_dir} does not exist; is --root the repository root?")
    if not category:
        raise AddError("give at least one --category")

    entry = parse_single_entry(text, source)
    try:
        check_categories(root, category)
        record = record_from_entry(
            root, entry, category=category, record_id=record_id, venue=venue, code=code, summary=summary,
            today=today, title=title,
        )
    except AddError as error:
        message = str(error)
        raise AddError(message if message.startswith(source) else f"{source}: {message}") from None
    try:
        Paper.model_validate(record)
    except ValidationError as error:
        raise AddError(f"{source}: the new record {record['id']!r} would be invalid: {_validation_message(error)}") from None
    duplicates = _duplicates(root, record)
    if duplicates:
        raise AddError(f"{source}: the paper is already in the catalog: {'; '.join(duplicates)}")
    try:
        _taken(root, record, id_given=record_id is not None)
    except AddError as error:
        raise AddError(f"{source}: {error}") from None
    load_catalog(root)  # the catalog must be valid before: then a failure below can only be the new record

    target = papers_dir / f"{record['id']}.yaml"
    _write_new(target, dump_record(record))
    try:
        load_catalog(root)
    except CatalogError as error:
        target.unlink()
        rel = target.relative_to(root).as_posix()
        raise CatalogError(
            error.problems + [Problem(rel, 1, "(file)", "not added: the catalog did not validate with it, so it was removed")]
        ) from None
    except BaseException:
        target.unlink()
        raise
    return target
