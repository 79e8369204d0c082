"""Escaping helpers for text that comes from the records and enters Markdown or HTML.

Every string that comes from a record (titles, authors, venues, summaries, section titles) goes
through one of these functions where it enters the output, so that a title such as
``<script>alert(1)</script>``, ``](javascript:alert(1))`` or ``*bold* [x](y)`` shows as literal
text and never becomes markup, a link or an HTML element.

- :func:`escape_markdown_text` for Markdown text: list-item descriptions and paragraphs; with
  ``html_breaks=False`` for link text and headings.
  It is safe under CommonMark/GFM (GitHub, remark as used by awesome-lint) and Python-Markdown
  (mkdocs, with or without pymdownx extensions), and keeps ordinary titles readable: only the
  characters that can start markup are rewritten.
- :func:`markdown_url` for link destinations ``[text](url)``: http(s) only, with the characters
  that could end or break the destination percent-encoded.
- :func:`escape_html` for HTML contexts (element content and quoted attribute values).
- :func:`github_slug` for the ``#anchor`` GitHub gives a heading (used by the Contents list).

The README and the site both import from here; do not duplicate these rules elsewhere.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["escape_markdown_text", "escape_html", "markdown_url", "github_slug", "Slugger", "BREAK"]

# Characters that are backslash-escaped: every Markdown dialect we target (CommonMark, GFM,
# Python-Markdown) honours a backslash before these, and they are the ones that open emphasis,
# code spans, links, images, attribute lists ({: ...}) and pymdownx "++keys++"/"==mark==" markup.
_BACKSLASH = frozenset("\\`*_[]{}+#")
# Characters written as HTML character references: a backslash before them is not honoured by
# Python-Markdown (so it would show), or they must not exist as literal characters at all
# (raw HTML, entities, tables, math, strike-through, superscript, mark).
_ENTITY = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "|": "&#124;",
    "~": "&#126;",
    "^": "&#94;",
    "$": "&#36;",
    "=": "&#61;",  # only in a run of two or more ("==mark=="); a lone "=" stays readable
    "@": "&#64;",  # e-mail autolinks (GFM "a@b.org")
    '"': "&quot;",
}
# GFM turns bare "https://...", "www.example.org" and "a@b.org" into links, and GitHub turns
# ":name:" into an emoji image. A character reference in the source stops the parsers that look
# at the source (cmark-gfm, Python-Markdown's magiclink); remark-gfm and GitHub's emoji filter look
# at the decoded text of one text node, so outside link text an empty HTML comment also splits
# the text node there (it renders as nothing). Inside link text no autolink can start (links do
# not nest), and HTML is not allowed there by awesome-lint, so no comment is inserted.
_SCHEME_RE = re.compile(r"(?<=[A-Za-z0-9+.-]):(?=//)")  # the ':' of 'https://'
_WWW_RE = re.compile(r"(?i)(?<![A-Za-z0-9])w(?=ww\.)")  # the first 'w' of 'www.'
_WWW_DOT_RE = re.compile(r"(?i)(?<=www)\.")  # the '.' after 'www'
_EMAIL_RE = re.compile(r"@")
_EMOJI_RE = re.compile(r":(?=[A-Za-z0-9_+-]+:)")  # the first ':' of ':name:'
_WHITESPACE_RE = re.compile(r"\s+")
BREAK = "<!-- -->"


def escape_markdown_text(text: str, *, html_breaks: bool = True) -> str:
    """Escape ``text`` so that it renders as exactly these characters in Markdown inline content.

    Whitespace runs (including newlines) become one space, so the text can never start a new
    block (heading, list item, block quote, fenced code) or end a line with a hard break.
    ``html_breaks=False`` is for link text and headings, where no HTML may appear: there the
    empty comments that stop GFM autolinks and emoji in plain text are left out.
    """
    text = _WHITESPACE_RE.sub(" ", str(text)).strip()
    as_reference = {m.start() for pattern in (_SCHEME_RE, _EMOJI_RE, _WWW_RE) for m in pattern.finditer(text)}
    breaks_before: set[int] = set()
    if html_breaks:
        breaks_before = {m.start() for pattern in (_SCHEME_RE, _WWW_DOT_RE, _EMAIL_RE) for m in pattern.finditer(text)}
        breaks_before |= {m.start() + 1 for m in _EMOJI_RE.finditer(text)}
    out: list[str] = []
    for index, ch in enumerate(text):
        if index in breaks_before:
            out.append(BREAK)
        if index in as_reference:
            out.append(f"&#{ord(ch)};")
        elif ch in _BACKSLASH:
            out.append("\\" + ch)
        elif ch == "=" and "=" not in text[max(index - 1, 0) : index] + text[index + 1 : index + 2]:
            out.append(ch)
        elif ch in _ENTITY:
            out.append(_ENTITY[ch])
        else:
            out.append(ch)
    return "".join(out)


def escape_html(text: str) -> str:
    """Escape ``text`` for HTML element content or a double- or single-quoted attribute value."""
    return html.escape(str(text), quote=True)


# Characters kept verbatim in a Markdown link destination; everything else is percent-encoded.
# Parentheses, angle brackets, backslashes, spaces, quotes and brackets are not in the set, so a
# URL can neither end the destination early nor add a link title.
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#@!$&+,;=%*")


def markdown_url(url: str) -> str:
    """Return ``url`` ready for a Markdown link destination; only ``https://`` and ``http://`` pass.

    Raises ValueError for any other scheme (``javascript:``, ``data:``, relative links), so a
    record can never smuggle a script link into the README or the site.
    """
    url = str(url)
    if not re.match(r"^https?://[^\s/]", url, flags=re.IGNORECASE):
        raise ValueError(f"refusing to link to {url!r}: only http(s) URLs are allowed")
    out: list[str] = []
    for byte_char in url:
        if byte_char in _URL_SAFE:
            out.append(byte_char)
        else:
            out.extend(f"%{b:02X}" for b in byte_char.encode("utf-8"))
    return "".join(out)


def github_slug(text: str) -> str:
    """The anchor GitHub (github-slugger) derives from a heading's text, without the ``#``.

    Lower-case; letters, digits, marks, ``-`` and ``_`` are kept, spaces become ``-``, every
    other character is dropped. Duplicate headings get ``-1``, ``-2``: see :class:`Slugger`.
    """
    out: list[str] = []
    for ch in text.lower():
        if ch == " ":
            out.append("-")
        elif ch in "-_" or unicodedata.category(ch)[0] in "LNM":
            out.append(ch)
    return "".join(out)


class Slugger:
    """Stateful :func:`github_slug`: the second heading with the same slug gets ``-1``, and so on."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def slug(self, text: str) -> str:
        base = github_slug(text)
        slug = base
        while slug in self._seen:
            self._seen[base] += 1
            slug = f"{base}-{self._seen[base]}"
        self._seen[slug] = 0
        return slug
