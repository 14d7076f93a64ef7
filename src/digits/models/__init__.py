"""Model registry: ``create_model(name, **options)``, ``list_models()``, ``summary(model)``."""

from digits.models import convnets as _convnets  # noqa: F401  (registers the networks)
from digits.models.registry import count_parameters, create_model, list_models, model_info, model_options
from digits.models.summary import summary

__all__ = ["count_parameters", "create_model", "list_models", "model_info", "model_options", "summary"]
