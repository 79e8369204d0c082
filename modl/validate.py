"""Load ``catalog/`` and check everything: each file against the pydantic models, then the rules
that span records. :func:`validate_catalog` returns the validated parts of the catalog (a
:class:`ValidatedCatalog`, which :func:`modl.catalog.load_and_validate` turns into the catalog model) or
raises :class:`~modl.errors.CatalogError` with *every* problem found, each as ``file:line: field: reason``.
Imports flow one way: loading (modl.yamlload) -> validation (this module) -> the model (modl.catalog).

Checks
- per file (modl.yamlload): UTF-8, YAML syntax, no tabs/duplicate keys/aliases/foreign tags, a mapping
  at the top, the ``# yaml-language-server: $schema=`` first line;
- per record (modl.schema): types, required and unknown fields, patterns, ranges; file stem == id;
- across records: unique ids and BibTeX keys; no two records for the same paper (normalised title, DOI,
  arXiv id, OpenReview id, paper URL); categories are taxonomy leaves; venues are in venues.yaml;
  taxonomy and venue ids unique;
- implementation vs the root's ``reference_impls/registry.py`` (a torch-free static table, executed on its
  own): implemented methods exist and belong to the record, every registry entry has a record.

Cross-record checks read the raw YAML data (with type guards) rather than the validated models, so a
record with one bad field still takes part in them and all problems come out in one run. Every lookup is
a dict, so a run is linear in the number of records (benchmarks/catalog_scaling.py measures it).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import importlib.util
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, get_args, get_origin
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from modl import schema as S
from modl.errors import CatalogError, Problem
from modl.yamlload import FILE_FIELD, LoadedYaml, format_path, load_yaml_file

REGISTRY_FILE = "reference_impls/registry.py"
SCHEMA_COMMENT = "# yaml-language-server: $schema="
_ID_RE = re.compile(S.ID_PATTERN)

Path_ = tuple[str | int, ...]

# Patterns of modl.schema, explained to a person instead of echoed as a regular expression.
_PATTERN_HELP = {
    S.ID_PATTERN: "must be kebab-case (lowercase letters and digits, words joined by single hyphens, e.g. 'nash-mtl')",
    S.ARXIV_PATTERN: "must be a new-style arXiv id like '2001.06782' (no 'arXiv:' prefix, no version suffix)",
    S.DOI_PATTERN: "must be a bare DOI like '10.1145/3292500.3330785' (no https://doi.org/ prefix)",
    S.OPENREVIEW_PATTERN: "must be an OpenReview forum id (letters, digits, '_' and '-')",
    S.BIBKEY_PATTERN: "must be a BibTeX key: a letter, then letters, digits or '_:.-'",
    r"^[a-z]+$": "BibTeX field names must be lowercase letters",
}


# ----------------------------------------------------------------------------------------------
# Pydantic errors -> Problems
# ----------------------------------------------------------------------------------------------


def _model_at(model: type[BaseModel], loc: Iterable[str | int]) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at ``loc`` (to list its allowed fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # list index: the item type was already unwrapped below
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
        # Unwrap Optional[...] / list[...] / Annotated[...] down to a model, if there is one.
        for _ in range(4):
            if isinstance(current, type) and issubclass(current, BaseModel):
                break
            inner = [a for a in get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            if inner:
                current = inner[0]
            elif get_origin(current) is list and get_args(current):
                current = get_args(current)[0]
            else:
                break
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    got = f" (got {_show(value)})" if isinstance(value, (str, int, float, bool)) or value is None else ""
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = sorted((_model_at(model, loc[:-1]) or model).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown field {str(loc[-1])!r}{hint} (allowed: {', '.join(allowed)})"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return _PATTERN_HELP.get(pattern, f"must match {pattern}") + got
    if kind == "string_type":
        # YAML reads 33, 1.5, yes and 2020-01-01 as numbers, booleans and dates: say to quote them.
        if isinstance(value, (int, float, bool, _dt.date)):
            return f"must be text; quote it{got or f' (got {value})'}"
        return "must be text" + {list: ", not a list", dict: ", not a mapping"}.get(type(value), got)
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number" + got
    if kind in ("list_type",):
        return "must be a list" + got
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping of fields" + got
    if kind == "too_short" and isinstance(value, list):
        return "must not be empty"
    if kind.startswith("date"):
        return "must be a date written YYYY-MM-DD" + got
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}" + got
    message = str(error["msg"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :] + (got if kind == "value_error" and isinstance(value, str) else "")
    return message[0].lower() + message[1:] + got


def _validate_model(loaded: LoadedYaml, model: type[BaseModel]) -> tuple[Any, list[Problem]]:
    try:
        return model.model_validate(loaded.data), []
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            loc = tuple(p for p in item["loc"] if p != "[key]")  # dict-key errors end in '[key]'
            problems.append(Problem(loaded.rel, loaded.line(loc), format_path(loc), _reason(item, model)))
        return None, problems


# ----------------------------------------------------------------------------------------------
# Identity keys for duplicate detection
# ----------------------------------------------------------------------------------------------

_ARXIV_PATH = re.compile(r"^/(?:abs|pdf|html)/(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?$")
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(\d{4}\.\d{4,5})$")


def normalise_title(title: str) -> str:
    """Case-folded title without punctuation or whitespace: 'Multi-Task  Learning!' -> 'multitasklearning'."""
    return re.sub(r"[\W_]+", "", title.casefold())


def doi_key(doi: str) -> tuple[str, str]:
    doi = doi.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        doi = doi.removeprefix(prefix)
    arxiv = _ARXIV_DOI.match(doi)  # arXiv's own DOIs name the same paper as its arXiv id
    return ("arxiv", arxiv.group(1)) if arxiv else ("doi", doi)


def url_key(url: str) -> tuple[str, str]:
    """Identity of a paper URL: scheme, ``www.``, fragment and trailing slash do not matter;
    arXiv abs/pdf/versioned URLs become the arXiv id, OpenReview forum/pdf URLs the forum id."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    if host in ("arxiv.org", "export.arxiv.org"):
        match = _ARXIV_PATH.match(path)
        if match:
            return ("arxiv", match.group(1))
    if host == "openreview.net" and path in ("/forum", "/pdf"):
        forum = parse_qs(parts.query).get("id")
        if forum:
            return ("openreview", forum[0])
    if host in ("doi.org", "dx.doi.org") and path:
        return doi_key(path[1:])
    return ("url", host + path + (f"?{parts.query}" if parts.query else ""))


