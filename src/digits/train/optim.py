"""The training loop's optimizer: torch's update rules, without ``torch.optim.Optimizer``'s start-up cost.

Building any ``torch.optim.Optimizer`` imports ``torch._dynamo`` (its methods are wrapped so that the
compiler skips them): 1.1 s here, a fifth of a whole ``digits train --preset fast`` process. ``Optimizer``
keeps the state itself and calls torch's functional optimizers (``torch.optim.adam.adam`` and the others,
the code the ``torch.optim`` classes run), so every update is torch's; a test checks each optimizer, step
for step, against its ``torch.optim`` class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.adagrad import adagrad
from torch.optim.adam import adam
from torch.optim.adamw import adamw
from torch.optim.rmsprop import rmsprop
from torch.optim.sgd import sgd

from digits.errors import RunError
from digits.train.config import TrainConfig

RMSPROP_ALPHA = 0.9  # Keras' rho (PyTorch defaults to 0.99)
ADAGRAD_INITIAL = 0.1  # Keras starts Adagrad's accumulator at 0.1 (PyTorch at 0)


class Optimizer:
    """``cfg.optimizer`` over ``params``; ``step(lr)`` applies one update from each ``p.grad``.

    The same settings as ``torch.optim.SGD(lr, momentum, nesterov, weight_decay)``,
    ``RMSprop(lr, alpha=0.9, eps, momentum, weight_decay)``, ``Adagrad(lr, eps,
    initial_accumulator_value=0.1, weight_decay)`` and ``Adam``/``AdamW(lr, betas, eps, weight_decay,
    fused=True)`` (the fused kernel does the whole update in one call instead of ~10 ops per tensor).
    """

    def __init__(self, cfg: TrainConfig, params: list[nn.Parameter]) -> None:
        self.cfg, self.params = cfg, list(params)
        self.steps = 0  # updates applied so far; the learning-rate schedule reads it

        def zeros(fill: float = 0.0) -> list[Tensor]:
            return [torch.full_like(p, fill, memory_format=torch.preserve_format) for p in self.params]

        # torch's per-parameter step counters: float32 scalars, on the parameter's device for the fused kernel
        fused = cfg.optimizer in ("adam", "adamw")
        counters = [torch.zeros((), device=p.device if fused else "cpu") for p in self.params]
        self.state: dict[str, list[Any]]
        if cfg.optimizer == "sgd":
            self.state = {"momentum": [None] * len(self.params)}  # torch starts each buffer as the first gradient
        elif cfg.optimizer == "rmsprop":
            self.state = {"square_avg": zeros(), "momentum": zeros() if cfg.momentum > 0 else [], "step": counters}
        elif cfg.optimizer == "adagrad":
            self.state = {"sum": zeros(ADAGRAD_INITIAL), "step": counters}
        else:
            self.state = {"exp_avg": zeros(), "exp_avg_sq": zeros(), "step": counters}

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update at learning rate ``lr``; like torch.optim, parameters without a gradient are skipped."""
        cfg, wd = self.cfg, self.cfg.weight_decay
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        params: list[Tensor] = [self.params[i] for i in have]
        grads: list[Tensor] = [p.grad for p in params if p.grad is not None]  # all of them
        s = {key: [values[i] for i in have] if values else [] for key, values in self.state.items()}
        if cfg.optimizer == "sgd":
            sgd(
                params,
                grads,
                s["momentum"],
                weight_decay=wd,
                momentum=cfg.momentum,
                lr=lr,
                dampening=0.0,
                nesterov=cfg.nesterov,
                maximize=False,
            )
            for i, buffer in zip(have, s["momentum"]):  # sgd() creates the buffers on the first step
                self.state["momentum"][i] = buffer
        elif cfg.optimizer == "rmsprop":
            rmsprop(
                params,
                grads,
                s["square_avg"],
                [],
                s["momentum"],
                s["step"],
                lr=lr,
                alpha=RMSPROP_ALPHA,
                eps=cfg.eps,
                weight_decay=wd,
                momentum=cfg.momentum,
                centered=False,
            )
        elif cfg.optimizer == "adagrad":
            adagrad(
                params, grads, s["sum"], s["step"], lr=lr, weight_decay=wd, lr_decay=0.0, eps=cfg.eps, maximize=False
            )
        else:
            update = adamw if cfg.optimizer == "adamw" else adam
            update(
                params,
                grads,
                s["exp_avg"],
                s["exp_avg_sq"],
                [],
                s["step"],
                fused=True,
                amsgrad=False,
                beta1=cfg.betas[0],
                beta2=cfg.betas[1],
                lr=lr,
                weight_decay=wd,
                eps=cfg.eps,
                maximize=False,
            )
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.cfg.optimizer, "steps": self.steps, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s result (tensors are copied in place, keeping device and layout)."""
        ok = isinstance(saved, dict) and saved.get("optimizer") == self.cfg.optimizer
        ok = ok and isinstance(saved.get("state"), dict) and saved["state"].keys() == self.state.keys()
        if not ok:
            raise RunError(
                f"the checkpoint holds no {self.cfg.optimizer} state this version of digits can resume (it was "
                "written by an older version); start the run again in a new --out directory"
            )
        for key, tensors in self.state.items():
            loaded = saved["state"][key]
            if key == "momentum" and self.cfg.optimizer == "sgd":
                tensors[:] = [None if t is None else t.to(p.device) for t, p in zip(loaded, self.params, strict=True)]
                continue
            for mine, theirs in zip(tensors, loaded, strict=True):
                if mine.shape != theirs.shape:  # copy_ would broadcast a (1,) state over a whole tensor
                    raise RunError(
                        f"the checkpoint's {key} state has shape {tuple(theirs.shape)}, not {tuple(mine.shape)}"
                    )
                mine.copy_(theirs)
        self.steps = int(saved["steps"])
