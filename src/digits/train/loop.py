"""``fit(cfg)``: one explicit training loop over in-memory tensors.

Readable top to bottom: open the run directory (or the checkpoint to resume) -> data -> model, optimizer
-> for each epoch: shuffle, train, validate, checkpoint -> pick the final weights (on validation data
only) -> fit the temperature (validation) -> one test evaluation -> write the run. Each epoch's
randomness (shuffle, dropout, augmentation) is seeded from (seed, epoch), so a run resumed from its last
checkpoint continues exactly as an uninterrupted run would.

The same loop runs on every rank of a data-parallel job (``world``, :mod:`digits.train.distributed`): each rank
trains on its share of every global batch, the gradients are averaged across ranks before each step, and
rank 0 alone logs, checkpoints and writes the run.

``fit`` changes nothing about the process beyond the run: torch's thread count (``cfg.threads``) is put
back when it returns, and allocator tuning (:mod:`digits.train.fast.memory`) is the caller's choice.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.data import MNIST, load_mnist
from digits.data.cache import sha256_hex
from digits.errors import ConfigError, DigitsError, RunError
from digits.files import remove_partial_files
from digits.models import count_parameters, create_model
from digits.models.inference import as_model_input
from digits.models.layers import ShiftAverage
from digits.spec import CHECKPOINT_NAME, META_NAME, WEIGHTS_NAME
from digits.train.augment import augment_pair
from digits.train.checkpoint import Best, TrainState
from digits.train.config import TrainConfig
from digits.train.distributed import (
    SINGLE,
    World,
    average_buffers,
    average_gradients,
    backend_for,
    broadcast_object,
    broadcast_parameters,
    shard_of,
    sum_across,
)
from digits.train.ema import ema_copy, update_ema
from digits.train.evaluate import EvalResult, evaluate, to_tensors, validation_temperature
from digits.train.fast.fused import Grads, SeedGradients, seed_layers, stem_forward
from digits.train.optim import Optimizer
from digits.train.report import Log, Progress, Run, made_from, run_record, write_run
from digits.train.schedule import lr_factor

__all__ = ["Run", "fit", "gradient_function", "split_train_val", "train_one_epoch"]

Data = tuple[Tensor, Tensor]  # (images, labels)
# The label of a training image that is not a digit (cfg.outliers, cfg.font_letters): trained towards uniform.
OUTLIER = -1
# Weight of the outlier term in the loss: Hendrycks et al. 2019 use 0.5 for classifiers.
OUTLIER_WEIGHT = 0.5
# What an epoch's history row is handed to, after its checkpoint (e.g. a hyperparameter search's pruner).
EpochCallback = Callable[[dict[str, Any]], None]


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
    world: World = SINGLE,
    on_epoch: EpochCallback | None = None,
    test: bool = True,
) -> Run:
    """Train ``cfg`` and write the run to ``out_dir``; with ``resume``, continue from its last checkpoint.

    ``world``: this process's rank in a data-parallel job whose process group is already made (every rank calls
    ``fit`` with the same arguments). ``on_epoch`` is called with each epoch's history row once it is saved (on
    every rank, with the same row); what it raises ends the run there. ``test=False`` leaves the test set
    untouched (the run then has no test metrics): for choosing among runs, which is done on validation data.
    """
    out_dir = Path(out_dir)
    if not world.is_main:  # rank 0 alone speaks; another rank's errors still end the job
        log, progress = _quiet, False
    with ExitStack() as held:
        held.enter_context(_torch_threads(cfg.threads))
        state = _open_run(held, out_dir, cfg, resume, preset, log, world)
        device = resolve_device(cfg.device, world)
        # The networks first: a wrong model option or teacher is an error before minutes of data preparation.
        model, optimizer, ema = _build(state, device)
        teacher, taught_by = _teacher(cfg, device, log)
        fonts = _font_files(cfg)  # (an error before minutes of data preparation too)
        state.fonts = _same_fonts(state, _font_record(fonts), out_dir)
        data = data if data is not None else load_mnist(data_dir, log=log)
        train_x, train_y, val_x, val_y = split_train_val(data, cfg)
        if len(train_x) == 0:
            raise ConfigError("no training images left after train_limit and val_split")
        if cfg.captures:
            train_x, train_y = _with_captures(train_x, train_y, cfg, log)
        if cfg.outliers:
            train_x, train_y = _with_outliers(train_x, train_y, cfg, log)
        if fonts:
            train_x, train_y = _with_fonts(train_x, train_y, fonts, cfg, log)
        # The whole training set lives on the device as one float tensor: (N, 1, 28, 28), no loader, no workers.
        train = as_model_input(train_x, channels_last=cfg.channels_last).to(device), train_y.to(device)
        broadcast_parameters(model, world)  # equal already (same seed or checkpoint); made sure, as DDP does
        if state.epoch:
            log(f"resuming {out_dir} after epoch {state.epoch}/{cfg.epochs}")
        log(
            f"training {cfg.model} ({count_parameters(model):,} parameters) on {len(train_x):,} images, "
            f"validating on {len(val_x):,}, {cfg.epochs} epochs, batch {cfg.batch_size}, {device}"
        )
        if world.distributed:
            log(_describe_world(cfg, world, device, len(val_x)))
        eval_model = ema if ema is not None else model  # what validation (and the final choice) looks at
        stopped = _train_epochs(
            state,
            model,
            optimizer,
            ema,
            eval_model,
            train,
            (val_x, val_y),
            out_dir,
            progress,
            log,
            world,
            on_epoch,
            teacher,
        )
        learned_from = {"teacher": taught_by, "fonts": state.fonts}
        learned_from = {k: v for k, v in learned_from.items() if v}
        return _finish(
            state, eval_model, (val_x, val_y), data, device, out_dir, stopped, log, world, test, learned_from
        )


def _quiet(_: str) -> None:
    pass


def _describe_world(cfg: TrainConfig, world: World, device: torch.device, n_val: int) -> str:
    """The run log's account of how a data-parallel job trains (or a ConfigError for a batch it cannot split)."""
    if cfg.batch_size < world.size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is the global batch, split between {world.size} processes: it must be at "
            f"least {world.size}; raise --batch-size or use fewer processes"
        )
    if 0 < n_val < world.size:
        raise ConfigError(f"{n_val} validation images cannot be split between {world.size} processes")
    share = f"{cfg.batch_size // world.size}" + ("" if cfg.batch_size % world.size == 0 else " or one more")
    fused = "the fused CPU passes on each process" if cfg.fused and device.type == "cpu" else "autograd"
    return (
        f"data-parallel over {world.size} processes ({backend_for(device)}): global batch {cfg.batch_size}, "
        f"{share} images per process, lr {cfg.lr:g} as configured (not scaled by the number of processes), "
        f"{torch.get_num_threads()} torch threads per process; gradients from {fused}, averaged across processes by "
        "one all_reduce per step; batchnorm normalises each process's share by its own statistics, the running "
        "averages are averaged across processes at each epoch's end; rank 0 logs, checkpoints and writes the run"
    )


