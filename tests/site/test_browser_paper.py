"""A paper page in Chromium: the .bib download beside the BibTeX block's copy button, in the light and dark
schemes and on a phone; screenshots paper-bib-download.png, paper-bib-download-phone.png, paper-dark.png.

Uses the fixtures of tests/site/conftest.py (Debian's Chromium through Playwright, the real site served on
127.0.0.1); skipped without Chromium, except under CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modl.catalog import load_catalog
from tests.site.conftest import PHONE_VIEWPORT, REPO_ROOT, SCREENSHOTS, open_page

pytestmark = pytest.mark.browser

PAPER = "pcgrad"
COPY_BUTTON = "div.language-bibtex [data-md-type='copy'], div.language-bibtex button.md-clipboard"
BESIDE_PX = 80  # the link's right edge to the copy button's left edge, at most

# WCAG 2.x contrast ratio of the link's text against what is behind it. Colours come as "rgb(r, g, b)" or
# "rgba(r, g, b, a)" (Material's greys are translucent): the backgrounds from the link up to the first opaque
# one are composited, then the text over them.
_CONTRAST = """
(el) => {
  const rgba = (s) => { const v = s.match(/[\\d.]+/g).map(Number); return v.length === 3 ? [...v, 1] : v; };
  const over = (top, under) => [0, 1, 2].map(i => top[3] * top[i] + (1 - top[3]) * under[i]);
  const layers = [];
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = rgba(getComputedStyle(node).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  let back = [255, 255, 255];
  for (const layer of layers.reverse()) back = over(layer, back);
  const fore = over(rgba(getComputedStyle(el).color), back);
  const lum = (rgb) => rgb.map(v => v / 255)
    .map(c => c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4))
    .reduce((acc, c, i) => acc + c * [0.2126, 0.7152, 0.0722][i], 0);
  const [a, b] = [lum(fore), lum(back)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
"""


def _entry_and_boxes(page, url: str) -> tuple[str, dict, dict]:
    page.goto(url)
    block = page.locator("div.modl-bibtex")
    block.scroll_into_view_if_needed()
    code = page.locator("div.modl-bibtex div.language-bibtex code").first
    code.wait_for(state="visible")
    link = page.locator("div.modl-bibtex a.modl-bib-download")
    copy = page.locator(COPY_BUTTON).first
    copy.wait_for(state="attached")
    return code.inner_text(), link.bounding_box(), copy.bounding_box()


def _assert_beside(link: dict, copy: dict) -> None:
    """Same row (vertical centres within a quarter of the button's height), left of the button, not over it,
    at most BESIDE_PX apart."""
    link_mid, copy_mid = link["y"] + link["height"] / 2, copy["y"] + copy["height"] / 2
    assert abs(link_mid - copy_mid) <= copy["height"] / 4, (link, copy)
    gap = copy["x"] - (link["x"] + link["width"])
    assert 0 <= gap <= BESIDE_PX, (link, copy)


@pytest.mark.parametrize("viewport", [None, PHONE_VIEWPORT], ids=["desktop", "phone"])
def test_bib_download_is_the_entry_shown_beside_the_copy_button(browser, served_site: str, viewport) -> None:
    record = load_catalog(REPO_ROOT).papers[PAPER]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    options = {"accept_downloads": True, **({"viewport": viewport} if viewport else {})}
    with open_page(browser, **options) as page:
        shown, link, copy = _entry_and_boxes(page, served_site + f"papers/{PAPER}/")
        assert shown.lstrip().startswith(f"@{record.bibtex.type}{{{record.bibtex.key},")
        _assert_beside(link, copy)
        assert page.locator("a.modl-bib-download").get_attribute("title") == f"Download {PAPER}.bib"
        name = "paper-bib-download" + ("-phone" if viewport else "")
        page.locator("div.modl-bibtex").screenshot(path=str(SCREENSHOTS / f"{name}.png"))

        with page.expect_download() as info:
            page.locator("a.modl-bib-download").click()
        download = info.value
        assert download.failure() is None
        assert download.suggested_filename == f"{PAPER}.bib"
        text = Path(download.path()).read_text(encoding="utf-8")
        assert text.strip() == shown.strip() and text.endswith("}\n")  # the entry on the page, one newline


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_bib_download_is_visible_in_both_schemes(browser, served_site: str, scheme: str) -> None:
    """The link's text contrasts with the block behind it (ratio >= 4.5, WCAG AA for normal text; computed
    colours, so the figure does not depend on fonts or rendering: 4.52 light, 4.64 dark) in the light and
    dark schemes; dark follows the system setting (body data-md-color-scheme="slate")."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, color_scheme=scheme) as page:
        _, link, copy = _entry_and_boxes(page, served_site + f"papers/{PAPER}/")
        expected = "slate" if scheme == "dark" else "default"
        actual = page.locator("body").get_attribute("data-md-color-scheme")
        if scheme == "dark" and actual != "slate":
            pytest.skip("the site has no dark palette yet (mkdocs.yml theme.palette)")
        assert actual == expected
        _assert_beside(link, copy)
        contrast = page.locator("a.modl-bib-download").evaluate(_CONTRAST)
        assert contrast >= 4.5, contrast
        if scheme == "dark":
            page.screenshot(path=str(SCREENSHOTS / "paper-dark.png"))
