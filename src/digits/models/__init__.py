"""The networks: one registry of names (``create_model``), their layers, weights files and inference.

    registry.py     register_model, create_model(name, **options), list_models, model_options
    convnets.py     the registered networks (seed, lenet5, mlp, fastnet, deepnet)
    ensemble.py     ensemble: several trained networks answering together (the mean of their probabilities)
    layers.py       building blocks: activations, the DCT stem, ShiftAverage (test-time shifts), FlattenHWC
    choices.py      the values model options take, without torch (for the CLI)
    weights.py      save_weights / load_weights: a .safetensors file that rebuilds its network
    inference.py    predict_logits: a network on uint8 or float images, batch by batch
    layer_table.py  summary(model): the layer table, like Keras' model.summary()

Importing this package imports no torch; each name below is loaded on first use. Knows nothing of
training, data or command lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits._lazy import lazy_exports

__all__ = ["count_parameters", "create_model", "list_models", "model_info", "model_options", "summary"]

_HOMES = {
    "count_parameters": "digits.models.registry",
    "create_model": "digits.models.registry",
    "list_models": "digits.models.registry",
    "model_info": "digits.models.registry",
    "model_options": "digits.models.registry",
    "summary": "digits.models.layer_table",
}

if TYPE_CHECKING:
    from digits.models.layer_table import summary
    from digits.models.registry import count_parameters, create_model, list_models, model_info, model_options


# torch is imported when a network is asked for, not when digits.models.choices is.
__getattr__ = lazy_exports(__name__, _HOMES)
