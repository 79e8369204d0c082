"""Plots of toy runs (matplotlib, Agg backend): decision space for 2-D problems, objective space always.

* n = 2 (cagrad-toy, biquad with n = 2): left panel, the contours of f_1 + ... + f_K over the
  decision space with the Pareto set (curve or segment) and the trajectories (start ○, end ×);
  right panel, the objective space.
* otherwise: the objective space only: the analytic front (a curve for K = 2, a point cloud for
  K = 3) and the loss trajectories of every starting point.
* set methods (``modl run METHOD --solutions N``): the same panels, plus the found set (filled
  markers) and the method's target rays from the ideal point where it has them.
* ``clusters`` (m objectives f_i = ||x − a_i||², no front to draw): left panel (n = 2), the anchors
  coloured by planted cluster, each cluster's minimum enclosing circle, the proven optimal centres
  (sum-of-minimum ★, minimax ◆), the trajectories and the found solutions; right panel, the mean and
  worst objective of the set, (1/m) Σ_i min_p f_i and max_i min_p f_i, against their proven optima.

The PNG is written atomically (temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    Local on purpose: reference_impls imports nothing from the catalog engine (modl).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _decision_window(problem: Any, X: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    if problem.id == "cagrad-toy":
        from reference_impls.problems.cagrad_toy import PLOT_RANGE

        return PLOT_RANGE, PLOT_RANGE
    pts = X.reshape(-1, 2)
    if problem.has_pareto_set:
        pts = np.concatenate([pts, problem.pareto_set(50).cpu().numpy()])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def _draw_set(ax: Any, result: Any, K: int) -> None:
    """The final set (filled markers) and, where the method has target rays and the problem an ideal
    point z, the rays z + t·v_p up to the farthest solution (dashed)."""
    Ff = result.f_final.detach().cpu().numpy()  # (P, K)
    if K == 3:
        ax.scatter(Ff[:, 0], Ff[:, 1], Ff[:, 2], s=40, color="crimson", depthshade=False, label="found set", zorder=6)
    elif K == 2:
        ax.scatter(Ff[:, 0], Ff[:, 1], s=50, color="crimson", zorder=6, label="found set")
    rays, z = result.extra.get("target_rays"), result.extra.get("ideal")
    if K == 2:  # zoom on the front and the found set (the trajectories may start far away)
        pts = [Ff] + [line.get_xydata() for line in ax.get_lines() if line.get_label() == "Pareto front"]
        pts = np.concatenate(pts)
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if rays is None or z is None or K not in (2, 3):
        return
    V = np.asarray(torch.as_tensor(rays).detach().cpu(), dtype=np.float64)  # (P, K)
    z = np.asarray(torch.as_tensor(z).detach().cpu(), dtype=np.float64)  # (K,)
    length = 1.1 * float(np.linalg.norm(Ff - z, axis=1).max())
    for p, v in enumerate(V):
        end = z + length * v / max(float(np.linalg.norm(v)), 1e-300)
        seg = np.stack([z, end])  # (2, K)
        kw = dict(color="0.3", linestyle="--", linewidth=0.8, label="target rays" if p == 0 else None)
        ax.plot(*(seg[:, k] for k in range(K)), **kw)


def plot_result(result: Any, problem: Any, path: str | Path) -> Path:
    """Draw ``result`` (a :class:`~reference_impls.runner.RunResult`) of ``problem`` into the PNG ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'modl[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    if callable(getattr(problem, "optimal_centres", None)) and hasattr(problem, "labels"):
        fig = _clusters_figure(plt, result, problem)
    else:
        fig = _front_figure(plt, result, problem)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    try:
        _write_atomically(Path(path), buffer.getvalue())
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def _clusters_figure(plt: Any, result: Any, problem: Any) -> Any:
    """The ``clusters`` problem: anchors, optimal centres and the found set (n = 2), and the set values over time."""
    F = result.f.detach().cpu().numpy()  # (T, P, m)
    X = result.x.detach().cpu().numpy() if result.x is not None else None  # (T, P, n)
    decision = X is not None and X.shape[2] == 2
    is_set = "metrics" in result.extra
    fig = plt.figure(figsize=(11 if decision else 5.5, 5), dpi=100)
    if decision:
        ax = fig.add_subplot(1, 2, 1)
        A = problem.anchors.detach().cpu().numpy()  # (m, 2)
        labels = problem.labels.cpu().numpy()  # (m,)
        cmap = plt.get_cmap("tab10")
        for c in range(problem.k):
            ax.scatter(A[labels == c, 0], A[labels == c, 1], s=14, color=cmap(c % 10), alpha=0.8, zorder=2,
                       label="anchors a_i (by planted cluster)" if c == 0 else None)  # fmt: skip
        centres = problem.minimax_centres().detach().cpu().numpy()  # (k, 2)
        radii = np.sqrt(problem._meb_r2)  # R_c (k,)
        for c, (centre, radius) in enumerate(zip(centres, radii)):
            ax.add_patch(plt.Circle(centre, radius, fill=False, linestyle=":", color=cmap(c % 10), linewidth=1))
        opt = problem.optimal_centres().detach().cpu().numpy()  # (k, 2)
        ax.scatter(opt[:, 0], opt[:, 1], marker="*", s=220, color="gold", edgecolor="k", zorder=5, label="optimal centres (sum-of-min)")
        ax.scatter(centres[:, 0], centres[:, 1], marker="D", s=40, facecolor="none", edgecolor="k", zorder=5, label="minimax centres (TCH-Set)")
        for b in range(X.shape[1]):
            ax.plot(X[:, b, 0], X[:, b, 1], color="0.35", linewidth=1, zorder=3)
            ax.plot(X[0, b, 0], X[0, b, 1], "o", color="0.35", markersize=4, zorder=3)
        ax.scatter(X[-1, :, 0], X[-1, :, 1], marker="X", s=70, color="crimson", edgecolor="k", zorder=6,
                   label="found set" if is_set else "final points")  # fmt: skip
        pts = np.concatenate([A, X.reshape(-1, 2)])
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(f"{result.method} on {result.problem}: decision space (m = {problem.m}, k = {problem.k})")
        ax.legend(loc="best", fontsize=7)
    ax = fig.add_subplot(1, 2 if decision else 1, 2 if decision else 1)
    steps = np.arange(F.shape[0])
    if is_set:
        served = F.min(axis=1)  # min_p f_i at each recorded step, (T, m)
        ax.plot(steps, served.mean(1), color="tab:blue", label="mean objective (1/m) Σ min_p f_i")
        ax.plot(steps, served.max(1), color="tab:red", label="worst objective max_i min_p f_i")
        if F.shape[1] == problem.k:  # the proven optima are for k solutions
            ax.axhline(problem.optimal_sum_of_min(), color="tab:blue", linestyle="--", linewidth=1, label="optimal sum-of-min / m")
            ax.axhline(problem.optimal_tch_set(), color="tab:red", linestyle="--", linewidth=1, label="optimal minimax")
    else:
        for b in range(F.shape[1]):
            ax.plot(steps, F[:, b, :].mean(1), linewidth=1, label="(1/m) Σ_i f_i per run" if b == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("recorded step")
    ax.set_title(f"{result.method} on {result.problem}: {F.shape[1]} {'solutions' if is_set else 'runs'}")
    ax.legend(loc="upper right", fontsize=7)
    return fig


def _front_figure(plt: Any, result: Any, problem: Any) -> Any:
    """Every other problem: the decision space (n = 2) and the objective space with the analytic front."""
    F = result.f.detach().cpu().numpy()  # (T, B, K)
    K = F.shape[2]
    X = result.x.detach().cpu().numpy() if result.x is not None else None  # (T, B, n)
    decision = X is not None and X.shape[2] == 2
    colors = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(11 if decision else 5.5, 5), dpi=100)

    if decision:
        ax = fig.add_subplot(1, 2, 1)
        (x0, x1), (y0, y1) = _decision_window(problem, X)
        gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=problem.dtype, device=problem.device)
        with torch.no_grad():
            total = problem.losses(grid).sum(1).cpu().numpy().reshape(gx.shape)  # f_1 + ... + f_K
        cs = ax.contour(gx, gy, total, levels=25, cmap="viridis", linewidths=0.8)
        fig.colorbar(cs, ax=ax, shrink=0.8, label="sum of the losses")
        if problem.has_pareto_set:
            ps = problem.pareto_set(400).cpu().numpy()
            ax.plot(ps[:, 0], ps[:, 1], color="0.5", linewidth=5, alpha=0.6, zorder=1, label="Pareto set")
        for b in range(X.shape[1]):
            ax.plot(X[:, b, 0], X[:, b, 1], color=colors(b % 10), linewidth=1.5, zorder=3)
            ax.plot(X[0, b, 0], X[0, b, 1], "o", color=colors(b % 10), zorder=4)
            ax.plot(X[-1, b, 0], X[-1, b, 1], "x", color="k", markersize=8, zorder=5)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(f"{result.method} on {result.problem}: decision space")
        if problem.has_pareto_set:
            ax.legend(loc="lower right", fontsize=8)

    if K == 3:
        ax = fig.add_subplot(1, 2 if decision else 1, 2 if decision else 1, projection="3d")
    else:
        ax = fig.add_subplot(1, 2 if decision else 1, 2 if decision else 1)
    if problem.has_pareto_front and K in (2, 3):
        front = problem.pareto_front(2000 if K == 3 else 500).cpu().numpy()
        if K == 2:
            ax.plot(front[:, 0], front[:, 1], color="0.5", linewidth=3, alpha=0.7, label="Pareto front")
        else:
            ax.scatter(front[:, 0], front[:, 1], front[:, 2], s=1, color="0.6", alpha=0.4, label="Pareto front")
    for b in range(F.shape[1]):
        c = colors(b % 10)
        if K == 3:
            ax.plot(F[:, b, 0], F[:, b, 1], F[:, b, 2], color=c, linewidth=1.5)
            ax.scatter(F[-1:, b, 0], F[-1:, b, 1], F[-1:, b, 2], color="k", marker="x", s=40)
        else:
            ax.plot(F[:, b, 0], F[:, b, 1], color=c, linewidth=1.5)
            ax.plot(F[0, b, 0], F[0, b, 1], "o", color=c)
            ax.plot(F[-1, b, 0], F[-1, b, 1], "x", color="k", markersize=8)
    if "metrics" in result.extra:  # a set method: the found set, and the target rays where the method has them
        _draw_set(ax, result, K)
    ax.set_xlabel("$f_1$")
    ax.set_ylabel("$f_2$")
    if K == 3:
        ax.set_zlabel("$f_3$")
    title = f"{result.method} on {result.problem}: objective space"
    if "metrics" in result.extra:
        title = f"{result.method} on {result.problem}: {F.shape[1]} solutions"
    ax.set_title(title)
    if (problem.has_pareto_front and K in (2, 3)) or "metrics" in result.extra:
        ax.legend(loc="upper right", fontsize=8)
    return fig


__all__ = ["plot_result"]
