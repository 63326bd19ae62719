"""Errors a user can act on: each message says what was wrong and how to fix it."""


class RecBoleRagError(Exception):
    """Base class; the CLI prints these as one clear message instead of a traceback."""


class ConfigError(RecBoleRagError, ValueError):
    """A YAML file, an override or a setting is invalid."""


class UnknownModelError(RecBoleRagError, ValueError):
    """No model of that name in the plug-in or in RecBole."""


class DatasetError(RecBoleRagError, ValueError):
    """A dataset is missing, malformed, or empty after filtering."""


class CheckpointError(RecBoleRagError, ValueError):
    """A checkpoint is missing or does not fit the model."""
