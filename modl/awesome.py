"""``modl import-awesome``: read an awesome-list README (the survey's list, in the seed's format),
compare it with the catalog, and optionally bring the catalog up to date.

    modl import-awesome LIST [--base OLD_LIST] [--write] [--summaries FILE] [--root R]

Parsing (:func:`parse_awesome`)
    An entry is a numbered item ``N. **Title** [[Paper](url)] [[Code](url)]`` followed by an author
    line (``*A, B, and C*``) and a venue line (``**NeurIPS**, 2021.``), under ``##``/``###``/``####``
    section headings. Tolerated quirks: every venue style of the list (``**CVPR**, 2018.``,
    ``Transactions on Machine Learning Research (**TMLR**), 2022.``, ``arXiv:2308.12029, 2023``,
    ``**NeurIPS** Datasets and Benchmarks Track, 2024``, ``**ICLR** 2020.``, a venue without bold),
    a missing final period or comma, trailing hard-break spaces, authors with or without the Oxford
    comma, a second publication on the venue line (``; [Journal version](url) in **AIJ**, 2024.``),
    code links into files (``.../blob/master/lingvo/core/...``), badge images next to the links
    (ignored), the README's header, badges, BibTeX block and Contents list (skipped). Anything else
    that looks like an entry but is not one is an error with its line number; all errors are reported
    together (:class:`AwesomeError`), and then nothing is compared or written.

    Entries are grouped into papers by identity, never by position: normalised title, arXiv id, DOI,
    OpenReview id and paper URL (the keys ``modl validate`` uses for duplicates). A paper listed in
    two sections (IMTL, DB-MTL) is one paper in both sections; a later version listed as an entry of
    its own (MOML's AIJ version in the older list) becomes a later version of the earliest one.

Comparing
    Papers are matched by the same identity keys; sections by title (a catalog section matches its
    ``title`` or one of its ``former_titles``), else, for a title that appears on one side only, by the
    papers they hold (a renamed section keeps most of its papers). The report lists new papers,
    changed papers field by field (title, authors, venue, year, links, later versions, sections: old
    -> new), papers only on the old side, and renamed, new and removed sections with their anchors.
    The list never removes information: a field the list leaves out (no code link) is no change, and
    a list that still shows a version the catalog keeps in ``earlier_versions`` is not behind-the-times
    noise but reported as such.

    Without ``--base`` the list is compared with the catalog (two-way): a difference may be news from
    the list or a correction the catalog made on purpose (the catalog is audited against publishers'
    pages and is more exact than the list), and the importer cannot tell which. With ``--base OLD``,
    the list version the catalog was last brought up to date with, it can (three-way, as in a merge):
    a field the list changed since OLD is applied when the catalog still has OLD's value, is already
    applied when the catalog has the new value, and is a conflict (reported, never applied) otherwise.

Writing (``--write``)
    - New papers (in the list, not in the catalog; with ``--base``, also not in OLD) become records:
      id from the method name or first author, year and title word (:func:`modl.add.default_ids`),
      venue from ``catalog/venues.yaml`` (names, short names and ``aliases``), sections mapped to
      taxonomy leaves, links (paper, code, arXiv, DOI, OpenReview), later versions, BibTeX type and
      venue field shaped like the catalog's other records of that venue, ``implementation: planned``,
      ``added``: today. A summary cannot come from the list, and a placeholder is invalid (validation
      rejects it, so no record is ever published with one, and no draft state is needed): every new
      paper needs its summary in ``--summaries FILE``, a YAML mapping from the proposed id (shown in
      the report) or the paper's title to the summary, or to ``{id: other-id, summary: ...}`` to
      choose the id. A new paper without one is an error, and then nothing at all is written.
    - Changed fields (only with ``--base``, see above) are applied to the record by replacing just
      those top-level fields in its file, so the rest of the file stays byte for byte as it was; a
      venue change moves the old venue, year and link into ``earlier_versions`` and resets the BibTeX
      venue field; ``updated`` is set to today.
    - Renamed sections (only with ``--base``) are renamed in ``catalog/taxonomy.yaml``: the new title,
      the old one added to ``former_titles`` so old anchors still resolve.
    Every change is first made and validated in a temporary copy of ``catalog/``; only when the whole
    catalog validates there are the files written, each atomically, no other file is touched, and the
    real catalog is validated again (on failure every written file is restored). Any error: exit 1,
    nothing written.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from modl.errors import CatalogError
from modl.render.markdown import github_slug

__all__ = ["AwesomeError", "AwesomeList", "ImportReport", "ListDiff", "ListEntry", "ListPaper", "diff_lists",
           "format_list_diff", "format_report", "import_awesome", "parse_awesome"]


class AwesomeError(ValueError):
    """The list could not be read or the import cannot be written; one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ----------------------------------------------------------------------------------------------
# The list
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListVersion:
    """Another publication of an entry, from its venue line ('[Journal version](url) in **AIJ**, 2024')."""

    venue: str  # the label as the list shows it, e.g. 'AIJ'
    year: int
    url: str


@dataclass(frozen=True)
class ListEntry:
    line: int  # 1-based line of the item
    section: str  # title of the (innermost) heading above it
    title: str
    paper: str
    code: str | None
    authors: tuple[str, ...]
    venue: str  # label: the bold part ('NeurIPS'), 'arXiv', or the plain venue text
    venue_name: str | None  # the full name when the list gives one ('Transactions on Machine Learning Research')
    venue_note: str | None  # text after the label ('Datasets and Benchmarks Track')
    year: int
    arxiv: str | None
    later: tuple[ListVersion, ...]


@dataclass(frozen=True)
class ListSection:
    title: str
    level: int  # 2 for '##', 3 for '###', ...
    line: int
    parent: str | None

    @property
    def anchor(self) -> str:
        return "#" + github_slug(self.title)


@dataclass
class ListPaper:
    """One paper: its entries (more than one when cross-listed or when a later version is listed apart)."""

    entries: list[ListEntry]
    later: tuple[ListVersion, ...]
    sections: tuple[str, ...]  # leaf section titles, in list order

    @property
    def main(self) -> ListEntry:
        return self.entries[0]

    @property
    def line(self) -> int:
        return self.main.line

    @property
    def title(self) -> str:
        return self.main.title

    def keys(self) -> set[tuple[str, str]]:
        keys: set[tuple[str, str]] = set()
        for entry in self.entries:
            keys |= _entry_keys(entry)
        return keys


@dataclass
class AwesomeList:
    source: str
    sections: list[ListSection]
    papers: list[ListPaper]

    @property
    def entries(self) -> list[ListEntry]:
        return sorted((e for p in self.papers for e in p.entries), key=lambda e: e.line)

    def section(self, title: str) -> ListSection | None:
        return next((s for s in self.sections if s.title == title), None)

    def subtree_papers(self, title: str) -> set[int]:
        """Indexes of the papers listed in section ``title`` or below it."""
        titles = {title}
        changed = True
        while changed:
            changed = False
            for section in self.sections:
                if section.parent in titles and section.title not in titles:
                    titles.add(section.title)
                    changed = True
        return {i for i, paper in enumerate(self.papers) if titles & set(paper.sections)}


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s{0,3}(\d+)[.)]\s+(.*)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s>]+(?:\([^()\s]*\)[^()\s>]*)*)>?\s*\)")
_YEAR = re.compile(r"(?<![\d.])((?:19|20)\d{2})(?!\d|\.\d)")
_ARXIV_IN_TEXT = re.compile(r"arXiv\s*:?\s*(\d{4}\.\d{4,5})(?:v\d+)?", re.IGNORECASE)
_PAPER_LABELS = {"paper", "pdf", "arxiv", "openreview", "link", "proceedings"}
_CODE_LABELS = {"code", "github", "repo", "repository", "official code"}


