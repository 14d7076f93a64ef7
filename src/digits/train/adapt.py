"""Learning from a user's corrections: ``adapt(store, out)`` fine-tunes a copy of a model on them, behind a gate.

Readable top to bottom: the corrections -> a deterministic part held out -> a copy of the base model -> 150
steps on the other corrections, each batch mixed 1:1 with MNIST training digits (replay, so that it does
not forget MNIST), batch normalisation's statistics kept the base's -> halfway back to the base -> the
temperature fitted again on MNIST's validation split, as training fits it -> the gate -> the run folder.

Blending the fine-tuned weights halfway back to the base's (WiSE-FT) keeps most of what was learned and
almost none of what was forgotten. The gate: the adapted model is accepted only if it does better than the
base on the held-out corrections (more of them right; as many right and a lower loss counts too) and loses at
most ``max_mnist_drop`` (0.1 pp) of accuracy on MNIST's test digits. The test digits are only a guard here:
no setting is chosen on them. An accepted model is a normal run folder (``model.safetensors``, ``model.onnx``,
``run.json``) that every command takes with ``--model``, its metadata naming its parent (path and tensor
checksum), the corrections' checksum and both figures of the gate. A refused one is kept aside as
``refused.safetensors`` beside a ``run.json`` that says why, so no command loads it by mistake. The base model
is never changed.

A link (``--link``) may name the model in use: accepting points it at the new run, :func:`rollback` points it
back at the run's parent (or removes it, when the parent is the shipped model, which is what every command uses
without ``--model``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.corrections import Correction, CorrectionStore
from digits.data import MNIST, load_mnist
from digits.errors import ConfigError, RunError
from digits.files import atomic_symlink, write_json
from digits.models.inference import as_model_input
from digits.models.weights import CHECKSUM_KEY, load_weights, save_weights
from digits.spec import META_NAME, ONNX_NAME, SHIPPED_SAFETENSORS, WEIGHTS_NAME
from digits.train.augment import augment
from digits.train.config import AdaptConfig
from digits.train.evaluate import EvalResult, evaluate, to_tensors, validation_temperature
from digits.train.report import Log, provenance, run_record, training_configs

__all__ = ["Adapted", "adapt", "point", "rollback", "split_held_out"]

REFUSED_NAME = "refused.safetensors"  # a model the gate refused, kept for a person to look at
# At least one correction to learn from and one to check on.
MIN_CORRECTIONS = 2


@dataclass(frozen=True)
class Adapted:
    """What :func:`adapt` did: whether the gate accepted the model, where it is, and the figures (``summary``)."""

    accepted: bool
    dir: Path
    summary: dict[str, Any]

    @property
    def message(self) -> str:
        s = self.summary
        held, mnist = s["held_out"], s["mnist"]
        figures = (
            f"held-out corrections {held['right_before']}/{held['n']} -> {held['right_after']}/{held['n']} right "
            f"(loss {held['loss_before']:.3f} -> {held['loss_after']:.3f}); MNIST test accuracy "
            f"{mnist['before']:.4f} -> {mnist['after']:.4f} ({mnist['change_pp']:+.2f} pp on {mnist['n']:,} digits)"
        )
        if self.accepted:
            return f"accepted: {figures}"
        return f"refused ({s['gate']['why']}): {figures}"


def split_held_out(records: Sequence[Correction], fraction: float) -> tuple[list[Correction], list[Correction]]:
    """(to learn from, held out): the corrections whose id hashes below ``fraction`` are held out, at least one
    and never all. Deterministic, and a correction stays on its side as the store grows (unless the minimum of one
    either side moves it)."""
    if len(records) < MIN_CORRECTIONS:
        raise ConfigError(
            f"adapting needs at least {MIN_CORRECTIONS} corrections (one to learn from, one to check the result "
            f"on); the store has {len(records)}. Add more with the page's 'that's wrong' control or "
            "`digits predict IMAGE --correct LABEL --store DIR`"
        )
    ranked = sorted(records, key=_draw)
    n_held = min(max(1, sum(_draw(c) < fraction for c in records)), len(records) - 1)
    held = {c.id for c in ranked[:n_held]}
    return [c for c in records if c.id not in held], [c for c in records if c.id in held]


def _draw(c: Correction) -> float:
    """A number in [0, 1) that only the correction's id decides."""
    return int(hashlib.sha256(c.id.encode()).hexdigest()[:12], 16) / 16**12


