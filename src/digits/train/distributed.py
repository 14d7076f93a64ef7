"""Data-parallel training over several processes (torchrun): who this process is, and the few collectives fit uses.

A job of ``W`` processes ("ranks") trains one model. Every rank holds the whole training tensor and draws the
same seeded permutation each epoch (the single-process shuffle); the global batch of step ``i`` is the same
``order[i*B:(i+1)*B]`` a single process would train on, and rank ``r`` takes its contiguous share of it
(:func:`shard_of`: ``B/W`` images, sizes differing by at most one). After each backward pass,
:func:`average_gradients` sums every rank's gradient weighted by its share in one ``all_reduce``: each rank then
holds the gradient of the global batch's mean loss, as one process computing over the whole batch would, and
takes the same optimizer step. This is what ``DistributedDataParallel`` does, written out: it works the same for
autograd and for the hand-written passes of :mod:`digits.train.fast` (which never call the module's forward,
where DDP's hooks live), at the cost of DDP's overlap of communication with the backward pass.

Batchnorm normalises each rank's share by that share's own statistics (no SyncBatchNorm: ``B/W`` images is
plenty here); the running averages, which differ between ranks, are averaged across ranks at the end of every
epoch (:func:`average_buffers`), before validation and the checkpoint, so every rank evaluates and saves the
same model. Validation and test passes split the images exactly between ranks (no padded duplicates, unlike
DistributedSampler) and gather the outputs (:func:`sharded`), so the metrics are those of the whole set.

The process group is made by the entry point (``digits train``), never at import: :func:`world_from_env` reads
torchrun's RANK, WORLD_SIZE and LOCAL_RANK, :func:`process_group` joins the job with an explicit timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from digits.errors import ConfigError, RunError
from digits.spec import CHECKPOINT_NAME
from digits.train.config import DIST_TIMEOUT_S


@dataclass(frozen=True)
class World:
    """This process's place in a job: its ``rank`` of ``size`` processes, its ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout_s: float = DIST_TIMEOUT_S  # how long its collectives wait for the other ranks

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, checkpoints and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK; a world of one outside torchrun."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        world = World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError):
        raise ConfigError(
            "WORLD_SIZE is set but RANK is missing or not a number; start distributed runs with torchrun "
            "(or digits train --nproc N), which sets both"
        ) from None
    if not 0 <= world.rank < world.size:
        raise ConfigError(f"RANK {world.rank} is not in [0, WORLD_SIZE={world.size}); start the job with torchrun")
    return world


def launched_by_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True inside a process torchrun started (it sets TORCHELASTIC_RUN_ID for its workers)."""
    env = os.environ if env is None else env
    return "TORCHELASTIC_RUN_ID" in env or "WORLD_SIZE" in env


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(world: World, device: torch.device, timeout_s: float = DIST_TIMEOUT_S) -> Iterator[World]:
    """Join the job (torchrun's MASTER_ADDR and MASTER_PORT) for the duration of the block; leave it after.

    ``timeout_s`` bounds every collective: a rank that died or hangs ends the others' wait with an error after
    that many seconds instead of gloo's default 30 minutes. A world of one joins nothing.
    """
    if not world.distributed:
        yield world
        return
    if not timeout_s > 0:
        raise ConfigError(f"the process-group timeout must be above 0 seconds, got {timeout_s}")
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(
        backend_for(device), rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s)
    )
    try:
        yield replace(world, timeout_s=timeout_s)
    finally:
        dist.destroy_process_group()


@contextmanager
def _collective(world: World) -> Iterator[None]:
    """A collective that fails (a rank died and its connections closed, or none answered within the timeout:
    gloo raises a bare RuntimeError for both) as a RunError that says so."""
    try:
        yield
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(
            f"rank {world.rank} of {world.size} lost the other processes: one of them ended, or none answered within "
            f"--dist-timeout {world.timeout_s:g} s ({first})"
        ) from exc


def shard_of(n: int, world: World) -> slice:
    """This rank's contiguous share of ``n`` items: sizes differ by at most one, the first ranks take the extra."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (world.rank < extra))


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (a small picklable value: a path, an error message)."""
    if not world.distributed:
        return obj
    box = [obj]
    with _collective(world):
        dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def average_gradients(params: list[nn.Parameter], local_n: int, global_n: int, world: World) -> None:
    """Every ``p.grad`` <- the gradient of the global batch's mean loss, from each rank's mean over its share.

    Each rank's gradient is weighted by its share ``local_n / global_n`` (shares differ by one image when the
    batch does not divide evenly, and the last batch of an epoch may leave a rank none), summed in one
    ``all_reduce`` of all the gradients flattened together.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads]).mul_(local_n)  # one message, not one per tensor
    flat = flat.to(_comm_device())
    with _collective(world):
        dist.all_reduce(flat)
    flat.div_(global_n)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        g.copy_(flat[offset : offset + n].view(g.shape))  # copy_ keeps the gradient's own (channels-last) layout
        p.grad = g
        offset += n