def _links(text: str) -> list[tuple[str, str]]:
    """(label, url) of the links in ``text``; images and links around images (badges) are left out."""
    out = []
    for match in _LINK.finditer(text):
        bang, label, url = match.groups()
        if bang or label.lstrip().startswith("!["):
            continue
        label = label.strip().strip("[]").strip()
        inner = _LINK.fullmatch(label)
        if inner:  # '[[Paper](url)]': the outer brackets are text around the link
            label, url = inner.group(2), inner.group(3)
        out.append((label.strip(), url))
    # '[[Paper](url)]' is matched as the inner link too: keep each URL once, first label wins.
    seen, unique = set(), []
    for label, url in out:
        if url not in seen:
            seen.add(url)
            unique.append((label, url))
    return unique


def _split_authors(text: str) -> tuple[str, ...]:
    """'A, B, and C' / 'A, B and C' / 'A and B' / 'A, B, C' -> names."""
    parts = re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", text.strip())
    return tuple(p.strip() for p in parts if p.strip())


def _strip_emphasis(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "*_":
        text = text[1:-1].strip()
    return text


def _plain(text: str) -> str:
    """Markdown inline text -> plain text (emphasis markers and backslash escapes removed)."""
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|])", r"\1", text)
    return re.sub(r"\s+", " ", text.replace("**", "").replace("__", "")).strip()


def _parse_venue(text: str) -> tuple[str, str | None, str | None, int | None, str | None, tuple[ListVersion, ...]]:
    """(label, full name, note, year, arXiv id, later versions) of a venue line."""
    main, _, rest = text.partition(";")
    arxiv_match = _ARXIV_IN_TEXT.search(main)
    arxiv = arxiv_match.group(1) if arxiv_match else None
    without_id = _ARXIV_IN_TEXT.sub("arXiv", main)
    years = _YEAR.findall(without_id)
    year = int(years[-1]) if years else None
    bold = _BOLD.search(without_id)
    name = note = None
    if bold:
        label = _plain(bold.group(1) or bold.group(2))
        before = without_id[: bold.start()].strip()
        after = without_id[bold.end():]
        if before.endswith("("):
            name = _plain(before[:-1]).strip(" ,") or None
            after = after.lstrip().removeprefix(")")
        elif before:
            name = _plain(before).strip(" ,") or None
        after = _YEAR.sub("", after, count=0) if years else after
        note = _plain(after).strip(" ,.;()") or None
    else:
        plain = _plain(_YEAR.sub("", without_id)).strip(" ,.;()")
        label = "arXiv" if re.fullmatch(r"(?i)arxiv(?: preprint)?", plain) else plain
    later = []
    for match in re.finditer(r"\[([^\]]+)\]\((\S+?)\)\s*(?:in|at)?\s*(.*?)[,\s]+((?:19|20)\d{2})", rest):
        later.append(ListVersion(_plain(match.group(3)).strip(" ,.") or _plain(match.group(1)), int(match.group(4)),
                                 match.group(2)))
    return label, name, note, year, arxiv, tuple(later)


def parse_awesome(text: str, source: str = "<list>") -> AwesomeList:
    """Parse an awesome-list README (see the module docstring); raises :class:`AwesomeError`."""
    lines = text.splitlines()
    problems: list[str] = []
    sections: list[ListSection] = []
    stack: list[ListSection] = []
    entries: list[ListEntry] = []
    in_fence = in_contents = False
    index = fence_line = 0

    def problem(line: int, message: str) -> None:
        problems.append(f"{source}:{line}: {message}")

    while index < len(lines):
        raw = lines[index]
        number = index + 1
        index += 1
        if raw.lstrip().startswith("```") or raw.lstrip().startswith("~~~"):
            in_fence = not in_fence
            fence_line = number
            continue
        if in_fence:
            continue
        heading = _HEADING.match(raw)
        if heading:
            level, title = len(heading.group(1)), _plain(heading.group(2))
            in_contents = title.casefold() in ("contents", "table of contents")
            if level == 1 or in_contents:
                continue
            while stack and stack[-1].level >= level:
                stack.pop()
            section = ListSection(title, level, number, stack[-1].title if stack else None)
            if any(s.title == title for s in sections):
                problem(number, f"section {title!r} appears twice (first at line "
                                f"{next(s.line for s in sections if s.title == title)}); section titles must be unique")
            sections.append(section)
            stack.append(section)
            continue
        item = _ITEM.match(raw)
        if not item or in_contents or not stack:
            continue
        head = item.group(2)
        bold = _BOLD.search(head)
        if not bold or head[: bold.start()].strip():
            problem(number, "a numbered item in a section must start with the title in bold: "
                            "'N. **Title** [[Paper](url)]'")
            continue
        title = _plain(bold.group(1) or bold.group(2))
        paper = code = None
        for label, url in _links(head[bold.end():]):
            kind = label.casefold()
            if kind in _PAPER_LABELS and paper is None:
                paper = url
            elif kind in _CODE_LABELS and code is None:
                code = url
        following: list[tuple[int, str]] = []
        while index < len(lines) and lines[index].strip() and not _HEADING.match(lines[index]) \
                and not _ITEM.match(lines[index]):
            following.append((index + 1, lines[index].strip()))
            index += 1
        if paper is None:
            problem(number, f"entry {title!r} has no [Paper](url) link")
        if len(following) < 2:
            problem(number, f"entry {title!r} needs an author line and a venue line below it "
                            f"(found {len(following)} line(s))")
            continue
        (_, authors_line), (venue_at, venue_line) = following[0], following[1]
        venue_line = " ".join([venue_line] + [text for _, text in following[2:]])
        authors = _split_authors(_plain(_strip_emphasis(authors_line)))
        if not authors:
            problem(following[0][0], f"entry {title!r} has an empty author line")
            continue
        label, name, note, year, arxiv, later = _parse_venue(venue_line)
        if year is None:
            problem(venue_at, f"the venue line of {title!r} has no year: {venue_line!r}")
            continue
        if not label:
            problem(venue_at, f"the venue line of {title!r} names no venue: {venue_line!r}")
            continue
        if arxiv is None and paper:
            arxiv = _arxiv_of_url(paper)
        entries.append(ListEntry(number, stack[-1].title, title, paper or "", code, authors, label, name, note, year,
                                 arxiv, later))
    if in_fence:
        problem(fence_line, "the ``` code block that opens here is never closed")
    if not entries and not problems:
        problem(1, "no list entries found ('N. **Title** [[Paper](url)]' under a '## Section' heading)")
    if problems:
        raise AwesomeError(problems)
    return AwesomeList(source, sections, _group(entries))


# ----------------------------------------------------------------------------------------------
# Identity
# ----------------------------------------------------------------------------------------------


def _arxiv_of_url(url: str) -> str | None:
    from modl.validate import url_key

    key = url_key(url)
    return key[1] if key[0] == "arxiv" else None


