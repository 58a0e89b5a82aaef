"""Charts of a job, drawn by matplotlib's object API (no pyplot: no global state, safe in the
API's threads): the metric curves, the lr search's scores and the unknown-N ranking. Each
returns SVG (for pages) or PNG (for the PDF) bytes, and has a one-sentence text alternative."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

INK, MUTED, ACCENT, WARN = "#1b1f24", "#57606a", "#0b5cad", "#b35900"
LINE_COLOURS = (ACCENT, "#2e7d32", "#8e24aa", "#c62828", "#00838f")


def _figure(width: float = 6.0, height: float = 3.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, color="#d0d7de", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=8)


def _save(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=160 if fmt == "png" else 100,
                metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def metric_curves(metrics: list[str], points: list[dict[str, Any]], fmt: str = "svg") -> bytes:
    """One panel per metric over the iterations ("loss" first, log scale when positive)."""
    shown = metrics or ["loss"]
    fig = _figure(height=1.2 + 1.4 * len(shown))
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for k, (ax, name) in enumerate(zip(axes, shown)):
        xs = [p["iteration"] for p in points if p.get(name) is not None]
        ys = [p[name] for p in points if p.get(name) is not None]
        _style(ax)
        if xs:
            ax.plot(xs, ys, color=LINE_COLOURS[k % len(LINE_COLOURS)], linewidth=1.4)
            if min(ys) > 0 and max(ys) / min(ys) > 20:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no points yet", transform=ax.transAxes, ha="center", color=MUTED)
        ax.set_ylabel(name, color=INK, fontsize=9)
    axes[-1].set_xlabel("iteration", color=INK, fontsize=9)
    return _save(fig, fmt)


def metric_curves_text(metrics: list[str], points: list[dict[str, Any]]) -> str:
    if not points:
        return "Metric curves: no points recorded yet."
    last = points[-1]
    values = ", ".join(f"{m} {last[m]:.4g}" for m in metrics if last.get(m) is not None)
    return f"Metric curves over {len(points)} recorded points; at iteration {last['iteration']}: {values}."


def lr_search(candidates: list[dict[str, Any]], chosen: float | None, fmt: str = "svg") -> bytes:
    """Each candidate learning rate's score (lower is better), the chosen one marked."""
    fig = _figure(height=2.6)
    ax = fig.subplots()
    _style(ax)
    scored = [c for c in candidates if c.get("score") is not None]
    ax.plot([c["lr"] for c in scored], [c["score"] for c in scored], "o-", color=ACCENT, linewidth=1.2)
    if chosen is not None:
        ax.axvline(chosen, color=WARN, linestyle="--", linewidth=1.2, label=f"chosen lr {chosen:g}")
        ax.legend(fontsize=8, frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("candidate training learning rate", color=INK, fontsize=9)
    ax.set_ylabel("score (mean loss)", color=INK, fontsize=9)
    return _save(fig, fmt)


def lr_search_text(candidates: list[dict[str, Any]], chosen: float | None) -> str:
    scored = [c for c in candidates if c.get("score") is not None]
    return (f"Learning-rate search: {len(scored)} of {len(candidates)} candidates scored"
            + (f"; lr {chosen:g} was chosen (lowest score)." if chosen is not None else "."))


def ranking(gradient_norms: list[float], significant: list[bool], fmt: str = "svg") -> bytes:
    """Images sorted by their total-gradient norm; insignificant ones (likely surplus dummies
    when the dataset size is unknown) in a second colour."""
    order = sorted(range(len(gradient_norms)), key=lambda i: -gradient_norms[i])
    fig = _figure(height=2.6)
    ax = fig.subplots()
    _style(ax)
    colours = [ACCENT if significant[i] else WARN for i in order]
    values = [gradient_norms[i] for i in order]
    ax.bar(range(len(order)), values, color=colours, width=0.8)
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xticks([])
    ax.set_xlabel("reconstructed images, by gradient norm", color=INK, fontsize=9)
    ax.set_ylabel("total-gradient norm", color=INK, fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=ACCENT, label="significant"), Patch(color=WARN, label="insignificant")],
              fontsize=8, frameon=False)
    return _save(fig, fmt)


def ranking_text(gradient_norms: list[float], significant: list[bool]) -> str:
    return (f"Ranking of {len(gradient_norms)} reconstructed images by total-gradient norm: "
            f"{sum(significant)} significant, {len(significant) - sum(significant)} insignificant.")
