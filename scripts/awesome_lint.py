#!/usr/bin/env python3
"""Run awesome-lint (node_modules/.bin/awesome-lint, pinned 2.3.0 in package.json) on README.md.

    python scripts/awesome_lint.py [README] [--contributing FILE] [--repo-url URL]

awesome-lint lints ``readme.md`` in the current git repository, and its awesome-github rule needs
a git repository whose current branch has a resolvable push remote (``branch.<name>.remote``).
A working checkout may have none (a fresh clone in CI, a tarball, a detached HEAD), so this script
copies README.md and CONTRIBUTING.md into a temporary git repository named like an awesome list,
with remote ``origin`` = the project's ``repo_url`` (catalog/project.yaml) and the branch tracking
it. The rule's GitHub API part (description, topics, licence) needs the network; offline, its
request fails and awesome-lint skips it silently, so the result depends on the files only.

Prints awesome-lint's output and exits with its status (1 when it could not run at all).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LIST_NAME = "awesome-multi-objective-deep-learning"
BRANCH = "main"


def awesome_lint_binary(root: Path = REPO_ROOT) -> Path | None:
    """node_modules/.bin/awesome-lint under ``root`` when it and ``node`` exist, else None."""
    binary = root / "node_modules" / ".bin" / "awesome-lint"
    if not binary.exists() or shutil.which("node") is None:
        return None
    return binary


def project_repo_url(root: Path = REPO_ROOT) -> str:
    """``repo_url`` of catalog/project.yaml (read with a regex: this script needs no packages)."""
    text = (root / "catalog" / "project.yaml").read_text(encoding="utf-8")
    match = re.search(r"^repo_url:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if not match:
        raise ValueError("catalog/project.yaml has no repo_url")
    return match.group(1).strip("'\"")


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env)


def run_awesome_lint(readme: Path, contributing: Path, repo_url: str, binary: Path) -> subprocess.CompletedProcess[str]:
    """Copy the files into a temporary awesome-list repository and run awesome-lint there."""
    with tempfile.TemporaryDirectory(prefix="modl-awesome-lint-") as tmp:
        work = Path(tmp) / LIST_NAME
        work.mkdir()
        shutil.copyfile(readme, work / "README.md")
        shutil.copyfile(contributing, work / "CONTRIBUTING.md")
        _git(work, "init", "--quiet")
        _git(work, "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")  # also on git < 2.28 (no --initial-branch)
        _git(work, "remote", "add", "origin", repo_url)
        _git(work, "config", f"branch.{BRANCH}.remote", "origin")
        _git(work, "config", f"branch.{BRANCH}.merge", f"refs/heads/{BRANCH}")
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": os.environ.get("CI", "true")}
        env.pop("github_token", None)  # never send a token anywhere from a lint run
        return subprocess.run(
            [str(binary)], cwd=work, capture_output=True, text=True, env=env, timeout=300, check=False
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run awesome-lint on README.md in a temporary git repository.")
    parser.add_argument("readme", nargs="?", default=str(REPO_ROOT / "README.md"))
    parser.add_argument("--contributing", default=str(REPO_ROOT / "CONTRIBUTING.md"))
    parser.add_argument("--repo-url", default=None, help="remote URL (default: repo_url of catalog/project.yaml)")
    args = parser.parse_args(argv)

    binary = awesome_lint_binary()
    if binary is None:
        print("awesome_lint: error: node or node_modules/.bin/awesome-lint is missing; run `npm ci`", file=sys.stderr)
        return 1
    try:
        readme, contributing = Path(args.readme), Path(args.contributing)
        for path in (readme, contributing):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
        repo_url = args.repo_url or project_repo_url()
        result = run_awesome_lint(readme, contributing, repo_url, binary)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        print(f"awesome_lint: error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    status = "passed" if result.returncode == 0 else f"failed (exit {result.returncode})"
    print(f"awesome-lint {status} on {readme}", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