_KEY_LABEL = {
    "title": "normalised title",
    "doi": "DOI",
    "arxiv": "arXiv id",
    "openreview": "OpenReview id",
    "url": "paper URL (normalised)",
}


def _identity_keys(data: dict[str, Any]) -> dict[tuple[str, str], Path_]:
    """Keys that identify the paper of a raw record, each with the first field that gave it."""
    keys: dict[tuple[str, str], Path_] = {}

    def add(key: tuple[str, str], path: Path_) -> None:
        if key[1]:
            keys.setdefault(key, path)

    if isinstance(data.get("title"), str):
        add(("title", normalise_title(data["title"])), ("title",))
    links = data.get("links")
    if isinstance(links, dict):
        if isinstance(links.get("paper"), str):
            add(url_key(links["paper"]), ("links", "paper"))
        if isinstance(links.get("arxiv"), str):
            add(("arxiv", links["arxiv"].strip()), ("links", "arxiv"))
        if isinstance(links.get("doi"), str):
            add(doi_key(links["doi"]), ("links", "doi"))
        if isinstance(links.get("openreview"), str):
            add(("openreview", links["openreview"].strip()), ("links", "openreview"))
    for field in ("later_versions", "earlier_versions"):
        versions = data.get(field)
        if not isinstance(versions, list):
            continue
        for i, version in enumerate(versions):
            if not isinstance(version, dict):
                continue
            if isinstance(version.get("url"), str):
                add(url_key(version["url"]), (field, i, "url"))
            if isinstance(version.get("arxiv"), str):
                add(("arxiv", version["arxiv"].strip()), (field, i, "arxiv"))
            if isinstance(version.get("doi"), str):
                add(doi_key(version["doi"]), (field, i, "doi"))
            if isinstance(version.get("title"), str):
                add(("title", normalise_title(version["title"])), (field, i, "title"))
    return keys


