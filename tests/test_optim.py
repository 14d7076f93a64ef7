"""digits.train.optim.Optimizer makes torch.optim's updates, step for step, and resumes from its state."""

import subprocess
import sys

import pytest
import torch

from digits.errors import RunError
from digits.train.config import TrainConfig
from digits.train.optim import ADAGRAD_INITIAL, RMSPROP_ALPHA, Optimizer

SETTINGS = [
    dict(optimizer="sgd"),
    dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(optimizer="rmsprop", momentum=0.5, weight_decay=1e-3),
    dict(optimizer="adagrad", weight_decay=1e-3),
    dict(optimizer="adam", betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-3),
    dict(optimizer="adamw", weight_decay=0.05),
]


def torch_optimizer(cfg, params):
    """What digits' optimizer is meant to equal: torch.optim with the same settings."""
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, alpha=RMSPROP_ALPHA, eps=cfg.eps, momentum=cfg.momentum, weight_decay=wd
        )
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(
            params, lr=cfg.lr, eps=cfg.eps, initial_accumulator_value=ADAGRAD_INITIAL, weight_decay=wd
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd, fused=True)


def parameters(seed=0):
    torch.manual_seed(seed)
    conv = torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)  # layouts are kept
    return [torch.nn.Parameter(t) for t in (conv, torch.randn(10, 5), torch.randn(10))]


def set_gradients(params, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g).to(memory_format=torch.preserve_format) * (1 + step)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_each_optimizer_makes_torchs_updates(settings):
    cfg = TrainConfig(lr=0.01, **settings)
    ours, theirs = parameters(), parameters()
    mine, reference = Optimizer(cfg, ours), torch_optimizer(cfg, theirs)
    for step in range(6):
        lr = cfg.lr * (1.0 - step / 6)  # a schedule: every step at its own rate
        for group in reference.param_groups:
            group["lr"] = lr
        set_gradients(ours, step)
        set_gradients(theirs, step)
        mine.step(lr)
        reference.step()
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert mine.steps == 6
    assert ours[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_a_resumed_optimizer_continues_exactly(settings, tmp_path):
    cfg = TrainConfig(lr=0.01, **settings)
    straight, resumed = parameters(), parameters()
    a = Optimizer(cfg, straight)
    b = Optimizer(cfg, resumed)
    for step in range(3):
        for params, opt in ((straight, a), (resumed, b)):
            set_gradients(params, step)
            opt.step(0.01)
    torch.save(b.state_dict(), tmp_path / "state.pt")
    c = Optimizer(cfg, resumed)  # a new process would build a fresh one and load the checkpoint into it
    c.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert c.steps == 3
    for step in range(3, 5):
        for params, opt in ((straight, a), (resumed, c)):
            set_gradients(params, step)
            opt.step(0.01)
    for p, q in zip(straight, resumed):
        assert torch.equal(p, q)


def test_parameters_without_a_gradient_are_left_alone_as_torch_does():
    cfg = TrainConfig(optimizer="adam", lr=0.1)
    params = parameters()
    before = params[1].detach().clone()
    opt = Optimizer(cfg, params)
    set_gradients(params, 0)
    params[1].grad = None
    opt.step(0.1)
    assert torch.equal(params[1], before)
    assert float(opt.state["step"][1]) == 0.0 and float(opt.state["step"][0]) == 1.0


def test_a_state_for_another_optimizer_is_a_clear_error():
    adam = Optimizer(TrainConfig(optimizer="adam"), parameters())
    with pytest.raises(RunError, match="no sgd state"):
        Optimizer(TrainConfig(optimizer="sgd"), parameters()).load_state_dict(adam.state_dict())
    with pytest.raises(RunError, match="older version"):  # torch.optim's own format, as older runs saved it
        adam.load_state_dict(torch.optim.Adam(parameters()).state_dict())
    other = Optimizer(TrainConfig(optimizer="adam"), [torch.nn.Parameter(torch.ones(1)) for _ in range(3)])
    with pytest.raises(RunError, match="shape"):
        adam.load_state_dict(other.state_dict())


def test_training_does_not_import_the_compiler():
    # torch.optim.Optimizer imports torch._dynamo (~1 s) when built; digits' optimizer must not.
    code = (
        "import sys, torch\n"
        "from digits.train.config import TrainConfig\n"
        "from digits.train.optim import Optimizer\n"
        "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
        "Optimizer(TrainConfig(), [p]).step(0.1)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
