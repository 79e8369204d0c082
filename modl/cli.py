"""The ``modl`` command line (also ``python -m modl``).

    modl validate                      check every record; problems as file:line: field: reason
    modl readme [--check]              regenerate README.md (or exit 1 with a diff when stale)
    modl bib [ID ...] [--output F]     BibTeX of all records, or of the given ones
    modl export json [--output F]      every record and the taxonomy as JSON
    modl schema [--check]              regenerate the JSON Schemas in catalog/schema/
    modl add --bibtex F --category C   write a new record from a BibTeX entry
    modl import-awesome LIST [--base OLD] [--write]
                                       compare an awesome-list README with the catalog (and update it)
    modl show ID                       one record with its links, implementation and tests
    modl methods                       list the registered reference implementations
    modl problems                      list the toy problems (K, n, Pareto set, defaults; needs torch)
    modl run METHOD --problem P ...    run a reference implementation on a toy problem (needs torch)
    modl bench [--quick] [--shard i/n] run every method on the results suites (resumable cells; needs torch)

Every command acts on the checkout it is run in: the nearest folder, from the current directory
upwards, that holds ``catalog/`` and ``pyproject.toml`` (``--root`` names another one), never on the
checkout the ``modl`` script was installed from. Outside a checkout a command fails with one line.
Commands that write into the checkout say which root they changed.

Every catalog command works without torch; only ``problems`` and ``run`` import it (they run the
installed ``reference_impls``). Errors are reported in one line each, with exit status 1 and no
traceback. When the reader of the output goes away (``modl bib | head -1``), the command stops
quietly with the status of a process killed by SIGPIPE (141).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Any

import modl
from modl.catalog import CatalogError, NotACheckoutError, find_root, load_catalog
from modl.io import atomic_write

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def _root(args: argparse.Namespace) -> Path:
    """The checkout a command acts on: ``--root`` when given, else the one around the current directory."""
    if args.root is not None:
        root = Path(args.root).resolve()
        if not root.is_dir():
            raise UserError(f"--root {args.root}: no such folder")
        return root
    return find_root()


def _wrote(what: str, root: Path) -> None:
    """Say which checkout a writing command changed (stderr, so stdout stays clean for pipes)."""
    print(f"wrote {what} in {root}", file=sys.stderr)


def _emit(text: str, output: str | None) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
    else:
        atomic_write(Path(output), text)
        print(f"wrote {Path(output).resolve()}", file=sys.stderr)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart under a header row; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def cmd_validate(args: argparse.Namespace) -> int:
    catalog = load_catalog(_root(args))
    counts = {leaf: len(catalog.papers_in(leaf)) for leaf in catalog.leaf_ids()}
    listed = sum(counts.values())
    print(f"ok: {len(catalog.papers)} records ({listed} list entries in {len(counts)} sections) are valid")
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    from modl.render.readme import render_readme

    catalog = load_catalog(_root(args))
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
        sys.stdout.flush()
        print(f"\n{target.name} is stale: run `modl readme` and commit the result", file=sys.stderr)
        return 1
    atomic_write(target, text)
    if args.output:
        print(f"wrote {target.resolve()}", file=sys.stderr)
    else:
        _wrote("README.md", catalog.root)
    return 0


def cmd_bib(args: argparse.Namespace) -> int:
    from modl.render.bibtex import render_bibtex

    catalog = load_catalog(_root(args))
    unknown = [i for i in args.ids if i not in catalog.papers]
    if unknown:
        raise UserError(f"unknown record id(s): {', '.join(unknown)}")
    _emit(render_bibtex(catalog, args.ids or None), args.output)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from modl.render.jsonexport import render_json

    catalog = load_catalog(_root(args))
    _emit(render_json(catalog), args.output)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from modl.schema_export import schema_files

    root = _root(args)
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
    if args.check:
        print("ok: JSON Schemas are up to date", file=sys.stderr)
    else:
        _wrote("catalog/schema/", root)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from modl.add import add_from_bibtex

    root = _root(args)
    path = add_from_bibtex(
        root,
        Path(args.bibtex),
        category=args.category,
        record_id=args.id,
        venue=args.venue,
        code=args.code,
        summary=args.summary,
        title=args.title,
    )
    _wrote(path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path), root)
    print(f"wrote {path}; review it, then run `modl validate` and `modl readme`")
    return 0


def cmd_import_awesome(args: argparse.Namespace) -> int:
    from modl.awesome import AwesomeError, format_report, import_awesome

    root = _root(args)
    summaries = None
    if args.summaries:
        import yaml

        path = Path(args.summaries)
        try:
            summaries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise UserError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML") from None
        if not isinstance(summaries, dict):
            raise UserError(f"{path}: must be a mapping from record id to summary")
    try:
        report = import_awesome(root, Path(args.list), base_path=Path(args.base) if args.base else None,
                                write=args.write, summaries=summaries)
    except AwesomeError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"modl import-awesome: {len(error.problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    sys.stdout.write(format_report(report))
    if args.write:
        if report.written:
            _wrote(f"{len(report.written)} file(s)", root)
        else:
            print("nothing to write: the catalog is up to date with the list", file=sys.stderr)
    return 0


def _registry(root: Path) -> dict[str, Any]:
    """The root's ``reference_impls/registry.py`` table, read without torch; UserError when absent."""
    from modl.validate import REGISTRY_FILE, default_registry

    registry = default_registry(root)
    if registry is None:
        raise UserError(f"{root} has no {REGISTRY_FILE}")
    return dict(registry)