# ----------------------------------------------------------------------------------------------
# Vocabularies
# ----------------------------------------------------------------------------------------------


def _schema_comment_problem(loaded: LoadedYaml, schema_ref: str) -> list[Problem]:
    """The first line names the JSON Schema, so editors complete and check the file."""
    expected = SCHEMA_COMMENT + schema_ref
    first = loaded.text.lstrip("\ufeff").split("\n", 1)[0].rstrip()
    if not loaded.text or first == expected:
        return []
    return [Problem(loaded.rel, 1, FILE_FIELD, f"first line must be '{expected}' (found {first[:60]!r})")]


def _load_file(root: Path, rel: str, model: type[BaseModel], schema_ref: str) -> tuple[LoadedYaml, Any, list[Problem]]:
    loaded = load_yaml_file(root / rel, root)
    if not (root / rel).exists():
        return loaded, None, [Problem(rel, 1, FILE_FIELD, "file is missing")]
    problems = list(loaded.problems)
    problems += _schema_comment_problem(loaded, schema_ref)
    value = None
    if loaded.data is not None:
        value, model_problems = _validate_model(loaded, model)
        problems += model_problems
    return loaded, value, problems


def _taxonomy_nodes(data: Any) -> list[tuple[str, Path_, bool]]:
    """(id, path, is_leaf) for every category of the raw taxonomy, depth-first in file order."""
    out: list[tuple[str, Path_, bool]] = []

    def visit(items: Any, path: Path_) -> None:
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                children = item.get("children")
                out.append((item["id"], path + (i, "id"), not children))
                visit(children, path + (i, "children"))

    visit(data.get("categories") if isinstance(data, dict) else None, ("categories",))
    return out


class _Vocabularies:
    """Raw venue and category ids (usable even when a vocabulary file has other problems)."""

    def __init__(self, root: Path):
        self.problems: list[Problem] = []
        self.project_file, self.project, p = _load_file(root, "catalog/project.yaml", S.Project, "schema/project.schema.json")
        self.problems += p
        self.venue_file, self.venue_model, p = _load_file(root, "catalog/venues.yaml", S.VenueFile, "schema/venues.schema.json")
        self.problems += p
        self.taxonomy_file, self.taxonomy_model, p = _load_file(
            root, "catalog/taxonomy.yaml", S.TaxonomyFile, "schema/taxonomy.schema.json"
        )
        self.problems += p

        # None means "unknown" (file unreadable): membership checks are then skipped, not failed.
        self.venue_ids: dict[str, int] | None = None
        raw_venues = self.venue_file.data.get("venues") if isinstance(self.venue_file.data, dict) else None
        if isinstance(raw_venues, list):
            self.venue_ids = {}
            for i, venue in enumerate(raw_venues):
                if isinstance(venue, dict) and isinstance(venue.get("id"), str):
                    line = self.venue_file.line(("venues", i, "id"))
                    if venue["id"] in self.venue_ids:
                        self.problems.append(
                            Problem(self.venue_file.rel, line, f"venues[{i}].id",
                                    f"duplicate venue id {venue['id']!r} (first at line {self.venue_ids[venue['id']]})")
                        )
                    else:
                        self.venue_ids[venue["id"]] = line

        self.leaf_ids: set[str] | None = None
        self.section_leaves: dict[str, list[str]] = {}  # non-leaf id -> its leaves, for hints
        if self.taxonomy_file.data is not None:
            nodes = _taxonomy_nodes(self.taxonomy_file.data)
            seen: dict[str, int] = {}
            for cat_id, path, _ in nodes:
                line = self.taxonomy_file.line(path)
                if cat_id in seen:
                    self.problems.append(
                        Problem(self.taxonomy_file.rel, line, format_path(path),
                                f"duplicate category id {cat_id!r} (first at line {seen[cat_id]})")
                    )
                seen.setdefault(cat_id, line)
            self.leaf_ids = {cat_id for cat_id, _, leaf in nodes if leaf}
            if self.taxonomy_model is not None:
                for cat in _walk(self.taxonomy_model.categories):
                    if cat.children:
                        self.section_leaves[cat.id] = [c.id for c in _walk(cat.children) if not c.children]