def sum_across(values: Tensor, world: World) -> Tensor:
    """The element-wise sum of ``values`` over all ranks (a copy; ``values`` is left as it is)."""
    if not world.distributed:
        return values.clone()
    total = values.detach().clone().to(_comm_device())
    with _collective(world):
        dist.all_reduce(total)
    return total.to(values.device)


@torch.no_grad()
def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Rank 0's parameters and buffers on every rank (as DDP does when it wraps a model)."""
    if not world.distributed:
        return
    for t in [*model.parameters(), *model.buffers()]:
        moved = t.detach().to(_comm_device())
        with _collective(world):
            dist.broadcast(moved, src=0)
        t.copy_(moved)


@torch.no_grad()
def average_buffers(model: nn.Module, world: World) -> None:
    """Each floating-point buffer (batchnorm's running mean and variance) <- its mean over the ranks; the others
    (batchnorm's count of batches, which a rank left without images by a last small batch did not count) <-
    rank 0's.

    Every rank's running statistics follow its own shares of the batches; their mean estimates those of the
    whole training set better than any one rank's, and makes the models every rank evaluates and saves equal.
    """
    if not world.distributed:
        return
    for b in model.buffers():
        if b.is_floating_point():
            b.copy_(sum_across(b, world) / world.size)
        else:
            moved = b.to(_comm_device())
            with _collective(world):
                dist.broadcast(moved, src=0)
            b.copy_(moved)


def sharded(compute: Callable[[slice], Tensor], n: int, world: World) -> Tensor:
    """``compute(slice(0, n))``, computed as each rank's ``compute`` of its own share, gathered in order.

    The shares split the ``n`` rows exactly: nothing is padded or counted twice. ``compute`` returns (rows, ...)
    on any device; the result is on the CPU.
    """
    if not world.distributed:
        return compute(slice(0, n)).cpu()
    mine = compute(shard_of(n, world)).detach().cpu()
    sizes = [len(range(n)[shard_of(n, World(r, world.size))]) for r in range(world.size)]
    padded = torch.zeros((max(sizes), *mine.shape[1:]), dtype=mine.dtype)  # all_gather needs equal shapes
    padded[: len(mine)] = mine
    parts = [torch.empty_like(padded, device=_comm_device()) for _ in sizes]
    with _collective(world):
        dist.all_gather(parts, padded.to(_comm_device()))
    return torch.cat([part[:size].cpu() for part, size in zip(parts, sizes)])  # the padding dropped


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def launch(nproc: int, argv: list[str], out: Path) -> None:
    """Run ``python -m digits *argv`` as ``nproc`` processes on this machine under torchrun, and wait for them.

    Each process gets ``OMP_NUM_THREADS`` = usable cores // nproc unless it is set already (torchrun's own
    default is 1). When one process fails, torchrun stops the others (SIGTERM, and SIGKILL 30 s later for one
    that does not stop); that ends here as a RunError naming the first rank that failed and how, and whether
    the run in ``out`` can be resumed.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    # --standalone: a rendezvous on a free local port; no restarts: a failed rank ends the job.
    flags = ["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--module", "digits", *argv]
    try:
        run(get_args_parser().parse_args(flags))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = (
            f"was killed by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exited with status {failure.exitcode}"
        )
        raise RunError(
            f"the distributed run failed: rank {rank} (process {failure.pid}) {how}, and torchrun stopped the other "
            f"ranks; its error, if it left one, is printed above. {resume_hint(out, nproc)}"
        ) from None


def resume_hint(out: Path, nproc: int | None = None) -> str:
    """What a user can do about a run in ``out`` that stopped: resume it, or start again."""
    if not (out / CHECKPOINT_NAME).is_file():
        return "Nothing was saved: run the same command again."
    again = f" --nproc {nproc}" if nproc else ""
    return f"The last finished epoch is saved; continue with: digits train --resume {out}{again}"
