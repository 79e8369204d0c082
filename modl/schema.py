"""Pydantic models of the catalog: one :class:`Paper` per YAML file, plus the vocabularies.

Every model forbids unknown fields, so a typo in a record is an error, not a silently dropped key.
Checks that need more than one record (unique ids, known venues and categories, duplicate titles,
registry names) live in :mod:`modl.validate`; the models check what one file can check alone.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
ARXIV_PATTERN = r"^\d{4}\.\d{4,5}$"
DOI_PATTERN = r"^10\.\d{4,9}/\S+$"
OPENREVIEW_PATTERN = r"^[A-Za-z0-9_-]+$"
BIBKEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_:.-]*$"
MIN_YEAR = 1950
# Fields a record's BibTeX entry takes from the record itself; repeating them in ``fields`` is an error.
BIBTEX_DERIVED_FIELDS = frozenset({"title", "author", "year", "url", "doi", "eprint", "archiveprefix", "howpublished"})
# Formats of the numbered bibliographic fields of ``bibtex.fields``: ranges use BibTeX's en dash "--".
_BIBTEX_FIELD_FORMATS = {
    "volume": (re.compile(r"^\d+$"), "a volume number, e.g. '33'"),
    "number": (re.compile(r"^\d+(?:--\d+)?$"), "an issue number, e.g. '7' or '1--2'"),
    "pages": (
        re.compile(r"^(?:\d+:)?[A-Za-z]?\d+(?:--(?:\d+:)?[A-Za-z]?\d+)?$"),
        "a page range with '--' ('5824--5836'), an article number ('100700') or both ('295:1--295:32')",
    ),
}

# Summaries that only stand in for one (what `modl add` wrote before summaries became required, and the
# usual to-do markers): a record with one is not published, so validation rejects it.
SUMMARY_PLACEHOLDER = "Summary to be written."
_PLACEHOLDER_RE = re.compile(r"^\W*(?:summary to be written|to ?do|tbd|tbw|fixme|xxx|placeholder|summary)\W*$", re.IGNORECASE)


def is_placeholder_summary(summary: str) -> bool:
    """Whether ``summary`` is a stand-in ('Summary to be written.', 'TODO', 'TBD', ...), not a summary."""
    return bool(_PLACEHOLDER_RE.match(summary.strip()))


_URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/[^\s<>\"'`]*)?$")


def _check_https_url(value: str) -> str:
    if not value.startswith("https://"):
        raise ValueError("must be an https:// URL")
    if not _URL_RE.match(value):
        raise ValueError("is not a well-formed URL (no spaces, quotes or angle brackets; a host with a dot)")
    return value


def _check_clean_text(value: str) -> str:
    if value != value.strip():
        raise ValueError("has leading or trailing whitespace")
    if not value:
        raise ValueError("must not be empty")
    if any(ch in value for ch in "\n\r\t"):
        raise ValueError("must be a single line")
    return value


Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=2, max_length=60)]
HttpsUrl = Annotated[str, AfterValidator(_check_https_url)]
Line = Annotated[str, AfterValidator(_check_clean_text)]
ArxivId = Annotated[str, StringConstraints(pattern=ARXIV_PATTERN)]
Doi = Annotated[str, StringConstraints(pattern=DOI_PATTERN)]
OpenReviewId = Annotated[str, StringConstraints(pattern=OPENREVIEW_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


# ----------------------------------------------------------------------------------------------
# Vocabularies
# ----------------------------------------------------------------------------------------------


class Venue(_Strict):
    """One venue of ``catalog/venues.yaml``: ``NeurIPS`` = Advances in Neural Information Processing Systems."""

    id: Id = Field(description="Key used by records, e.g. 'neurips'.")
    short: Line = Field(description="Abbreviation shown in lists, e.g. 'NeurIPS', 'TKDE'.")
    name: Line = Field(description="Full name, e.g. 'IEEE Transactions on Knowledge and Data Engineering'.")
    kind: Literal["conference", "journal", "preprint", "workshop"]
    aliases: list[Line] = Field(
        default_factory=list,
        description="Other names BibTeX uses for the venue, e.g. OpenReview's 'Conference on Neural Information "
        "Processing Systems'; `modl add` and `modl import-awesome` match them like the name.",
    )


class VenueFile(_Strict):
    venues: list[Venue] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unambiguous(self) -> VenueFile:
        """A name, short name or alias must point at one venue only (matching depends on it)."""
        owner: dict[str, str] = {}
        for venue in self.venues:
            for label in {venue.short, venue.name, *venue.aliases}:
                folded = re.sub(r"[\W_]+", " ", label.casefold()).strip()
                if owner.setdefault(folded, venue.id) != venue.id:
                    raise ValueError(f"{label!r} names both {owner[folded]!r} and {venue.id!r}")
        return self


class Category(_Strict):
    """A node of the taxonomy tree (``catalog/taxonomy.yaml``). Records use leaf ids only."""

    id: Id
    title: Line = Field(description="Section heading, as in the survey's list.")
    description: Line = Field(description="One paragraph: what methods of this section do.")
    former_titles: list[Line] = Field(default_factory=list, description="Earlier headings of this section.")
    children: list[Category] = Field(default_factory=list, description="Subsections, in display order.")


class TaxonomyFile(_Strict):
    categories: list[Category] = Field(min_length=1, description="Top-level sections, in display order.")


class Survey(_Strict):
    """The survey the list follows (not a list entry): cited by the README and the site."""

    title: Line
    authors: list[Line] = Field(min_length=1)
    year: StrictInt
    arxiv: ArxivId
    bibtex_key: Annotated[str, StringConstraints(pattern=BIBKEY_PATTERN)]

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


class Project(_Strict):
    """``catalog/project.yaml``: names and addresses used by the README, the site and the exports."""

    name: Line
    tagline: Line
    site_url: HttpsUrl
    repo_url: HttpsUrl
    survey: Survey


# ----------------------------------------------------------------------------------------------
# Paper record
# ----------------------------------------------------------------------------------------------


class Links(_Strict):
    paper: HttpsUrl = Field(description="Canonical page or PDF of the paper (required).")
    code: HttpsUrl | None = Field(default=None, description="Official code, if the authors released it.")
    arxiv: ArxivId | None = Field(default=None, description="arXiv identifier without version, e.g. '2001.06782'.")
    doi: Doi | None = Field(default=None, description="DOI without the resolver prefix.")
    openreview: OpenReviewId | None = Field(default=None, description="OpenReview forum id.")


class LaterVersion(_Strict):
    """A later publication of the same work, e.g. MOML's journal version in AIJ 2024."""

    venue: Id
    year: StrictInt
    url: HttpsUrl
    doi: Doi | None = None
    title: Line | None = Field(default=None, description="Only when the later version has a different title.")