def adapt(
    store: CorrectionStore,
    out: str | Path,
    *,
    base: str | Path | None = None,
    config: AdaptConfig | None = None,
    data: MNIST | None = None,
    data_dir: str | Path | None = None,
    link: str | Path | None = None,
    log: Log = print,
) -> Adapted:
    """Fine-tune a copy of ``base`` (a run folder or .safetensors; default: the shipped model) on the corrections in
    ``store`` and write it to the new folder ``out``, accepted or refused by the gate; an accepted one becomes
    what ``link`` points at. Raises ConfigError for too few corrections, RunError for an ``out`` in use."""
    cfg = config or AdaptConfig()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} already exists and is not an empty folder; choose a new folder with -o")
    base_path = Path(base) if base is not None else SHIPPED_SAFETENSORS
    if base_path.suffix == ".onnx":
        raise ConfigError(
            f"--base {base_path} is an ONNX file; adapting needs the weights: a run folder or .safetensors"
        )
    weights, record = run_record(base_path)
    base_model, meta = load_weights(weights)  # ModelFileError with the reason
    records = store.list()
    learn, held = split_held_out(records, cfg.holdout)
    data = data if data is not None else load_mnist(data_dir, log=log)
    # How the base was trained (its validation split, its label smoothing): a run's config, for a model adapted
    # already the config of the run it descends from, for an ensemble its first member's (they share the split).
    base_cfg = (training_configs(record) or [{}])[0]
    replay, val = _mnist_split(data, float(base_cfg.get("val_split", 0.0)))
    log(
        f"adapting {meta['model']} from {base_path} on {len(learn)} corrections ({len(held)} held out for the gate), "
        f"{cfg.steps} steps, {cfg.layers} layers, MNIST replay {cfg.replay:g}:1"
    )
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        model, _ = load_weights(weights)  # its own copy: the base stays as it is
        smoothing = float(base_cfg.get("label_smoothing", 0.0))  # as the base learned, so its temperature fits
        _fine_tune(model, _images(store, learn), replay, cfg, smoothing)
        _blend(model, base_model, cfg.blend)
        temperature, how = _temperature(model, val, float(meta.get("temperature", 1.0)))
        summary = _gate(base_model, model, _images(store, held), data, cfg)
    finally:
        torch.set_num_threads(threads)  # put back: adapt changes nothing about the process beyond its run
    summary.update(
        {
            "run_dir": str(out),
            "model": meta["model"],
            "parent": {
                "path": str(base_path.resolve()),
                "shipped": base is None or base_path.resolve() == SHIPPED_SAFETENSORS.resolve(),
                CHECKSUM_KEY: meta.get(CHECKSUM_KEY),
                "test_accuracy": meta.get("test_accuracy"),
            },
            "corrections": {
                "n": len(records),
                "learned_from": len(learn),
                "held_out": len(held),
                "sha256": store.sha256(records),
                "held_out_ids": [c.id for c in held],
            },
            "temperature": temperature,
            "temperature_from": how,
            "label_smoothing": smoothing,
            "base_config": base_cfg,
        }
    )
    accepted = bool(summary["gate"]["accepted"])
    _write(model, meta, summary, cfg, data, out, accepted)
    result = Adapted(accepted, out, summary)
    log(result.message)
    if accepted and link is not None:
        point(link, out)
        log(f"{link} now points to {out}")
    return result


def _mnist_split(data: MNIST, val_split: float) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
    """(digits to replay, validation digits): the base's own split of MNIST's training set (its last ``val_split``
    validated it, and fits the temperature again here), so neither is a digit the base was tested on."""
    x, y = to_tensors(data.train_images, data.train_labels)
    split = int(len(x) * (1.0 - val_split))
    return (x[:split], y[:split]), ((x[split:], y[split:]) if split < len(x) else None)


