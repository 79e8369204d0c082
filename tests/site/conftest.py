"""Shared helpers of the site tests: build a site (real or temporary catalog) and read its HTML.

Builds run ``mkdocs build --strict`` in a subprocess, as ``make site`` does, with the catalog root
chosen through ``MODL_CATALOG_ROOT``; the output goes to a temporary folder, never to public/.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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


def relocated_config(config: Path, docs_dir: Path) -> Path:
    """A copy of mkdocs.yml at ``config`` whose docs_dir is ``docs_dir`` and whose paths relative to the
    repository (hooks, theme overrides) are absolute, so it builds from anywhere."""
    text = MKDOCS_YML.read_text(encoding="utf-8")
    for old, new in {
        "docs_dir: site\n": f"docs_dir: {docs_dir}\n",
        "- modl/site/hooks.py": f"- {REPO_ROOT / 'modl/site/hooks.py'}",
        "custom_dir: overrides": f"custom_dir: {REPO_ROOT / 'overrides'}",
    }.items():
        assert old in text, f"mkdocs.yml no longer has {old!r}: update relocated_config"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    return config


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


# -- the browser tests (tests/site/test_browser*.py): Debian's Chromium driven by Playwright -------------

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


CHROMIUM_DEFAULT = "/usr/bin/chromium"


def chromium_path() -> str:
    path = shutil.which("chromium") or CHROMIUM_DEFAULT
    if not Path(path).is_file():
        message = "Chromium is not installed: apt-get install -y chromium (Debian package); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Base URL of a built site served on a free port of 127.0.0.1."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def served_site(real_site: Path) -> Iterator[str]:
    with serve(real_site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()  # before the site is built: skip (or fail under CI) at once
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A desktop page (1280x900); see :func:`open_page` for other viewports and colour schemes."""
    with open_page(browser) as page:
        yield page


PHONE_VIEWPORT = {"width": 390, "height": 844}  # a current phone's CSS pixels


@contextlib.contextmanager
def open_page(browser, **context_options) -> Iterator:
    """A page in a fresh browser context (``viewport``, ``color_scheme``, ``accept_downloads``... as
    Playwright's ``new_context`` takes them; desktop 1280x900 by default) that fails the test on any
    JavaScript error."""
    context_options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"
