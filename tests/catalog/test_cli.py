"""The ``modl`` command line: on bad input one line per problem, exit status 1, never a traceback; the
catalog commands never import torch; a command acts on the checkout it runs in (or ``--root``) and
fails in one line outside any; a closed pipe ends it quietly; methods, problems, show, --version and
the help of every subcommand.

Commands written by other parts of the project (readme, bib, add) are tested only when their module
exists, and skipped with the reason otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from modl.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBLEM_LINE = re.compile(r"^(?P<file>[\w./-]+):(?P<line>\d+): (?P<field>\S+): (?P<reason>.+)$")
HAS_README = (REPO_ROOT / "modl" / "render" / "readme.py").exists()
HAS_BIBTEX = (REPO_ROOT / "modl" / "render" / "bibtex.py").exists()
HAS_ADD = (REPO_ROOT / "modl" / "add.py").exists()
HAS_JSON = (REPO_ROOT / "modl" / "render" / "jsonexport.py").exists()

Run = Callable[..., subprocess.CompletedProcess]


def _broken(make_catalog: Callable[..., Path]) -> Path:
    return make_catalog({
        "catalog/papers/base-paper.yaml": lambda t: t.replace("year: 2020", 'year: "20x"'),
        "catalog/papers/other-paper.yaml": lambda t: t.replace("venue: icml", "venue: nope"),
        "catalog/papers/third-paper.yaml": b"id: \xff\n",
    })


def test_validate_broken_catalog_exits_1_with_one_line_per_problem(make_catalog: Callable[..., Path], run_modl: Run) -> None:
    root = _broken(make_catalog)
    result = run_modl("--root", str(root), "validate")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"{len(lines) - 1} problem(s) found"
    parsed = [PROBLEM_LINE.match(line) for line in lines[:-1]]
    assert all(parsed), lines
    assert {(m["file"], m["line"], m["field"]) for m in parsed} >= {
        ("catalog/papers/base-paper.yaml", "10", "year"),
        ("catalog/papers/other-paper.yaml", "6", "venue"),
        ("catalog/papers/third-paper.yaml", "1", "(file)"),
    }


def test_validate_real_catalog_exits_0(run_modl: Run) -> None:
    result = run_modl("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_validate_in_process(base_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(base_root), "validate"]) == 0
    assert "ok: 2 records" in capsys.readouterr().out
    (base_root / "catalog" / "papers" / "other-paper.yaml").write_text("[", encoding="utf-8")
    assert main(["--root", str(base_root), "validate"]) == 1
    err = capsys.readouterr().err
    assert "catalog/papers/other-paper.yaml:2: (file): YAML syntax error" in err  # mark: end of input


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


# In-process from here on: an exception escaping main() would fail the test, like a traceback would.


def test_missing_root_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path / "nowhere"), "validate"]) == 1
    assert capsys.readouterr().err == f"modl validate: error: --root {tmp_path / 'nowhere'}: no such folder\n"
    assert main(["--root", str(tmp_path), "validate"]) == 1  # a folder without catalog/: its files are missing
    assert "catalog/project.yaml:1: (file): file is missing" in capsys.readouterr().err


def test_schema_check_on_a_catalog_without_schemas_exits_1(base_root: Path, run_modl: Run) -> None:
    result = run_modl("--root", str(base_root), "schema", "--check")
    assert result.returncode == 1 and "stale JSON Schema" in result.stderr and "Traceback" not in result.stderr
    assert main(["--root", str(base_root), "schema"]) == 0
    assert main(["--root", str(base_root), "schema", "--check"]) == 0
    assert sorted(p.name for p in (base_root / "catalog" / "schema").iterdir()) == [
        "paper.schema.json", "project.schema.json", "taxonomy.schema.json", "venues.schema.json"]


@pytest.mark.skipif(not HAS_README, reason="modl/render/readme.py does not exist yet")
def test_readme_on_broken_catalog_exits_1(make_catalog: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = _broken(make_catalog)
    assert main(["--root", str(root), "readme", "--check"]) == 1
    assert "catalog/papers/base-paper.yaml:10: year:" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_BIBTEX, reason="modl/render/bibtex.py does not exist yet")
def test_bib_unknown_id_exits_1(base_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(base_root), "bib", "no-such-id"]) == 1
    assert "unknown record id(s): no-such-id" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_JSON, reason="modl/render/jsonexport.py does not exist yet")
def test_export_json_on_broken_catalog_exits_1(make_catalog: Callable[..., Path], tmp_path: Path) -> None:
    root = _broken(make_catalog)
    out = tmp_path / "catalog.json"
    assert main(["--root", str(root), "export", "json", "--output", str(out)]) == 1
    assert not out.exists()  # nothing half-written


@pytest.mark.skipif(not HAS_ADD, reason="modl/add.py does not exist yet")
def test_add_missing_bibtex_file_exits_1(base_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--root", str(base_root), "add", "--bibtex", str(base_root / "missing.bib"), "--category", "loss-balancing"]
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith("modl add: error:")


# ---- torch stays out of the catalog engine ------------------------------------------------------

TORCH_FREE_COMMANDS = [["validate"], ["schema", "--check"], ["methods"], ["show", "pcgrad"]]
if HAS_README:
    TORCH_FREE_COMMANDS.append(["readme", "--check"])
if HAS_BIBTEX:
    TORCH_FREE_COMMANDS.append(["bib"])


def test_catalog_commands_never_import_torch() -> None:
    # A fresh interpreter (this test process may have imported torch through other tests); all
    # commands run in it one after the other, and the heavy modules are listed after each.
    code = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from modl.cli import main
        for argv in {TORCH_FREE_COMMANDS!r}:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rc = main(argv)
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "scipy"))
            print(" ".join(argv), "|", rc, "|", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(TORCH_FREE_COMMANDS), result.stdout
    for line in lines:
        command, rc, heavy = line.split(" | ")
        assert heavy == "[]", f"`modl {command}` imported {heavy}"
        assert rc in ("0", "1")  # the verdict on the catalog is other tests' business


# ---- the checkout a command acts on -------------------------------------------------------------
# The issue: `modl` found the catalog from its own install location, so the script of one checkout,
# run inside another (a fork, a copy), validated, regenerated or added records in the first one.

NEW_PAPER = r"""
@inproceedings{doe2021weighting,
  title     = {Weighting Losses by Their Own Scale},
  author    = {Doe, Jane and Roe, Richard},
  booktitle = {International Conference on Machine Learning},
  year      = {2021},
  url       = {https://proceedings.example.org/doe21a.html},
}
"""


def _modl_of_this_install(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed modl (this checkout's) run in ``cwd``, as its console script is.

    ``-c`` puts ``cwd`` first on sys.path; the copies made here hold no modl/ package, so the modl
    that runs is always this checkout's, which the assertion on ``modl.__file__`` confirms.
    """
    code = (
        "import sys, modl; from modl.cli import main\n"
        f"assert modl.__file__.startswith({str(REPO_ROOT)!r}), modl.__file__\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def _checkout(base_root: Path) -> Path:
    """The tiny catalog as a checkout: catalog/ and pyproject.toml (the two root markers)."""
    (base_root / "pyproject.toml").write_text('[project]\nname = "modl-fork"\n', encoding="utf-8")
    (base_root / "docs" / "deep").mkdir(parents=True)
    return base_root


def _papers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "catalog" / "papers").glob("*.yaml"))


