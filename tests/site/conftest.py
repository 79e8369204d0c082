"""Shared helpers of the site tests: build a site (real or temporary catalog) and read its HTML.

Builds run ``mkdocs build --strict`` in a subprocess, as ``make site`` does, with the catalog root
chosen through ``MODL_CATALOG_ROOT``; the output goes to a temporary folder, never to public/.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MKDOCS_YML = REPO_ROOT / "mkdocs.yml"

# A valid record that tests copy and change (a method paper of a leaf section).
BASE_RECORD = {
    "id": "plain-method",
    "title": "A Plain Method for Multi-Task Learning",
    "short_name": "Plain",
    "authors": ["Ada Lovelace", "Alan Turing"],
    "venue": "icml",
    "year": 2021,
    "categories": ["gradient-manipulation"],
    "links": {"paper": "https://example.org/plain", "code": "https://github.com/example/plain", "arxiv": "2101.00001"},
    "summary": "Sums the task gradients.",
    "bibtex": {"type": "inproceedings", "key": "lovelace2021plain", "fields": {"booktitle": "International Conference on Machine Learning"}},
    "implementation": {"status": "planned", "methods": []},
    "added": "2026-01-02",
}


def build_env(catalog_root: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env.pop("MODL_CATALOG_ROOT", None)
    if catalog_root is not None:
        env["MODL_CATALOG_ROOT"] = str(catalog_root)
    return env


# Runs the mkdocs command line in a fresh interpreter, then reports whether torch was imported.
_BUILD = """
import sys
from mkdocs.__main__ import cli
try:
    cli(sys.argv[1:], prog_name="mkdocs")
finally:
    print("MODL-TORCH-IMPORTED" if "torch" in sys.modules else "MODL-TORCH-NOT-IMPORTED", file=sys.stderr)
"""


def build_site(site_dir: Path, *, catalog_root: Path | None = None, config: Path = MKDOCS_YML) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` into ``site_dir``; returns the finished process (check returncode).

    Its stderr ends with MODL-TORCH-(NOT-)IMPORTED. Never pass ``--quiet``: it drops warnings before
    strict mode counts them, so a broken link would pass.
    """
    cmd = [sys.executable, "-c", _BUILD, "build", "--strict", "-f", str(config), "-d", str(site_dir)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=build_env(catalog_root), capture_output=True, text=True, timeout=300)


def write_record(root: Path, record: dict) -> Path:
    path = root / "catalog" / "papers" / f"{record['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# yaml-language-server: $schema=../schema/paper.schema.json\n"
    text += yaml.safe_dump(record, sort_keys=False, allow_unicode=True, width=1000)
    path.write_text(text, encoding="utf-8")
    return path


def make_catalog(root: Path, records: list[dict]) -> Path:
    """A catalog root with this repository's vocabularies and the given records."""
    (root / "catalog" / "papers").mkdir(parents=True, exist_ok=True)
    for name in ("project.yaml", "taxonomy.yaml", "venues.yaml"):
        shutil.copy(REPO_ROOT / "catalog" / name, root / "catalog" / name)
    if (REPO_ROOT / "catalog" / "schema").is_dir():
        shutil.copytree(REPO_ROOT / "catalog" / "schema", root / "catalog" / "schema", dirs_exist_ok=True)
    for record in records:
        write_record(root, record)
    return root


def record(**changes) -> dict:
    out = copy.deepcopy(BASE_RECORD)
    out.update(changes)
    return out


class _Links(HTMLParser):
    """Collects hrefs and the text of chosen elements from one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.h1: list[str] = []
        self.title = ""
        self._in_h1 = 0
        self._in_title = False
        self._in_permalink = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "a" and "headerlink" in (attrs.get("class") or ""):
            self._in_permalink = True
        if tag == "h1":
            self._in_h1 += 1
            self.h1.append("")
        if tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_permalink = False
        if tag == "h1":
            self._in_h1 -= 1
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_h1 and not self._in_permalink:
            self.h1[-1] += data
        if self._in_title:
            self.title += data


def parse_page(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def page_url(site: Path, page: Path) -> str:
    """The site-relative URL of a built page (``papers/pcgrad/``)."""
    rel = page.relative_to(site).as_posix()
    return rel[: -len("index.html")] if rel.endswith("index.html") else rel


def internal_targets(site: Path, page: Path) -> set[str]:
    """Site-relative URLs (folder form) that a built page links to inside the site."""
    base = "http://site.invalid/" + page_url(site, page)
    out = set()
    for href in parse_page(page).hrefs:
        absolute = urlparse(urljoin(base, href))
        if absolute.netloc != "site.invalid":
            continue
        path = unquote(absolute.path).lstrip("/")
        out.add(re.sub(r"index\.html$", "", path))
    return out


@pytest.fixture(scope="session")
def real_site(tmp_path_factory) -> Path:
    """The site of this repository's catalog, built once per test session."""
    site = tmp_path_factory.mktemp("real-site")
    done = build_site(site)
    assert done.returncode == 0, f"mkdocs build failed:\n{done.stdout}\n{done.stderr}"
    (site.parent / f"{site.name}.stderr").write_text(done.stderr, encoding="utf-8")
    return site
