"""Errors shared by the training and the reading side (this module imports nothing heavy)."""


class ModelFileError(ValueError):
    """A model that cannot be used: missing, unreadable, not a digits model, or its runtime is not installed."""
