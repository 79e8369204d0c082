"""Math on the site without a CDN or script: TeX marked up by pymdownx.arithmatex (generic mode)
is converted to MathML at build time with latex2mathml, which browsers render natively."""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.DOTALL)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.DOTALL)


def render_math(page_html: str) -> str:
    """Replace arithmatex's TeX spans and blocks in ``page_html`` by MathML."""

    def inline(match: re.Match[str]) -> str:
        return convert(html.unescape(match.group(1)).strip(), display="inline")

    def block(match: re.Match[str]) -> str:
        return f'<div class="modl-math">{convert(html.unescape(match.group(1)).strip(), display="block")}</div>'

    return _INLINE.sub(inline, _BLOCK.sub(block, page_html))
