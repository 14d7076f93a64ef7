"""The one ``evaluate()``: used by training (validation and test), ``digits evaluate``, ensembles and the tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digits.data import MNIST
from digits.models.inference import predict_logits
from digits.models.layers import ShiftAverage
from digits.models.weights import load_weights
from digits.spec import EVAL_BATCH_SIZE, NUM_CLASSES
from digits.train.distributed import SINGLE, World, sharded


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST arrays -> (uint8 images, int64 labels) tensors. Copies: the loaded arrays are read-only views."""
    return torch.tensor(images), torch.tensor(labels, dtype=torch.long)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy, loss and everything needed to look at the mistakes."""

    accuracy: float
    loss: float
    labels: np.ndarray  # (N,) int64
    predictions: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, 10) float32

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def confusion(self) -> np.ndarray:
        """(10, 10) counts; row = true digit, column = predicted digit."""
        return np.bincount(self.labels * NUM_CLASSES + self.predictions, minlength=NUM_CLASSES**2).reshape(
            NUM_CLASSES, NUM_CLASSES
        )

    def per_class(self) -> dict[str, list[float]]:
        """Precision, recall and F1 of each digit (0 where undefined)."""
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.nan_to_num(tp / cm.sum(axis=0))
            recall = np.nan_to_num(tp / cm.sum(axis=1))
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}

    def mistakes(self, limit: int = 36) -> np.ndarray:
        """Indices of the worst mistakes: wrong predictions, most confident first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        confidence = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[np.argsort(-confidence)][:limit]

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "n": self.n,
            "errors": int((self.predictions != self.labels).sum()),
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
        }


def predict_probabilities(
    models: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    *,
    tta: bool = False,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: str = "fp32",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Softmax probabilities (N, 10), averaged over ``models`` (an ensemble) and, with ``tta``, over shifts.

    ``tta`` wraps each model in a ``ShiftAverage`` (the image and its four one-pixel shifts); a model built
    with ``tta=True`` averages over shifts already.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    total = torch.zeros(len(images), NUM_CLASSES)
    for model in models:
        net = ShiftAverage(model) if tta else model
        logits = predict_logits(net, images, batch_size=batch_size, precision=precision, device=device)
        total += logits.softmax(dim=1).cpu()
    return total / len(models)


def evaluate(
    model: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    tta: bool = False,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    world: World = SINGLE,
) -> EvalResult:
    """Accuracy and mean cross-entropy of ``model`` (or an ensemble of models, optionally with TTA).

    In a data-parallel job (``world``), each rank predicts its exact share of the images and every rank gets
    the whole set's result: nothing is padded or counted twice.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError("nothing to evaluate: no images")

    def probabilities_of(part: slice) -> torch.Tensor:  # (n, 10)
        return predict_probabilities(
            model, images[part], tta=tta, batch_size=batch_size, precision=precision, device=device
        )

    probabilities = sharded(probabilities_of, len(images), world)
    labels = labels.long().cpu()
    loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), labels).item()
    predictions = probabilities.argmax(dim=1)
    return EvalResult(
        accuracy=(predictions == labels).float().mean().item(),
        loss=loss,
        labels=labels.numpy(),
        predictions=predictions.numpy(),
        probabilities=probabilities.numpy().astype(np.float32),
    )


def validation_temperature(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    world: World = SINGLE,
) -> float:
    """Temperature scaling (Guo et al. 2017) of ``model`` on held-out digits (the validation split, never the test
    set), so that its confidences mean what they say. In a data-parallel job each rank predicts its share."""
    from digits.reading.calibration import fit_temperature

    def logits(part: slice) -> torch.Tensor:  # (n, 10)
        return predict_logits(model, images[part], batch_size=batch_size, precision=precision, device=device)

    return fit_temperature(sharded(logits, len(images), world).numpy(), labels.cpu().numpy())


@dataclass(frozen=True)
class SavedEvaluation:
    """A saved model measured on the test set, with its pictures written beside it."""

    meta: dict[str, Any]  # the weights file's metadata (model name, options, eval precision, ...)
    result: EvalResult
    confusion_png: Path
    mistakes_png: Path


def evaluate_saved(model: str | Path, data: MNIST, out_dir: str | Path | None = None) -> SavedEvaluation:
    """Test accuracy of a saved model (run directory or .safetensors), measured as its run measured it.

    The run's evaluation precision comes from the file, so the figure is the run's own. Writes
    confusion.png and mistakes.png (the 36 most confident mistakes) into ``out_dir``, by default
    beside the model.
    """
    from digits.train import plots

    network, meta = load_weights(model)
    precision = meta.get("eval_precision", "fp32")  # as the run measured its test accuracy
    result = evaluate(network, *to_tensors(data.test_images, data.test_labels), precision=precision)
    src = Path(model)
    out = Path(out_dir) if out_dir else (src if src.is_dir() else src.parent)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{meta['model']}: {result.accuracy:.2%} on {result.n:,} test digits"
    plots.confusion_matrix(result.confusion, out / "confusion.png", title=title)
    worst = result.mistakes(36)
    confidence = result.probabilities[worst, result.predictions[worst]]
    images = data.test_images[worst]
    plots.mistakes_gallery(images, result.labels[worst], result.predictions[worst], confidence, out / "mistakes.png")
    return SavedEvaluation(meta, result, out / "confusion.png", out / "mistakes.png")
