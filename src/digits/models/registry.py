"""One registry of model names: the same string in the CLI, in checkpoints and in the tests."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from digits.errors import ConfigError
from digits.models.layers import ShiftAverage

ModelFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fn: ModelFn
    description: str


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(fn: ModelFn) -> ModelFn:
    """Register a model factory under its function name; its docstring's first line describes it."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    _REGISTRY[name] = ModelInfo(name, fn, description)
    return fn


def list_models() -> list[str]:
    """Names of every registered model, in registration order."""
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a clear error lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def model_options(name: str) -> dict[str, object]:
    """The options ``create_model(name, ...)`` accepts, with their defaults (every model takes ``tta``)."""
    sig = inspect.signature(model_info(name).fn)
    return {**{p.name: p.default for p in sig.parameters.values()}, "tta": False}


def create_model(name: str, **options: object) -> nn.Module:
    """Build a registered model; unknown options are an error that names the valid ones.

    ``tta=True`` (any model) wraps the network in a ``ShiftAverage``: in eval mode it predicts the average
    over the image and its four one-pixel shifts; training is unchanged.
    """
    info = model_info(name)
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or 'none'}"
        )
    tta = options.pop("tta", False)
    if not isinstance(tta, bool):
        raise ConfigError(f"model option tta must be true or false, got {tta!r}")
    net = info.fn(**options)
    return ShiftAverage(net) if tta else net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# The networks register themselves when their module is imported; importing it here means that any way
# into the registry finds them all (convnets imports register_model from above, which is defined by now).
from digits.models import convnets as _convnets  # noqa: E402, F401
from digits.models import ensemble as _ensemble  # noqa: E402, F401
