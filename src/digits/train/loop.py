"""``fit(cfg)``: one explicit training loop over in-memory tensors.

Readable top to bottom: data -> model -> optimizer/schedule -> for each epoch: shuffle, train,
validate, checkpoint -> pick the final weights (on validation data only) -> one test evaluation.
Each epoch's randomness (shuffle, dropout, augmentation) is seeded from (seed, epoch), so a run
resumed from its last checkpoint continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.data import MNIST, load_mnist
from digits.errors import ConfigError, RunError
from digits.files import remove_partial_files, write_json
from digits.models import count_parameters, create_model
from digits.models.inference import as_model_input, predict_logits
from digits.models.layers import ShiftAverage
from digits.models.weights import save_weights
from digits.spec import CHECKPOINT_NAME, META_NAME, WEIGHTS_NAME
from digits.train.augment import augment
from digits.train.checkpoint import load_checkpoint, save_checkpoint
from digits.train.config import TrainConfig
from digits.train.evaluate import EvalResult, evaluate, to_tensors
from digits.train.fast.fused import Grads, SeedGradients, seed_layers, stem_forward
from digits.train.optim import Optimizer

Log = Callable[[str], None]


@dataclass
class Run:
    """What a finished training run produced."""

    dir: Path
    config: TrainConfig
    model: nn.Module
    history: list[dict[str, Any]]
    test: EvalResult
    train_seconds: float
    stopped_early: str = ""
    temperature: float = 1.0  # softmax temperature fitted on the validation split (1.0 without one)
    summary: dict[str, Any] = field(default_factory=dict)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed tensor memory for reuse instead of returning it to the kernel.

    By default glibc serves large blocks with fresh mmaps and trims the heap as soon as its top is free,
    so a training step can page-fault its activations and gradients in again every time: ~1,300 faults
    a step for the seed network in one measurement, an epoch ~11 s against ~7 s with this setting. A
    32 MiB mmap threshold and a 1 GiB trim threshold leave none in the steady state (tests/test_fused.py).
    The setting lasts for the process, which for ``digits train`` is the training itself.
    Returns False where the C library is not glibc (then nothing changes).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def split_train_val(data: MNIST, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, val_x, val_y) as uint8/int64 tensors; validation is the LAST fraction, as Keras does."""
    limit = cfg.train_limit or len(data.train_images)
    x, y = to_tensors(data.train_images[:limit], data.train_labels[:limit])
    split = int(len(x) * (1.0 - cfg.val_split))  # keras: split_at = int(n * (1 - validation_split))
    return x[:split], y[:split], x[split:], y[split:]


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at optimizer step ``step`` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    t = step / total
    if cfg.schedule == "step":
        return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_every)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":  # linear up from lr/10, then linear down to 0 (Smith & Topin 2017)
        if t < cfg.warmup:
            return 0.1 + 0.9 * t / cfg.warmup
        return max(0.0, (1.0 - t) / (1.0 - cfg.warmup))
    return 1.0


@contextmanager
def _autocast(device: torch.device, precision: str) -> Iterator[None]:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch  # distinct streams per (seed, epoch), stable across resumes