def _images(store: CorrectionStore, records: Sequence[Correction]) -> tuple[Tensor, Tensor]:
    """The 28x28s the model saw for ``records`` (uint8 (N, 28, 28)) and their labels."""
    images = np.stack([store.seen28(c) for c in records]).astype(np.uint8)
    return to_tensors(images, np.array([c.label for c in records], np.int64))


def _fine_tune(
    model: nn.Module,
    corrections: tuple[Tensor, Tensor],
    replay: tuple[Tensor, Tensor],
    cfg: AdaptConfig,
    ls: float,
    teacher: nn.Module | None = None,
) -> None:
    """``cfg.steps`` Adam steps on batches of corrections (distorted) and replayed MNIST training digits."""
    if cfg.layers != "all":
        kind = nn.Linear if cfg.layers == "head" else nn.Conv2d
        trained = set()
        for net in getattr(model, "members", [model]):  # an ensemble's members: the top of each
            modules = list(net.modules())
            first = max(i for i, m in enumerate(modules) if isinstance(m, kind))
            trained |= {id(p) for m in modules[first:] for p in m.parameters(recurse=False)}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    # Eval mode all along: batchnorm keeps the base's statistics (a batch of a few corrections would redefine
    # them for every picture) and dropout stays off; the gradients flow all the same.
    model.eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    cx, cy = as_model_input(corrections[0]), corrections[1]  # (N, 1, 28, 28) float in [0, 1]
    rx, ry = replay
    n_replay = round(cfg.batch_size * cfg.replay)
    for _ in range(cfg.steps):
        ci = torch.randint(len(cx), (cfg.batch_size,), generator=generator)
        ri = torch.randint(len(rx), (n_replay,), generator=generator)
        xb = torch.cat([augment(cx[ci], cfg.augment, generator), as_model_input(rx[ri])])  # (B + R, 1, 28, 28)
        logits = model(xb)
        corrected = F.cross_entropy(logits[: cfg.batch_size], cy[ci], label_smoothing=ls, reduction="sum")
        if teacher is not None:
            # Learning without forgetting (Li & Hoiem 2016): on the replayed digits, the base's own answers
            # are the targets, so what the model keeps is the base itself, not only its labels.
            with torch.no_grad():
                target = F.softmax(teacher(xb[cfg.batch_size :]), dim=1)
            kept = F.kl_div(F.log_softmax(logits[cfg.batch_size :], dim=1), target, reduction="sum")
        else:
            kept = F.cross_entropy(logits[cfg.batch_size :], ry[ri], label_smoothing=ls, reduction="sum")
        loss = (corrected + kept) / len(xb)
        if not math.isfinite(loss.item()):
            raise RunError(f"the loss became {loss.item()} while adapting; try a smaller --lr (it was {cfg.lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()


def _blend(model: nn.Module, base: nn.Module, share: float) -> None:
    """``model``'s weights set to base + share * (model - base), in place (integer buffers stay the model's)."""
    start = base.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(start[name] + share * (value - start[name]))


def _temperature(model: nn.Module, val: tuple[Tensor, Tensor] | None, base: float) -> tuple[float, str]:
    """The softmax temperature, fitted again on MNIST's validation split as training fits it (Guo et al. 2017), or
    the base's when it had no validation split."""
    if val is None:
        return base, "the base model's (it had no validation split)"
    return validation_temperature(model, *val, device="cpu"), f"fitted on MNIST's validation split ({len(val[0]):,})"


def _gate(
    base: nn.Module, adapted: nn.Module, held: tuple[Tensor, Tensor], data: MNIST, cfg: AdaptConfig
) -> dict[str, Any]:
    """Both models on the held-out corrections and on MNIST's test digits; whether the adapted one is accepted."""
    limit = cfg.guard_limit or len(data.test_images)
    test = to_tensors(data.test_images[:limit], data.test_labels[:limit])
    held_before, held_after = evaluate(base, *held), evaluate(adapted, *held)
    mnist_before, mnist_after = evaluate(base, *test), evaluate(adapted, *test)
    right_before, right_after = _right(held_before), _right(held_after)
    improved = right_after > right_before or (right_after == right_before and held_after.loss < held_before.loss)
    drop = mnist_before.accuracy - mnist_after.accuracy
    kept = drop <= cfg.max_mnist_drop + 1e-9  # a float's rounding is no loss
    why = []
    if not improved:
        why.append("no better on the held-out corrections")
    if not kept:
        why.append(f"MNIST test accuracy fell {100 * drop:.2f} pp, more than {100 * cfg.max_mnist_drop:.2f} pp")
    return {
        "held_out": {
            "n": held_before.n,
            "right_before": right_before,
            "right_after": right_after,
            "accuracy_before": held_before.accuracy,
            "accuracy_after": held_after.accuracy,
            "loss_before": held_before.loss,
            "loss_after": held_after.loss,
        },
        "mnist": {
            "n": mnist_before.n,
            "before": mnist_before.accuracy,
            "after": mnist_after.accuracy,
            "change_pp": -100 * drop,
        },
        "gate": {
            "accepted": improved and kept,
            "improved_on_held_out": improved,
            "mnist_within_limit": kept,
            "max_mnist_drop_pp": 100 * cfg.max_mnist_drop,
            "why": "; ".join(why) or "better on the held-out corrections, MNIST within the limit",
        },
    }


def _right(result: EvalResult) -> int:
    return int((result.predictions == result.labels).sum())


def _write(
    model: nn.Module,
    meta: dict[str, Any],
    summary: dict[str, Any],
    cfg: AdaptConfig,
    data: MNIST,
    out: Path,
    accepted: bool,
) -> None:
    """The run folder: weights (``model.safetensors`` and ``model.onnx``, or ``refused.safetensors``) and run.json."""
    out.mkdir(parents=True, exist_ok=True)
    mnist = summary["mnist"]
    weights = out / (WEIGHTS_NAME if accepted else REFUSED_NAME)
    save_weights(
        model,
        weights,
        meta["model"],
        meta.get("model_options", {}),
        # The guard's figure; the model's test accuracy only when the guard measured all test digits.
        test_accuracy=mnist["after"] if mnist["n"] == len(data.test_images) else None,
        temperature=summary["temperature"],
        eval_precision="fp32",
        data_sha256=data.sha256,
        parent=summary["parent"],
        corrections_sha256=summary["corrections"]["sha256"],
        corrections=summary["corrections"]["n"],
        gate={"held_out": summary["held_out"], "mnist": mnist, **summary["gate"]},
    )
    if accepted:
        from digits.export import export_onnx

        # Beside the weights, so reading and serving run it on onnxruntime, without torch.
        export_onnx(out / WEIGHTS_NAME, out / ONNX_NAME)
    record = {"accepted": accepted, **summary, "adapt_config": cfg.to_dict(), "weights": weights.name}
    write_json(out / META_NAME, {**record, **provenance(data)})


def point(link: str | Path, run: str | Path) -> None:
    """Make ``link`` a symbolic link to the run folder ``run`` (relative, so the two move together)."""
    link = Path(link)
    target = os.path.relpath(Path(run).resolve(), link.parent.resolve())
    if not atomic_symlink(link, target):
        raise RunError(
            f"could not make {link} a link to {run}: it is a folder or file of its own, or links cannot be made there"
        )


def rollback(link: str | Path) -> Path | None:
    """Point ``link`` back at the parent of the run it points at; returns the parent, or None when that is the
    shipped model, and the link is removed (commands without ``--model`` use the shipped model)."""
    link = Path(link)
    if not link.is_symlink():
        raise RunError(f"{link} is not a link made by `digits adapt --link`; nothing to roll back")
    _, record = run_record(link)
    parent = record.get("parent", {})
    if not record or "path" not in parent:
        raise RunError(f"{link} points at {os.readlink(link)}, which has no run.json naming its parent")
    path = Path(parent["path"])
    if parent.get("shipped"):
        link.unlink()
        return None
    if not path.is_dir():
        raise RunError(
            f"the model {link} was adapted from is {path}, not a run folder a link can name; use --model {path}"
        )
    point(link, path)
    return path
