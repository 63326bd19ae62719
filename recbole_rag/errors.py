"""Errors a user can act on: each message says what was wrong and how to fix it; ``command``
turns one into a single line on the command line."""

import argparse
import sys
import warnings


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


def is_count(value, least=0):
    """True for an integer (not a bool: YAML's true is not 1) of at least ``least``: the check
    every count-like setting needs before it names what was wrong."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


class CommandParser(argparse.ArgumentParser):
    """An argument parser for a ``command``: a wrong option (missing, mistyped, unknown choice)
    raises a ConfigError, printed as one line, where argparse prints its usage block and exits."""

    def error(self, message):
        raise ConfigError(f"{self.prog}: {message} (--help lists the options).")


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def command(body):
    """Run a command line's ``body()`` (which returns its exit status): a RecBoleRagError prints
    as one ``error: ...`` line with status 2, and a warning as one ``warning: ...`` line. Every
    command of recbole-rag runs through here."""
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return body()
    except RecBoleRagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = shown
