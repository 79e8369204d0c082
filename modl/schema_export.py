"""JSON Schemas of the catalog files, generated from the pydantic models in :mod:`modl.schema`.

Every YAML file of ``catalog/`` starts with ``# yaml-language-server: $schema=...`` pointing at one of
these files, so editors (VS Code's YAML extension and others) complete field names and flag mistakes
while typing. The paper schema also carries the closed vocabularies as ``enum``s (venue ids, taxonomy
leaf ids), taken from ``catalog/venues.yaml`` and ``catalog/taxonomy.yaml``, so ``modl schema`` must be
re-run when a vocabulary changes; ``modl schema --check`` (run by the tests) catches a stale file.

Output is deterministic: sorted keys, 2-space indent, a trailing newline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from modl import schema as S
from modl.validate import load_vocabularies

SCHEMA_DIR = Path("catalog") / "schema"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# file name -> (model, title)
MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "paper.schema.json": (S.Paper, "modl paper record (catalog/papers/<id>.yaml)"),
    "taxonomy.schema.json": (S.TaxonomyFile, "modl taxonomy (catalog/taxonomy.yaml)"),
    "venues.schema.json": (S.VenueFile, "modl venues (catalog/venues.yaml)"),
    "project.schema.json": (S.Project, "modl project settings (catalog/project.yaml)"),
}


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = DIALECT
    schema["title"] = title
    return schema


def _inject_vocabularies(schema: dict[str, Any], venues: list[str], leaves: list[str]) -> None:
    """Add ``enum``s so editors offer the known ids (the patterns stay, for the message on a typo)."""
    props = schema["properties"]
    props["venue"]["enum"] = list(venues)
    props["categories"]["items"]["enum"] = list(leaves)
    props["year"]["minimum"] = S.MIN_YEAR  # the upper bound moves with the calendar: checked by modl validate
    later = schema["$defs"]["LaterVersion"]["properties"]
    later["venue"]["enum"] = list(venues)
    later["year"]["minimum"] = S.MIN_YEAR


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files(root: Path | str) -> dict[Path, str]:
    """Path -> text of every JSON Schema file, as ``modl schema`` writes them under ``root``."""
    root = Path(root)
    venues, leaves = load_vocabularies(root)
    out: dict[Path, str] = {}
    for name, (model, title) in MODELS.items():
        schema = _schema(model, title)
        if model is S.Paper:
            _inject_vocabularies(schema, venues, leaves)
        out[root / SCHEMA_DIR / name] = _dump(schema)
    return out
