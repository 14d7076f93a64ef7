"""Pictures a person can look at: learning curves, confusion matrix, a gallery of the worst mistakes,
reliability diagram, risk against coverage.

Each picture is built as a matplotlib figure (``*_figure``, what the tests look at) and written as a PNG
through :func:`digits.files.atomic_write`, like every other file digits writes, or turned into PNG bytes
(:func:`png_bytes`) for a page that carries its pictures inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from digits.reading.calibration import Reliability


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` (atomically) and free it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        _pyplot().close(fig)


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as the bytes of a PNG file, and freed."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        _pyplot().close(fig)
    return buffer.getvalue()


def learning_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Write :func:`learning_curves_figure` as a PNG at ``path``."""
    _save(learning_curves_figure(history), path)


def learning_curves_figure(history: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, training vs validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "training"), ("val", "validation")):
        if any(h.get(f"{key}_loss") is not None for h in history):
            ax_loss.plot(epochs, [h.get(f"{key}_loss") for h in history], marker="o", label=label)
            ax_acc.plot(epochs, [h.get(f"{key}_accuracy") for h in history], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: np.ndarray, path: Path, title: str = "confusion matrix") -> None:
    """Write :func:`confusion_figure` as a PNG at ``path``."""
    _save(confusion_figure(confusion, title), path)


def confusion_figure(confusion: np.ndarray, title: str = "confusion matrix") -> Figure:
    """Counts with true digits as rows, predicted as columns, and a colour bar for the mistakes.

    The diagonal (digits read right) is left out of the colour scale, or its thousands would wash the few
    mistakes out to white; each count is printed in black or white, whichever stands out more on its cell.
    """
    plt = _pyplot()
    off = confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    fig, ax = plt.subplots(figsize=(7.4, 6))
    image = ax.imshow(off, cmap="Reds", vmin=0)
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=MaxNLocator(integer=True))  # counts: no 0.5
    bar.set_label("mistakes (the diagonal, read right, is not coloured)")
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            dark = _is_dark(image.cmap(image.norm(off[i, j])))
            if i == j:  # read right: green, and bold so the diagonal reads as a line
                color, weight = ("palegreen" if dark else "darkgreen"), "bold"
            else:
                color, weight = ("white" if dark else "black"), "normal"
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8, color=color, weight=weight)
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _is_dark(rgba: tuple[float, ...]) -> bool:
    """True when white text stands out more than black on this colour (WCAG 2 contrast ratios).

    Relative luminance L of the sRGB colour; white's contrast is 1.05 / (L + 0.05), black's (L + 0.05) / 0.05,
    and they are equal at L = 0.179.
    """
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return luminance < 0.179


def mistakes_gallery(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, path: Path
) -> None:
    """Write :func:`mistakes_figure` as a PNG at ``path``."""
    _save(mistakes_figure(images, labels, predictions, confidence), path)


def mistakes_figure(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray) -> Figure:
    """A grid of misread digits, each captioned 'true → predicted (confidence)', as the title says.

    ``images`` (N, 28, 28) uint8; ``labels``, ``predictions`` (N,) digits; ``confidence`` (N,) the model's
    probability for its (wrong) prediction.
    """
    plt = _pyplot()
    n = len(images)
    cols = min(n, 6) or 1
    rows = max(1, -(-n // cols))
    # At least 4.8 inches wide, so the title fits over a gallery of one or two.
    fig, axes = plt.subplots(rows, cols, figsize=(max(cols * 1.6, 4.8), rows * 1.8 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p, c in zip(axes.flat, images, labels, predictions, confidence):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{t} → {p} ({c:.0%})", fontsize=9)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("Most confident mistakes: true → predicted (confidence)", fontsize=10)
    fig.tight_layout()
    return fig


def reliability_figure(raw: Reliability, scaled: Reliability, temperature: float) -> Figure:
    """Reliability diagrams side by side: the raw softmax and after temperature scaling.

    Each bar is one bin of confidence: its height the share right, the diagonal where it should be; the
    bins' counts are printed above the bars (most answers sit in the last bin).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    for ax, rel, title in (
        (axes[0], raw, f"raw softmax: ECE {raw.ece:.2%}"),
        (axes[1], scaled, f"temperature {temperature:.2f}: ECE {scaled.ece:.2%}"),
    ):
        centres, width = (rel.edges[:-1] + rel.edges[1:]) / 2, np.diff(rel.edges)
        filled = rel.count > 0
        ax.bar(centres[filled], rel.accuracy[filled], width=width[filled] * 0.9, color="tab:blue", label="share right")
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
        ax.scatter(
            rel.confidence[filled], rel.accuracy[filled], color="tab:orange", s=12, zorder=3, label="mean confidence"
        )
        for x, y, n in zip(centres[filled], rel.accuracy[filled], rel.count[filled]):
            ax.text(x, min(y + 0.02, 1.02), str(n), ha="center", fontsize=7, rotation=90)
        ax.set(xlim=(0, 1), ylim=(0, 1.1), xlabel="confidence", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share right")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability on the MNIST test set (15 bins; numbers: answers per bin)", fontsize=10)
    fig.tight_layout()
    return fig


def risk_coverage_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Error rate against the share answered, one line per model: how much a threshold on confidence buys."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, (coverage, risk) in curves.items():
        ax.plot(coverage, risk * 100, label=name)
    ax.set(xlabel="share of test digits answered (most confident first)", ylabel="error rate among them (%)")
    ax.set(title="Risk against coverage", xlim=(0.5, 1.0), ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def study_history(trials: list[tuple[int, float | None, str]], path: Path) -> None:
    """Write :func:`study_history_figure` as a PNG at ``path``."""
    _save(study_history_figure(trials), path)


def study_history_figure(trials: list[tuple[int, float | None, str]]) -> Figure:
    """A search's trials (number, validation accuracy, state) in order, and the best so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(n, v) for n, v, state in trials if state == "complete" and v is not None]
    if done:
        ax.scatter(*zip(*done), label="complete", color="tab:blue")
        best, line = -np.inf, []
        for n, v in done:
            best = max(best, v)
            line.append((n, best))
        ax.step(*zip(*line), where="post", color="tab:orange", label="best so far")
    pruned = [(n, v) for n, v, state in trials if state == "pruned" and v is not None]
    if pruned:  # at the accuracy they had when they were stopped
        ax.scatter(*zip(*pruned), marker="x", color="grey", label="pruned")
    failed = [n for n, _, state in trials if state == "fail"]
    if failed:  # no accuracy to show: marked along the bottom
        low = min((v for _, v in done + pruned), default=0.0)
        ax.scatter(failed, [low] * len(failed), marker="v", color="grey", label="failed")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered
    ax.set(xlabel="trial", ylabel="validation accuracy", title="optimization history")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def param_importances(importances: dict[str, float], path: Path) -> None:
    """Write :func:`param_importances_figure` as a PNG at ``path``."""
    _save(param_importances_figure(importances), path)


def param_importances_figure(importances: dict[str, float]) -> Figure:
    """How much of the validation accuracy's variation each searched value explains (Optuna's fANOVA)."""
    plt = _pyplot()
    names = list(importances)[::-1]  # the most important at the top
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (fANOVA)", title="parameter importance")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
