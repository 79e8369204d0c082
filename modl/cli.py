"""The ``modl`` command line (also ``python -m modl``).

    modl validate                      check every record; problems as file:line: field: reason
    modl readme [--check]              regenerate README.md (or exit 1 with a diff when stale)
    modl bib [ID ...] [--output F]     BibTeX of all records, or of the given ones
    modl export json [--output F]      every record and the taxonomy as JSON
    modl schema [--check]              regenerate the JSON Schemas in catalog/schema/
    modl add --bibtex F --category C   write a new record from a BibTeX entry
    modl methods                       list the registered reference implementations
    modl run METHOD --problem P ...    run a reference implementation on a toy problem (needs torch)

Every catalog command works without torch; only ``run`` imports it. Errors are reported in one
line each, with exit status 1 and no traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from modl.catalog import REPO_ROOT, CatalogError, load_catalog
from modl.io import atomic_write


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def _emit(text: str, output: str | None) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
    else:
        atomic_write(Path(output), text)
        print(f"wrote {output}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.root)
    counts = {leaf: len(catalog.papers_in(leaf)) for leaf in catalog.leaf_ids()}
    listed = sum(counts.values())
    print(f"ok: {len(catalog.papers)} records ({listed} list entries in {len(counts)} sections) are valid")
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    from modl.render.readme import render_readme

    catalog = load_catalog(args.root)
    text = render_readme(catalog)
    target = Path(args.output) if args.output else catalog.root / "README.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == text:
            print(f"ok: {target.name} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True), text.splitlines(keepends=True), f"{target.name} (committed)", f"{target.name} (generated)"
        )
        sys.stdout.writelines(diff)
        print(f"\n{target.name} is stale: run `modl readme` and commit the result", file=sys.stderr)
        return 1
    atomic_write(target, text)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_bib(args: argparse.Namespace) -> int:
    from modl.render.bibtex import render_bibtex

    catalog = load_catalog(args.root)
    unknown = [i for i in args.ids if i not in catalog.papers]
    if unknown:
        raise UserError(f"unknown record id(s): {', '.join(unknown)}")
    _emit(render_bibtex(catalog, args.ids or None), args.output)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from modl.render.jsonexport import render_json

    catalog = load_catalog(args.root)
    _emit(render_json(catalog), args.output)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from modl.schema_export import schema_files

    root = Path(args.root) if args.root else REPO_ROOT
    stale = []
    for path, text in schema_files(root).items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(root)))
        else:
            atomic_write(path, text)
    if stale:
        print(f"stale JSON Schema file(s): {', '.join(stale)}; run `modl schema`", file=sys.stderr)
        return 1
    print("ok: JSON Schemas are up to date" if args.check else "wrote catalog/schema/", file=sys.stderr)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from modl.add import add_from_bibtex

    path = add_from_bibtex(
        Path(args.root) if args.root else REPO_ROOT,
        Path(args.bibtex),
        category=args.category,
        record_id=args.id,
        venue=args.venue,
        code=args.code,
        summary=args.summary,
    )
    print(f"wrote {path}; review it, then run `modl validate` and `modl readme`")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from reference_impls.registry import REGISTRY

    for name in sorted(REGISTRY):
        entry = REGISTRY[name]
        print(f"{name:16s} {entry.family:24s} {entry.interface:14s} {entry.source_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from reference_impls.runner import run_from_cli  # imports torch

    return run_from_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modl", description="The modl catalog of multi-objective deep learning.")
    parser.add_argument("--root", default=None, help="repository root holding catalog/ (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check every record and the cross-record rules")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("readme", help="regenerate README.md from the records")
    p.add_argument("--check", action="store_true", help="exit 1 with a diff when README.md is stale")
    p.add_argument("--output", default=None, help="write here instead of README.md")
    p.set_defaults(func=cmd_readme)

    p = sub.add_parser("bib", help="BibTeX of all records, or of the given ids")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_bib)

    p = sub.add_parser("export", help="machine-readable exports")
    p.add_argument("format", choices=["json"])
    p.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("schema", help="regenerate the JSON Schemas that editors use")
    p.add_argument("--check", action="store_true", help="exit 1 when a committed schema is stale")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("add", help="write a new record from a BibTeX entry")
    p.add_argument("--bibtex", required=True, help="file holding one BibTeX entry")
    p.add_argument("--category", required=True, action="append", help="taxonomy leaf id (repeat for cross-listing)")
    p.add_argument("--id", default=None, help="record id (default: derived from the BibTeX)")
    p.add_argument("--venue", default=None, help="venue id (default: guessed from the BibTeX)")
    p.add_argument("--code", default=None, help="official code URL")
    p.add_argument("--summary", default=None, help="one or two sentences on the method")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("methods", help="list the registered reference implementations")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("run", help="optimise a toy problem with a reference implementation (needs torch)")
    p.add_argument("method", help="registry id, e.g. mgda")
    p.add_argument("--problem", required=True, help="toy problem id, e.g. cagrad-toy, biquad")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the problem's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the problem's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="PNG file for the trajectories / objective space")
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyperparameter (e.g. c=0.4); problem.KNOB=V sets a problem knob (problem.scale=0.1), run.optimizer=sgd the optimiser",
    )
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CatalogError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{len(error.problems)} problem(s) found", file=sys.stderr)
        return 1
    except (UserError, FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"modl {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