def gradient_function(model: nn.Module, cfg: TrainConfig, device: torch.device) -> Callable[[Tensor, Tensor], Grads]:
    """``grads(x, y) -> (loss, logits)`` that leaves d(loss)/d(parameters) in each ``p.grad``.

    Autograd for every model, except on the CPU (digits.train.fast.fused, same gradients in fewer operations): the
    seed network's whole pass is hand-written, and fastnet's stride-2 stem runs in a C kernel.
    """
    fused = cfg.fused and device.type == "cpu"
    net = model.net if isinstance(model, ShiftAverage) else model  # the same function while training
    if fused and seed_layers(net) is not None:
        return SeedGradients(net, cfg.precision, cfg.label_smoothing)
    forward = (stem_forward(net, cfg.precision) if fused else None) or model

    def grads(xb: Tensor, yb: Tensor) -> Grads:
        with _autocast(device, cfg.precision):
            logits = forward(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss, logits

    return grads


def train_one_epoch(
    model: nn.Module,
    optimizer: Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epoch: int,
    ema: nn.Module | None,
    progress: Callable[[int, float, float], None] | None = None,
    check: Callable[[], bool] | None = None,
) -> tuple[float, float, int]:
    """One pass over (x, y) in a seeded random order; returns (mean loss, accuracy, images seen).

    ``check``, if given, is called every ``cfg.eval_every`` steps; when it returns True the epoch ends there.
    """
    device = x.device
    grads = gradient_function(model, cfg, device)
    generator = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # dropout draws from the global generator
    order = torch.randperm(len(x), generator=generator).to(device)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    bs = cfg.batch_size
    n_steps = math.ceil(len(x) / bs)  # the last, smaller batch is kept, as Keras does
    for i in range(n_steps):
        idx = order[i * bs : (i + 1) * bs]
        xb, yb = x[idx], y[idx]  # (B, 1, 28, 28) float, (B,) int64
        if cfg.augment.enabled:
            xb = augment(xb, cfg.augment, generator)
        loss, logits = grads(xb, yb)
        optimizer.step(cfg.lr * lr_factor(cfg, optimizer.steps, n_steps))  # every epoch has n_steps
        if ema is not None:
            _update_ema(ema, model, cfg.ema)
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen = min((i + 1) * bs, len(x))
        if progress is not None and (i % 50 == 49 or i == n_steps - 1):
            progress(i + 1, loss_sum.item() / seen, correct.item() / seen)
        if check is not None and cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < n_steps and check():
            break
    return loss_sum.item() / seen, correct.item() / seen, seen


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_p: list[torch.Tensor] = list(ema.parameters())
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def provenance(data: MNIST) -> dict[str, Any]:
    """Where a result came from: data checksums, library versions, machine, git commit."""
    import numpy

    commit = None
    try:
        root = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "data_sha256": data.sha256,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "threads": torch.get_num_threads(),
        },
        "git_commit": commit,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class _Progress:
    """A tqdm bar per epoch on a terminal; one plain line per epoch otherwise (logs, CI, pipes)."""

    def __init__(self, enabled: bool, log: Log) -> None:
        self.tty = enabled and sys.stderr.isatty()
        self.log = log
        self.bar: Any = None

    def start(self, epoch: int, epochs: int, steps: int, batch_size: int) -> Callable[[int, float, float], None]:
        self.t0 = time.perf_counter()
        self.batch_size = batch_size
        if not self.tty:
            return lambda *_: None
        from tqdm import tqdm

        self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=True, dynamic_ncols=True)

        def update(step: int, loss: float, acc: float) -> None:
            self.bar.update(step - self.bar.n)
            ips = step * self.batch_size / (time.perf_counter() - self.t0)
            self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.4f} {ips:,.0f} img/s", refresh=False)

        return update

    def end(self, row: dict[str, Any]) -> None:
        val = (
            f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f}" if row["val_loss"] is not None else ""
        )
        line = (
            f"epoch {row['epoch']}/{row['epochs']}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
            f"{val} lr {row['lr']:.2e} {row['images_per_s']:,.0f} img/s {row['seconds']:.1f}s"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(line.split(": ", 1)[1])
            self.bar.close()
            self.bar = None
        else:
            self.log(line)


def fit(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    data: MNIST | None = None,
    data_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log = print,
    preset: str | None = None,
) -> Run:
    """Train ``cfg`` and write the run to ``out_dir``; with ``resume``, continue from its last checkpoint."""
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise RunError(
                f"nothing to resume in {out_dir}: no {CHECKPOINT_NAME} (a finished run removes it; "
                "a run that never finished its first epoch has none)"
            )
        state = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(json.loads(state["config"]))
        if saved != cfg:
            raise RunError(f"{out_dir} was started with a different config; resume it with the same settings")
        preset = state.get("preset", preset)
    elif (out_dir / WEIGHTS_NAME).exists() or ckpt_path.exists():
        raise RunError(f"{out_dir} already holds a run; choose another --out, or --resume it")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in remove_partial_files(out_dir):
        log(f"removed {name}, a file a killed run had not finished writing")

    device = resolve_device(cfg.device)
    keep_freed_memory()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data if data is not None else load_mnist(data_dir, log=log)
    train_x, train_y, val_x, val_y = split_train_val(data, cfg)
    if len(train_x) == 0:
        raise ConfigError("no training images left after train_limit and val_split")
    # The whole training set lives on the device as one float tensor: (N, 1, 28, 28), no loader, no workers.
    channels_last = cfg.channels_last
    x = as_model_input(train_x, channels_last=channels_last).to(device)
    y = train_y.to(device)

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_options).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = Optimizer(cfg, [p for p in model.parameters() if p.requires_grad])  # not fixed layers
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    ema = copy.deepcopy(model) if cfg.ema else None

    start_epoch, train_seconds, history = 0, 0.0, []
    best: dict[str, Any] = {"accuracy": -1.0, "epoch": 0, "state": None}
    if resume:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, train_seconds = state["epoch"], state["train_seconds"]
        history = json.loads(state["history"])
        best = {
            "accuracy": state["best_accuracy"],
            "epoch": state["best_epoch"],
            "state": state["best_state"],
        }
        log(f"resuming {out_dir} after epoch {start_epoch}/{cfg.epochs}")

    log(
        f"training {cfg.model} ({count_parameters(model):,} parameters) on {len(x):,} images, "
        f"validating on {len(val_x):,}, {cfg.epochs} epochs, batch {cfg.batch_size}, {device}"
    )
    bar = _Progress(progress, log)
    eval_model = ema if ema is not None else model  # what validation (and the final choice) looks at
    eval_args: dict[str, Any] = {"batch_size": cfg.eval_batch_size, "precision": cfg.eval_precision, "device": device}

    def reached_target() -> bool:  # inside an epoch, for --target-accuracy with --eval-every
        acc = evaluate(eval_model, val_x, val_y, **eval_args).accuracy
        return acc >= cfg.target_accuracy

    check = reached_target if cfg.target_accuracy and len(val_x) else None
    stopped = ""
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        update = bar.start(epoch + 1, cfg.epochs, steps_per_epoch, cfg.batch_size)
        lr = cfg.lr * lr_factor(cfg, optimizer.steps, steps_per_epoch)  # at the epoch's first step
        train_loss, train_acc, seen = train_one_epoch(model, optimizer, x, y, cfg, epoch, ema, update, check)
        val = evaluate(eval_model, val_x, val_y, **eval_args) if len(val_x) else None
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        row = {
            "epoch": epoch + 1,
            "epochs": cfg.epochs,
            "lr": lr,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val.loss if val else None,
            "val_accuracy": val.accuracy if val else None,
            "seconds": seconds,
            "images": seen,
            "images_per_s": seen / seconds,
        }
        history.append(row)
        if val is not None and val.accuracy > best["accuracy"]:
            best = {
                "accuracy": val.accuracy,
                "epoch": epoch + 1,
                "state": {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
                if cfg.select == "best"
                else None,
            }
        if cfg.target_accuracy and val is not None and val.accuracy >= cfg.target_accuracy:
            stopped = (
                f"validation accuracy {val.accuracy:.4f} reached the target {cfg.target_accuracy} "
                f"in epoch {epoch + 1} after {seen:,} images, {train_seconds:.1f}s of training"
            )
        elif cfg.patience and epoch + 1 - best["epoch"] >= cfg.patience:
            stopped = f"no better validation accuracy for {cfg.patience} epochs; stopped after epoch {epoch + 1}"
        save_checkpoint(
            {
                "config": json.dumps(cfg.to_dict()),
                "preset": preset,
                "epoch": epoch + 1,
                "train_seconds": train_seconds,
                "history": json.dumps(history),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "best_accuracy": best["accuracy"],
                "best_epoch": best["epoch"],
                "best_state": best["state"],
            },
            ckpt_path,
        )
        bar.end(row)  # after the checkpoint: an epoch reported done is an epoch saved
        if stopped:
            log(stopped)
            break

    final = ema if ema is not None else model
    if cfg.select == "best" and best["state"] is not None:
        final.load_state_dict(best["state"])
        log(f"keeping the weights of epoch {best['epoch']} (best validation accuracy {best['accuracy']:.4f})")
    temperature = _fit_temperature(final, val_x, val_y, cfg, device) if len(val_x) else 1.0
    test = evaluate(final, *to_tensors(data.test_images, data.test_labels), **eval_args)
    log(
        f"test accuracy {test.accuracy:.4f} (loss {test.loss:.4f}, {test.n - round(test.accuracy * test.n)} errors "
        f"in {test.n:,}); training took {train_seconds:.1f}s"
    )

    run = Run(out_dir, cfg, final.eval(), history, test, train_seconds, stopped, temperature)
    _write_run(run, data, preset, best["epoch"] if cfg.select == "best" else len(history))
    ckpt_path.unlink(missing_ok=True)  # the run is complete: the weights and metadata are all that is needed
    return run


def _fit_temperature(
    model: nn.Module, val_x: torch.Tensor, val_y: torch.Tensor, cfg: TrainConfig, device: torch.device
) -> float:
    """Temperature scaling (Guo et al. 2017) on the validation split, so confidences mean what they say."""
    from digits.reading.calibration import fit_temperature

    logits = predict_logits(model, val_x, batch_size=cfg.eval_batch_size, precision=cfg.eval_precision, device=device)
    return fit_temperature(logits.cpu().numpy(), val_y.cpu().numpy())  # from the device, if on one


def _write_run(run: Run, data: MNIST, preset: str | None, chosen_epoch: int) -> None:
    cfg = run.config
    out = run.dir
    run.summary = {
        "run_dir": str(out),
        "model": cfg.model,
        "preset": preset,
        "parameters": count_parameters(run.model),
        "test_accuracy": run.test.accuracy,
        "test_loss": run.test.loss,
        "val_accuracy": run.history[chosen_epoch - 1]["val_accuracy"] if run.history else None,
        "epochs_run": len(run.history),
        "chosen_epoch": chosen_epoch,
        "train_seconds": run.train_seconds,
        "stopped_early": run.stopped_early or None,
        "temperature": run.temperature,
    }
    save_weights(
        run.model,
        out / WEIGHTS_NAME,
        cfg.model,
        cfg.model_options,
        test_accuracy=run.test.accuracy,
        temperature=run.temperature,
        eval_precision=cfg.eval_precision,
        data_sha256=data.sha256,
    )
    write_json(
        out / META_NAME,
        {
            **run.summary,
            "config": cfg.to_dict(),
            "test": run.test.to_dict(),
            "history": run.history,
            **provenance(data),
        },
    )
    lines = [",".join(run.history[0])] + [
        ",".join("" if v is None else str(v) for v in h.values()) for h in run.history
    ]
    (out / "history.csv").write_text("\n".join(lines) + "\n")
    if len(run.history) > 1:  # one point is not a curve; a one-epoch run also skips matplotlib's ~1 s import
        from digits.train import plots

        plots.learning_curves(run.history, out / "curves.png")