def test_find_root_is_the_nearest_folder_with_catalog_and_pyproject(base_root: Path, tmp_path: Path) -> None:
    from modl.catalog import NotACheckoutError, find_root

    root = _checkout(base_root)
    assert find_root(root / "docs" / "deep") == root.resolve()
    assert find_root(root) == root.resolve()
    # A catalog/ folder without pyproject.toml beside it is not a checkout: the search goes on upwards.
    inner = root / "docs" / "deep" / "inner"
    (inner / "catalog").mkdir(parents=True)
    assert find_root(inner) == root.resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(NotACheckoutError, match="not inside a modl checkout"):
        find_root(outside)


def test_commands_act_on_the_checkout_they_run_in(base_root: Path) -> None:
    root = _checkout(base_root)
    before = _papers(REPO_ROOT)
    result = _modl_of_this_install("validate", cwd=root / "docs" / "deep")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 records"), result.stdout  # the copy's 2, not this checkout's catalog

    bib = root / "new.bib"
    bib.write_text(NEW_PAPER, encoding="utf-8")
    result = _modl_of_this_install("add", "--bibtex", str(bib), "--category", "loss-balancing", "--summary", "S.",
                                   cwd=root / "docs")
    assert result.returncode == 0, result.stderr
    assert _papers(root) == ["base-paper.yaml", "doe-2021-weighting.yaml", "other-paper.yaml"]
    assert _papers(REPO_ROOT) == before, "modl add wrote into the checkout it was installed from"
    assert f"wrote catalog/papers/doe-2021-weighting.yaml in {root.resolve()}" in result.stderr

    result = _modl_of_this_install("readme", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "README.md").is_file() and result.stderr.strip() == f"wrote README.md in {root.resolve()}"