# Files a run writes into its folder; a folder that holds any of them, not written by a run, is someone's.
RUN_FILES = (
    WEIGHTS_NAME,
    META_NAME,
    CHECKPOINT_NAME,
    "history.csv",
    "curves.png",
    "confusion.png",
    "mistakes.png",
    "report.html",
)
# Made exclusively when a run starts in a folder, and kept: two runs started into one folder cannot both
# have it, and a folder that has it was made for a run.
CLAIM_NAME = ".digits-run"


@contextmanager
def _claimed(out_dir: Path, resume: bool) -> Iterator[None]:
    """Hold ``out_dir`` for this run, or say why not: another run holds it, or it holds files a run would write
    over (a user's own run.json or history.csv).

    The claim is an exclusive lock on ``.digits-run`` (which holds the process id, for people), taken with
    ``flock``: the system releases it when the process ends, however it ends, so a run killed with -9 leaves a
    folder that ``--resume`` can take, and two runs (or two resumes) of one folder cannot both have it.
    """
    if not resume and not (out_dir / CLAIM_NAME).exists():  # not a run's folder: are there files of the user's?
        theirs = sorted(name for name in RUN_FILES if (out_dir / name).exists())
        if theirs:
            raise RunError(
                f"{out_dir} holds {', '.join(theirs)}, which a run would write over; choose an empty or new folder "
                "with --out"
            )
    elif not out_dir.is_dir():
        raise RunError(f"nothing to resume: {out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / CLAIM_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        if not _lock(fd):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise RunError(
                f"{out_dir} is taken by another run, still running (process {holder}); wait for it to finish, "
                "or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; False when another process holds one."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_run(
    held: ExitStack, out_dir: Path, cfg: TrainConfig, resume: bool, preset: str | None, log: Log, world: World
) -> TrainState:
    """Rank 0 claims and opens the run directory (held until ``held`` closes); the other ranks learn whether it
    could, and read the same state without writing anything."""
    problem: DigitsError | None = None
    state: TrainState | None = None
    if world.is_main:
        try:
            held.enter_context(_claimed(out_dir, resume))
            state = _open_run_dir(out_dir, cfg, resume, preset, log)
        except DigitsError as exc:
            problem = exc
    message = broadcast_object(None if problem is None else str(problem), world)
    if problem is not None:
        raise problem
    if message is not None:
        raise RunError(f"rank 0 could not open the run: {message}")
    if state is None:  # another rank: the state rank 0 opened
        state = TrainState.load(out_dir / CHECKPOINT_NAME) if resume else TrainState(cfg, preset)
    return state


def _open_run_dir(out_dir: Path, cfg: TrainConfig, resume: bool, preset: str | None, log: Log) -> TrainState:
    """The state to start from: a new one, or the checkpoint of the run being resumed (same config only)."""
    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise RunError(
                f"nothing to resume in {out_dir}: no {CHECKPOINT_NAME} (a finished run removes it; "
                "a run that never finished its first epoch has none)"
            )
        state = TrainState.load(ckpt_path)
        if state.config != cfg:
            raise RunError(f"{out_dir} was started with a different config; resume it with the same settings")
    elif (out_dir / WEIGHTS_NAME).exists() or ckpt_path.exists():
        raise RunError(f"{out_dir} already holds a run; choose another --out, or --resume it")
    else:
        state = TrainState(cfg, preset)
    for name in remove_partial_files(out_dir):
        log(f"removed {name}, a file a killed run had not finished writing")
    return state


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the training (0: left as they are), put back after."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str, world: World = SINGLE) -> torch.device:
    """The device ``name`` means here; in a job, CUDA means this rank's own GPU (its LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device("cuda", world.local_rank) if name == "cuda" and world.distributed else torch.device(name)


def split_train_val(data: MNIST, cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x, train_y, val_x, val_y) as uint8/int64 tensors; validation is the LAST fraction, as Keras does."""
    limit = cfg.train_limit or len(data.train_images)
    x, y = to_tensors(data.train_images[:limit], data.train_labels[:limit])
    split = int(len(x) * (1.0 - cfg.val_split))  # keras: split_at = int(n * (1 - validation_split))
    return x[:split], y[:split], x[split:], y[split:]


def _with_captures(x: Tensor, y: Tensor, cfg: TrainConfig, log: Log) -> Data:
    """The training digits followed by ``cfg.captures`` captured copies of each (digits.train.captures)."""
    from digits.train.captures import captured_digits

    images, labels = captured_digits(
        x.numpy(), y.numpy(), cfg.captures, seed=cfg.seed, workers=cfg.threads or 0, log=log
    )
    extra_x, extra_y = to_tensors(images, labels)
    return torch.cat([x, extra_x]), torch.cat([y, extra_y])


def _with_outliers(x: Tensor, y: Tensor, cfg: TrainConfig, log: Log) -> Data:
    """The training set followed by ``cfg.outliers`` non-digit shapes and their captured copies, labelled
    OUTLIER (trained towards the uniform distribution: see :func:`gradient_function`)."""
    from digits.train.outliers import outlier_images

    images = outlier_images(cfg.outliers, seed=cfg.seed)
    extra_x, extra_y = _and_captured(images, np.full(len(images), OUTLIER, np.int64), cfg, log)
    log(f"adding {len(extra_x):,} non-digit shapes, trained towards no digit in particular")
    return torch.cat([x, extra_x]), torch.cat([y, extra_y])


def _font_files(cfg: TrainConfig) -> list[Path]:
    """The handwriting font files ``cfg.fonts`` and ``cfg.font_letters`` draw from (none when both are 0); an error
    naming the packages if none is installed."""
    from digits.train.fonts import font_files

    return font_files() if cfg.fonts or cfg.font_letters else []


def _font_record(files: list[Path]) -> list[dict[str, str]]:
    """Each font file's path and SHA-256, for run.json: installing or removing fonts changes what a run draws."""
    record = []
    for f in files:
        try:
            record.append({"path": str(f), "sha256": sha256_hex(f.read_bytes())})
        except OSError as e:  # unreadable (permissions), or a folder named like a font
            raise ConfigError(
                f"{f} is not a font file that can be read ({e.strerror or e}); give TrueType or OpenType"
            ) from e
    return record


def _same_fonts(state: TrainState, installed: list[dict[str, str]], out_dir: Path) -> list[dict[str, str]]:
    """The fonts a run draws from: those ``installed`` now, which must be the ones it started with when it is
    resumed (other fonts would draw other training pictures from the same seed); a :class:`RunError` if not."""
    if state.epoch and state.fonts and state.fonts != installed:
        started = {f["path"]: f["sha256"] for f in state.fonts}
        now = {f["path"]: f["sha256"] for f in installed}
        changed = sorted(p for p in started.keys() | now.keys() if started.get(p) != now.get(p))
        raise RunError(
            f"{out_dir} started with other handwriting fonts than are installed now ({', '.join(changed)} "
            "added, removed or changed); put the same font files back to resume it, or start a new run"
        )
    return installed


def _with_fonts(x: Tensor, y: Tensor, files: list[Path], cfg: TrainConfig, log: Log) -> Data:
    """The training set followed by ``cfg.fonts`` digits and ``cfg.font_letters`` letters and symbols (labelled
    OUTLIER) in the handwriting fonts ``files``, and their captured copies."""
    from digits.train.fonts import font_digits, font_not_digits

    if cfg.fonts:
        extra_x, extra_y = _and_captured(*font_digits(cfg.fonts, seed=cfg.seed, files=files), cfg, log)
        log(f"adding {len(extra_x):,} digits drawn in {len(files)} handwriting fonts")
        x, y = torch.cat([x, extra_x]), torch.cat([y, extra_y])
    if cfg.font_letters:
        images = font_not_digits(cfg.font_letters, seed=cfg.seed, files=files)
        extra_x, extra_y = _and_captured(images, np.full(len(images), OUTLIER, np.int64), cfg, log)
        log(f"adding {len(extra_x):,} letters and symbols drawn in {len(files)} handwriting fonts, as non-digits")
        x, y = torch.cat([x, extra_x]), torch.cat([y, extra_y])
    return x, y


def _and_captured(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, log: Log) -> Data:
    """``images`` and their ``cfg.captures`` captured copies each (digits.train.captures), as tensors."""
    from digits.train.captures import captured_digits

    if cfg.captures:
        extra, extra_labels = captured_digits(
            images, labels, cfg.captures, seed=cfg.seed, workers=cfg.threads or 0, log=log
        )
        images, labels = np.concatenate([images, extra]), np.concatenate([labels, extra_labels])
    return to_tensors(images, labels)


def _build(state: TrainState, device: torch.device) -> tuple[nn.Module, Optimizer, nn.Module | None]:
    """The network (seeded), its optimizer and weight average, restored from ``state`` when resuming."""
    cfg = state.config
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_options).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = Optimizer(cfg, [p for p in model.parameters() if p.requires_grad])  # not fixed layers
    ema = ema_copy(model) if cfg.ema else None
    if state.epoch:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        if ema is not None:
            ema.load_state_dict(state.ema)  # type: ignore[arg-type]  # saved whenever cfg.ema is set
    return model, optimizer, ema