def _walk(categories: list[S.Category]) -> Iterable[S.Category]:
    for cat in categories:
        yield cat
        yield from _walk(cat.children)


def load_vocabularies(root: Path) -> tuple[list[str], list[str]]:
    """Venue ids and taxonomy leaf ids, in file order (for the JSON Schemas); CatalogError if broken."""
    vocab = _Vocabularies(Path(root))
    if vocab.problems:
        raise CatalogError(vocab.problems)
    venues = [v.id for v in vocab.venue_model.venues]
    leaves = [c.id for c in _walk(vocab.taxonomy_model.categories) if not c.children]
    return venues, leaves


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def exec_module_file(path: Path, name: str) -> ModuleType:
    """Execute one Python file as a module of its own (not through its package, so nothing it does
    not import itself, torch included, is imported). Exceptions of the file propagate."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def default_registry(root: Path) -> Mapping[str, Any] | None:
    """``REGISTRY`` of ``root/reference_impls/registry.py``; None when the root has no registry.

    The file is executed on its own (a static table that imports only the standard library), never
    through the installed ``reference_impls`` package: a fork or a copy of the repository is checked
    against its own registry, and nothing imports torch. A registry that cannot be executed is a
    :class:`CatalogError`.
    """
    path = Path(root) / REGISTRY_FILE
    if not path.is_file():
        return None
    try:
        module = exec_module_file(path, "_modl_validate_registry")
    except Exception as error:  # a broken registry is one problem line, not a traceback
        raise CatalogError([Problem(REGISTRY_FILE, 1, FILE_FIELD, f"cannot be executed: {type(error).__name__}: {error}")]) from None
    registry = getattr(module, "REGISTRY", None)
    if not isinstance(registry, Mapping):
        raise CatalogError([Problem(REGISTRY_FILE, 1, FILE_FIELD, "defines no REGISTRY mapping")])
    return dict(registry)


def _registry_line(root: Path, name: str) -> int:
    path = Path(root) / REGISTRY_FILE
    if path.exists():
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if f'"{name}"' in text or f"'{name}'" in text:
                return number
    return 1


def _check_implementation(
    record_id: str, data: dict[str, Any], loaded: LoadedYaml, registry: Mapping[str, Any] | None,
    by_paper: Mapping[str, list[str]],
) -> list[Problem]:
    impl = data.get("implementation")
    if not isinstance(impl, dict):
        return []
    status, methods = impl.get("status"), impl.get("methods")
    methods = methods if isinstance(methods, list) else []
    out: list[Problem] = []

    def problem(path: Path_, reason: str) -> None:
        out.append(Problem(loaded.rel, loaded.line(path), format_path(path), reason))

    if registry is None:
        if status == "implemented":
            problem(("implementation", "status"), f"cannot check the methods: no {REGISTRY_FILE} for this catalog root")
        return out
    for i, name in enumerate(methods):
        if not isinstance(name, str):
            continue
        entry = registry.get(name)
        if entry is None:
            if status == "implemented":
                close = difflib.get_close_matches(name, list(registry), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problem(("implementation", "methods", i), f"unknown registry id {name!r}: not in {REGISTRY_FILE}{hint}")
        elif entry.paper != record_id:
            problem(("implementation", "methods", i),
                    f"registry id {name!r} belongs to paper {entry.paper!r}, not to {record_id!r}")
    registered = by_paper.get(record_id, [])
    if status == "implemented":
        unlisted = [n for n in registered if n not in methods]
        if unlisted:
            problem(("implementation", "methods"), f"{REGISTRY_FILE} also has {unlisted} for this paper; list them")
    elif status == "not-applicable" and registered:
        problem(("implementation", "status"), f"is 'not-applicable' but {REGISTRY_FILE} has {registered} for this paper")
    return out


# ----------------------------------------------------------------------------------------------
# The whole catalog
# ----------------------------------------------------------------------------------------------


def _category_problems(data: dict[str, Any], loaded: LoadedYaml, vocab: _Vocabularies) -> list[Problem]:
    categories = data.get("categories")
    if vocab.leaf_ids is None or not isinstance(categories, list):
        return []
    out = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, str) or not _ID_RE.match(cat):
            continue  # wrong type or pattern: the model already reports it
        if cat in vocab.section_leaves:
            reason = f"{cat!r} is a section with subsections; use one of its leaves: {', '.join(vocab.section_leaves[cat])}"
        elif cat not in vocab.leaf_ids:
            close = difflib.get_close_matches(cat, sorted(vocab.leaf_ids), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            reason = f"unknown category {cat!r}: not a leaf id of catalog/taxonomy.yaml{hint}"
        else:
            continue
        out.append(Problem(loaded.rel, loaded.line(("categories", i)), f"categories[{i}]", reason))
    return out


def _venue_problems(data: dict[str, Any], loaded: LoadedYaml, vocab: _Vocabularies) -> list[Problem]:
    if vocab.venue_ids is None:
        return []
    places: list[tuple[Path_, Any]] = [(("venue",), data.get("venue"))]
    for field in ("later_versions", "earlier_versions"):
        versions = data.get(field)
        if isinstance(versions, list):
            places += [((field, i, "venue"), v.get("venue")) for i, v in enumerate(versions) if isinstance(v, dict)]
    out = []
    for path, venue in places:
        if isinstance(venue, str) and _ID_RE.match(venue) and venue not in vocab.venue_ids:
            close = difflib.get_close_matches(venue, list(vocab.venue_ids), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            out.append(Problem(loaded.rel, loaded.line(path), format_path(path),
                               f"unknown venue {venue!r}: add it to catalog/venues.yaml or use a known id{hint}"))
    return out


@dataclass(frozen=True)
class ValidatedCatalog:
    """The parts of a valid catalog, for :class:`modl.catalog.Catalog` (the model built from them)."""

    root: Path  # repository root (the folder that holds catalog/)
    project: S.Project
    venues: dict[str, S.Venue]  # id -> venue, in file order
    categories: list[S.Category]  # top-level sections, in display order
    papers: dict[str, S.Paper]  # id -> paper, sorted by id
    source_files: dict[str, Path] = field(default_factory=dict)  # paper id -> its YAML file


def validate_catalog(
    root: Path | str, registry: Mapping[str, Any] | None = None, *, use_default_registry: bool = True
) -> ValidatedCatalog:
    """Load ``root/catalog`` and check every file and every cross-record rule.

    ``registry`` maps registry ids to entries with a ``paper`` attribute; by default it is the
    ``REGISTRY`` of ``root/reference_impls/registry.py`` (see :func:`default_registry`).
    Raises :class:`CatalogError` listing every problem.
    """
    root = Path(root)
    if registry is None and use_default_registry:
        registry = default_registry(root)
    vocab = _Vocabularies(root)
    problems = list(vocab.problems)

    papers_dir = root / "catalog" / "papers"
    if not papers_dir.is_dir():
        problems.append(Problem("catalog/papers", 1, FILE_FIELD, "folder is missing"))
        raise CatalogError(problems)
    for stray in sorted(papers_dir.glob("*.yml")):
        problems.append(Problem(stray.relative_to(root).as_posix(), 1, FILE_FIELD, "use the .yaml extension"))

    by_paper: dict[str, list[str]] = {}
    for name, entry in (registry or {}).items():
        by_paper.setdefault(entry.paper, []).append(name)

    ids: dict[str, str] = {}  # record id -> file
    bibkeys: dict[str, tuple[str, int, str]] = {}  # casefolded key -> (file, line, id)
    identities: dict[tuple[str, str], tuple[str, int, str]] = {}  # identity key -> (file, line, id)
    valid: dict[str, tuple[S.Paper, Path]] = {}

    for path in sorted(papers_dir.glob("*.yaml")):
        loaded = load_yaml_file(path, root)
        problems += loaded.problems
        problems += _schema_comment_problem(loaded, "../schema/paper.schema.json")
        data = loaded.data
        if data is None:
            continue
        paper, model_problems = _validate_model(loaded, S.Paper)
        problems += model_problems

        record_id = data.get("id") if isinstance(data.get("id"), str) else None
        if record_id is not None:
            id_line = loaded.line(("id",))
            if record_id != path.stem:
                problems.append(Problem(loaded.rel, id_line, "id",
                                        f"id {record_id!r} differs from the file name {path.name!r}; they must be equal"))
            if record_id in ids:
                problems.append(Problem(loaded.rel, id_line, "id", f"duplicate id {record_id!r}: also in {ids[record_id]}"))
            else:
                ids[record_id] = loaded.rel
        label = record_id or path.stem

        bibtex = data.get("bibtex")
        if isinstance(bibtex, dict) and isinstance(bibtex.get("key"), str):
            folded, line = bibtex["key"].casefold(), loaded.line(("bibtex", "key"))
            if folded in bibkeys:
                other = bibkeys[folded]
                problems.append(Problem(loaded.rel, line, "bibtex.key",
                                        f"duplicate BibTeX key {bibtex['key']!r}: also used by {other[2]} ({other[0]}:{other[1]})"))
            else:
                bibkeys[folded] = (loaded.rel, line, label)

        for key, field_path in _identity_keys(data).items():
            line = loaded.line(field_path)
            if key in identities:
                other = identities[key]
                problems.append(Problem(loaded.rel, line, format_path(field_path),
                                        f"same {_KEY_LABEL[key[0]]} as {other[2]} ({other[0]}:{other[1]}): one record per paper"))
            else:
                identities[key] = (loaded.rel, line, label)

        problems += _category_problems(data, loaded, vocab)
        problems += _venue_problems(data, loaded, vocab)
        if record_id is not None:
            problems += _check_implementation(record_id, data, loaded, registry, by_paper)
        if paper is not None:
            valid[paper.id] = (paper, path)

    # A record "exists" when its file does, even if the file is broken (that is reported above).
    present = set(ids) | {path.stem for path in papers_dir.glob("*.yaml")}
    for paper_id, names in sorted(by_paper.items()):
        if paper_id not in present:
            for name in names:
                problems.append(Problem(REGISTRY_FILE, _registry_line(root, name), f"REGISTRY[{name!r}].paper",
                                        f"paper {paper_id!r} has no record catalog/papers/{paper_id}.yaml"))

    if problems:
        raise CatalogError(problems)
    return ValidatedCatalog(
        root=root,
        project=vocab.project,
        venues={v.id: v for v in vocab.venue_model.venues},
        categories=list(vocab.taxonomy_model.categories),
        papers={pid: valid[pid][0] for pid in sorted(valid)},
        source_files={pid: valid[pid][1] for pid in sorted(valid)},
    )