class EarlierVersion(_Strict):
    """An earlier public version of the same work, e.g. the arXiv preprint of a paper now in ICML."""

    venue: Id
    year: StrictInt
    url: HttpsUrl
    arxiv: ArxivId | None = Field(default=None, description="Its arXiv id, when it is an arXiv version.")
    doi: Doi | None = None
    title: Line | None = Field(default=None, description="Only when the earlier version has a different title.")


class BibTeX(_Strict):
    """What is needed to emit the entry; title, author, year, url, doi, eprint (and an arXiv @misc's howpublished) come from the record."""

    type: Literal["article", "inproceedings", "misc", "techreport", "incollection", "book"]
    key: Annotated[str, StringConstraints(pattern=BIBKEY_PATTERN)]
    fields: dict[Annotated[str, StringConstraints(pattern=r"^[a-z]+$")], Line] = Field(
        default_factory=dict,
        validate_default=True,  # so that an article without any 'fields' still needs its journal
        description="Extra fields: booktitle, journal, volume, number, pages, publisher, ...",
    )

    # A field validator (not a model validator) so that errors point at the line of ``fields``.
    @field_validator("fields")
    @classmethod
    def _no_derived_fields(cls, fields: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        clash = sorted(BIBTEX_DERIVED_FIELDS & set(fields))
        if clash:
            how = " (howpublished is written for an arXiv @misc; use 'note' for other text)" if "howpublished" in clash else ""
            raise ValueError(f"fields {clash} are derived from the record; remove them from bibtex.fields{how}")
        for name, (pattern, what) in _BIBTEX_FIELD_FORMATS.items():
            if name in fields and not pattern.match(fields[name]):
                raise ValueError(f"field {name!r} is {fields[name]!r}; it must be {what}")
        entry_type = info.data.get("type")  # absent when 'type' itself failed validation
        if entry_type == "article" and "journal" not in fields:
            raise ValueError("an article needs a 'journal' field")
        if entry_type in ("inproceedings", "incollection") and "booktitle" not in fields:
            raise ValueError(f"an {entry_type} entry needs a 'booktitle' field")
        return fields


class Implementation(_Strict):
    status: Literal["implemented", "planned", "not-applicable"]
    methods: list[Id] = Field(
        default_factory=list,
        description="Registry ids in reference_impls (implemented: those that exist; planned: those intended).",
    )
    reason: Line | None = Field(default=None, description="Required when status is not-applicable.")
    reconstructed: Line | None = Field(
        default=None,
        description="What the implementation had to reconstruct because the paper leaves it open and no "
        "official code exists (shown with the implementation); omit when everything follows the paper or its code.",
    )
    toy_scale: Line | None = Field(
        default=None,
        description="What stands in for the paper's experiments at toy scale (small models, synthetic data, "
        "seeded task models) and what of the paper is not reproduced (shown with the implementation).",
    )

    @model_validator(mode="after")
    def _status_consistent(self) -> Implementation:
        if self.status == "implemented" and not self.methods:
            raise ValueError("status 'implemented' needs at least one registry id in 'methods'")
        if self.status == "not-applicable" and not self.reason:
            raise ValueError("status 'not-applicable' needs a 'reason'")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("'methods' lists a registry id twice")
        return self


class Paper(_Strict):
    """One surveyed paper: ``catalog/papers/<id>.yaml``."""

    id: Id = Field(description="Short kebab-case name users know ('pcgrad', 'nash-mtl'); equals the file stem.")
    title: Line
    short_name: Line | None = Field(default=None, description="Name of the method or software, e.g. 'PCGrad'.")
    authors: list[Line] = Field(min_length=1, description="In the paper's order, names as the paper gives them.")
    venue: Id = Field(description="A venue id of catalog/venues.yaml.")
    venue_note: Line | None = Field(default=None, description="Track or other qualifier, e.g. 'Datasets and Benchmarks Track'.")
    year: StrictInt
    categories: list[Id] = Field(min_length=1, description="Taxonomy leaf ids; the first is the primary section.")
    links: Links
    later_versions: list[LaterVersion] = Field(default_factory=list)
    earlier_versions: list[EarlierVersion] = Field(
        default_factory=list,
        description="Earlier versions (e.g. the arXiv preprint of a conference paper), kept so that old "
        "citations and titles still lead to the record.",
    )
    summary: Line = Field(description="One or two sentences, written by us, on what the method does.")
    bibtex: BibTeX
    implementation: Implementation
    added: _dt.date = Field(description="Date the record entered the catalog (YYYY-MM-DD).")
    updated: _dt.date | None = Field(
        default=None,
        description="Date of the last change of the record's content through the tools (YYYY-MM-DD); absent "
        "while unchanged since 'added'.",
    )

    @field_validator("year")
    @classmethod
    def _year_in_range(cls, year: int) -> int:
        this_year = _dt.date.today().year
        if not MIN_YEAR <= year <= this_year + 1:
            raise ValueError(f"{year} is outside {MIN_YEAR}..{this_year + 1}")
        return year

    @field_validator("categories", "authors")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"lists {repeated} more than once")
        return values

    @field_validator("summary")
    @classmethod
    def _summary_short(cls, summary: str) -> str:
        if len(summary) > 600:
            raise ValueError("is longer than 600 characters; keep it to one or two sentences")
        if is_placeholder_summary(summary):
            raise ValueError("is a placeholder; write one or two sentences on what the method does")
        return summary

    # A field validator (``year`` is declared earlier, so it is in ``info.data``): errors then point at
    # the line of ``later_versions`` instead of the whole record.
    @field_validator("later_versions")
    @classmethod
    def _later_versions_after(cls, versions: list[LaterVersion], info: ValidationInfo) -> list[LaterVersion]:
        year = info.data.get("year")  # absent when 'year' itself failed validation
        for index, version in enumerate(versions):
            if year is not None and version.year < year:
                raise ValueError(f"later_versions[{index}] has year {version.year}, before the paper's year {year}")
        return versions

    @field_validator("earlier_versions")
    @classmethod
    def _earlier_versions_before(cls, versions: list[EarlierVersion], info: ValidationInfo) -> list[EarlierVersion]:
        year = info.data.get("year")  # absent when 'year' itself failed validation
        for index, version in enumerate(versions):
            if year is not None and version.year > year:
                raise ValueError(f"earlier_versions[{index}] has year {version.year}, after the paper's year {year}")
        return versions

    @field_validator("updated")
    @classmethod
    def _updated_after_added(cls, updated: _dt.date | None, info: ValidationInfo) -> _dt.date | None:
        added = info.data.get("added")  # absent when 'added' itself failed validation
        if updated is not None and added is not None and updated < added:
            raise ValueError(f"{updated} is before 'added' ({added})")
        return updated


Category.model_rebuild()