def _entry_keys(entry: ListEntry) -> set[tuple[str, str]]:
    from modl.validate import normalise_title, url_key

    keys = {("title", normalise_title(entry.title))}
    if entry.paper:
        keys.add(url_key(_https(entry.paper)))
    if entry.arxiv:
        keys.add(("arxiv", entry.arxiv))
    for version in entry.later:
        keys.add(url_key(_https(version.url)))
    return {k for k in keys if k[1]}


def _group(entries: list[ListEntry]) -> list[ListPaper]:
    """Entries that share an identity key are one paper (union-find over the keys)."""
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        for key in _entry_keys(entry):
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[ListEntry]] = {}
    for i, entry in enumerate(entries):
        groups.setdefault(find(i), []).append(entry)
    papers = []
    for members in groups.values():
        members.sort(key=lambda e: (e.year, e.line))
        main = members[0]
        later = list(main.later)
        for other in members[1:]:
            if (other.venue, other.year) != (main.venue, main.year):
                later.append(ListVersion(other.venue, other.year, other.paper))
            later += [v for v in other.later if v not in later]
        unique: list[ListVersion] = []
        for version in later:
            if not any(_same_url(version.url, u.url) for u in unique) and not _same_url(version.url, main.paper):
                unique.append(version)
        sections = tuple(dict.fromkeys(e.section for e in sorted(members, key=lambda e: e.line)))
        papers.append(ListPaper(members, tuple(sorted(unique, key=lambda v: (v.year, v.venue))), sections))
    papers.sort(key=lambda p: min(e.line for e in p.entries))
    return papers


def _https(url: str) -> str:
    return "https://" + url[len("http://"):] if url.startswith("http://") else url


def _same_url(a: str, b: str) -> bool:
    from modl.validate import url_key

    return bool(a) and bool(b) and url_key(_https(a)) == url_key(_https(b))


