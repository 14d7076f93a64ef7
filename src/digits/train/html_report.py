"""One HTML page that says how good a trained model is and where it fails: ``digits report RUN [RUN ...]``.

The page carries everything inside it (styles, and each picture as a PNG in a data: URI), so it opens
offline and can be mailed. For each model: its config and provenance, learning curves, test accuracy and
loss, the per-digit table, the confusion matrix and the worst mistakes, accuracy under corruptions
(:mod:`digits.train.robustness`), calibration (reliability diagrams, risk against coverage) and how well
its uncertainty tells pictures that are no digit (:mod:`digits.train.trust`); given several models, a
side-by-side table first. Everything is measured afresh on the MNIST test set when the page is made.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from digits.data import MNIST
from digits.files import write_text
from digits.models.weights import load_weights
from digits.spec import NUM_CLASSES
from digits.train import plots
from digits.train.evaluate import EvalResult, evaluate, to_tensors
from digits.train.report import run_record
from digits.train.trust import Trust, measure_trust

Log = Callable[[str], None]

# The sections of every model's part of the page, in order: (anchor, heading).
SECTIONS = (
    ("config", "Config and provenance"),
    ("curves", "Learning curves"),
    ("test", "Test set"),
    ("robustness", "Corruptions"),
    ("calibration", "Calibration"),
    ("ood", "Pictures that are no digit"),
)


@dataclass(frozen=True)
class Measured:
    """One model and what was measured of it for the page."""

    name: str
    source: Path
    record: dict[str, Any]  # run.json (or the shipped model's record); the file's metadata where there is none
    images: np.ndarray  # (N, 28, 28) uint8 the test pictures, for the gallery of mistakes
    test: EvalResult
    trust: Trust
    robustness: Any | None  # digits.train.robustness.RobustnessResult, when measured


def measure(
    source: str | Path,
    data: MNIST,
    *,
    severity: int | None = 3,
    others: dict[str, np.ndarray] | None = None,
    log: Log = print,
) -> Measured:
    """Load a model and measure it on ``data``'s test set for the page (``severity`` None: no corruptions;
    ``others``: the pictures that are no digit, by default those of :func:`digits.train.trust.measure_trust`)."""
    weights, record = run_record(source)
    network, meta = load_weights(weights)
    record = record or {"model": meta.get("model"), "metadata": meta}
    name = _name(Path(source), record)
    log(f"report: measuring {name} on the test set")
    precision = meta.get("eval_precision", "fp32")
    test = evaluate(network, *to_tensors(data.test_images, data.test_labels), precision=precision)
    log(f"report: calibration and pictures that are no digit ({name})")
    trust = measure_trust(network, data, temperature=float(meta.get("temperature", 1.0)), others=others)
    robustness = None
    if severity is not None:
        from digits.train.robustness import evaluate_robustness_saved

        log(f"report: {name} under corruptions at severity {severity}")
        robustness = evaluate_robustness_saved(weights, data.test_images, data.test_labels, severities=(severity,))
    return Measured(name, Path(source), record, data.test_images, test, trust, robustness)


def _name(source: Path, record: dict[str, Any]) -> str:
    preset = record.get("preset")
    label = source.name if source.is_dir() else source.stem
    return f"{label} ({preset} preset)" if preset and preset not in label else label


def write_report(measured: Sequence[Measured], path: str | Path) -> Path:
    """Write the page for ``measured`` models at ``path`` (atomically) and return the path."""
    return write_text(path, render(measured))


def render(measured: Sequence[Measured]) -> str:
    """The whole page as one HTML string."""
    title = "digits report: " + ", ".join(m.name for m in measured)
    parts = [f"<h1>{_e(title)}</h1>", f"<p class=muted>Made {datetime.now():%Y-%m-%d %H:%M}. {_INTRO}</p>"]
    parts.append(_contents(measured))
    if len(measured) > 1:
        parts.append(_comparison(measured))
    for i, m in enumerate(measured):
        parts.append(_model_part(m, f"m{i}"))
    body = "\n".join(parts)
    return (
        f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body><main>\n{body}\n</main></body></html>\n"
    )


_INTRO = (
    "Every figure was measured on MNIST's 10,000 test digits when this page was made; the test set was never "
    "used to train or choose these models."
)
_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d232a;background:#f6f7f9;margin:0}
main{max-width:1080px;margin:0 auto;padding:16px 20px 48px;background:#fff}
h1{font-size:1.6em;margin:.4em 0}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2em;margin-top:2em}
h3{margin:1.4em 0 .4em}.muted{color:#5b6670}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde3ea;padding:.25em .6em;text-align:right}th{background:#f0f3f6}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0;border:1px solid #eef1f4}
.figures{display:flex;flex-wrap:wrap;gap:12px}.figures img{max-width:calc(50% - 6px)}
.good{color:#17703a;font-weight:600}.bad{color:#b3261e;font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em}dt{font-weight:600}dd{margin:0;word-break:break-all}
nav li{margin:.3em 0}@media (max-width:700px){.figures img{max-width:100%}}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _png(fig: Any, alt: str) -> str:
    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _comparison(measured: Sequence[Measured]) -> str:
    rows: list[list[object]] = []
    keys = [
        ("model", lambda m: m.record.get("model") or "–"),
        ("parameters", lambda m: f"{m.record['parameters']:,}" if "parameters" in m.record else "–"),
        ("test accuracy", lambda m: _pct(m.test.accuracy)),
        ("test errors", lambda m: f"{int((m.test.predictions != m.test.labels).sum())}"),
        ("test loss", lambda m: f"{m.test.loss:.4f}"),
        ("training time", lambda m: f"{m.record['train_seconds']:.0f} s" if "train_seconds" in m.record else "–"),
        ("ECE, calibrated", lambda m: _pct(m.trust.scaled.ece)),
        (
            "mean corrupted accuracy",
            lambda m: _pct(m.robustness.mean_corrupted_accuracy) if m.robustness is not None else "–",
        ),
    ]
    for key, value in keys:
        rows.append([key, *(value(m) for m in measured)])
    for name in measured[0].trust.ood:
        rows.append(
            [f"AUROC: {name}", *(f"{m.trust.ood[name]['auroc']:.3f}" if name in m.trust.ood else "–" for m in measured)]
        )
    table = _table(["", *(m.name for m in measured)], rows)
    curves = {m.name: (m.trust.coverage, m.trust.risk) for m in measured}
    return f"<h2 id=comparison>Side by side</h2>{table}{_png(plots.risk_coverage_figure(curves), 'risk coverage')}"


def _contents(measured: Sequence[Measured]) -> str:
    items = ["<li><a href='#comparison'><b>Side by side</b></a></li>"] if len(measured) > 1 else []
    for i, m in enumerate(measured):
        links = " · ".join(f"<a href='#m{i}-{anchor}'>{_e(title)}</a>" for anchor, title in SECTIONS)
        items.append(f"<li><a href='#m{i}'><b>{_e(m.name)}</b></a>: {links}</li>")
    return f"<nav><h2>Contents</h2><ul>{''.join(items)}</ul></nav>"


def _model_part(m: Measured, key: str) -> str:
    sections = {
        "config": _config_section(m),
        "curves": _curves_section(m),
        "test": _test_section(m),
        "robustness": _robustness_section(m),
        "calibration": _calibration_section(m),
        "ood": _ood_section(m),
    }
    out = [f"<h2 id={key}>{_e(m.name)}</h2><p class=muted>{_e(m.source)}</p>"]
    for anchor, title in SECTIONS:
        out.append(f"<section id={key}-{anchor}><h3>{_e(title)}</h3>{sections[anchor]}</section>")
    return "\n".join(out)


def _config_section(m: Measured) -> str:
    r = m.record
    config = r.get("config") or r.get("metadata", {})
    if not r.get("config") and r.get("members"):  # an ensemble: each member's settings
        config = {
            f"member {i}: {k}": v for i, m in enumerate(r["members"], 1) for k, v in (m.get("config") or {}).items()
        }
    facts = [
        ("model", r.get("model")),
        ("preset", r.get("preset")),
        ("parameters", f"{r['parameters']:,}" if "parameters" in r else None),
        ("epochs run", r.get("epochs_run")),
        ("training time", f"{r['train_seconds']:.1f} s" if "train_seconds" in r else None),
        ("temperature", f"{m.trust.temperature:.3f}"),
        ("git commit", r.get("git_commit")),
        ("versions", ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()) or None),
        ("machine", ", ".join(str(v) for v in r.get("machine", {}).values()) or None),
    ]
    facts += [(f"data {k}", v) for k, v in r.get("data_sha256", {}).items()]
    # What it was made from: an ensemble's members (digits ensemble -o), the model that taught it (--teacher).
    facts += [(f"member {i}", _made_from(member)) for i, member in enumerate(r.get("members") or [], 1)]
    if r.get("teacher"):
        facts.append(("taught by", _made_from(r["teacher"])))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v is not None)
    settings = _table(["setting", "value"], [(k, json.dumps(v)) for k, v in config.items()])
    return f"<dl>{dl}</dl><details><summary>Every setting</summary>{settings}</details>"


def _made_from(model: dict[str, Any]) -> str:
    """One line on a model another was made from (report.made_from): what it is, how good, how it was made."""
    accuracy = model.get("test_accuracy")
    said = [model.get("model"), model.get("preset") and f"preset {model['preset']}"]
    said += [accuracy is not None and f"{_pct(accuracy)} on the test set"]
    said += [model.get("trained_with") or model.get("made_with"), model.get("path")]
    return ", ".join(str(x) for x in said if x)


def _curves_section(m: Measured) -> str:
    history = m.record.get("history")
    if not history:
        return "<p class=muted>No training history was recorded with this model.</p>"
    if len(history) < 2:
        return "<p class=muted>One epoch: no curves to draw.</p>"
    return _png(plots.learning_curves_figure(history), "learning curves")


def _test_section(m: Measured) -> str:
    t = m.test
    errors = int((t.predictions != t.labels).sum())
    summary = f"<p>Accuracy <b>{_pct(t.accuracy)}</b> ({errors} errors in {t.n:,}), cross-entropy {t.loss:.4f}.</p>"
    pc = t.per_class()
    support = np.bincount(t.labels, minlength=NUM_CLASSES)
    rows = [
        (d, f"{pc['precision'][d]:.4f}", f"{pc['recall'][d]:.4f}", f"{pc['f1'][d]:.4f}", int(support[d]))
        for d in range(NUM_CLASSES)
    ]
    table = _table(["digit", "precision", "recall", "F1", "test digits"], rows)
    worst = t.mistakes(24)
    confidence = t.probabilities[worst, t.predictions[worst]]
    fig = plots.mistakes_figure(m.images[worst], t.labels[worst], t.predictions[worst], confidence)
    mistakes = _png(fig, "worst mistakes")
    confusion = _png(plots.confusion_figure(t.confusion, f"{m.name}: {t.accuracy:.2%}"), "confusion matrix")
    return f"{summary}{table}{confusion}{mistakes}"


def _robustness_section(m: Measured) -> str:
    if m.robustness is None:
        return "<p class=muted>Not measured (digits report --severity none).</p>"
    from digits.train.robustness import accuracy_figure, examples_figure

    r = m.robustness
    (severity,) = r.severities
    trained = "; ".join(r.training_transforms or ("not known: no training config was found with the model",))
    text = (
        f"<p>Accuracy on the test digits under each of {len(r.corruptions)} corruptions at severity {severity} of 5: "
        f"mean corrupted accuracy <b>{_pct(r.mean_corrupted_accuracy)}</b> (clean {_pct(r.clean_accuracy)}). "
        f"Training used: {_e(trained)}. Orange, hatched bars: corruptions like something training used.</p>"
    )
    chart = _png(accuracy_figure(r, severity), "accuracy under each corruption")
    grid = _png(examples_figure(m.images[:3], seed=r.seed, severities=(severity,)), "the corruptions, on three digits")
    return f"{text}{chart}<details><summary>What each corruption looks like</summary>{grid}</details>"


def _calibration_section(m: Measured) -> str:
    tr = m.trust
    at = tr.to_dict()["risk_at_coverage"]
    text = (
        f"<p>Expected calibration error (15 bins): <b>{_pct(tr.raw.ece)}</b> for the raw softmax, "
        f"<b>{_pct(tr.scaled.ece)}</b> after dividing the logits by the temperature {tr.temperature:.3f} "
        "(fitted on the validation split). Error rate among the most confident answers: "
        + ", ".join(f"{_pct(v)} when answering {k}" for k, v in at.items())
        + ".</p>"
    )
    figures = _png(plots.reliability_figure(tr.raw, tr.scaled, tr.temperature), "reliability diagrams")
    curve = _png(plots.risk_coverage_figure({m.name: (tr.coverage, tr.risk)}), "risk against coverage")
    return f"{text}{figures}{curve}"


def _ood_section(m: Measured) -> str:
    rows = [
        (name, f"{v['n']:,}", f"{v['auroc']:.3f}", _pct(v["fpr_at_95_tpr"], 1), _pct(v["mean_confidence"], 1))
        for name, v in m.trust.ood.items()
    ]
    table = _table(["pictures", "n", "AUROC", "FPR at 95% TPR", "mean confidence"], rows)
    return (
        "<p>How well the uncertainty (1 − calibrated confidence) tells pictures that are no digit from the "
        "MNIST test digits: AUROC 1 separates them perfectly, 0.5 not at all. FPR at 95% TPR is the share of "
        "test digits doubted when 95% of the other pictures are.</p>" + table
    )


def report(
    sources: Sequence[str | Path],
    out: str | Path,
    data: MNIST,
    *,
    severity: int | None = 3,
    others: dict[str, np.ndarray] | None = None,
    log: Log = print,
) -> Path:
    """Measure each model in ``sources`` (run directories or .safetensors files) and write the page at ``out``."""
    return write_report([measure(s, data, severity=severity, others=others, log=log) for s in sources], out)
