"""Pictures a person can look at: learning curves, confusion matrix, a gallery of the worst mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict[str, Any]], path: Path) -> None:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(confusion: np.ndarray, path: Path, title: str = "confusion matrix") -> None:
    """Counts with true digits as rows; the diagonal is hidden from the colour scale so errors stand out."""
    plt = _pyplot()
    off = confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.imshow(off, cmap="Reds")
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            ax.text(
                j,
                i,
                str(confusion[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="black" if i != j else "darkgreen",
            )
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mistakes_gallery(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, path: Path
) -> None:
    """A grid of misread digits, captioned 'true → predicted (confidence)'."""
    plt = _pyplot()
    n = len(images)
    cols = min(n, 6) or 1
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p, c in zip(axes.flat, images, labels, predictions, confidence):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{t} → {p} ({c:.0%})", fontsize=9)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