def _code_key(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(_https(url.strip()))
    return (parts.netloc.lower().removeprefix("www.") + parts.path.rstrip("/")).casefold()


def _match(keys_of: list[set[tuple[str, str]]], candidates: list[set[tuple[str, str]]]) -> list[int | None]:
    """For each key set of ``keys_of``, the index of the candidate sharing most keys (None: none)."""
    index: dict[tuple[str, str], list[int]] = {}
    for i, keys in enumerate(candidates):
        for key in keys:
            index.setdefault(key, []).append(i)
    out: list[int | None] = []
    for keys in keys_of:
        votes: dict[int, int] = {}
        for key in keys:
            for i in index.get(key, []):
                votes[i] = votes.get(i, 0) + (2 if key[0] == "title" else 1)
        out.append(max(votes, key=lambda i: (votes[i], -i)) if votes else None)
    return out


# ----------------------------------------------------------------------------------------------
# List against list
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass
class PaperChange:
    label: str  # who changed: the old paper's title or the record's file
    line: int  # line of the entry in the new list
    title: str
    changes: list[FieldChange]


@dataclass(frozen=True)
class SectionRename:
    old: str
    new: str
    category: str | None = None  # the taxonomy id, when comparing with the catalog

    def describe(self) -> str:
        where = f"{self.category}: " if self.category else ""
        return (f"{where}{self.old!r} -> {self.new!r} (#{github_slug(self.old)} -> #{github_slug(self.new)})")


@dataclass
class ListDiff:
    new: list[ListPaper] = field(default_factory=list)
    removed: list[ListPaper] = field(default_factory=list)
    changed: list[PaperChange] = field(default_factory=list)
    renamed: list[SectionRename] = field(default_factory=list)
    new_sections: list[str] = field(default_factory=list)
    removed_sections: list[str] = field(default_factory=list)
    matches: dict[int, int] = field(default_factory=dict)  # new paper index -> old paper index


def _list_view(paper: ListPaper, rename: Mapping[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """Field -> (comparison key, display) of a list paper, for list-to-list comparison."""
    from modl.validate import url_key

    main = paper.main
    rename = rename or {}
    venue = main.venue + (f" {main.venue_note}" if main.venue_note else "")
    later = tuple(sorted((v.venue, v.year, url_key(_https(v.url))) for v in paper.later))
    sections = tuple(rename.get(s, s) for s in paper.sections)
    return {
        "title": (main.title, main.title),
        "authors": (main.authors, ", ".join(main.authors)),
        "venue": (venue, venue),
        "year": (main.year, str(main.year)),
        "links.paper": (url_key(_https(main.paper)), main.paper),
        "links.code": (_code_key(main.code), main.code or "-"),
        "later_versions": (later, "; ".join(f"{v.venue} {v.year} {v.url}" for v in paper.later) or "-"),
        "sections": (sections, ", ".join(sections)),
    }


def _renames(old_titles: list[str], new_titles: list[str], old_sets: Mapping[str, set[int]],
             new_sets: Mapping[str, set[int]], old_level: Mapping[str, int], new_level: Mapping[str, int],
             ) -> list[tuple[str, str]]:
    """Pairs (old, new) of sections present on one side only that hold mostly the same papers."""
    pairs = []
    for old in old_titles:
        for new in new_titles:
            if old_level.get(old) != new_level.get(new):
                continue
            a, b = old_sets.get(old, set()), new_sets.get(new, set())
            if a and b:
                score = len(a & b) / len(a | b)
                if score >= 0.5:
                    pairs.append((score, old, new))
    out, used_old, used_new = [], set(), set()
    for _, old, new in sorted(pairs, reverse=True):
        if old not in used_old and new not in used_new:
            out.append((old, new))
            used_old.add(old)
            used_new.add(new)
    return sorted(out, key=lambda p: old_titles.index(p[0]))


def diff_lists(old: AwesomeList, new: AwesomeList) -> ListDiff:
    """What changed from ``old`` to ``new``: papers matched by identity, sections by title or content."""
    diff = ListDiff()
    found = _match([p.keys() for p in new.papers], [p.keys() for p in old.papers])
    taken: set[int] = set()
    for i, j in enumerate(found):
        if j is None or j in taken:
            diff.new.append(new.papers[i])
        else:
            taken.add(j)
            diff.matches[i] = j
    diff.removed = [p for j, p in enumerate(old.papers) if j not in taken]

    # Sections: same title, else renamed when they hold mostly the same papers (old papers are
    # identified by the index of their match in the new list).
    old_titles = [s.title for s in old.sections]
    new_titles = [s.title for s in new.sections]
    to_new = {j: i for i, j in diff.matches.items()}
    old_sets = {t: {to_new[j] for j in old.subtree_papers(t) if j in to_new} for t in old_titles}
    new_sets = {t: new.subtree_papers(t) for t in new_titles}
    only_old = [t for t in old_titles if t not in new_titles]
    only_new = [t for t in new_titles if t not in old_titles]
    pairs = _renames(only_old, only_new, old_sets, new_sets, {s.title: s.level for s in old.sections},
                     {s.title: s.level for s in new.sections})
    diff.renamed = [SectionRename(a, b) for a, b in pairs]
    diff.new_sections = [t for t in only_new if t not in {b for _, b in pairs}]
    diff.removed_sections = [t for t in only_old if t not in {a for a, _ in pairs}]

    rename = dict(pairs)
    for i, j in sorted(diff.matches.items()):
        before, after = _list_view(old.papers[j], rename), _list_view(new.papers[i])
        changes = [FieldChange(name, before[name][1], after[name][1]) for name in after
                   if before[name][0] != after[name][0] and not (name == "links.code" and after[name][0] is None)
                   and not (name == "later_versions" and set(before[name][0]) >= set(after[name][0]))]
        if changes:
            diff.changed.append(PaperChange(old.papers[j].title, new.papers[i].line, new.papers[i].title, changes))
    return diff


def format_list_diff(diff: ListDiff, old: str, new: str) -> str:
    out = [f"Changes in the list from {old} to {new}:"]
    out.append(f"  new papers ({len(diff.new)}):")
    out += [f"    + line {p.line}: {p.title!r} ({_byline(p.main)}) [{', '.join(p.sections)}]" for p in diff.new]
    out.append(f"  changed papers ({len(diff.changed)}):")
    for change in diff.changed:
        out.append(f"    ~ line {change.line}: {change.title!r}")
        out += [f"        {c.field}: {c.old} -> {c.new}" for c in change.changes]
    out.append(f"  papers no longer listed ({len(diff.removed)}):")
    out += [f"    - {p.title!r} ({_byline(p.main)})" for p in diff.removed]
    out.append(f"  renamed sections ({len(diff.renamed)}):")
    out += [f"    {r.describe()}" for r in diff.renamed]
    out.append(f"  new sections ({len(diff.new_sections)}): " + "; ".join(repr(t) for t in diff.new_sections))
    out.append(f"  removed sections ({len(diff.removed_sections)}): " + "; ".join(repr(t) for t in diff.removed_sections))
    return "\n".join(out) + "\n"


def _byline(entry: ListEntry) -> str:
    first = entry.authors[0] + (" et al." if len(entry.authors) > 2 else f" and {entry.authors[1]}" if len(entry.authors) == 2 else "")
    return f"{first}, {entry.venue}{' ' + entry.venue_note if entry.venue_note else ''} {entry.year}"


# ----------------------------------------------------------------------------------------------
# List against the catalog
# ----------------------------------------------------------------------------------------------


@dataclass
class _Taxonomy:
    titles: dict[str, str]  # category id -> title
    former: dict[str, list[str]]  # category id -> former titles
    parent: dict[str, str | None]
    leaves: list[str]

    def id_of(self, title: str) -> tuple[str | None, bool]:
        """(category id, whether ``title`` is a former title) for a section title."""
        for cid, current in self.titles.items():
            if current == title:
                return cid, False
        for cid, former in self.former.items():
            if title in former:
                return cid, True
        return None, False


def _load_taxonomy(root: Path) -> _Taxonomy:
    from modl.schema import TaxonomyFile

    data = yaml.safe_load((root / "catalog" / "taxonomy.yaml").read_text(encoding="utf-8"))
    tax = _Taxonomy({}, {}, {}, [])

    def visit(categories: list[Any], parent: str | None) -> None:
        for category in categories:
            tax.titles[category.id] = category.title
            tax.former[category.id] = list(category.former_titles)
            tax.parent[category.id] = parent
            if category.children:
                visit(category.children, category.id)
            else:
                tax.leaves.append(category.id)

    visit(TaxonomyFile.model_validate(data).categories, None)
    return tax


@dataclass
class _Record:
    """A catalog record as the importer sees it: raw data (for writing) and its file."""

    id: str
    path: Path
    data: dict[str, Any]

    def keys(self) -> set[tuple[str, str]]:
        from modl.validate import _identity_keys

        return set(_identity_keys(self.data))


@dataclass
class _Plan:
    """What ``--write`` would do."""

    create: list[tuple[ListPaper, dict[str, Any]]] = field(default_factory=list)  # paper, record data (id set)
    update: list[tuple[_Record, ListPaper, list[FieldChange], dict[str, Any]]] = field(default_factory=list)
    renames: list[SectionRename] = field(default_factory=list)


@dataclass
class ImportReport:
    source: str
    base: str | None
    root: Path
    list_papers: int
    list_entries: int
    records: int
    new: list[tuple[ListPaper, str]] = field(default_factory=list)  # paper, proposed id
    changed: list[PaperChange] = field(default_factory=list)  # list vs catalog (two-way)
    behind: list[PaperChange] = field(default_factory=list)  # the list shows a version the catalog keeps as earlier
    catalog_only: list[str] = field(default_factory=list)  # record ids not in the list
    renamed: list[SectionRename] = field(default_factory=list)  # list title vs catalog title
    former_titles_used: list[SectionRename] = field(default_factory=list)  # list uses a catalog former title
    unknown_sections: list[str] = field(default_factory=list)
    list_diff: ListDiff | None = None
    apply: list[PaperChange] = field(default_factory=list)  # three-way: list changes to apply
    already: list[PaperChange] = field(default_factory=list)  # three-way: list changes the catalog has
    conflicts: list[PaperChange] = field(default_factory=list)  # three-way: catalog changed the field too
    apply_renames: list[SectionRename] = field(default_factory=list)
    renames_already: list[SectionRename] = field(default_factory=list)
    not_created: list[tuple[ListPaper, str]] = field(default_factory=list)  # in base but not in the catalog
    problems: list[str] = field(default_factory=list)  # what prevents --write
    written: list[str] = field(default_factory=list)
    plan: _Plan = field(default_factory=_Plan)


def _venues(root: Path) -> list[Any]:
    from modl.add import load_venues

    return load_venues(root)


def _venue_id(venues: list[Any], entry_or_version: ListEntry | ListVersion) -> str | None:
    from modl.add import venue_for_text

    label = entry_or_version.venue
    if label.casefold() == "arxiv":
        return "arxiv"
    found = venue_for_text(venues, label)
    if found is None and isinstance(entry_or_version, ListEntry) and entry_or_version.venue_name:
        found = venue_for_text(venues, entry_or_version.venue_name)
    return found


def _catalog_view(record: _Record, venues: list[Any]) -> dict[str, tuple[Any, str]]:
    from modl.validate import url_key

    data = record.data
    links = data.get("links") or {}
    short = {v.id: v.short for v in venues}
    venue = (data.get("venue"), data.get("venue_note"))
    later = tuple(sorted((v.get("venue"), v.get("year"), url_key(v["url"])) for v in data.get("later_versions") or []))
    return {
        "title": (data.get("title"), data.get("title")),
        "authors": (tuple(data.get("authors") or ()), ", ".join(data.get("authors") or ())),
        "venue": (venue, short.get(venue[0], venue[0]) + (f" {venue[1]}" if venue[1] else "")),
        "year": (data.get("year"), str(data.get("year"))),
        "links.paper": (url_key(links.get("paper", "")), links.get("paper", "-")),
        "links.code": (_code_key(links.get("code")), links.get("code") or "-"),
        "later_versions": (later, "; ".join(f"{short.get(v.get('venue'), v.get('venue'))} {v.get('year')} {v.get('url')}"
                                            for v in data.get("later_versions") or []) or "-"),
        "categories": (tuple(data.get("categories") or ()), ", ".join(data.get("categories") or ())),
    }


def _paper_view(paper: ListPaper, venues: list[Any], section_ids: Mapping[str, str | None]) -> dict[str, tuple[Any, str]]:
    """A list paper in the catalog's terms (venue ids, category ids); unresolved names stay as '?name'."""
    from modl.validate import url_key

    main = paper.main
    venue_id = _venue_id(venues, main) or f"?{main.venue}"
    later = []
    for version in paper.later:
        later.append((_venue_id(venues, version) or f"?{version.venue}", version.year, url_key(_https(version.url))))
    categories = tuple(section_ids.get(s) or f"?{s}" for s in paper.sections)
    return {
        "title": (main.title, main.title),
        "authors": (main.authors, ", ".join(main.authors)),
        "venue": ((venue_id, main.venue_note), main.venue + (f" {main.venue_note}" if main.venue_note else "")),
        "year": (main.year, str(main.year)),
        "links.paper": (url_key(_https(main.paper)), main.paper),
        "links.code": (_code_key(main.code), main.code or "-"),
        "later_versions": (tuple(sorted(later)), "; ".join(f"{v.venue} {v.year} {v.url}" for v in paper.later) or "-"),
        "categories": (categories, ", ".join(c for c in categories)),
    }


def _differs(name: str, catalog: Any, listed: Any) -> bool:
    """Whether the list's value is news for the catalog: absence in the list never is."""
    if name == "links.code" and listed is None:
        return False
    if name == "later_versions":
        return not set(listed) <= set(catalog)
    return catalog != listed


def _earlier_version(record: _Record, paper: ListPaper, venues: list[Any]) -> dict[str, Any] | None:
    """The record's earlier version whose venue, year and link the list shows (the list is behind), if any."""
    from modl.validate import url_key

    main = paper.main
    venue = _venue_id(venues, main)
    for version in record.data.get("earlier_versions") or []:
        same_link = url_key(version.get("url", "")) == url_key(_https(main.paper)) or (
            main.arxiv is not None and version.get("arxiv") == main.arxiv)
        if version.get("venue") == venue and version.get("year") == main.year and same_link:
            return version
    return None


def _behind_fields(record: _Record, paper: ListPaper, venues: list[Any]) -> set[str]:
    """Fields in which the list shows an earlier version that the record keeps (no change to apply)."""
    version = _earlier_version(record, paper, venues)
    if version is None:
        return set()
    fields = {"venue", "year", "links.paper"}
    if version.get("title") and _fold(version["title"]) == _fold(paper.title):
        fields.add("title")
    return fields


def _fold(text: str) -> str:
    """Case, accents and punctuation folded away: 'François' ~ 'Francois', 'Multitask' ~ 'Multi-Task'."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", str(text))
    return re.sub(r"[\W_]+", "", "".join(c for c in decomposed if not unicodedata.combining(c)).casefold())


def _minor(change: FieldChange) -> FieldChange:
    """Mark a title or author change that is only case, accents or punctuation."""
    if change.field in ("title", "authors") and _fold(change.old) == _fold(change.new):
        return FieldChange(change.field, change.old, change.new + "  [case/accents/punctuation only]")
    return change


def _section_ids(lst: AwesomeList, tax: _Taxonomy, records: list[_Record], matches: list[int | None],
                 report: ImportReport | None) -> dict[str, str | None]:
    """List section title -> taxonomy id: by title or former title, else by the papers it holds."""
    ids: dict[str, str | None] = {}
    unknown = []
    for section in lst.sections:
        cid, former = tax.id_of(section.title)
        ids[section.title] = cid
        if cid is None:
            unknown.append(section.title)
        elif former and report is not None:
            report.former_titles_used.append(SectionRename(section.title, tax.titles[cid], cid))
    if unknown:
        used = {cid for cid in ids.values() if cid}
        free = [cid for cid in tax.titles if cid not in used]
        cat_sets: dict[str, set[int]] = {}
        for cid in free:
            subtree = {cid}
            changed = True
            while changed:
                changed = False
                for child, parent in tax.parent.items():
                    if parent in subtree and child not in subtree:
                        subtree.add(child)
                        changed = True
            cat_sets[cid] = {i for i, rec in enumerate(records) if subtree & set(rec.data.get("categories") or [])}
        to_record = {i: j for i, j in enumerate(matches) if j is not None}
        list_sets = {t: {to_record[i] for i in lst.subtree_papers(t) if i in to_record} for t in unknown}
        depth = {cid: 0 for cid in tax.titles}
        for cid in tax.titles:
            parent = tax.parent[cid]
            while parent:
                depth[cid] += 1
                parent = tax.parent[parent]
        levels = {s.title: s.level - 2 for s in lst.sections}
        pairs = _renames(free, unknown, cat_sets, list_sets, depth, levels)
        for cid, title in pairs:
            ids[title] = cid
            if report is not None:
                report.renamed.append(SectionRename(tax.titles[cid], title, cid))
        if report is not None:
            report.unknown_sections = [t for t in unknown if ids[t] is None]
    return ids


def _load_records(root: Path) -> list[_Record]:
    from modl.catalog import load_catalog

    catalog = load_catalog(root)  # the catalog must be valid to be compared or written
    records = []
    for paper_id, path in catalog.source_files.items():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        records.append(_Record(paper_id, path, data))
    return records


def import_awesome(
    root: Path, list_path: Path, *, base_path: Path | None = None, write: bool = False,
    summaries: Mapping[str, Any] | None = None, today: _dt.date | None = None,
) -> ImportReport:
    """Compare the list at ``list_path`` with the catalog under ``root`` (see the module docstring);
    with ``write``, bring the catalog up to date. Raises :class:`AwesomeError` (nothing written)."""
    root = Path(root)
    today = today or _dt.date.today()
    lst = parse_awesome(_read(list_path), str(list_path))
    base = parse_awesome(_read(base_path), str(base_path)) if base_path is not None else None
    records = _load_records(root)
    venues = _venues(root)
    tax = _load_taxonomy(root)
    report = ImportReport(str(list_path), str(base_path) if base_path else None, root, len(lst.papers),
                          len(lst.entries), len(records))

    matches = _match([p.keys() for p in lst.papers], [r.keys() for r in records])
    seen: dict[int, int] = {}
    for i, j in enumerate(matches):
        if j is not None and j in seen:
            report.problems.append(f"{list_path}:{lst.papers[i].line}: {lst.papers[i].title!r} and the entry at line "
                                   f"{lst.papers[seen[j]].line} both match {records[j].id}")
            matches[i] = None
        elif j is not None:
            seen[j] = i
    section_ids = _section_ids(lst, tax, records, matches, report)
    report.catalog_only = sorted(r.id for j, r in enumerate(records) if j not in seen)

    base_match: list[int | None] = [None] * len(lst.papers)
    base_ids: dict[str, str | None] = {}
    if base is not None:
        report.list_diff = diff_lists(base, lst)
        for i, j in report.list_diff.matches.items():
            base_match[i] = j
        base_records = _match([p.keys() for p in base.papers], [r.keys() for r in records])
        base_ids = _section_ids(base, tax, records, base_records, None)

    # Two-way differences, and the three-way plan.
    taken_ids = {r.id for r in records}
    for i, paper in enumerate(lst.papers):
        j = matches[i]
        listed = _paper_view(paper, venues, section_ids)
        if j is None:
            if base is not None and base_match[i] is not None:
                report.not_created.append((paper, "listed in the base list too, but the catalog has no record of it"))
                continue
            proposed = _proposed_id(paper, taken_ids)
            taken_ids.add(proposed)
            report.new.append((paper, proposed))
            continue
        record = records[j]
        have = _catalog_view(record, venues)
        label = record.path.relative_to(root).as_posix()
        differences = [_minor(FieldChange(name, have[name][1], listed[name][1])) for name in listed
                       if _differs(name, have[name][0], listed[name][0])]
        behind = _behind_fields(record, paper, venues)
        if any(d.field in behind for d in differences):
            report.behind.append(PaperChange(label, paper.line, paper.title, [d for d in differences if d.field in behind]))
            differences = [d for d in differences if d.field not in behind]
        if differences:
            report.changed.append(PaperChange(label, paper.line, paper.title, differences))
        if base is not None and base_match[i] is not None:
            old = _paper_view(base.papers[base_match[i]], venues, base_ids)
            apply, already, conflicts = [], [], []
            for name in listed:
                if not _differs(name, old[name][0], listed[name][0]):
                    continue  # the list did not change this field
                change = FieldChange(name, have[name][1], listed[name][1])
                if not _differs(name, have[name][0], listed[name][0]):
                    already.append(FieldChange(name, old[name][1], listed[name][1]))
                elif have[name][0] == old[name][0] or (name == "later_versions" and set(old[name][0]) <= set(have[name][0])):
                    apply.append(change)
                elif name in _behind_fields(record, paper, venues):
                    already.append(FieldChange(name, old[name][1], listed[name][1]))
                else:
                    conflicts.append(FieldChange(name, f"{have[name][1]} (catalog; base list: {old[name][1]})",
                                                 listed[name][1]))
            for bucket, changes in ((report.apply, apply), (report.already, already), (report.conflicts, conflicts)):
                if changes:
                    bucket.append(PaperChange(label, paper.line, paper.title, changes))
            unknown = [name for name in ("venue", "categories") if name in {c.field for c in apply}
                       and any(str(v).startswith("?") for v in (listed[name][0] if name == "categories"
                                                                else listed[name][0][:1]))]
            for name in unknown:
                report.problems.append(f"{list_path}:{paper.line}: {name} {listed[name][1]!r} of {paper.title!r} is not in "
                                       f"catalog/{'venues' if name == 'venue' else 'taxonomy'}.yaml; add it (or an alias "
                                       "of it) there first")
            if apply and not unknown:
                report.plan.update.append((record, paper, apply, listed))

    if base is not None and report.list_diff is not None:
        for rename in report.list_diff.renamed:
            cid, _ = tax.id_of(rename.old)
            cid = cid or tax.id_of(rename.new)[0]
            if cid is None:
                report.problems.append(f"{list_path}: renamed section {rename.new!r} (was {rename.old!r}) is not in "
                                       "catalog/taxonomy.yaml")
            elif tax.titles[cid] == rename.new:
                report.renames_already.append(SectionRename(rename.old, rename.new, cid))
            elif tax.titles[cid] == rename.old:
                report.apply_renames.append(SectionRename(rename.old, rename.new, cid))
        report.plan.renames = list(report.apply_renames)
    for title in report.unknown_sections:
        report.problems.append(f"{list_path}:{lst.section(title).line}: section {title!r} is not in catalog/taxonomy.yaml "
                               "(neither a title nor a former title, and no section holds the same papers)")

    if write:
        _plan_new_records(report, lst, section_ids, venues, records, summaries or {}, today)
        if report.problems:
            raise AwesomeError(report.problems)
        report.written = _write(root, report, venues, today)
    return report


def _read(path: Path | None) -> str:
    assert path is not None
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AwesomeError([f"{path}: no such file"]) from None
    except UnicodeDecodeError as error:
        line = Path(path).read_bytes()[: error.start].count(b"\n") + 1
        raise AwesomeError([f"{path}:{line}: not UTF-8 text"]) from None


def _proposed_id(paper: ListPaper, taken: set[str]) -> str:
    from modl.add import default_ids

    candidates = default_ids(paper.title, list(paper.main.authors), paper.main.year)
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    base = candidates[-1]
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

FIELD_ORDER = ("id", "title", "short_name", "authors", "venue", "venue_note", "year", "categories", "links",
               "later_versions", "earlier_versions", "summary", "bibtex", "implementation", "added", "updated")


def _links_of(url: str, code: str | None, arxiv: str | None) -> dict[str, Any]:
    from modl.validate import url_key

    url = _https(url)
    links: dict[str, Any] = {"paper": url}
    if code:
        links["code"] = _https(code)
    key = url_key(url)
    if arxiv or key[0] == "arxiv":
        links["arxiv"] = arxiv or key[1]
    if key[0] == "doi":
        links["doi"] = key[1]
    elif key[0] == "url":  # a publisher's page that names the DOI: link.springer.com/article/10.1007/...
        doi = re.search(r"/(?:article|doi|chapter)/(?:abs/|full/|pdf/)?(10\.\d{4,9}/[^?#\s]+?)/?$", urlsplit(url).path)
        if doi:
            links["doi"] = doi.group(1)
    if key[0] == "openreview":
        links["openreview"] = key[1]
    return links


def _bibtex_shape(records: list[_Record], venue: Any) -> tuple[str, dict[str, str]]:
    """Entry type and venue field for a new record of ``venue``: as the catalog's records of that
    venue have them (most common shape), else from the venue's kind."""
    shapes: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for record in records:
        bib = record.data.get("bibtex") or {}
        if record.data.get("venue") != venue.id:
            continue
        fields = {k: v for k, v in (bib.get("fields") or {}).items() if k in ("booktitle", "journal", "howpublished", "note")}
        key = (bib.get("type"), tuple(sorted(fields.items())))
        shapes[key] = shapes.get(key, 0) + 1
    if shapes:
        entry_type, fields = max(shapes, key=lambda k: shapes[k])
        return entry_type, dict(fields)
    if venue.kind in ("conference", "workshop"):
        return "inproceedings", {"booktitle": venue.name}
    if venue.kind == "journal":
        return "article", {"journal": venue.name}
    return "misc", {}


def _bibtex_key(paper: ListPaper, used: set[str]) -> str:
    from modl.add import _STOPWORDS, _slug

    family = re.sub(r"[^a-z]", "", _slug(paper.main.authors[0].split()[-1])) or "anon"
    words = [re.sub(r"[^a-z0-9]", "", _slug(w)) for w in re.split(r"[\s:;,.!?()-]+", paper.title)]
    word = next((w for w in words if w and w not in _STOPWORDS), "")
    key = f"{family}{paper.main.year}{word}"
    candidate, n = key, 0
    while candidate.casefold() in used:
        n += 1
        candidate = key + "abcdefghijklmnopqrstuvwxyz"[n - 1 : n] if n <= 26 else f"{key}{n}"
    used.add(candidate.casefold())
    return candidate


def _summary_for(summaries: Mapping[str, Any], proposed: str, paper: ListPaper) -> tuple[str | None, str]:
    from modl.validate import normalise_title

    entry = summaries.get(proposed)
    if entry is None:
        entry = next((v for k, v in summaries.items() if normalise_title(str(k)) == normalise_title(paper.title)), None)
    if isinstance(entry, Mapping):
        return entry.get("summary"), str(entry.get("id") or proposed)
    return (str(entry) if entry is not None else None), proposed


def _plan_new_records(report: ImportReport, lst: AwesomeList, section_ids: Mapping[str, str | None], venues: list[Any],
                      records: list[_Record], summaries: Mapping[str, Any], today: _dt.date) -> None:
    from modl.add import _short_name
    from modl.schema import is_placeholder_summary

    by_id = {v.id: v for v in venues}
    used_keys = {str((r.data.get("bibtex") or {}).get("key", "")).casefold() for r in records}
    existing = {r.id for r in records}
    chosen: set[str] = set()
    source = report.source
    for paper, proposed in report.new:
        main = paper.main
        venue_id = _venue_id(venues, main)
        summary, record_id = _summary_for(summaries, proposed, paper)
        where = f"{source}:{paper.line}"
        if venue_id is None:
            report.problems.append(f"{where}: venue {main.venue_name or main.venue!r} of {paper.title!r} is not in "
                                   "catalog/venues.yaml; add it (or an alias of it) there first")
            continue
        categories = [section_ids.get(s) for s in paper.sections]
        if None in categories:
            continue  # the unknown section is reported already
        if not summary or is_placeholder_summary(str(summary)):
            report.problems.append(f"{where}: new paper {paper.title!r} needs a summary: add '{proposed}: <one or two "
                                   "sentences>' to the --summaries file (a placeholder is not accepted)")
            continue
        if record_id in existing or record_id in chosen:
            report.problems.append(f"{where}: id {record_id!r} for {paper.title!r} is already used; choose another "
                                   "in the --summaries file ({id: ..., summary: ...})")
            continue
        chosen.add(record_id)
        later = []
        for version in paper.later:
            later_venue = _venue_id(venues, version)
            if later_venue is None:
                report.problems.append(f"{where}: later-version venue {version.venue!r} of {paper.title!r} is not in "
                                       "catalog/venues.yaml")
                continue
            item: dict[str, Any] = {"venue": later_venue, "year": version.year, "url": _https(version.url)}
            doi = _links_of(version.url, None, None).get("doi")
            if doi:
                item["doi"] = doi
            later.append(item)
        entry_type, venue_fields = _bibtex_shape(records, by_id[venue_id])
        record: dict[str, Any] = {"id": record_id, "title": main.title}
        short = _short_name(main.title)
        if short:
            record["short_name"] = short
        record.update({"authors": list(main.authors), "venue": venue_id})
        if main.venue_note:
            record["venue_note"] = main.venue_note
        record.update({"year": main.year, "categories": list(categories),
                       "links": _links_of(main.paper, main.code, main.arxiv)})
        if later:
            record["later_versions"] = later
        record.update({
            "summary": str(summary).strip(),
            "bibtex": {"type": entry_type, "key": _bibtex_key(paper, used_keys), "fields": venue_fields},
            "implementation": {"status": "planned", "methods": []},
            "added": today,
        })
        report.plan.create.append((paper, record))


def _yaml_scalar(value: Any) -> str:
    from modl.add import _Dumper

    text = yaml.dump(value, Dumper=_Dumper, allow_unicode=True, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _dump_field(name: str, value: Any) -> str:
    from modl.add import _Dumper

    if name in ("categories",) or (isinstance(value, list) and all(isinstance(v, str) and len(v) < 40 for v in value)
                                   and name not in ("authors",)):
        return f"{name}: [{', '.join(_yaml_scalar(v) for v in value)}]\n"
    return yaml.dump({name: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)


_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(?:\s|$)")


def set_fields(text: str, updates: Mapping[str, Any]) -> str:
    """``text`` (a record file) with the top-level fields of ``updates`` replaced, added (in
    FIELD_ORDER) or removed (value None); every other line stays as it was."""
    lines = text.splitlines(keepends=True)
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    blocks: dict[str, tuple[int, int]] = {}
    for n, (i, key) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        while end > i + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")) \
                and not lines[end - 1].startswith(" "):
            end -= 1  # blank or comment lines before the next key belong to it
        blocks[key] = (i, end)
    replace: dict[int, tuple[int, str]] = {}  # start -> (end, new text)
    inserts: dict[int, list[str]] = {}  # insert before line index
    for name, value in updates.items():
        new = "" if value is None else _dump_field(name, value)
        if name in blocks:
            start, end = blocks[name]
            replace[start] = (end, new)
            continue
        if value is None:
            continue
        position = FIELD_ORDER.index(name)
        after = [blocks[k][1] for k in FIELD_ORDER[:position] if k in blocks]
        before = [blocks[k][0] for k in FIELD_ORDER[position + 1:] if k in blocks]
        at = max(after) if after else (min(before) if before else len(lines))
        inserts.setdefault(at, []).append(new)
    out: list[str] = []
    index = 0
    while index <= len(lines):
        out += inserts.get(index, [])
        if index == len(lines):
            break
        if index in replace:
            end, new = replace[index]
            out.append(new)
            index = end
            continue
        out.append(lines[index])
        index += 1
    return "".join(out)


def _updated_record(record: _Record, paper: ListPaper, changes: list[FieldChange], listed: Mapping[str, tuple[Any, str]],
                    venues: list[Any], today: _dt.date) -> dict[str, Any]:
    """The top-level fields to replace in ``record`` for the applied ``changes``."""
    main = paper.main
    data = record.data
    names = {c.field for c in changes}
    updates: dict[str, Any] = {}
    if "title" in names:
        updates["title"] = main.title
    if "authors" in names:
        updates["authors"] = list(main.authors)
    links = dict(data.get("links") or {})
    if "venue" in names or "year" in names or "links.paper" in names:
        old_venue, old_year, old_url = data.get("venue"), data.get("year"), links.get("paper")
        venue_id = listed["venue"][0][0]
        if "venue" in names or "year" in names:
            earlier = list(data.get("earlier_versions") or [])
            item: dict[str, Any] = {"venue": old_venue, "year": old_year, "url": old_url}
            if links.get("arxiv") and old_venue == "arxiv":
                item["arxiv"] = links["arxiv"]
            if not any(e.get("url") == old_url for e in earlier):
                earlier.append(item)
                updates["earlier_versions"] = earlier
            updates["venue"] = venue_id
            updates["venue_note"] = main.venue_note
            updates["year"] = main.year
            if venue_id != old_venue:
                by_id = {v.id: v for v in venues}
                bib = dict(data.get("bibtex") or {})
                entry_type, venue_fields = _bibtex_shape([], by_id[venue_id])
                bib["type"], bib["fields"] = entry_type, venue_fields
                updates["bibtex"] = bib
        if "links.paper" in names:
            fresh = _links_of(main.paper, None, None)
            links["paper"] = fresh["paper"]
            for key in ("doi", "openreview"):
                if key in fresh:
                    links[key] = fresh[key]
    if "links.code" in names:
        links["code"] = _https(main.code or "")
    if links != (data.get("links") or {}):
        updates["links"] = {k: links[k] for k in ("paper", "code", "arxiv", "doi", "openreview") if k in links}
    if "later_versions" in names:
        from modl.validate import url_key

        later = list(data.get("later_versions") or [])
        known = {url_key(v["url"]) for v in later}
        for version in paper.later:
            if url_key(_https(version.url)) in known:
                continue
            item = {"venue": _venue_id(venues, version), "year": version.year, "url": _https(version.url)}
            doi = _links_of(version.url, None, None).get("doi")
            if doi:
                item["doi"] = doi
            later.append(item)
        updates["later_versions"] = later
    if "categories" in names:
        updates["categories"] = list(listed["categories"][0])
    updates["updated"] = today
    return updates


def _rename_in_taxonomy(text: str, rename: SectionRename) -> str:
    """taxonomy.yaml with category ``rename.category`` titled ``rename.new`` and ``rename.old`` added
    to its former_titles (``rename.new`` removed from them); only those lines change."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"^\s*-\s+id:\s*{re.escape(rename.category or '')}\s*$",
                                                                  line)), None)
    if start is None:
        raise AwesomeError([f"catalog/taxonomy.yaml: no category {rename.category!r} to rename"])
    indent = len(lines[start]) - len(lines[start].lstrip(" ")) + 2  # the keys under '- id:'
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) >= indent):
        end += 1
    title_at = former_at = None
    for i in range(start + 1, end):
        if re.match(rf"^ {{{indent}}}title:", lines[i]):
            title_at = i
        if re.match(rf"^ {{{indent}}}former_titles:", lines[i]):
            former_at = i
    if title_at is None:
        raise AwesomeError([f"catalog/taxonomy.yaml:{start + 1}: category {rename.category!r} has no title line"])
    pad = " " * indent
    former: list[str] = []
    if former_at is not None:
        former = list(yaml.safe_load(lines[former_at].split(":", 1)[1]) or [])
    former = [t for t in former if t != rename.new]
    if rename.old not in former:
        former.append(rename.old)
    lines[title_at] = f"{pad}title: {_yaml_scalar(rename.new)}\n"
    former_line = f"{pad}former_titles: [{', '.join(_yaml_scalar(t) for t in former)}]\n"
    if former_at is not None:
        lines[former_at] = former_line
    else:
        lines.insert(title_at + 1, former_line)
    return "".join(lines)


def _write(root: Path, report: ImportReport, venues: list[Any], today: _dt.date) -> list[str]:
    """Make the planned changes in a temporary copy, validate it, then write the files (see the docstring)."""
    from modl import validate as V
    from modl.add import dump_record
    from modl.catalog import load_catalog

    new_files: dict[str, str] = {}  # relative path -> content
    for _, record in report.plan.create:
        new_files[f"catalog/papers/{record['id']}.yaml"] = dump_record(record)
    changed_files: dict[str, str] = {}
    for record, paper, changes, listed in report.plan.update:
        rel = record.path.relative_to(root).as_posix()
        text = record.path.read_text(encoding="utf-8")
        changed_files[rel] = set_fields(text, _updated_record(record, paper, changes, listed, venues, today))
    if report.plan.renames:
        rel = "catalog/taxonomy.yaml"
        text = (root / rel).read_text(encoding="utf-8")
        for rename in report.plan.renames:
            text = _rename_in_taxonomy(text, rename)
        changed_files[rel] = text
    if not new_files and not changed_files:
        return []
    for rel in new_files:
        if (root / rel).exists():
            raise AwesomeError([f"{rel} already exists; choose another id in the --summaries file"])

    registry = V.default_registry(root)
    with tempfile.TemporaryDirectory(prefix="modl-import-") as tmp:
        copy = Path(tmp)
        shutil.copytree(root / "catalog", copy / "catalog")
        for rel, content in {**new_files, **changed_files}.items():
            (copy / rel).write_text(content, encoding="utf-8")
        try:
            V.validate_catalog(copy, registry, use_default_registry=False)
        except CatalogError as error:
            raise AwesomeError([f"not written: {p}" for p in error.problems]) from None

    from modl.io import atomic_write_bytes

    originals = {rel: (root / rel).read_bytes() for rel in changed_files}
    done: list[str] = []
    try:
        for rel, content in new_files.items():
            atomic_write_bytes(root / rel, content.encode("utf-8"), exclusive=True)
            done.append(rel)
        for rel, content in changed_files.items():
            atomic_write_bytes(root / rel, content.encode("utf-8"))
            done.append(rel)
        load_catalog(root)
    except BaseException as error:
        for rel in reversed(done):
            if rel in originals:
                atomic_write_bytes(root / rel, originals[rel])
            else:
                (root / rel).unlink(missing_ok=True)
        if isinstance(error, CatalogError):
            raise AwesomeError([f"not written (the catalog changed meanwhile): {p}" for p in error.problems]) from None
        raise
    return done


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def format_report(report: ImportReport) -> str:
    out = [f"{report.source}: {report.list_entries} entries, {report.list_papers} papers; catalog {report.root}: "
           f"{report.records} records"]
    if report.list_diff is not None:
        out.append("")
        out.append(format_list_diff(report.list_diff, report.base or "base", report.source).rstrip("\n"))
    out.append("")
    out.append(f"New papers, not in the catalog ({len(report.new)}):")
    for paper, proposed in report.new:
        out.append(f"  + {proposed}: line {paper.line}: {paper.title!r} ({_byline(paper.main)}) [{', '.join(paper.sections)}]")
    for paper, why in report.not_created:
        out.append(f"  (not created) line {paper.line}: {paper.title!r}: {why}")
    heading = "Differences, catalog -> list (news from the list or corrections of the catalog: " + (
        "see the three-way result below)" if report.base else "pass --base to tell them apart)")
    out.append(f"{heading} ({len(report.changed)}):")
    for change in report.changed:
        out.append(f"  ~ {change.label} (list line {change.line}): {change.title!r}")
        out += [f"      {c.field}: {c.old} -> {c.new}" for c in change.changes]
    if report.behind:
        out.append(f"The list shows a version the catalog keeps in earlier_versions ({len(report.behind)}):")
        for change in report.behind:
            out.append(f"  = {change.label} (list line {change.line}): " +
                       "; ".join(f"{c.field} {c.new} (catalog: {c.old})" for c in change.changes))
    out.append(f"Renamed sections, catalog -> list ({len(report.renamed)}):")
    out += [f"  {r.describe()}" for r in report.renamed]
    if report.former_titles_used:
        out.append(f"The list uses a former title of a catalog section ({len(report.former_titles_used)}):")
        out += [f"  {r.category}: list {r.old!r}, catalog {r.new!r}" for r in report.former_titles_used]
    if report.unknown_sections:
        out.append(f"Sections not in the taxonomy ({len(report.unknown_sections)}): "
                   + "; ".join(repr(t) for t in report.unknown_sections))
    out.append(f"Records not in the list ({len(report.catalog_only)}): {', '.join(report.catalog_only) or '-'}")
    if report.base:
        out.append("")
        out.append(f"Three-way, the list's changes since {report.base}:")
        for title, bucket in (("to apply", report.apply), ("already in the catalog", report.already),
                              ("conflicts, not applied (the catalog changed them too)", report.conflicts)):
            out.append(f"  {title} ({len(bucket)}):")
            for change in bucket:
                out.append(f"    {change.label}: " + "; ".join(f"{c.field}: {c.old} -> {c.new}" for c in change.changes))
        out.append(f"  section renames to apply ({len(report.apply_renames)}):")
        out += [f"    {r.describe()}" for r in report.apply_renames]
        out.append(f"  section renames already in the taxonomy ({len(report.renames_already)}):")
        out += [f"    {r.describe()}" for r in report.renames_already]
    if report.problems:
        out.append("")
        out.append(f"Problems ({len(report.problems)}):")
        out += [f"  {p}" for p in report.problems]
    if report.written:
        out.append("")
        out.append(f"Wrote {len(report.written)} file(s): {', '.join(report.written)}")
    return "\n".join(out) + "\n"
