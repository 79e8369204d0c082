"""The ``modl`` command line on bad input: one line per problem, exit status 1, never a traceback;
and the catalog commands never import torch.

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

TORCH_FREE_COMMANDS = [["validate"], ["schema", "--check"], ["methods"]]
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