def _source_path(entry: Any) -> str:
    return "reference_impls/" + str(entry.module).replace(".", "/") + ".py"


def _test_path(entry: Any) -> str:
    return f"tests/reference_impls/test_{str(entry.module).rsplit('.', 1)[-1]}.py"


def cmd_methods(args: argparse.Namespace) -> int:
    registry = _registry(_root(args))
    rows = [[name, str(e.paper), str(e.family), str(e.interface), _source_path(e)] for name, e in sorted(registry.items())]
    sys.stdout.write(_table(["ID", "PAPER", "FAMILY", "INTERFACE", "SOURCE"], rows))
    return 0


def cmd_problems(args: argparse.Namespace) -> int:
    # The toy problems are torch modules; their facts come from the classes themselves (built with
    # their default knobs), so this command imports torch, like `run`.
    import importlib

    from reference_impls.problems import problem_class, problem_ids

    rows = []
    for problem_id in problem_ids():
        cls = problem_class(problem_id)
        problem = cls()
        # The class docstring's first line, else the module's (several classes share one module).
        doc = (cls.__doc__ or "").strip() or (importlib.import_module(cls.__module__).__doc__ or "").strip()
        n = getattr(problem, "n", None)
        pareto = "known" if getattr(problem, "has_pareto_set", False) else "-"
        front = "known" if getattr(problem, "has_pareto_front", False) else "-"
        rows.append([
            problem_id, str(problem.K), "-" if n is None else str(n), pareto, front,
            str(cls.default_optimizer), str(cls.default_steps), f"{cls.default_lr:g}",
            doc.splitlines()[0].rstrip(".").replace("``", "") if doc else "",
        ])
    header = ["ID", "K", "n", "PARETO SET", "PARETO FRONT", "OPTIMIZER", "STEPS", "LR", "DESCRIPTION"]
    sys.stdout.write(_table(header, rows))
    print("\nK, n, Pareto set and front for the default knobs; `modl run METHOD --problem ID -p problem.KNOB=V` changes them.")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    root = _root(args)
    catalog = load_catalog(root)
    paper = catalog.papers.get(args.id)
    if paper is None:
        close = difflib.get_close_matches(args.id, list(catalog.papers), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown record id {args.id!r}{hint}")
    venue = catalog.venues[paper.venue]
    base = catalog.project.site_url
    lines = [
        f"{paper.id}: {paper.title}" + (f" ({paper.short_name})" if paper.short_name else ""),
        f"  authors      {', '.join(paper.authors)}",
        f"  venue        {venue.short} {paper.year}" + (f", {paper.venue_note}" if paper.venue_note else "") + f" ({venue.name})",
        f"  categories   {', '.join(paper.categories)}",
        f"  summary      {paper.summary}",
        f"  record       {catalog.source_files[paper.id].relative_to(root).as_posix()}",
        f"  bibtex key   {paper.bibtex.key}",
        "links",
        f"  paper        {paper.links.paper}",
    ]
    if paper.links.code:
        lines.append(f"  code         {paper.links.code}")
    if paper.links.arxiv:
        lines.append(f"  arxiv        https://arxiv.org/abs/{paper.links.arxiv}")
    if paper.links.doi:
        lines.append(f"  doi          https://doi.org/{paper.links.doi}")
    if paper.links.openreview:
        lines.append(f"  openreview   https://openreview.net/forum?id={paper.links.openreview}")
    for version in paper.later_versions:
        lines.append(f"  later        {catalog.venues[version.venue].short} {version.year}: {version.url}")
    for version in paper.earlier_versions:
        lines.append(f"  earlier      {catalog.venues[version.venue].short} {version.year}: {version.url}")
    lines.append(f"  site         {base if base.endswith('/') else base + '/'}papers/{paper.id}/")
    impl = paper.implementation
    lines.append(f"implementation: {impl.status}" + (f" ({impl.reason})" if impl.reason else ""))
    if impl.reconstructed:
        lines.append(f"reconstructed: {impl.reconstructed}")
    if impl.toy_scale:
        lines.append(f"toy scale: {impl.toy_scale}")
    registry = _registry(root) if impl.methods else {}
    for name in impl.methods:
        entry = registry.get(name)
        if entry is None:
            lines.append(f"  {name:12s} (not in reference_impls/registry.py yet)")
            continue
        source, test = _source_path(entry), _test_path(entry)
        lines.append(f"  {name:12s} {entry.cls} ({entry.interface}) in {source}" + ("" if (root / source).is_file() else " (missing)"))
        lines.append(f"  {'':12s} tests: {test}" + ("" if (root / test).is_file() else " (missing)"))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from reference_impls.runner import run_from_cli  # imports torch

    return run_from_cli(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from reference_impls.bench.engine import main as bench_main  # imports torch when cells run

    return bench_main(args, _root(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modl",
        description="The modl catalog of gradient-based multi-objective deep learning: check and render the records, "
        "list and run the reference implementations. Acts on the checkout around the current directory.",
    )
    parser.add_argument("--version", action="version", version=f"modl {modl.__version__}")
    parser.add_argument(
        "--root",
        default=None,
        help="repository root holding catalog/ (default: the nearest folder at or above the current directory "
        "that holds catalog/ and pyproject.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description)

    p = command("validate", "check every record and the cross-record rules",
                "Check every file of catalog/ against the schema and the rules that span records (unique ids and "
                "papers, known categories and venues, implementations that exist in reference_impls/registry.py). "
                "Prints every problem as file:line: field: reason and exits 1 when there is any.")
    p.set_defaults(func=cmd_validate)

    p = command("readme", "regenerate README.md from the records",
                "Regenerate README.md of the checkout from its records and modl/templates/readme_header.md. "
                "With --check, write nothing and exit 1 with a diff when README.md is stale.")
    p.add_argument("--check", action="store_true", help="exit 1 with a diff when README.md is stale")
    p.add_argument("--output", default=None, help="write here instead of README.md")
    p.set_defaults(func=cmd_readme)

    p = command("bib", "BibTeX of all records, or of the given ids",
                "Print the BibTeX entries of every record (or of the given record ids), sorted by key.")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_bib)

    p = command("export", "machine-readable exports",
                "Export every record and the taxonomy in a machine-readable format (JSON).")
    p.add_argument("format", choices=["json"])
    p.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = command("schema", "regenerate the JSON Schemas that editors use",
                "Regenerate catalog/schema/*.schema.json from the pydantic models and the current venues and "
                "taxonomy; editors use them to complete and check records. With --check, exit 1 when one is stale.")
    p.add_argument("--check", action="store_true", help="exit 1 when a committed schema is stale")
    p.set_defaults(func=cmd_schema)

    p = command("add", "write a new record from a BibTeX entry",
                "Write catalog/papers/<id>.yaml from one BibTeX entry: title, authors, year, venue, links and BibTeX "
                "fields are derived, duplicates are refused, and the whole catalog is validated before the file stays.")
    p.add_argument("--bibtex", required=True, help="file holding one BibTeX entry")
    p.add_argument("--category", required=True, action="append", help="taxonomy leaf id (repeat for cross-listing)")
    p.add_argument("--id", default=None, help="record id (default: derived from the BibTeX)")
    p.add_argument("--venue", default=None, help="venue id (default: guessed from the BibTeX)")
    p.add_argument("--code", default=None, help="official code URL")
    p.add_argument("--summary", default=None,
                   help="one or two sentences on the method (required; placeholders such as 'TODO' are refused)")
    p.add_argument("--title", default=None, help="title as plain text (default: from the BibTeX; needed when it holds "
                   "math without a plain-text form)")
    p.set_defaults(func=cmd_add)

    p = command("import-awesome", "compare an awesome-list README with the catalog (and update it)",
                "Parse an awesome-list README in the survey list's format and report, against the catalog, the new "
                "papers, the changed ones field by field, and renamed sections (matching by normalised title, arXiv id, "
                "DOI, OpenReview id and URL, never by position). With --base (the list version the catalog was last "
                "synced with) the list's own changes are told apart from the catalog's corrections. --write creates "
                "the new records (summaries from --summaries) and, with --base, applies the list's changes, after "
                "validating everything in a temporary copy; nothing else is touched.")
    p.add_argument("list", metavar="LIST", help="the awesome list's README (Markdown)")
    p.add_argument("--base", default=None, metavar="OLD_LIST",
                   help="the earlier list version the catalog was last brought up to date with (three-way comparison)")
    p.add_argument("--write", action="store_true", help="create new records and apply the list's changes")
    p.add_argument("--summaries", default=None, metavar="FILE",
                   help="YAML mapping: proposed record id -> summary (or -> {id: ..., summary: ...}) for new papers")
    p.add_argument("--root", default=argparse.SUPPRESS, help="repository root (as before the command)")
    p.set_defaults(func=cmd_import_awesome)

    p = command("show", "one record with its links, implementation and tests",
                "Show one record: title, authors, venue, categories, summary, its links (paper, code, arXiv, DOI, "
                "site page) and, for implemented papers, the reference implementation's source and test files.")
    p.add_argument("id", metavar="ID", help="record id, e.g. pcgrad")
    p.set_defaults(func=cmd_show)

    p = command("methods", "list the registered reference implementations",
                "List the reference implementations of reference_impls/registry.py: registry id, paper, family, "
                "interface and source file. Reads the static table only (no torch).")
    p.set_defaults(func=cmd_methods)

    p = command("problems", "list the toy problems (needs torch)",
                "List the toy problems that `modl run` optimises: number of objectives K and of variables n, whether "
                "the Pareto set and front are known analytically, and the default optimiser, steps and learning rate. "
                "Imports torch (the problems are built with their default knobs).")
    p.set_defaults(func=cmd_problems)

    p = sub.add_parser(
        "run",
        help="optimise a toy problem with a reference implementation (needs torch)",
        description="Optimise a toy problem (see `modl problems`) with a reference implementation (see `modl methods`) "
        "from several starting points, and report where the runs end; --plot draws them. Needs torch.",
    )
    p.add_argument("method", help="registry id, e.g. mgda")
    p.add_argument("--problem", required=True, help="toy problem id, e.g. cagrad-toy, biquad")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the problem's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the problem's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solutions", type=int, default=None, help="set methods: the number P of solutions found jointly (default: the problem's starting points); Pareto-set models (phn-ls, ...): the number of held-out preferences evaluated (default 25)")
    p.add_argument("--plot", default=None, help="PNG file for the trajectories / objective space (set methods: the found set against the front; Pareto-set models: the learned front of a dense preference grid against the true one, held-out points marked)")
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyperparameter (e.g. c=0.4); problem.KNOB=V sets a problem knob (problem.scale=0.1), run.optimizer=sgd the optimiser",
    )
    p.set_defaults(func=cmd_run)

    p = command("bench", "run every registered method on the results suites (needs torch)",
                "Run every registered method on the suites it applies to (reference_impls/bench/suites.py), over "
                "seeds, as independent cells stored one file each (a finished, unchanged cell is never run again), "
                "then write one results file per complete suite (JSON and CSV) and index.json. Exits 1 when a cell "
                "ends in an error, after writing everything else.")
    p.add_argument("--quick", action="store_true", help="short settings (CI): results in artifacts/bench-quick/results/")
    p.add_argument("--suite", action="append", default=None, metavar="ID", help="only these suites (repeat or comma-separate)")
    p.add_argument("--method", action="append", default=None, metavar="ID", help="only these methods (repeat or comma-separate)")
    p.add_argument("--seeds", default=None, metavar="S,S", help="only these seeds, e.g. 0,1")
    p.add_argument("--shard", default=None, metavar="I/N", help="run shard I of N (deterministic, balanced by estimated cost)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="worker processes (default: all cores; 1 runs in-process)")
    p.add_argument("--cells", default=None, metavar="DIR", help="cell store (default: artifacts/bench/cells/, quick: artifacts/bench-quick/cells/)")
    p.add_argument("--output", default=None, metavar="DIR", help="results folder (default: benchmarks/results/suites/, quick: artifacts/bench-quick/results/)")
    p.add_argument("--force", action="store_true", help="rerun the selected cells even when they are on disk")
    p.add_argument("--collect", action="store_true", help="only assemble the results files from the cells on disk")
    p.add_argument("--list", action="store_true", help="print the plan (suite, method, seed, state) without running")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_bench)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away: point stdout at /dev/null so the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at interpreter exit
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except CatalogError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{len(error.problems)} problem(s) found", file=sys.stderr)
        return 1
    except NotACheckoutError as error:
        print(f"modl {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (UserError, FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"modl {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
