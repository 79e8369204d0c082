"""``modl add``: write a new record ``catalog/papers/<id>.yaml`` from one BibTeX entry.

    modl add --bibtex FILE --category ID [--category ID2] [--id ID] [--venue V] [--code URL] [--summary S]

From the entry (parsed with bibtexparser 1.x; LaTeX escapes, accents and braces resolved):

- ``title`` (``--``/``---`` become dashes), ``authors`` ("Last, First" -> "First Last",
  "Last, Jr., First" -> "First Last Jr."), ``year``;
- ``venue``: ``--venue``, or the venue of ``catalog/venues.yaml`` whose name or short name matches
  the ``booktitle``/``journal`` (exactly, or contained in it, as in "Proceedings of the ..."),
  or arXiv for an arXiv-only entry; otherwise an error asks for ``--venue``;
- ``links.paper``: the ``url`` field, else ``https://doi.org/<doi>``, else
  ``https://arxiv.org/abs/<eprint>``; ``links.arxiv`` / ``links.doi`` from eprint, doi or an arXiv URL;
  ``links.code`` from ``--code``;
- ``bibtex``: the entry type, its key and every remaining field (minus the fields the record
  derives, and bookkeeping fields such as abstract, keywords, file, timestamp, biburl, bibsource);
- ``id``: ``--id``, or the method name before a colon in the title ("PCGrad: ..." -> ``pcgrad``,
  also stored as ``short_name``), or first author's family name + year (``yu-2020``);
- ``implementation: {status: planned, methods: []}``, ``added``: today;
- ``summary``: ``--summary``, or the placeholder "Summary to be written." (valid, so the record can
  be reviewed in place; CONTRIBUTING.md asks to replace it).

The record is checked on its own first, refused if the file exists or the paper is already in the
catalog (same normalised title, DOI, arXiv id or paper URL), written atomically without overwriting
anything, and then the whole catalog is validated; if that fails the new file is removed and the
problems are reported. No other file is touched.
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
from modl.schema import BIBKEY_PATTERN, BIBTEX_DERIVED_FIELDS, ID_PATTERN, Paper, VenueFile

SUMMARY_PLACEHOLDER = "Summary to be written."
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
# BibTeX parsing
# ----------------------------------------------------------------------------------------------


def parse_single_entry(text: str, source: str) -> dict[str, str]:
    """The one entry of ``text`` (fields lower-cased, ENTRYTYPE and ID included)."""
    import bibtexparser
    from bibtexparser.bparser import BibTexParser

    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False, interpolate_strings=True)
    try:
        database = bibtexparser.loads(text, parser=parser)
    except Exception as error:  # bibtexparser 1.x raises assorted pyparsing errors
        raise AddError(f"{source}: not valid BibTeX ({type(error).__name__}: {error})") from None
    entries = database.entries
    if not entries:
        raise AddError(f"{source}: no BibTeX entry found")
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


def match_venue(root: Path, entry: dict[str, str], venue: str | None) -> str:
    """The venue id for the entry (see the module docstring)."""
    data = yaml.safe_load((root / "catalog" / "venues.yaml").read_text(encoding="utf-8"))
    venues = VenueFile.model_validate(data).venues
    known = {v.id for v in venues}
    if venue is not None:
        if venue not in known:
            raise AddError(f"--venue {venue!r} is not in catalog/venues.yaml (known: {', '.join(sorted(known))})")
        return venue
    where = latex_to_text(entry.get("booktitle") or entry.get("journal") or "")
    if where:
        folded = f" {_fold(where)} "
        if re.search(r"\barxiv\b", folded) or re.search(r"\bcorr\b", folded):
            return "arxiv"
        for v in venues:  # exact name or short name first
            if _fold(v.name) == folded.strip() or _fold(v.short) == folded.strip():
                return v.id
        best = None
        for v in venues:  # then a name or short name contained as whole words ("Proceedings of the ...")
            for candidate in (v.name, v.short):
                if f" {_fold(candidate)} " in folded and (best is None or len(candidate) > len(best[1])):
                    best = (v.id, candidate)
        if best:
            return best[0]
        raise AddError(f"venue {where!r} is not in catalog/venues.yaml; pass --venue ID (or add the venue there first)")
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


def record_from_entry(
    root: Path, entry: dict[str, str], *, category: list[str], record_id: str | None, venue: str | None,
    code: str | None, summary: str | None, today: _dt.date | None = None,
) -> dict[str, Any]:
    """The new record as plain data, in the field order of catalog/papers/pcgrad.yaml."""
    for required in ("title", "author", "year"):
        if not entry.get(required, "").strip():
            raise AddError(f"the BibTeX entry has no {required!r} field")
    title = latex_to_text(entry["title"], dashes=True)
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
        if short_name:
            record_id = _slug(short_name)
        else:
            family = authors[0].split()[-1]
            record_id = f"{_slug(family)}-{year_text}"
    if not re.match(ID_PATTERN, record_id):
        raise AddError(f"record id {record_id!r} is not kebab-case (lowercase letters and digits joined by '-'); pass --id")

    fields = {}
    for name in sorted(entry):
        if name in ("ENTRYTYPE", "ID") or name.lower() in _DROPPED_FIELDS:
            continue
        value = latex_to_text(entry[name])
        if value and re.fullmatch(r"[a-z]+", name):
            fields[name] = value

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
        "summary": summary if summary is not None else SUMMARY_PLACEHOLDER,
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
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def dump_record(record: dict[str, Any]) -> str:
    body = yaml.dump(record, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
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


def add_from_bibtex(
    root: Path, bibtex_path: Path, *, category: list[str], record_id: str | None = None, venue: str | None = None,
    code: str | None = None, summary: str | None = None,
) -> Path:
    """Write ``catalog/papers/<id>.yaml`` from the entry in ``bibtex_path``; return its path.

    Raises :class:`AddError` (a ValueError) or :class:`~modl.catalog.CatalogError` with the reason;
    on any failure after writing, the new file is removed again.
    """
    root = Path(root)
    bibtex_path = Path(bibtex_path)
    try:
        text = bibtex_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AddError(f"{bibtex_path}: no such file") from None
    except UnicodeDecodeError:
        raise AddError(f"{bibtex_path}: not UTF-8 text") from None
    papers_dir = root / "catalog" / "papers"
    if not papers_dir.is_dir():
        raise AddError(f"{papers_dir} does not exist; is --root the repository root?")
    if not category:
        raise AddError("give at least one --category")

    entry = parse_single_entry(text, str(bibtex_path))
    record = record_from_entry(
        root, entry, category=category, record_id=record_id, venue=venue, code=code, summary=summary
    )
    try:
        Paper.model_validate(record)
    except ValidationError as error:
        raise AddError(f"the new record would be invalid: {_validation_message(error)}") from None
    target = papers_dir / f"{record['id']}.yaml"
    if target.exists():
        raise AddError(f"{target.relative_to(root).as_posix()} already exists; choose another --id")
    duplicates = _duplicates(root, record)
    if duplicates:
        raise AddError(f"the paper is already in the catalog: {'; '.join(duplicates)}")

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
