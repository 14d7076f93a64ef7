"""Data-parallel training (digits.train.distributed): real gloo process groups on loopback, real torchrun jobs.

The oracle: two processes, each training on its share of every global batch with the gradients averaged,
take the same steps as one process training on the whole batches (reference-oracle test, as micrograd checks
itself against PyTorch). The jobs: `digits train --nproc 2` lands where one process lands, a killed or hung
rank ends the job with a message, and a killed job resumes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from digits.errors import ConfigError
from digits.models import create_model
from digits.models.inference import as_model_input
from digits.models.weights import load_weights
from digits.spec import CHECKPOINT_NAME, WEIGHTS_NAME
from digits.train.config import TrainConfig, override
from digits.train.distributed import SINGLE, World, average_buffers, shard_of, world_from_env
from digits.train.evaluate import evaluate, to_tensors
from digits.train.loop import train_one_epoch
from digits.train.optim import Optimizer

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_the_shares_split_every_count_exactly(size):
    for n in range(0, 23):
        shares = [shard_of(n, World(rank, size)) for rank in range(size)]
        assert [i for s in shares for i in range(n)[s]] == list(range(n))  # in order, nothing twice, nothing left
        lengths = [len(range(n)[s]) for s in shares]
        assert max(lengths) - min(lengths) <= 1


def test_the_world_comes_from_torchruns_variables():
    assert world_from_env({}) == SINGLE
    assert world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == World(1, 2, 1)
    for bad in ({"WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}):
        with pytest.raises(ConfigError, match="torchrun"):
            world_from_env(bad)


# --- the oracle: a real two-process gloo group against one process ------------------------------------------
NETS = {
    "seed autograd": ("seed", {"dropout": 0.0, "width": 4}, False),
    "seed fused": ("seed", {"dropout": 0.0, "width": 4}, True),
    "fastnet (batchnorm)": ("fastnet", {"widths": [4, 8, 8]}, True),
}


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """101 random pictures (uint8) and labels, the same on every call."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (101, 1, 28, 28), generator=generator, dtype=torch.uint8)
    return images, torch.randint(0, 10, (101,), generator=generator)


def scenario(world: World) -> dict[str, Any]:
    """What one rank computes: an epoch of the seed network (autograd and the fused pass), an epoch of a
    batchnorm network, and a sharded evaluation. 101 images in batches of 25: shares of 13 and 12, and a last
    batch of one image that leaves rank 1 nothing."""
    images, labels = _digits()
    x = as_model_input(images, channels_last=True)
    out: dict[str, Any] = {}
    for key, (name, options, fused) in NETS.items():
        cfg = TrainConfig(model=name, model_options=options, batch_size=25, optimizer="sgd", lr=0.05, momentum=0.9)
        cfg = override(cfg, precision="fp32", fused=fused)
        torch.manual_seed(cfg.seed)
        model = create_model(name, **options).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = Optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        loss, accuracy, seen = train_one_epoch(model, optimizer, x, labels, cfg, 0, None, world=world)
        average_buffers(model, world)
        out[key] = {"state": {k: v.clone() for k, v in model.state_dict().items()}, "loss": loss, "acc": accuracy}
        out[key]["seen"] = seen
        out[key]["probabilities"] = evaluate(model, images, labels, world=world).probabilities
    return out


