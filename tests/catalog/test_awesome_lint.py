"""awesome-lint 2.3.0 passes on the committed README and on a README with hostile record text.

Needs node and node_modules/.bin/awesome-lint (``npm ci``). Without them the tests are skipped,
except when the environment variable CI is set: then they fail, so CI cannot silently skip the lint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modl.catalog import REPO_ROOT, load_catalog
from modl.render.readme import render_readme
from tests.catalog.test_readme import HOSTILE_TITLES, hostile_catalog

SCRIPT = REPO_ROOT / "scripts" / "awesome_lint.py"
BINARY = REPO_ROOT / "node_modules" / ".bin" / "awesome-lint"


@pytest.fixture(scope="module", autouse=True)
def awesome_lint_available() -> None:
    missing = [what for what, ok in (("node", _has_node()), (str(BINARY.relative_to(REPO_ROOT)), BINARY.exists())) if not ok]
    if missing:
        message = f"awesome-lint cannot run: {', '.join(missing)} missing (run `npm ci`)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so this is a failure, not a skip")
        pytest.skip(message)


def _has_node() -> bool:
    from shutil import which

    return which("node") is not None


@pytest.fixture(scope="module")
def lint_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """scripts/awesome_lint.py on three READMEs, run concurrently (each run takes seconds):

    - "committed": README.md as committed;
    - "hostile": rendered from a catalog with hostile titles, authors, venue notes and a section title;
    - "broken": the committed text plus an item that repeats a paper link and has a bare [x].
    """
    folder = tmp_path_factory.mktemp("awesome-lint")
    catalog = load_catalog(REPO_ROOT)
    hostile_text = render_readme(hostile_catalog(catalog))
    assert "&lt;script&gt;" in hostile_text and HOSTILE_TITLES[0] not in hostile_text
    text = render_readme(catalog)
    first_item = next(line for line in text.splitlines() if line.startswith("1. ["))
    url = first_item.split("](", 1)[1].split(")", 1)[0]
    readmes = {"committed": REPO_ROOT / "README.md"}
    for name, content in (("hostile", hostile_text),
                          ("broken", text.replace(first_item, first_item + f"\n2. [Again]({url}) - Copy [x].", 1))):
        (folder / name).mkdir()
        readmes[name] = folder / name / "README.md"
        readmes[name].write_text(content, encoding="utf-8")
    running = {
        name: subprocess.Popen([sys.executable, str(SCRIPT), str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, path in readmes.items()
    }
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def test_committed_readme_passes(lint_results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = lint_results["committed"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "awesome-lint passed" in result.stderr


def test_readme_with_hostile_records_passes(lint_results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = lint_results["hostile"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_failures_are_reported(lint_results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """The script really lints: a README with a repeated link and a bare [reference] fails, and the
    temporary repository satisfies the awesome-github rule's git checks."""
    result = lint_results["broken"]
    assert result.returncode == 1
    assert "double-link" in result.stdout and "no-undefined-references" in result.stdout
    assert "Awesome list must reside in a valid git repository" not in result.stdout


REMARK_SCRIPT = """
import {remark} from 'remark';
import remarkGfm from 'remark-gfm';
import {visit} from 'unist-util-visit';
import fs from 'node:fs';
const out = [];
for (const file of process.argv.slice(1)) {
  const tree = remark().use(remarkGfm).parse(fs.readFileSync(file, 'utf8'));
  const counts = {}, urls = [], html = [];
  visit(tree, node => {
    counts[node.type] = (counts[node.type] || 0) + 1;
    if (node.type === 'link' || node.type === 'image') urls.push(node.url);
    if (node.type === 'html') html.push(node.value);
  });
  out.push({counts, urls, html});
}
console.log(JSON.stringify(out));
"""


def test_gfm_parse_of_hostile_records_has_no_extra_markup(tmp_path: Path) -> None:
    """remark + remark-gfm (awesome-lint's parser, GitHub's dialect, autolinks included) sees the
    same links, emphasis and code in the README with hostile text as with harmless text."""
    import json

    from tests.catalog.test_readme import PLAIN_SECTION, hostile_updates, replace_papers, retitle_category

    catalog = load_catalog(REPO_ROOT)
    hostile, plain = tmp_path / "hostile.md", tmp_path / "plain.md"
    hostile.write_text(render_readme(hostile_catalog(catalog)), encoding="utf-8")
    plain_catalog = retitle_category(replace_papers(catalog, hostile_updates(catalog, plain=True)), "loss-balancing",
                                     PLAIN_SECTION)
    plain.write_text(render_readme(plain_catalog), encoding="utf-8")
    result = subprocess.run(["node", "--input-type=module", "-e", REMARK_SCRIPT, str(hostile), str(plain)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    got, want = json.loads(result.stdout)
    assert sorted(got["urls"]) == sorted(want["urls"]), "no extra or changed links"
    # The only raw HTML: empty comments and the empty anchors that keep a renamed section's old links working.
    anchors = re.compile(r'^(<a id="[a-z0-9-]+">|</a>)+$')  # remark splits an inline element into its tags
    assert all(h == "<!-- -->" or anchors.match(h) for h in got["html"]), got["html"]
    for node_type in set(got["counts"]) | set(want["counts"]):
        if node_type not in ("text", "html"):
            assert got["counts"].get(node_type) == want["counts"].get(node_type), node_type