def test_root_option_names_the_checkout(base_root: Path, tmp_path: Path) -> None:
    root = _checkout(base_root)
    for cwd in (REPO_ROOT, tmp_path):  # inside another checkout, and outside any
        result = _modl_of_this_install("--root", str(root), "validate", cwd=cwd)
        assert result.returncode == 0 and result.stdout.startswith("ok: 2 records"), result.stdout + result.stderr
    result = _modl_of_this_install("--root", str(root), "schema", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr.strip() == f"wrote catalog/schema/ in {root.resolve()}"


@pytest.mark.parametrize("argv", [["validate"], ["readme"], ["add", "--bibtex", "x.bib", "--category", "c"], ["show", "pcgrad"]])
def test_outside_a_checkout_fails_in_one_line(tmp_path: Path, argv: list[str]) -> None:
    result = _modl_of_this_install(*argv, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"modl {argv[0]}: error: {tmp_path.resolve()} is not inside a modl checkout (no folder at or above it holds "
        "catalog/ and pyproject.toml); cd into one or pass --root\n"
    )


# ---- a reader that goes away ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["bib"], ["readme", "--check"]])
def test_closed_pipe_ends_quietly(base_root: Path, argv: list[str]) -> None:
    # `modl bib | head -1`: the reader has gone before the command writes. The read end is closed
    # right after the start, long before the command has loaded the catalog (no race: the first
    # write comes after imports and validation). `readme --check` has a diff to print: no README.md.
    root = _checkout(base_root)
    proc = subprocess.Popen([sys.executable, "-m", "modl", "--root", str(root), *argv], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored" message
    assert proc.returncode == 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


# ---- listings, show, version, help ---------------------------------------------------------------


def _columns(line: str) -> list[int]:
    """Start offsets of the cells of a table line (cells are separated by two or more spaces)."""
    return [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=  ))\S", line)]


def test_methods_has_a_header_and_aligned_columns(run_modl: Run) -> None:
    from reference_impls.registry import REGISTRY

    result = run_modl("methods")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "PAPER", "FAMILY", "INTERFACE", "SOURCE"]
    starts = _columns(header)
    for row in rows:
        assert _columns(row) == starts, f"misaligned: {row!r}"
    assert [row.split()[0] for row in rows] == sorted(REGISTRY)
    for row in rows:
        name, paper, family, interface, source = row.split()
        assert (paper, family, interface) == (REGISTRY[name].paper, REGISTRY[name].family, REGISTRY[name].interface)
        assert (REPO_ROOT / source).is_file()


def test_problems_lists_every_toy_problem_with_its_defaults(run_modl: Run) -> None:
    from reference_impls.problems import problem_class, problem_ids

    result = run_modl("problems")
    assert result.returncode == 0, result.stderr
    header, *rest = result.stdout.splitlines()
    rows = rest[: rest.index("")]
    assert header.split()[:3] == ["ID", "K", "n"] and "PARETO SET" in header and "STEPS" in header
    assert [row.split()[0] for row in rows] == problem_ids()
    for row in rows:
        assert _columns(row)[:8] == _columns(header)[:8], f"misaligned: {row!r}"
        problem_id, K, n, pareto_set, _front, optimizer, steps, lr = row.split()[:8]
        cls = problem_class(problem_id)
        problem = cls()
        assert int(K) == problem.K and n == str(getattr(problem, "n", "-"))
        assert pareto_set == ("known" if problem.has_pareto_set else "-")
        assert (optimizer, int(steps), float(lr)) == (cls.default_optimizer, cls.default_steps, cls.default_lr)


def test_show_prints_a_record_with_links_implementation_and_tests(run_modl: Run) -> None:
    result = run_modl("show", "pcgrad")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("pcgrad: Gradient Surgery for Multi-Task Learning (PCGrad)\n")
    for expected in ("https://github.com/tianheyu927/PCGrad", "https://arxiv.org/abs/2001.06782", "yu2020gradient",
                     "catalog/papers/pcgrad.yaml", "implementation: implemented",
                     "reference_impls/gradient_manipulation/pcgrad.py", "tests: tests/reference_impls/test_pcgrad.py",
                     "/papers/pcgrad/"):
        assert expected in out, expected
    assert "(missing)" not in out and "reconstructed:" not in out
    result = run_modl("show", "xwc-mgda")  # a reconstruction says so where the implementation is listed
    assert result.returncode == 0 and "\nreconstructed: The paper's text could not be read" in result.stdout
    result = run_modl("show", "panacea")  # so does what stands in for the paper's experiments
    assert result.returncode == 0 and "\ntoy scale: The frozen base is a small model instead of a large language model" in result.stdout
    result = run_modl("show", "pcgrd")
    assert result.returncode == 1 and result.stderr == "modl show: error: unknown record id 'pcgrd'; did you mean 'pcgrad'?\n"


def test_version_is_the_package_version(run_modl: Run) -> None:
    import tomllib

    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    result = run_modl("--version")
    assert result.returncode == 0 and result.stdout == f"modl {version}\n"


def test_every_subcommand_has_a_description() -> None:
    import argparse

    from modl.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) >= {"validate", "readme", "bib", "export", "schema", "add", "show", "methods",
                                       "problems", "run"}
    summaries = {choice.dest: choice.help for choice in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        assert summaries.get(name), f"`modl --help` shows no summary for {name}"
        assert sub.description and len(sub.description) > len(summaries[name]), f"`modl {name} --help` has no description"
        assert " ".join(sub.description.split()) in " ".join(sub.format_help().split())
