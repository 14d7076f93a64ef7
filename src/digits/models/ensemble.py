"""An ensemble: several trained networks that answer together, the mean of their probabilities.

``create_model("ensemble", members=[{"model": "fastnet", "model_options": {...}}, ...])`` builds the members
from the registry; their weights live in one state dict (``members.0.…``, ``members.1.…``), so an ensemble is
saved, loaded, exported to ONNX and read like any network. ``digits ensemble`` makes one from trained runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from digits.errors import ConfigError
from digits.models.layers import mean_probability_logits
from digits.models.registry import create_model, register_model


class Ensemble(nn.Module):
    """The members' predictions averaged: logits whose softmax is the mean of the members' probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_probability_logits([member(x) for member in self.members])


# Two default fastnets unless told: what `digits models` lists and what a test builds.
_DEFAULT_MEMBERS = ({"model": "fastnet"}, {"model": "fastnet"})


@register_model
def ensemble(members: Sequence[Mapping[str, Any]] = _DEFAULT_MEMBERS) -> nn.Module:
    """The mean of several networks' probabilities, e.g. trained runs joined by `digits ensemble`.

    ``members``: two or more ``{"model": name, "model_options": {...}}``, as each member's weights file names it.
    """
    if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or len(members) < 2:
        raise ConfigError(
            f"an ensemble needs two or more members, each {{'model': name, 'model_options': {{...}}}}; got {members!r}"
        )
    nets = []
    for i, member in enumerate(members):
        if not isinstance(member, Mapping) or not isinstance(member.get("model"), str):
            raise ConfigError(f"ensemble member {i} is {member!r}, not {{'model': name, 'model_options': {{...}}}}")
        unknown = sorted(set(member) - {"model", "model_options"})
        if unknown:
            raise ConfigError(f"ensemble member {i} has {', '.join(map(repr, unknown))}; it takes model, model_options")
        options = member.get("model_options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"ensemble member {i}'s model_options is {options!r}, not a mapping")
        nets.append(create_model(member["model"], **options))
    return Ensemble(nets)
