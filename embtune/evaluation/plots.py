"""Plots: the alignment/uniformity trajectory of a run (SimCSE Figure 2)."""

from __future__ import annotations

from pathlib import Path


def plot_align_uniform(history: list[dict], path: str | Path, title: str = "") -> None:
    """Uniformity on x, alignment on y, one point per evaluation, labelled with its step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [h["uniformity"] for h in history]
    ys = [h["alignment"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.plot(xs, ys, "-", color="0.7", zorder=1)
    sc = ax.scatter(xs, ys, c=[h["step"] for h in history], cmap="viridis", zorder=2)
    for h in (history[0], history[-1]):
        ax.annotate(f"step {h['step']}", (h["uniformity"], h["alignment"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    fig.colorbar(sc, ax=ax, label="step")
    ax.set_xlabel("uniformity (lower is better)")
    ax.set_ylabel("alignment (lower is better)")
    ax.set_title(title or "alignment vs uniformity")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
