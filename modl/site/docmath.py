r"""Math in module docstrings and record summaries: one source for the code's reader and the site.

Each implementation module's docstring states its method's update rule in a section

    Update rule:
        Prose with inline math as :math:`G G^\top \alpha = 1/\alpha`.

        .. math::

            d = G^\top \alpha^\star

placed before ``Deviations:``. ``help(module)`` shows the TeX as written (the numpydoc convention); the
site renders the same text: prose through :func:`markdown`, blocks as display math, both converted to
MathML at build time (:mod:`modl.site.math`). Record summaries write inline math as ``$...$``
(:func:`summary_markdown`), which GitHub also renders in the README.

Outside math and ``literals`` no pseudo-TeX may remain (``x_i``, ``)_i``, ``^T``, ``||x||_2``,
``\alpha``): :func:`pseudo_tex` finds it, and the site tests and ``python -m modl.site.docmath PATH``
report it. Nothing here imports torch: modules are read as text and parsed with :mod:`ast`.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from modl.site import escape as E

HEADING = "Update rule:"


@dataclass(frozen=True)
class Block:
    kind: str  # "text" (reST prose with :math: roles and ``literals``) or "math" (display TeX)
    text: str


# --------------------------------------------------------------------------------------------
# Parsing the docstring section
# --------------------------------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_update_rule(docstring: str | None) -> list[Block] | None:
    """The blocks of the docstring's ``Update rule:`` section, or None when it has none.

    The section ends at the first non-blank line indented no more than the heading. Inside it, a
    ``.. math::`` line starts a display block made of the following lines indented deeper than it;
    other lines form prose paragraphs (separated by blank lines).
    """
    if not docstring:
        return None
    lines = docstring.expandtabs().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        return None
    head = _indent(lines[start])
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and _indent(line) <= head:
            break
        body.append(line)
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Block("text", " ".join(paragraph)))
            paragraph.clear()

    i = 0
    while i < len(body):
        line = body[i]
        if line.strip() == ".. math::":
            flush()
            level = _indent(line)
            tex: list[str] = []
            i += 1
            while i < len(body) and (not body[i].strip() or _indent(body[i]) > level):
                tex.append(body[i].strip())
                i += 1
            text = "\n".join(t for t in tex).strip()
            if text:
                blocks.append(Block("math", text))
            continue
        if line.strip():
            paragraph.append(line.strip())
        else:
            flush()
        i += 1
    flush()
    return blocks


@dataclass(frozen=True)
class Deviation:
    label: str  # "D1"
    text: str


_DEVIATIONS_HEAD = re.compile(r"^\s*Deviations\b[^:\n]*:\s*(.*)$")
_ITEM = re.compile(r"^(\s*)(?:\(?(D\d+)\)?|(\d+))[.):]?\s+(.*)$")


def parse_deviations(docstring: str | None) -> list[Deviation]:
    """The numbered list under the ``Deviations:`` heading of a module docstring.

    Items start with ``D1.``, ``D1:``, ``(D1)``, ``D1`` or ``1.``; indented lines continue an item;
    the list ends at the first non-indented line that is not an item, after the list has started.
    """
    if not docstring:
        return []
    lines = docstring.expandtabs().splitlines()
    for start, line in enumerate(lines):
        head = _DEVIATIONS_HEAD.match(line)
        if head:
            break
    else:
        return []
    items: list[list[str]] = []
    labels: list[str] = []
    item_indent = 0  # indentation of the current item's first line (set when an item starts)
    head_indent = len(lines[start]) - len(lines[start].lstrip())
    inline = head.group(1).strip()
    if inline and inline.lower().rstrip(".") in ("none", "no deviations"):
        return []
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if items and indent > item_indent:  # continuation, even if it starts with "2." or "D3"
            items[-1].append(line.strip())
            continue
        item = _ITEM.match(line)
        if item and (item.group(2) or item.group(3)):
            labels.append(item.group(2) or f"D{item.group(3)}")
            items.append([item.group(4).strip()])
            item_indent = indent
            continue
        if items or indent <= head_indent:
            break
    return [Deviation(label, " ".join(parts)) for label, parts in zip(labels, items)]


def module_docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path)))


# --------------------------------------------------------------------------------------------
# TeX: what latex2mathml lacks, and the check
# --------------------------------------------------------------------------------------------

_REWRITES = (
    (re.compile(r"\\arg\s*\\min(?![A-Za-z])"), r"\\mathop{\\mathrm{arg\\,min}}"),
    (re.compile(r"\\arg\s*\\max(?![A-Za-z])"), r"\\mathop{\\mathrm{arg\\,max}}"),
    (re.compile(r"\\argmin(?![A-Za-z])"), r"\\mathop{\\mathrm{arg\\,min}}"),
    (re.compile(r"\\argmax(?![A-Za-z])"), r"\\mathop{\\mathrm{arg\\,max}}"),
)


def prepare_tex(tex: str) -> str:
    """``tex`` with the commands latex2mathml does not know rewritten (``\\arg\\min`` and friends)."""
    for pattern, replacement in _REWRITES:
        tex = pattern.sub(replacement, tex)
    return tex


def check_tex(tex: str) -> str | None:
    """None when ``tex`` converts to MathML without leftovers, else why not (one line)."""
    from latex2mathml.converter import convert

    try:
        out = convert(prepare_tex(tex))
    except Exception as error:  # latex2mathml raises its own exception types
        return f"{type(error).__name__}: {error}"
    raw = re.findall(r"\\[A-Za-z]+", out)
    if raw:
        return f"not converted: {', '.join(sorted(set(raw)))}"
    if "<merror" in out:
        return "latex2mathml reported an error"
    return None


# --------------------------------------------------------------------------------------------
# Pseudo-TeX outside math
# --------------------------------------------------------------------------------------------

_LITERAL = re.compile(r"``.+?``|:(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc):`[^`]+`", re.DOTALL)
_ROLE = re.compile(r":math:`([^`]+)`")
_DOLLAR = re.compile(r"(?<![\\$])\$(?!\s)([^$]+?)(?<!\s)\$(?!\d)")
_PSEUDO = re.compile(
    r"\\[A-Za-z]+"  # \alpha
    r"|(?<!\w)[^\W\d_]_(?:\{|[^\W_]{1,3}(?!\w))"  # x_i, g_12, α_k, x_{i}
    r"|[)\]}|]_[\w{]"  # (Mα)_i, ||x||_2
    r"|\^[\w{(]"  # G^T, x^2, x^{-1}
)


def pseudo_tex(text: str, *, dollars: bool = False) -> list[str]:
    """Fragments of ``text`` that look like TeX written outside math (empty when clean).

    :math:`...` roles and ``literals`` are skipped; with ``dollars`` also ``$...$`` (record summaries).
    """
    text = _LITERAL.sub(" ", text)
    text = _ROLE.sub(" ", text)
    if dollars:
        text = _DOLLAR.sub(" ", text)
    return [m.group(0) for m in _PSEUDO.finditer(text)]


# --------------------------------------------------------------------------------------------
# Markdown for the site
# --------------------------------------------------------------------------------------------


def _prose(part: str) -> str:
    """Escaped Markdown for prose, keeping one space at either end where the text had one."""
    lead = " " if part[:1].isspace() else ""
    trail = " " if part[-1:].isspace() and part.strip() else ""
    return lead + E.md(part) + trail


def _inline_math(tex: str) -> str:
    return r"\(" + prepare_tex(" ".join(tex.split())) + r"\)"


_SEGMENT = re.compile(r"``(.+?)``|:math:`([^`]+)`|:(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`", re.DOTALL)


def markdown(text: str) -> str:
    """reST prose as Markdown: escaped text; ``literals`` and Sphinx cross-references (:func:`~a.b`) as
    <code> (``~`` keeps the last name, as Sphinx shows it); :math:`tex` as arithmatex inline math."""
    out: list[str] = []
    pos = 0
    for match in _SEGMENT.finditer(text):
        out.append(_prose(text[pos : match.start()]))
        literal, tex, reference = match.groups()
        if tex is not None:
            out.append(_inline_math(tex))
        else:
            if reference is not None and match.group(0).split("`", 1)[1].startswith("~"):
                reference = reference.rsplit(".", 1)[-1]
            out.append(f"<code>{E.html(literal if literal is not None else reference)}</code>")
        pos = match.end()
    out.append(_prose(text[pos:]))
    return "".join(out).strip()


def summary_markdown(text: str) -> str:
    """Record text with ``$tex$`` inline math as Markdown (escaped prose, arithmatex inline math)."""
    out: list[str] = []
    pos = 0
    for match in _DOLLAR.finditer(text):
        out.append(_prose(text[pos : match.start()]))
        out.append(_inline_math(match.group(1)))
        pos = match.end()
    out.append(_prose(text[pos:]))
    return "".join(out).strip()


def block_markdown(blocks: list[Block]) -> str:
    """The whole update-rule section as Markdown: paragraphs and display math (arithmatex ``\\[ \\]``)."""
    out: list[str] = []
    for block in blocks:
        if block.kind == "math":
            out.append("\\[\n" + prepare_tex(block.text) + "\n\\]")
        else:
            out.append(markdown(block.text))
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# The check of one module
# --------------------------------------------------------------------------------------------


def problems(path: Path | str, *, require_rule: bool = True) -> list[str]:
    """What is wrong with the math of a module's docstring: a missing update rule, TeX that does not
    convert, pseudo-TeX in the rule's prose or in a deviation (one line each, prefixed by the path)."""
    path = Path(path)
    try:
        docstring = module_docstring(path)
    except (OSError, SyntaxError) as error:
        return [f"{path}: cannot be read: {error}"]
    out: list[str] = []
    blocks = parse_update_rule(docstring)
    if blocks is None:
        if require_rule:
            out.append(f"{path}: no '{HEADING}' section in the module docstring")
        blocks = []
    elif not any(b.kind == "math" for b in blocks):
        out.append(f"{path}: the update rule has no '.. math::' block")
    prose = [("update rule prose", b.text) for b in blocks if b.kind == "text"]
    prose += [(d.label, d.text) for d in parse_deviations(docstring)]
    for block in blocks:
        if block.kind == "math":
            error = check_tex(block.text)
            if error:
                out.append(f"{path}: update rule: math block {block.text[:60]!r}: {error}")
    for where, text in prose:  # the rule's paragraphs and every deviation: inline math converts, no pseudo-TeX
        out += [f"{path}: {where}: :math:`{tex[:60]}`: {error}" for tex in _ROLE.findall(text) if (error := check_tex(tex))]
        bad = pseudo_tex(text)
        if bad:
            out.append(f"{path}: {where}: pseudo-TeX {bad[:6]}")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m modl.site.docmath PATH...``: the problems of each module (exit 1 when any)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m modl.site.docmath reference_impls/<family>/<module>.py ...", file=sys.stderr)
        return 2
    found = [line for arg in args for line in problems(arg)]
    for line in found:
        print(line)
    if not found:
        print(f"ok: {len(args)} module(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
