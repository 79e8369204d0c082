"""Storing a reproduced paper figure: the PNG and its metadata, side by side, written atomically.

Every script in benchmarks/figures/ ends with :func:`save_figure`, which writes
``benchmarks/results/figures/<id>.png`` and ``<id>.json``. The site (modl/site/results.py) reads the JSON
(never this module, never torch) and shows the image on the pages of the methods it lists, with the
caption, the settings, the sentence on whether it matches the paper, and the command that made it.

Metadata keys (all required except ``numbers``): ``id``, ``methods`` (registry ids), ``paper`` (catalog
id), ``paper_figure`` (as the paper labels it), ``title``, ``caption``, ``settings``, ``match``,
``command``, ``numbers`` (optional: the figures behind the match sentence). ``environment`` is added.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import platform
import re
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES_DIR = ROOT / "benchmarks" / "results" / "figures"
REQUIRED = ("id", "methods", "paper", "paper_figure", "title", "caption", "settings", "match", "command")
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

if str(ROOT) not in sys.path:  # run as a script from anywhere: modl (atomic_write) is importable
    sys.path.insert(0, str(ROOT))


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("torch", "numpy", "matplotlib"):
        module = sys.modules.get(name)
        out[name] = getattr(module, "__version__", None) if module else None
    return out


def check_meta(meta: dict[str, Any]) -> None:
    """ValueError naming the key when the metadata is incomplete or malformed."""
    missing = [key for key in REQUIRED if not meta.get(key)]
    if missing:
        raise ValueError(f"figure metadata lacks {', '.join(missing)}")
    if not _ID.match(str(meta["id"])):
        raise ValueError(f"figure id {meta['id']!r}: lower-case words joined by hyphens")
    if not isinstance(meta["methods"], list) or not all(isinstance(m, str) for m in meta["methods"]):
        raise ValueError("figure metadata: methods must be a list of registry ids")
    from reference_impls.registry import REGISTRY  # the static table (no torch)

    unknown = [m for m in meta["methods"] if m not in REGISTRY]
    if unknown:
        raise ValueError(f"figure {meta['id']}: unknown registry ids {unknown}")


def save_figure(fig: Any, figure_id: str, meta: dict[str, Any], *, directory: Path | None = None, dpi: int = 110) -> Path:
    """Write ``fig`` (a matplotlib Figure) as ``<directory>/<figure_id>.png`` and ``meta`` as ``<figure_id>.json``.

    The PNG carries no timestamp or software metadata, so an unchanged figure gives the same bytes on the
    same machine. Both files are written atomically (temporary file, then rename). Returns the PNG's path.
    """
    from modl.io import atomic_write, atomic_write_bytes

    meta = {"id": figure_id, **meta}
    if meta["id"] != figure_id:
        raise ValueError(f"figure id {figure_id!r} differs from meta['id'] {meta['id']!r}")
    check_meta(meta)
    directory = FIGURES_DIR if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    png = directory / f"{figure_id}.png"
    atomic_write_bytes(png, buffer.getvalue())
    meta["image"] = png.name
    meta["environment"] = {**_versions(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    atomic_write(directory / f"{figure_id}.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {png} and {figure_id}.json")
    return png


def finish(fig: Any, figure_id: str, meta: dict[str, Any], *, directory: Path | None = None) -> Path:
    """The end of every figure script's ``make``: name the match sentence's claims that fail (from
    ``meta["numbers"]["claims"]``, which the metadata keeps), store the figure, close it."""
    import matplotlib.pyplot as plt

    failed = [name for name, ok in meta.get("numbers", {}).get("claims", {}).items() if not ok]
    if failed:
        print(f"{figure_id}: the match sentence's claims fail: {failed}", file=sys.stderr)
    try:
        return save_figure(fig, figure_id, meta, directory=directory)
    finally:
        plt.close(fig)


def main(doc: str, figures: Any, aliases: dict[str, str], make: Callable[..., Path], argv: list[str] | None = None) -> int:
    """The command line of every figure script: figure ids or aliases, or ``--all``; ``--out DIR``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("ids", nargs="*", help=f"figure ids or aliases ({', '.join(aliases)})")
    parser.add_argument("--all", action="store_true", help="every figure of this script")
    parser.add_argument("--out", type=Path, default=None, help="directory (default benchmarks/results/figures)")
    args = parser.parse_args(argv)
    ids = list(figures) if args.all else [aliases.get(i, i) for i in args.ids]
    unknown = [i for i in ids if i not in figures]
    if unknown or not ids:
        parser.error(f"name figures ({', '.join(figures)}) or --all" + (f"; unknown: {unknown}" if unknown else ""))
    for figure_id in ids:
        make(figure_id, args.out)
    return 0
