"""Escaping of record text where it enters Markdown or HTML (the site's use of modl.render.markdown).

Every string that comes from a record (title, authors, summary, venue note, ...) goes through one
of these functions before it is placed in a generated page, so that text such as
``<script>alert(1)</script>`` or ``](javascript:alert(1))`` is shown as text and never becomes markup,
a link, math or a table cell boundary. The escaping rules themselves live in
:mod:`modl.render.markdown`, shared with the README; this module only names the site's contexts.

* :func:`md` — Markdown inline text (headings, table cells, list items, link text).
* :func:`html` — text inside raw HTML elements; :func:`attr` — attribute values.
* :func:`title` — a page's ``title`` front matter, which mkdocs-material inserts into its templates
  as HTML (``<title>``, the header, tag listings), so it must already be escaped HTML.
* :func:`link` — an external link as an inline ``<a>`` element.
"""

from __future__ import annotations

import json

from modl.render.markdown import escape_html, escape_markdown_text


def md(text: object) -> str:
    """Record text as inert Markdown inline text."""
    return escape_markdown_text(str(text))


def html(text: object) -> str:
    """Record text as HTML element content."""
    return escape_html(str(text))


def attr(text: object) -> str:
    """Record text (or a URL) as a double-quoted HTML attribute value."""
    return escape_html(str(text))


def title(text: object) -> str:
    """Front matter ``title:`` value: escaped HTML on one line, quoted as a YAML (JSON) string."""
    return json.dumps(escape_html(" ".join(str(text).split())))


def link(text: object, url: str) -> str:
    """An external link (record URLs are https:// URLs checked by the schema) as inline raw HTML."""
    return f'<a href="{attr(url)}">{md(text)}</a>'
