"""Join trained runs into one model: ``join(members, out)`` writes an ensemble run folder.

The ensemble (:mod:`digits.models.ensemble`) answers with the mean of its members' probabilities. It is a run
folder like any other (``model.safetensors``, ``model.onnx``, ``run.json``), so every command takes it with
``--model`` and ``digits export`` writes it as one ONNX file.

Its temperature is fitted again on validation digits no member trained on: the members must have held out the
same ones (the same ``val_split`` of the same training digits), or there would be none to fit it on honestly.
The test digits are measured once, at the end, as training measures them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digits.data import MNIST, load_mnist
from digits.errors import ConfigError, RunError
from digits.files import write_json
from digits.models import count_parameters, create_model
from digits.models.weights import CHECKSUM_KEY, load_weights, save_weights
from digits.spec import META_NAME, ONNX_NAME, WEIGHTS_NAME
from digits.train.config import TrainConfig
from digits.train.evaluate import evaluate, to_tensors, validation_temperature
from digits.train.loop import split_train_val
from digits.train.report import Log, made_from, provenance, run_record, training_configs

__all__ = ["join"]


def join(
    members: Sequence[str | Path],
    out: str | Path,
    *,
    data: MNIST | None = None,
    data_dir: str | Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Write the ensemble of ``members`` (run folders or .safetensors files) to the new folder ``out``; returns
    its summary (what ``run.json`` holds besides provenance). ConfigError for members that cannot be joined,
    RunError for an ``out`` in use."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} already exists and is not an empty folder; choose a new folder with -o")
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs two or more models, got {len(members)}")
    loaded = [_member(path) for path in members]
    split = _common_split(loaded)
    data = data if data is not None else load_mnist(data_dir, log=log)
    options = {"members": [{"model": m["model"], "model_options": m.get("model_options", {})} for m, _, _ in loaded]}
    model = create_model("ensemble", **options)
    model.load_state_dict(
        {f"members.{i}.{k}": v for i, (_, member, _) in enumerate(loaded) for k, v in member.state_dict().items()}
    )
    model.eval()
    log(
        f"joining {len(loaded)} models ({count_parameters(model):,} parameters); validating on the last "
        f"{split.val_split:.0%} of the training digits, which none of them trained on"
    )

    _, _, val_x, val_y = split_train_val(data, split)
    temperature = validation_temperature(model, val_x, val_y, device="cpu")
    val_accuracy = evaluate(model, val_x, val_y).accuracy
    test = evaluate(model, *to_tensors(data.test_images, data.test_labels))
    joined = [made_from(path, meta, record) for path, (meta, _, record) in zip(members, loaded, strict=True)]
    summary = {
        "run_dir": str(out),
        "model": "ensemble",
        "preset": None,
        "parameters": count_parameters(model),
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": val_accuracy,
        "temperature": temperature,
        "val_split": split.val_split,
        "members": joined,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_weights(
        model,
        out / WEIGHTS_NAME,
        "ensemble",
        options,
        test_accuracy=test.accuracy,
        temperature=temperature,
        eval_precision="fp32",
        data_sha256=data.sha256,
        members=[{k: m[k] for k in ("path", "model", CHECKSUM_KEY)} for m in joined],
    )
    from digits.export import export_onnx

    export_onnx(out / WEIGHTS_NAME, out / ONNX_NAME)  # beside the weights, so reading runs it without torch
    write_json(out / META_NAME, {**summary, "test": test.to_dict(), **provenance(data)})
    log(
        f"validation accuracy {val_accuracy:.4f}, temperature {temperature:.3f}; test accuracy {test.accuracy:.4f} "
        f"({round((1 - test.accuracy) * test.n)} errors in {test.n:,}); wrote {out}"
    )
    return summary


def _member(path: str | Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(weights metadata, network, run record) of one member; ConfigError when it cannot be one."""
    if Path(path).suffix == ".onnx":
        raise ConfigError(f"{path} is an ONNX file; an ensemble is made of weights: run folders or .safetensors")
    weights, record = run_record(path)
    network, meta = load_weights(weights)  # ModelFileError with the reason
    return meta, network, record


def _common_split(loaded: Sequence[tuple[dict[str, Any], Any, dict[str, Any]]]) -> TrainConfig:
    """The training config whose validation digits every member held out; ConfigError when they differ."""
    splits = []
    for meta, _, record in loaded:
        configs = training_configs(record)
        if not configs:
            raise ConfigError(
                f"the model {meta['model']} with checksum {str(meta.get(CHECKSUM_KEY))[:12]} has no training record "
                "(run.json), so which digits it held out is unknown; join run folders or the shipped model"
            )
        splits.append(TrainConfig.from_dict(configs[0]))
    held_out = {(c.val_split, c.train_limit) for c in splits}
    if len(held_out) > 1:
        raise ConfigError(
            "the models held out different validation digits (val_split, train_limit: "
            f"{', '.join(map(str, sorted(held_out)))}); join models trained with the same split, so the ensemble's "
            "temperature is fitted on digits none of them trained on"
        )
    if splits[0].val_split == 0:
        raise ConfigError(
            "the models trained on every training digit (val_split 0): there are no held-out digits to fit the "
            "ensemble's temperature on; join models trained with a validation split"
        )
    return splits[0]
