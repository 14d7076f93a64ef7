"""How well a model reads corrupted digits: accuracy per corruption and severity, mean corrupted accuracy, mCE.

The corruptions are :data:`digits.train.corruptions.CORRUPTIONS`; every corrupted batch goes through the one
:func:`digits.train.evaluate.evaluate`. The images of corruption ``c`` at severity ``s`` come from their own
random stream, ``np.random.default_rng([seed, crc32(c), s])``, so a result does not depend on which other
corruptions or severities were measured with it, and two models measured with the same seed see the same
images.

Mean corrupted accuracy is the mean over every (corruption, severity) measured. The mean corruption error
(mCE) is Hendrycks & Dietterich 2019's ("Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations"): for each corruption, the model's errors summed over the severities divided by a baseline
model's (here the ``seed`` preset's), then averaged over the corruptions; below 1 the model does better
than the baseline.

What the model was trained with is stated beside its figures (:func:`training_transforms`), with the
corruptions that training resembled (:func:`training_resembles`): a model trained on rotations is not
surprised by the rotate corruption.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.errors import ConfigError
from digits.spec import EVAL_BATCH_SIZE, SHIPPED_SAFETENSORS
from digits.train.config import TrainConfig
from digits.train.corruptions import CORRUPTIONS, SEVERITIES, corrupt

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from digits.data import MNIST
    from digits.reading import Recognizer

__all__ = [
    "RobustnessResult",
    "evaluate_robustness",
    "evaluate_robustness_reading",
    "evaluate_robustness_saved",
    "training_configs_of",
    "training_resembles",
    "training_transforms",
    "validation_digits",
]

JSON_NAME = "robustness.json"
# Ends the model's name in a result measured through digits' reader.
READER_SUFFIX = " through digits' reader"
CHART_NAME = "robustness.png"
EXAMPLES_NAME = "robustness_examples.png"


def corruption_rng(seed: int, corruption: str, severity: int) -> np.random.Generator:
    """The random stream of one (corruption, severity): the same whatever else is measured beside it."""
    return np.random.default_rng([seed, zlib.crc32(corruption.encode()), severity])


@dataclass(frozen=True)
class RobustnessResult:
    """A model's accuracy on clean and corrupted test digits.

    ``accuracy[corruption][severity]`` is the share read right (0 to 1), for every corruption and severity
    measured (each corruption has the same severities). ``training_transforms`` says in words what the model
    was trained with and ``training_resembles`` names the corruptions that resembles; both are None when the
    training config is unknown.
    """

    clean_accuracy: float
    accuracy: dict[str, dict[int, float]]
    seed: int
    n: int  # digits measured
    model: str = ""  # the network's name, e.g. fastnet
    source: str = ""  # the run directory or model file measured
    training_transforms: tuple[str, ...] | None = None
    training_resembles: tuple[str, ...] | None = None
    digits: str = "test"  # which digits were measured: MNIST's "test" set, or the run's "validation" split

    def __post_init__(self) -> None:
        levels = {tuple(by.keys()) for by in self.accuracy.values()}
        if not self.accuracy or len(levels) != 1 or not next(iter(levels)):
            raise ValueError("a robustness result needs each corruption measured at the same, non-empty severities")

    @property
    def corruptions(self) -> tuple[str, ...]:
        return tuple(self.accuracy)

    @property
    def severities(self) -> tuple[int, ...]:
        return tuple(next(iter(self.accuracy.values())))

    @property
    def mean_corrupted_accuracy(self) -> float:
        """Mean accuracy over every corruption and severity measured."""
        return float(np.mean([a for by in self.accuracy.values() for a in by.values()]))

    @property
    def mean_corrupted_accuracy_by_severity(self) -> dict[int, float]:
        """Severity -> mean accuracy over the corruptions."""
        return {s: float(np.mean([by[s] for by in self.accuracy.values()])) for s in self.severities}

    @property
    def through_reader(self) -> bool:
        """True when the digits were read as pictures by digits' reader (:func:`evaluate_robustness_reading`)."""
        return self.model.endswith(READER_SUFFIX)

    def corruption_accuracy(self, corruption: str) -> float:
        """One corruption's accuracy, averaged over the severities measured."""
        return float(np.mean(list(self.accuracy[corruption].values())))

    def corruption_errors(self, baseline: RobustnessResult) -> dict[str, float]:
        """Corruption -> CE: this model's errors summed over severities, over the baseline's (Hendrycks 2019).

        The two results must hold the same corruptions and severities. A corruption the baseline never got
        wrong has no ratio and is left out.
        """
        if baseline.severities != self.severities or set(baseline.corruptions) != set(self.corruptions):
            raise ValueError(
                "the baseline was measured on other corruptions or severities "
                f"(severities {list(baseline.severities)} against {list(self.severities)}); measure both alike"
            )
        out = {}
        for c, by in self.accuracy.items():
            theirs = sum(1.0 - baseline.accuracy[c][s] for s in self.severities)
            if theirs > 0:
                out[c] = sum(1.0 - a for a in by.values()) / theirs
        return out

    def mean_corruption_error(self, baseline: RobustnessResult) -> float:
        """mCE: the mean of :meth:`corruption_errors` (1.0: as good as the baseline, lower is better)."""
        errors = self.corruption_errors(baseline)
        return float(np.mean(list(errors.values()))) if errors else float("nan")

    def to_dict(self, baseline: RobustnessResult | None = None) -> dict[str, Any]:
        """A JSON-ready record; ``mean_corrupted_accuracy`` is its first key. With a baseline, also the mCE."""
        record: dict[str, Any] = {
            "mean_corrupted_accuracy": self.mean_corrupted_accuracy,
            "mean_corrupted_accuracy_by_severity": {
                str(s): a for s, a in self.mean_corrupted_accuracy_by_severity.items()
            },
            "clean_accuracy": self.clean_accuracy,
            "accuracy": {c: {str(s): a for s, a in by.items()} for c, by in self.accuracy.items()},
            "corruption_accuracy": {c: self.corruption_accuracy(c) for c in self.corruptions},
            "severities": list(self.severities),
            "seed": self.seed,
            "n": self.n,
            "digits": self.digits,
            "model": self.model,
            "source": self.source,
            "training_transforms": None if self.training_transforms is None else list(self.training_transforms),
            "training_resembles": None if self.training_resembles is None else list(self.training_resembles),
        }
        if baseline is not None:
            record["baseline"] = {"source": baseline.source, "model": baseline.model}
            record["mean_corruption_error"] = self.mean_corruption_error(baseline)
            record["corruption_errors"] = self.corruption_errors(baseline)
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessResult:
        """The result :meth:`to_dict` wrote (e.g. a robustness.json read back)."""
        try:
            transforms, resembles = data.get("training_transforms"), data.get("training_resembles")
            return cls(
                clean_accuracy=float(data["clean_accuracy"]),
                accuracy={c: {int(s): float(a) for s, a in by.items()} for c, by in data["accuracy"].items()},
                seed=int(data["seed"]),
                n=int(data["n"]),
                model=str(data.get("model", "")),
                source=str(data.get("source", "")),
                training_transforms=None if transforms is None else tuple(transforms),
                training_resembles=None if resembles is None else tuple(resembles),
                digits=str(data.get("digits", "test")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a robustness record: {exc!r}") from exc


def _check_choice(corruptions: Sequence[str], severities: Sequence[int]) -> None:
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}; choose from: {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if isinstance(s, bool) or s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must be among 1, 2, 3, 4, 5, got {list(severities)}")
    if not corruptions:
        raise ValueError("no corruptions to measure")


def evaluate_robustness(
    model: nn.Module | Sequence[nn.Module],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RobustnessResult:
    """Accuracy of ``model`` on ``images`` (N, 28, 28) uint8 with ``labels`` (N,), clean and under each corruption.

    ``corruptions`` defaults to all of :data:`~digits.train.corruptions.CORRUPTIONS`, in its order; each is
    measured at every one of ``severities``. ``progress`` is told each corruption as it is measured.
    """
    from digits.train.evaluate import evaluate, to_tensors

    def accuracy(x: np.ndarray) -> float:
        return evaluate(
            model, *to_tensors(x, labels), batch_size=batch_size, precision=precision, device=device
        ).accuracy

    return _measure(accuracy, images, corruptions, severities, seed, progress)


def evaluate_robustness_reading(
    recognizer: Recognizer,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RobustnessResult:
    """:func:`evaluate_robustness` of digits' reader: each corrupted 28x28 read as a picture, the way
    ``digits predict`` reads one (background, polarity, contrast and framing found, then the model).

    A digit is read right when the reader's digit is its label; "no digit found" counts as wrong. The result's
    ``model`` says it was measured through the reader.
    """

    from digits.reading import Prediction

    def accuracy(x: np.ndarray) -> float:
        read = [r.result.digit if isinstance(r.result, Prediction) else None for r in recognizer.predict_batch(list(x))]
        return float(np.mean([digit == label for digit, label in zip(read, labels.tolist())]))

    result = _measure(accuracy, images, corruptions, severities, seed, progress)
    return dataclasses.replace(result, model=f"{recognizer.info['model']}{READER_SUFFIX}")


def _measure(
    accuracy: Callable[[np.ndarray], float],
    images: np.ndarray,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    seed: int,
    progress: Callable[[str], None] | None,
) -> RobustnessResult:
    """``accuracy`` (of a batch of (N, 28, 28) uint8 digits in the labels' order) clean and under each corruption."""
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    levels = sorted(set(severities))
    _check_choice(names, levels)
    images = np.ascontiguousarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")

    clean = accuracy(images)
    table: dict[str, dict[int, float]] = {}
    for i, name in enumerate(names):
        if progress:
            progress(f"[{i + 1}/{len(names)}] {name}")
        table[name] = {s: accuracy(corrupt(images, name, s, corruption_rng(seed, name, s))) for s in levels}
    return RobustnessResult(clean_accuracy=clean, accuracy=table, seed=seed, n=len(images))


def evaluate_robustness_saved(
    model: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    digits: str = "test",
    reader: bool = False,
    **options: Any,
) -> RobustnessResult:
    """:func:`evaluate_robustness` of a saved model (run directory or .safetensors), as its run evaluated it;
    with ``reader``, :func:`evaluate_robustness_reading` of digits' reader with this model.

    The evaluation precision comes from the file; the result also names the network and the file, and says
    what the model was trained with when its training config can be found (:func:`training_configs_of`).
    ``digits`` names the set ``images`` come from ("test", or "validation": :func:`validation_digits`).
    """
    if reader:
        from digits.reading import Recognizer

        result = evaluate_robustness_reading(Recognizer.load(model), images, labels, **options)
    else:
        from digits.models.weights import load_weights

        network, meta = load_weights(model)
        options.setdefault("precision", meta.get("eval_precision", "fp32"))
        result = dataclasses.replace(evaluate_robustness(network, images, labels, **options), model=str(meta["model"]))
    cfgs = training_configs_of(model)
    return dataclasses.replace(
        result,
        source=str(model),
        training_transforms=tuple(training_transforms(*cfgs)) if cfgs else None,
        training_resembles=tuple(training_resembles(*cfgs)) if cfgs else None,
        digits=digits,
    )


def validation_digits(model: str | Path, data: MNIST) -> tuple[np.ndarray, np.ndarray]:
    """The training digits a saved model's run held out for validation: (N, 28, 28) uint8 and (N,) labels.

    Corrupted, they are where a training recipe's robustness can be tuned without looking at the test set.
    ValueError when the model's training config is unknown or it kept no validation split.
    """
    from digits.train.loop import split_train_val

    cfgs = training_configs_of(model)  # an ensemble's members held out the same digits (digits.train.ensemble)
    cfg = cfgs[0] if cfgs else None
    if cfg is None or cfg.val_split == 0:
        why = "its training config is unknown" if cfg is None else "its run kept no validation split (val_split 0)"
        raise ValueError(f"{model} has no validation digits: {why}")
    _, _, val_x, val_y = split_train_val(data, cfg)
    return val_x.numpy().astype(np.uint8), val_y.numpy()


# --- what training used -----------------------------------------------------------------------------------------
def training_configs_of(model: str | Path) -> list[TrainConfig]:
    """The training configs of a saved model (:func:`digits.train.report.training_configs`: one, or an ensemble's
    members'); empty when there are none, or they are not digits' training configs."""
    from digits.train.report import run_record, training_configs

    try:
        return [TrainConfig.from_dict(c) for c in training_configs(run_record(model)[1])]
    except (ValueError, TypeError, ConfigError):
        return []  # not a record of digits' training


def _share(p: float) -> str:
    return f"{p:.0%} of the images"


def _transforms(cfg: TrainConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(what training did, in words; the corruptions it resembles) for each transform ``cfg`` turns on."""
    from digits.train.augment import BLUR_SIGMA, FILL_BOX, LOWRES_SIDES, SCATTER_REACH  # the strengths augment applies

    a = cfg.augment
    out: list[tuple[str, tuple[str, ...]]] = []
    if a.rotate:
        out.append((f"rotation up to {a.rotate:g} degrees either way", ("rotate",)))
    if a.scale:
        out.append((f"zoom by {1 - a.scale:g} to {1 + a.scale:g}", ("scale",)))
    if a.shift:
        out.append((f"shift up to {a.shift:.0%} of the image per axis", ("translate", "off_centre")))
    if a.shear:
        out.append((f"shear up to {a.shear:g} degrees either way", ("shear",)))
    if a.elastic:
        out.append((f"elastic distortion (alpha {a.elastic:g} px, sigma {a.elastic_sigma:g} px)", ("elastic",)))
    if a.fill:
        out.append((f"digit stretched towards filling a {FILL_BOX}-pixel square ({_share(a.fill)})", ()))
    if a.lowres:
        sides = f"{LOWRES_SIDES[0]} to {LOWRES_SIDES[-1]}"
        out.append((f"low-resolution scans, {sides} px across, upsampled ({_share(a.lowres)})", ("pixelate",)))
    if a.stroke:
        out.append((f"strokes a pixel thicker or thinner ({_share(a.stroke)})", ("thick_strokes", "thin_strokes")))
    if a.blur:
        low, high = BLUR_SIGMA
        out.append((f"gaussian blur, sigma {low:g} to {high:g} px ({_share(a.blur)})", ("defocus_blur",)))
    if a.erase:
        out.append((f"a random rectangle erased ({_share(a.erase)})", ()))
    if a.noise:
        out.append((f"gaussian noise, std {a.noise:g}", ("gaussian_noise",)))
    if a.outline:
        out.append((f"strokes turned partly to their outlines ({_share(a.outline)})", ("canny_edges",)))
    if a.scatter:
        out.append((f"pixels scattered up to {SCATTER_REACH} px, frosted glass ({_share(a.scatter)})", ("glass_blur",)))
    if a.lines:
        out.append(
            (
                f"lines, zigzags, dotted lines, blots or an inverted band across the digit ({_share(a.lines)})",
                ("stripe", "spatter", "dotted_line", "zigzag"),
            )
        )
    if a.lighting:
        out.append(
            (
                f"new background and ink levels, either polarity, half with clouds ({_share(a.lighting)})",
                ("brightness", "fog", "contrast", "inversion"),
            )
        )
    if a.impulse:
        out.append((f"salt and pepper on up to {a.impulse:.0%} of the pixels", ("impulse_noise",)))
    if a.clean and a.marked:
        out.append((f"{_share(a.clean)} kept free of the blur, noise, marks and lighting above", ()))
    if a.hflip:
        out.append(("mirrored left to right (half the images)", ()))
    if a.vflip:
        out.append(("mirrored top to bottom (half the images)", ()))
    if cfg.captures:
        # digits.train.captures: drawn through a random capture pipeline, then read back by digits.reading, which
        # restores light-on-dark ink, full contrast, the 20-pixel box and the centring; what survives that is
        # the stroke width, the resolution and the blur.
        out.append(
            (
                f"{cfg.captures} captured copies of each digit: thicker or thinner strokes, low-resolution scans, "
                "blur, grey levels, either polarity and a stretch to fill, read back by digits' reader (which "
                "restores MNIST's polarity, contrast, size and centring)",
                ("thick_strokes", "thin_strokes", "pixelate", "defocus_blur"),
            )
        )
    if cfg.outliers:
        out.append((f"{cfg.outliers:,} non-digit shapes trained towards no digit (outlier exposure)", ()))
    if cfg.fonts:
        out.append((f"{cfg.fonts:,} digits drawn in handwriting fonts: other writers' shapes, hairline to marker", ()))
    if cfg.font_letters:
        out.append((f"{cfg.font_letters:,} letters and symbols in handwriting fonts trained towards no digit", ()))
    return out


def training_transforms(*cfgs: TrainConfig) -> list[str]:
    """What a run with ``cfg`` did to its training digits, in words; ['none: ...'] when nothing. Given several
    (an ensemble's members), each member's, numbered."""
    if len(cfgs) > 1:
        return [f"member {i}: {w}" for i, cfg in enumerate(cfgs, 1) for w in training_transforms(cfg)]
    words = [w for w, _ in _transforms(cfgs[0])]
    return words or ["none: MNIST's training digits as they are"]


def training_resembles(*cfgs: TrainConfig) -> list[str]:
    """The corruptions (names in CORRUPTIONS' order) that a run with ``cfg`` (any of ``cfgs``) saw something like
    in training."""
    seen = {c for cfg in cfgs for _, cs in _transforms(cfg) for c in cs}
    return [c for c in CORRUPTIONS if c in seen]


# --- reading a result -------------------------------------------------------------------------------------------
def format_table(result: RobustnessResult, baseline: RobustnessResult | None = None) -> str:
    """The corruption x severity accuracy table a person reads, with the means (and mCE given a baseline).

    A corruption marked * resembles something the model was trained with.
    """
    levels = result.severities
    width = max(len("mean corrupted"), *map(len, result.corruptions)) + 2
    head = f"{'corruption':<{width}}" + "".join(f"{'s' + str(s):>8}" for s in levels)
    head += f"{'mean':>8}" + (f"{'CE':>7}" if baseline else "")
    lines = [head]
    errors = result.corruption_errors(baseline) if baseline else {}
    resembles = set(result.training_resembles or ())
    for c in result.corruptions:
        mark = "*" if c in resembles else " "
        row = f"{c + mark:<{width}}" + "".join(f"{result.accuracy[c][s]:>8.2%}" for s in levels)
        row += f"{result.corruption_accuracy(c):>8.2%}"
        if baseline:
            row += f"{errors[c]:>7.2f}" if c in errors else f"{'-':>7}"
        lines.append(row)
    means = result.mean_corrupted_accuracy_by_severity
    lines.append(
        f"{'mean corrupted':<{width}}"
        + "".join(f"{means[s]:>8.2%}" for s in levels)
        + f"{result.mean_corrupted_accuracy:>8.2%}"
    )
    lines.append(
        f"clean accuracy {result.clean_accuracy:.2%} on {result.n:,} {result.digits} digits (seed {result.seed})"
    )
    if baseline:
        mce = result.mean_corruption_error(baseline)
        lines.append(f"mean corruption error (mCE) {mce:.3f} relative to {baseline.source or 'the baseline'}")
    if result.training_transforms is None:
        lines.append("trained with: unknown (no training config found beside the model)")
    else:
        lines.append("trained with: " + "; ".join(result.training_transforms))
        lines.append(
            "* resembles what training used: "
            + (", ".join(result.training_resembles or ()) or "none of the corruptions")
        )
    return "\n".join(lines)


# --- pictures (matplotlib, Agg, written through digits.files like digits.train.plots) ---------------------------
def accuracy_figure(result: RobustnessResult, severity: int | None = None) -> Figure:
    """Horizontal bars: accuracy under each corruption, at ``severity`` or averaged over the severities measured.

    Corruptions resembling what training used are hatched; the dashed line is the clean accuracy.
    """
    from digits.train.plots import _pyplot

    plt = _pyplot()
    if severity is not None and severity not in result.severities:
        raise ValueError(f"severity {severity} was not measured (measured: {list(result.severities)})")
    names = list(result.corruptions)
    values = [result.accuracy[c][severity] if severity else result.corruption_accuracy(c) for c in names]
    resembles = set(result.training_resembles or ())
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.6))
    y = np.arange(len(names))
    bars = ax.barh(y, values, color=["tab:orange" if c in resembles else "tab:blue" for c in names])
    for bar, c in zip(bars, names):
        if c in resembles:
            bar.set_hatch("//")
    for yi, v in zip(y, values):
        ax.text(min(v, 1.0) + 0.005, yi, f"{v:.1%}", va="center", fontsize=7)
    ax.axvline(result.clean_accuracy, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [c.replace("_", " ") for c in names], fontsize=8)
    ax.invert_yaxis()  # the registry's order, top to bottom
    ax.set_xlim(0, 1.09)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    which = f"severity {severity}" if severity else f"mean over severities {', '.join(map(str, result.severities))}"
    model = f"{result.model}: " if result.model else ""
    ax.set_title(
        f"{model}accuracy under corruption ({which})\nmean corrupted accuracy "
        f"{np.mean(values):.2%}; dashed: clean, {result.clean_accuracy:.2%}; hatched: like something training used",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def examples_figure(
    images: np.ndarray,
    *,
    seed: int = 0,
    severities: Iterable[int] = SEVERITIES,
    corruptions: Sequence[str] | None = None,
) -> Figure:
    """A grid: a row per corruption, a column block per severity (clean first), ``images`` (K, 28, 28) in each.

    The digits are corrupted from the same random streams as :func:`evaluate_robustness` uses for the first K
    test digits, so the pictures show what the model was measured on.
    """
    from digits.train.plots import _pyplot

    plt = _pyplot()
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    levels = [0, *sorted(set(severities))]
    k, gap, side = len(images), 6, 28
    block = k * side + (k - 1) * 2  # the K digits of one cell, 2 px apart
    width = len(levels) * block + (len(levels) - 1) * gap
    mosaic = np.full((len(names) * (side + 4), width), 60, np.uint8)  # grey between cells
    for r, name in enumerate(names):
        for col, s in enumerate(levels):
            shown = images if s == 0 else corrupt(images, name, s, corruption_rng(seed, name, s))
            for j, img in enumerate(shown):
                y0, x0 = r * (side + 4) + 2, col * (block + gap) + j * (side + 2)
                mosaic[y0 : y0 + side, x0 : x0 + side] = img
    fig, ax = plt.subplots(figsize=(width / 60 + 1.6, len(names) * 0.5 + 0.9))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([r * (side + 4) + side / 2 + 2 for r in range(len(names))], [n.replace("_", " ") for n in names])
    ax.set_xticks(
        [c * (block + gap) + block / 2 for c in range(len(levels))],
        ["clean" if s == 0 else f"severity {s}" for s in levels],
    )
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    return fig


def write_pictures(
    result: RobustnessResult, example_images: np.ndarray, out: Path, severity: int | None = None
) -> tuple[Path, Path]:
    """Write the bar chart (:func:`accuracy_figure`) and the example grid (:func:`examples_figure`) into ``out``."""
    from digits.train.plots import _save

    out.mkdir(parents=True, exist_ok=True)
    _save(accuracy_figure(result, severity), out / CHART_NAME)
    _save(
        examples_figure(example_images, seed=result.seed, severities=result.severities, corruptions=result.corruptions),
        out / EXAMPLES_NAME,
    )
    return out / CHART_NAME, out / EXAMPLES_NAME


def default_out_dir(model: str | Path) -> Path:
    """Where `digits robustness` writes by default: beside the model, or ./robustness for the shipped model.

    The shipped model lives inside the installed package, which is never written into.
    """
    path = Path(model)
    folder = path if path.is_dir() else path.parent
    if folder.resolve() == SHIPPED_SAFETENSORS.parent.resolve():
        return Path("robustness")
    return folder


def load_baseline(
    source: str | Path, like: RobustnessResult, images: np.ndarray, labels: np.ndarray
) -> RobustnessResult:
    """The baseline to compare ``like`` with: a robustness.json written before, or a saved model measured now.

    A JSON record must have been measured alike (the same seed, number of digits, corruptions and severities);
    a model (run directory or .safetensors) is measured on ``images`` exactly as ``like`` was. ValueError says
    what does not match.
    """
    path = Path(source)
    if path.suffix == ".json" and path.is_file():
        try:
            base = RobustnessResult.from_dict(json.loads(path.read_text()))
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{path} is not a robustness record written by digits ({exc})") from exc
        if not base.source:
            base = dataclasses.replace(base, source=str(path))
        mismatch = [
            f"{what} {theirs} against {ours}"
            for what, theirs, ours in (
                ("seed", base.seed, like.seed),
                ("digits", base.n, like.n),
                ("set", base.digits, like.digits),
                ("through the reader", base.through_reader, like.through_reader),
                ("severities", list(base.severities), list(like.severities)),
                ("corruptions", len(base.corruptions), len(like.corruptions)),
            )
            if theirs != ours
        ]
        if mismatch or set(base.corruptions) != set(like.corruptions):
            raise ValueError(f"{path} was measured differently ({'; '.join(mismatch) or 'other corruptions'})")
        return base
    return evaluate_robustness_saved(
        path,
        images,
        labels,
        digits=like.digits,
        reader=like.through_reader,
        corruptions=like.corruptions,
        severities=like.severities,
        seed=like.seed,
    )
