"""The reproduced figures of F1: CAGrad, Nash-MTL and FAMO toy trajectories, Pareto MTL and EPO concave fronts.

What is checked (seconds in all):

* every committed figure has complete metadata (``figure_io.check_meta``: required keys, registered
  methods), a PNG of sensible size next to it, and the command that regenerates it;
* every claim of its match sentence holds on its committed numbers: :func:`claims` of the script is
  re-evaluated here on the JSON (the stored verdicts are not trusted), and it is not vacuous: the same
  claims fail on the numbers of another panel;
* the committed numbers are the script's: a short rerun reproduces them (the toy figures: the losses at
  step ``CHECKPOINT_STEP`` of every run, 2 000 of 35 000..75 000 steps; the concave-front figures are
  cheap, so they are recomputed in full and every claim is checked on the fresh numbers too).

The runs are deterministic (fixed starts, seeded random starts and weights; no BLAS-dependent
reductions beyond float64 dot products of length ≤ 20), so the rerun tolerances are 1e-9 relative to
each task's own loss scale.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "benchmarks" / "results" / "figures"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_f1_{name}", ROOT / "benchmarks" / "figures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


toy = _load("toy_trajectories")
front = _load("concave_front")
SCRIPTS = {**{fid: toy for fid in toy.FIGURES}, **{fid: front for fid in front.FIGURES}}


def _meta(figure_id: str) -> dict:
    return json.loads((FIGURES / f"{figure_id}.json").read_text(encoding="utf-8"))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("figure_id", sorted(SCRIPTS))
def test_committed_figure_is_complete(figure_id):
    from benchmarks.figures.figure_io import check_meta

    meta = _meta(figure_id)
    check_meta(meta)  # required keys present and non-empty, registry ids known
    assert meta["id"] == figure_id and meta["image"] == f"{figure_id}.png"
    assert meta["paper"] == SCRIPTS[figure_id].FIGURES[figure_id]["paper"]
    script = Path(SCRIPTS[figure_id].__file__).name
    assert meta["command"] == f".venv/bin/python benchmarks/figures/{script} {figure_id}"
    width, height = _png_size(FIGURES / meta["image"])
    assert 600 <= width <= 4000 and 250 <= height <= 2000, (width, height)
    assert (FIGURES / meta["image"]).stat().st_size > 20_000  # a drawn figure, not an empty canvas
    assert len(meta["match"]) > 80 and "\\" not in meta["match"]


@pytest.mark.parametrize("figure_id", sorted(SCRIPTS))
def test_match_sentence_claims_hold_on_committed_numbers(figure_id):
    numbers = _meta(figure_id)["numbers"]
    verdicts = SCRIPTS[figure_id].claims(figure_id, numbers)
    assert verdicts, "a figure without checkable claims"
    failed = [claim for claim, ok in verdicts.items() if not ok]
    assert not failed, f"{figure_id}: the match sentence claims {failed}, which the committed numbers contradict"
    assert set(numbers["claims"]) == set(verdicts)  # the stored list is the script's current one


@pytest.mark.parametrize("figure_id", sorted(SCRIPTS))
def test_claims_are_not_vacuous(figure_id):
    """Give every panel the numbers of the panel after it (cyclically): most claims must then fail."""
    numbers = _meta(figure_id)["numbers"]
    panels = [key for key, value in numbers.items() if isinstance(value, dict) and "method" in value]
    rotated = dict(numbers)
    for key, other in zip(panels, panels[1:] + panels[:1]):
        rotated[key] = numbers[other]
    verdicts = SCRIPTS[figure_id].claims(figure_id, rotated)
    assert sum(not ok for ok in verdicts.values()) >= len(verdicts) // 2, verdicts


@pytest.mark.parametrize("figure_id", sorted(toy.FIGURES))
def test_toy_rerun_reproduces_committed_checkpoint(figure_id):
    """The first CHECKPOINT_STEP steps of every run, rerun now, give the committed losses at that step."""
    committed = _meta(figure_id)["numbers"]
    fresh = toy.compute(figure_id, steps=toy.CHECKPOINT_STEP)["numbers"]
    for _, label, _ in toy.FIGURES[figure_id]["methods"]:
        want = np.array(committed[label]["losses_at_checkpoint"])  # (B, 2)
        got = np.array(fresh[label]["final_losses"])  # (B, 2)
        scale = np.maximum(np.abs(want).max(axis=0), 1.0)  # each task's own loss scale, (2,)
        assert np.all(np.abs(got - want) <= 1e-9 * scale), (label, got, want)


@pytest.mark.parametrize("figure_id", sorted(front.FIGURES))
def test_concave_front_recomputed_matches_and_claims_hold(figure_id):
    committed = _meta(figure_id)["numbers"]
    fresh = front.compute(figure_id)["numbers"]
    verdicts = front.claims(figure_id, fresh)
    assert all(verdicts.values()), {claim: ok for claim, ok in verdicts.items() if not ok}
    for key, value in fresh.items():
        if isinstance(value, dict) and "method" in value:
            want, got = np.array(committed[key]["final_losses"]), np.array(value["final_losses"])  # (P, 2)
            assert np.allclose(got, want, rtol=0, atol=1e-9), key
