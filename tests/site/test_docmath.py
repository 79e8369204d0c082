r"""The one source of each method's update rule (its module docstring) and the pseudo-TeX check.

Every registered method's module states its update rule as TeX that converts to MathML; no
deviation and no record summary prints TeX-like text (``x_i``, ``G^T``, ``\alpha``) raw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modl.catalog import load_catalog
from modl.site import docmath
from modl.site.data import load_registry
from tests.site.conftest import REPO_ROOT

MODULES = sorted({"reference_impls/" + str(e.module).replace(".", "/") + ".py" for e in load_registry(REPO_ROOT).values()})

DOC = r'''Title line.

Update rule:
    With :math:`M = G G^\top` and ``max_norm`` the clip:

    .. math::

        \alpha^\star = \arg\min_{\alpha \in \Delta} \lVert G^\top \alpha \rVert^2,
        \qquad d = G^\top \alpha^\star

    Second paragraph.

Deviations:
    D1. One.
'''


def test_update_rule_is_parsed_into_prose_and_display_blocks() -> None:
    blocks = docmath.parse_update_rule(DOC)
    assert [b.kind for b in blocks] == ["text", "math", "text"]
    assert blocks[0].text == r"With :math:`M = G G^\top` and ``max_norm`` the clip:"
    assert blocks[1].text.splitlines() == [r"\alpha^\star = \arg\min_{\alpha \in \Delta} \lVert G^\top \alpha \rVert^2,", r"\qquad d = G^\top \alpha^\star"]
    assert blocks[2].text == "Second paragraph."  # the section ends at "Deviations:"
    assert docmath.parse_update_rule("No section here.\n\nDeviations:\n    D1. x\n") is None


def test_markdown_keeps_math_for_arithmatex_and_escapes_prose() -> None:
    md = docmath.markdown(r"weights :math:`\alpha_i` of ``max_norm`` * not emphasis, :func:`~a.solve_x` and :class:`a.B_c`")
    assert r"\(\alpha_i\)" in md and "<code>max_norm</code>" in md and r"\*" in md
    assert "<code>solve_x</code>" in md and "<code>a.B_c</code>" in md  # Sphinx roles as code, never pseudo-TeX
    block = docmath.block_markdown(docmath.parse_update_rule(DOC))
    assert "\\[\n" in block and r"\mathop{\mathrm{arg\,min}}" in block  # \arg\min rewritten for latex2mathml
    summary = docmath.summary_markdown(r"solve $G G^\top w = 1/w$ for $5 each")
    assert r"\(G G^\top w = 1/w\)" in summary and "&#36;5" in summary  # a lone dollar stays text


@pytest.mark.parametrize(
    "text, found",
    [
        ("(Mα)_i = 1/α_i", [")_i", "α_i"]),
        ("||x||_2 and G^T and x^{-1}", ["|_2", "^T", "^{"]),
        (r"the \alpha weights", [r"\alpha"]),
        ("max_norm, lr_t, update_weights_every, ``g_i``, :math:`g_i`, :func:`~m.f_x`", []),
        ("‖g‖², Gᵀα, α ∈ Δ", []),
    ],
)
def test_pseudo_tex_is_found_outside_math_and_literals(text: str, found: list[str]) -> None:
    assert docmath.pseudo_tex(text) == found


def test_check_tex_reports_unconverted_commands() -> None:
    assert docmath.check_tex(r"\arg\min_w \lVert G^\top w \rVert^2") is None
    assert "\\foo" in docmath.check_tex(r"\foo x")


@pytest.mark.parametrize("path", MODULES)
def test_every_registered_module_states_its_update_rule_in_tex_and_no_pseudo_tex(path: str) -> None:
    assert docmath.problems(REPO_ROOT / path) == []


def test_record_summaries_have_no_pseudo_tex_and_their_math_converts() -> None:
    catalog = load_catalog(REPO_ROOT)
    bad = {}
    for paper in catalog.papers.values():
        found = docmath.pseudo_tex(paper.summary, dollars=True)
        errors = [e for tex in docmath._DOLLAR.findall(paper.summary) if (e := docmath.check_tex(tex))]
        if found or errors:
            bad[paper.id] = found + errors
    assert bad == {}


def test_cli_reports_problems_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.py"
    good.write_text('r"""' + DOC + '"""\n', encoding="utf-8")
    bad = tmp_path / "bad.py"
    bad.write_text('"""No rule.\n\nDeviations:\n    D1. uses G^T.\n"""\n', encoding="utf-8")
    assert docmath.main([str(good)]) == 0
    assert docmath.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "no 'Update rule:' section" in out and "D1: pseudo-TeX ['^T']" in out


def test_results_suites_texts_have_no_pseudo_tex() -> None:
    """Suite titles, descriptions and metric texts are shown on the Results pages as plain text."""
    from reference_impls.bench.suites import SUITES  # a table of data: no torch import

    bad = {
        (suite.id, where): found
        for suite in SUITES
        for where, text in [("title", suite.title), ("description", suite.description)]
        + [(m.id, f"{m.label} {m.description}") for m in suite.metrics]
        if (found := docmath.pseudo_tex(text, dollars=True))
    }
    assert bad == {}