def _eval_args(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    return {"batch_size": cfg.eval_batch_size, "precision": cfg.eval_precision, "device": device}


def _train_epochs(
    state: TrainState,
    model: nn.Module,
    optimizer: Optimizer,
    ema: nn.Module | None,
    eval_model: nn.Module,
    train: Data,
    val: Data,
    out_dir: Path,
    progress: bool,
    log: Log,
    world: World = SINGLE,
    on_epoch: EpochCallback | None = None,
    teacher: nn.Module | None = None,
) -> str:
    """Train from ``state.epoch`` to the last epoch, checkpointing each; returns why it stopped early, or ""."""
    cfg = state.config
    x, y = train
    val_x, val_y = val
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    bar = Progress(progress, log)
    device = x.device

    def reached_target() -> bool:  # inside an epoch, for --target-accuracy with --eval-every
        result = evaluate(eval_model, val_x, val_y, **_eval_args(cfg, device), world=world)
        return result.accuracy >= cfg.target_accuracy

    check = reached_target if cfg.target_accuracy and len(val_x) else None
    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        update = bar.start(epoch + 1, cfg.epochs, steps_per_epoch, cfg.batch_size)
        lr = cfg.lr * lr_factor(cfg, optimizer.steps, steps_per_epoch)  # at the epoch's first step
        train_loss, train_acc, seen = train_one_epoch(
            model, optimizer, x, y, cfg, epoch, ema, update, check, world, teacher
        )
        if not math.isfinite(train_loss):
            raise RunError(_diverged(train_loss, epoch + 1, cfg, state.epoch, out_dir))
        for net in (model, ema):  # the ranks' batchnorm statistics differ: evaluate and save their mean
            if net is not None:
                average_buffers(net, world)
        result = evaluate(eval_model, val_x, val_y, **_eval_args(cfg, device), world=world) if len(val_x) else None
        seconds = time.perf_counter() - t0
        state.train_seconds += seconds
        row = {
            "epoch": epoch + 1,
            "epochs": cfg.epochs,
            "lr": lr,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": result.loss if result else None,
            "val_accuracy": result.accuracy if result else None,
            "seconds": seconds,
            "images": seen,
            "images_per_s": seen / seconds,
        }
        state.history.append(row)
        if result is not None and result.accuracy > state.best.accuracy:
            weights = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
            state.best = Best(result.accuracy, epoch + 1, weights if cfg.select == "best" else None)
        stopped = _stop_reason(state, result, seen)
        state.epoch = epoch + 1
        state.model, state.optimizer = model.state_dict(), optimizer.state_dict()
        state.ema = ema.state_dict() if ema is not None else None
        if world.is_main:
            state.save(out_dir / CHECKPOINT_NAME)
        bar.end(row)  # after the checkpoint: an epoch reported done is an epoch saved
        if on_epoch is not None:
            on_epoch(row)
        if stopped:
            log(stopped)
            return stopped
    return ""


def _diverged(loss: float, epoch: int, cfg: TrainConfig, saved: int, out_dir: Path) -> str:
    """What to tell a user whose run's loss became NaN or infinite: nothing of it is saved as a model."""
    kept = (
        f"the checkpoint of epoch {saved} is kept in {out_dir}, but resuming would diverge the same way"
        if saved
        else "nothing was saved"
    )
    return (
        f"the training loss became {loss} in epoch {epoch}: the model diverged, and no model was saved ({kept}). "
        f"Start again with a smaller --lr (it was {cfg.lr:g}) or other optimizer settings, in a new --out."
    )


def _stop_reason(state: TrainState, val: EvalResult | None, seen: int) -> str:
    """Why training stops after this epoch (the target reached, or no progress for `patience` epochs), or ""."""
    cfg, epoch = state.config, len(state.history)
    if cfg.target_accuracy and val is not None and val.accuracy >= cfg.target_accuracy:
        return (
            f"validation accuracy {val.accuracy:.4f} reached the target {cfg.target_accuracy} "
            f"in epoch {epoch} after {seen:,} images, {state.train_seconds:.1f}s of training"
        )
    if cfg.patience and epoch - state.best.epoch >= cfg.patience:
        return f"no better validation accuracy for {cfg.patience} epochs; stopped after epoch {epoch}"
    return ""


def _finish(
    state: TrainState,
    final: nn.Module,
    val: Data,
    data: MNIST,
    device: torch.device,
    out_dir: Path,
    stopped: str,
    log: Log,
    world: World = SINGLE,
    with_test: bool = True,
    learned_from: dict[str, Any] | None = None,
) -> Run:
    """Keep the chosen weights, fit the temperature on validation data, test once, write the run (``learned_from``:
    what it learned from besides MNIST, kept in it: :attr:`Run.learned_from`)."""
    cfg = state.config
    if cfg.select == "best" and state.best.state is not None:
        final.load_state_dict(state.best.state)
        log(f"keeping the weights of epoch {state.best.epoch} (best validation accuracy {state.best.accuracy:.4f})")
    temperature = (
        validation_temperature(
            final, *val, batch_size=cfg.eval_batch_size, precision=cfg.eval_precision, device=device, world=world
        )
        if len(val[0])
        else 1.0
    )
    test = None
    if with_test:
        test = evaluate(final, *to_tensors(data.test_images, data.test_labels), **_eval_args(cfg, device), world=world)
        log(
            f"test accuracy {test.accuracy:.4f} (loss {test.loss:.4f}, {test.n - round(test.accuracy * test.n)} "
            f"errors in {test.n:,}); training took {state.train_seconds:.1f}s"
        )
    else:
        log(f"training took {state.train_seconds:.1f}s; the test set was left untouched")
    broken = [k for k, v in final.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken or not math.isfinite(temperature):
        raise RunError(
            f"the trained weights are not finite numbers ({', '.join(broken[:3]) or 'the temperature'}): "
            "the model diverged, and is not saved; start again with a smaller --lr, in a new --out"
        )
    run = Run(out_dir, cfg, final.eval(), state.history, test, state.train_seconds, stopped, temperature, world.size)
    run.learned_from = learned_from or {}
    if world.is_main:
        write_run(run, data, state.preset, state.best.epoch if cfg.select == "best" else len(state.history))
        (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # complete: the weights and metadata are all it needs
    return run


@contextmanager
def _autocast(device: torch.device, precision: str) -> Iterator[None]:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch  # distinct streams per (seed, epoch), stable across resumes


def _rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Rank ``rank``'s stream for dropout and augmentation: rank 0's is the single process's own."""
    return _epoch_seed(seed, epoch) + rank * 1_000_000_007


def gradient_function(model: nn.Module, cfg: TrainConfig, device: torch.device) -> Callable[..., Grads]:
    """``grads(x, y[, taught]) -> (loss, logits)`` that leaves d(loss)/d(parameters) in each ``p.grad`` (``taught``:
    a teacher's probabilities, with ``cfg.distill``; see :func:`_loss`).

    Autograd for every model, except on the CPU (digits.train.fast.fused, same gradients in fewer operations): the
    seed network's whole pass is hand-written, and fastnet's stride-2 stem runs in a C kernel.
    """
    fused = cfg.fused and device.type == "cpu"
    net = model.net if isinstance(model, ShiftAverage) else model  # the same function while training
    if fused and seed_layers(net) is not None and not _has_outliers(cfg) and not cfg.distill:
        return SeedGradients(net, cfg.precision, cfg.label_smoothing)
    forward = (stem_forward(net, cfg.precision) if fused else None) or model

    def grads(xb: Tensor, yb: Tensor, taught: Tensor | None = None) -> Grads:
        with _autocast(device, cfg.precision):
            logits = forward(xb)
        loss = _loss(logits.float(), yb, cfg, taught)
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss, logits

    return grads


def _has_outliers(cfg: TrainConfig) -> bool:
    """Whether some training pictures are not digits (label OUTLIER): outlier shapes or letters in the fonts."""
    return bool(cfg.outliers or cfg.font_letters)


def _loss(logits: Tensor, y: Tensor, cfg: TrainConfig, taught: Tensor | None) -> Tensor:
    """The batch's mean loss: cross-entropy with the labels (smoothed by ``cfg.label_smoothing``); with a
    teacher's probabilities ``taught`` (B, 10), a share ``cfg.distill`` of each digit's loss is the cross-entropy
    with them instead (Hinton et al. 2015, at temperature 1); with outliers (label OUTLIER), OUTLIER_WEIGHT
    times the cross-entropy from the uniform distribution on those (Hendrycks et al. 2019)."""
    if not _has_outliers(cfg) and taught is None:
        return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    digit = y != OUTLIER
    # The clamp keeps outliers' rows valid; they are masked out.
    ce = F.cross_entropy(logits, y.clamp(min=0), label_smoothing=cfg.label_smoothing, reduction="none")
    log_p = F.log_softmax(logits, dim=1)
    if taught is not None:
        ce = (1.0 - cfg.distill) * ce - cfg.distill * (taught * log_p).sum(dim=1)
    uniform = -log_p.mean(dim=1)
    return torch.where(digit, ce, OUTLIER_WEIGHT * uniform).sum() / len(y)


def _teacher(cfg: TrainConfig, device: torch.device, log: Log) -> tuple[nn.Module | None, dict[str, Any] | None]:
    """The network of ``cfg.teacher``, in evaluation mode, when ``cfg.distill`` asks for one, and what the run's
    record keeps of it (:func:`made_from`: its checksum and how it was made, as it was when loaded)."""
    if not cfg.distill:
        return None, None
    from digits.models.weights import load_weights

    weights, record = run_record(cfg.teacher)
    network, meta = load_weights(weights)
    log(f"learning from {cfg.teacher} ({meta['model']}) too: {cfg.distill:g} of each digit's loss")
    return network.to(device).eval().requires_grad_(False), made_from(cfg.teacher, meta, record)


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
    world: World = SINGLE,
    teacher: nn.Module | None = None,
) -> tuple[float, float, int]:
    """One pass over (x, y) in a seeded random order; returns (mean loss, accuracy, images seen).

    ``check``, if given, is called every ``cfg.eval_every`` steps; when it returns True the epoch ends there.
    In a job (``world``), every rank draws the same order and trains on its share of each global batch; the
    returned figures are the whole batch's, summed across ranks.
    """
    device = x.device
    grads = gradient_function(model, cfg, device)
    generator = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    torch.manual_seed(_rank_seed(cfg.seed, epoch, world.rank))  # dropout draws from the global generator
    order = torch.randperm(len(x), generator=generator).to(device)  # the same on every rank
    if world.rank:  # each rank augments its own images with its own draws
        generator = torch.Generator().manual_seed(_rank_seed(cfg.seed, epoch, world.rank))
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    bs = cfg.batch_size
    n_steps = math.ceil(len(x) / bs)  # the last, smaller batch is kept, as Keras does
    mine = 0  # images this rank trained on
    for i in range(n_steps):
        batch = order[i * bs : (i + 1) * bs]  # the global batch
        idx = batch[shard_of(len(batch), world)]  # this rank's share: all of it in a single process
        if len(idx):
            xb, yb = x[idx], y[idx]  # (B, 1, 28, 28) float, (B,) int64
            shaped, xb = augment_pair(xb, cfg.augment, generator)  # (xb itself twice, with augment off)
            taught = None
            if teacher is not None:  # what the teacher makes of the clean picture of each digit
                with torch.no_grad(), _autocast(device, cfg.precision):
                    taught = F.softmax(teacher(shaped).float(), dim=1)
            loss, logits = grads(xb, yb) if taught is None else grads(xb, yb, taught)
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()  # (an OUTLIER is never counted right)
            mine += len(yb)
        else:  # a last batch smaller than the number of ranks leaves this one nothing: it adds no gradient
            model.zero_grad(set_to_none=True)
        if world.distributed:
            average_gradients(optimizer.params, len(idx), len(batch), world)
        optimizer.step(cfg.lr * lr_factor(cfg, optimizer.steps, n_steps))  # every epoch has n_steps
        if ema is not None:
            update_ema(ema, model, cfg.ema)
        seen = min((i + 1) * bs, len(x))
        if progress is not None and (i % 50 == 49 or i == n_steps - 1):  # (rank 0's share, in a job)
            progress(i + 1, loss_sum.item() / max(mine, 1), correct.item() / max(mine, 1))
        if check is not None and cfg.eval_every and (i + 1) % cfg.eval_every == 0 and i + 1 < n_steps and check():
            break
    loss_sum, correct = sum_across(loss_sum, world), sum_across(correct, world)
    return loss_sum.item() / seen, correct.item() / seen, seen