_RANK = """
import sys, torch
sys.path.insert(0, sys.argv[4])
from test_distributed import scenario
from digits.train.distributed import World, process_group
world = World(int(sys.argv[1]), int(sys.argv[2]))
with process_group(world, torch.device("cpu"), 60):
    result = scenario(world)
torch.save(result, f"{sys.argv[3]}/rank{world.rank}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_take_the_steps_one_process_takes_on_the_whole_batches(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen([sys.executable, "-c", _RANK, str(r), "2", str(tmp_path), str(TESTS)], env=env)
        for r in range(2)
    ]
    assert [p.wait(timeout=120) for p in ranks] == [0, 0]
    reference = scenario(SINGLE)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    for key, ref in reference.items():
        for name, value in ref["state"].items():
            assert torch.equal(rank0[key]["state"][name], rank1[key]["state"][name]), (key, name)  # one model
            if "batchnorm" not in key:  # batchnorm normalises each share by its own statistics: not the same steps
                torch.testing.assert_close(rank0[key]["state"][name], value, rtol=1e-4, atol=1e-5, msg=key + name)
        assert rank0[key]["seen"] == ref["seen"] == 101
        if "batchnorm" not in key:
            assert rank0[key]["loss"] == pytest.approx(ref["loss"], rel=1e-4)
            assert rank0[key]["acc"] == pytest.approx(ref["acc"])
        # The sharded evaluation is the whole set's, every rank the same: the model's own probabilities, in order.
        name, options, _ = NETS[key]
        model = create_model(name, **options)
        model.load_state_dict(rank0[key]["state"])
        alone = evaluate(model, *_digits()).probabilities
        assert rank0[key]["probabilities"].shape == (101, 10)
        torch.testing.assert_close(torch.tensor(rank0[key]["probabilities"]), torch.tensor(alone), rtol=1e-5, atol=1e-6)
        assert (rank0[key]["probabilities"] == rank1[key]["probabilities"]).all()


# --- whole jobs: digits train --nproc 2 -------------------------------------------------------------------------
def _train(out: Path, mnist_dir: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "digits", "train", "--out", str(out), "--data-dir", str(mnist_dir), *flags]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_json(out: Path) -> dict[str, Any]:
    return json.loads((out / "run.json").read_text())


# The seed network without dropout, in fp32: two processes compute the one process's steps (the oracle above),
# so on real digits they land where it lands.
PARITY = ("--preset", "seed", "-O", "dropout=0", "--precision", "fp32", "--train-limit", "10000", "--epochs", "1")
PARITY += ("--batch-size", "128", "--val-split", "0.1")


@pytest.mark.slow
def test_two_processes_land_within_0_3_points_of_one_and_the_weights_load_in_one(tmp_path, mnist_dir, mnist):
    one, two = (
        _train(tmp_path / "one", mnist_dir, *PARITY),
        _train(tmp_path / "two", mnist_dir, *PARITY, "--nproc", "2"),
    )
    for job in (one, two):
        output = job.communicate(timeout=300)[0]
        assert job.returncode == 0, output[-3000:]
    assert "data-parallel over 2 processes (gloo)" in output and "lr 0.001 as configured" in output
    a, b = _run_json(tmp_path / "one"), _run_json(tmp_path / "two")
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["history"][0]["images"] == b["history"][0]["images"] == 9000  # the same global batches and steps
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.003, (a["test_accuracy"], b["test_accuracy"])
    assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.003
    model, _ = load_weights(tmp_path / "two")  # one process reads what the job wrote
    again = evaluate(model, *to_tensors(mnist.test_images, mnist.test_labels))
    assert again.accuracy == pytest.approx(b["test_accuracy"], abs=1e-9)
    assert not (tmp_path / "two" / CHECKPOINT_NAME).exists()


def _rank_pid(marker: str, rank: int) -> int | None:
    """The process of the job marked ``marker`` (an environment variable) whose torchrun RANK is ``rank``."""
    for proc in Path("/proc").iterdir():
        try:
            env = dict(line.split("=", 1) for line in (proc / "environ").read_text().split("\0") if "=" in line)
        except (OSError, ValueError):
            continue
        if env.get("DIGITS_TEST_JOB") == marker and env.get("RANK") == str(rank):
            return int(proc.name)
    return None


def _start_and_wait_for_a_checkpoint(out: Path, mnist_dir: Path, *flags: str) -> tuple[subprocess.Popen[str], int]:
    marker = uuid.uuid4().hex
    job = _train(
        out,
        mnist_dir,
        *("--preset", "seed", "-O", "dropout=0", "--train-limit", "1000", "--val-split", "0.1"),
        *("--batch-size", "100", "--epochs", "20", "--nproc", "2", *flags),
        env={**os.environ, "DIGITS_TEST_JOB": marker},
    )
    deadline = time.monotonic() + 120
    while not (out / CHECKPOINT_NAME).is_file():
        assert job.poll() is None, job.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    pid = _rank_pid(marker, 1)
    assert pid is not None
    return job, pid


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process in /proc")
def test_a_killed_rank_ends_the_job_with_a_message_and_the_run_resumes(tmp_path, mnist_dir, mnist):
    out = tmp_path / "run"
    job, pid = _start_and_wait_for_a_checkpoint(out, mnist_dir)
    os.kill(pid, signal.SIGKILL)
    output = job.communicate(timeout=90)[0]  # a generous bound: "ends", not "ends fast"
    assert job.returncode == 1, output[-3000:]
    assert f"rank 1 (process {pid}) was killed by SIGKILL" in output
    assert f"digits train --resume {out} --nproc 2" in output
    assert (out / CHECKPOINT_NAME).is_file() and not (out / WEIGHTS_NAME).exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "digits", "train", "--resume", str(out), "--nproc", "2", "--data-dir", str(mnist_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    record = _run_json(out)
    assert [h["epoch"] for h in record["history"]] == list(range(1, 21))
    model, _ = load_weights(out)
    assert evaluate(model, *to_tensors(mnist.test_images, mnist.test_labels)).accuracy == pytest.approx(
        record["test_accuracy"], abs=1e-9
    )


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process in /proc")
def test_a_hung_rank_ends_the_job_after_the_timeout_with_a_message(tmp_path, mnist_dir):
    out = tmp_path / "run"
    job, pid = _start_and_wait_for_a_checkpoint(out, mnist_dir, "--dist-timeout", "5")
    os.kill(pid, signal.SIGSTOP)  # alive, holding its connections, answering nothing
    try:
        # 5 s for rank 0 to give up, then torchrun's 30 s grace before it kills the stopped rank.
        output = job.communicate(timeout=120)[0]
    finally:
        with_pid = Path(f"/proc/{pid}").exists()
        if with_pid:
            os.kill(pid, signal.SIGKILL)
    assert job.returncode == 1, output[-3000:]
    assert "rank 0 of 2 lost the other processes" in output and "--dist-timeout 5 s" in output
    assert f"digits train --resume {out}" in output


def test_nproc_inside_torchrun_is_a_usage_error(capsys, monkeypatch, tmp_path):
    from digits.cli import main

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert main(["train", "--preset", "fast", "--nproc", "2", "--out", str(tmp_path / "r")]) == 2
    assert "under torchrun, leave it out" in capsys.readouterr().err


def test_the_processes_run_the_command_without_nproc():
    from digits.cli import _without_nproc

    assert _without_nproc(["train", "--nproc", "2", "--epochs", "1", "--nproc=3", "--out", "x"]) == [
        "train",
        "--epochs",
        "1",
        "--out",
        "x",
    ]


def test_a_batch_smaller_than_the_world_is_refused():
    from digits.train.loop import _describe_world

    with pytest.raises(ConfigError, match="at least 4"):
        _describe_world(TrainConfig(batch_size=3), World(0, 4), torch.device("cpu"), 100)
