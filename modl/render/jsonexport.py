"""JSON export (``modl export json``): every record and the vocabularies in one document.

    {
      "generated_by": "modl 0.1.0",
      "project": {...},                       catalog/project.yaml
      "taxonomy": [{id, title, description, former_titles, children: [...]}, ...],
      "venues": [{id, short, name, kind}, ...],
      "papers": [{<every field of the record>, "sections": [...], "site_url": "..."}, ...]
    }

Papers are sorted by id. Each paper carries every field of its record (``Paper.model_dump``, dates
as ISO strings, absent optional fields as null) plus two computed keys:

- ``sections``: one object per entry of ``categories``, in the record's order:
  ``{"id", "title", "path": [titles from the top section down], "primary": bool}``;
- ``site_url``: the paper's page on the catalog site.

Removing the computed keys gives a dict that validates as :class:`modl.schema.Paper` again. The text
is deterministic (sorted keys, indent 2, UTF-8 kept, final newline) and contains no timestamp.
"""

from __future__ import annotations

import json
from typing import Any

import modl
from modl.catalog import Catalog
from modl.render.readme import site_page_url
from modl.schema import Category, Paper

COMPUTED_PAPER_KEYS = ("sections", "site_url")


def _category_tree(category: Category) -> dict[str, Any]:
    data = category.model_dump(mode="json", exclude={"children"})
    data["children"] = [_category_tree(child) for child in category.children]
    return data


def paper_json(catalog: Catalog, paper: Paper) -> dict[str, Any]:
    data = paper.model_dump(mode="json")
    sections = []
    for index, category_id in enumerate(paper.categories):
        category = catalog.category(category_id)
        path = [parent.title for parent in catalog.parents(category_id)] + [category.title]
        sections.append({"id": category_id, "title": category.title, "path": path, "primary": index == 0})
    data["sections"] = sections
    data["site_url"] = site_page_url(catalog, paper)
    return data


def export_data(catalog: Catalog) -> dict[str, Any]:
    return {
        "generated_by": f"modl {modl.__version__}",
        "project": catalog.project.model_dump(mode="json"),
        "taxonomy": [_category_tree(category) for category in catalog.categories],
        "venues": [venue.model_dump(mode="json") for venue in catalog.venues.values()],
        "papers": [paper_json(catalog, catalog.papers[pid]) for pid in sorted(catalog.papers)],
    }


def render_json(catalog: Catalog) -> str:
    """The export as text: sorted keys, indent 2, non-ASCII kept, one final newline."""
    return json.dumps(export_data(catalog), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
