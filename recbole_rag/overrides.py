"""``--key=value`` command-line overrides, read as RecBole reads its command line."""

import ast

from recbole_rag.errors import ConfigError


def parse_overrides(args):
    """``--key=value`` strings -> dict; a value is read as a Python literal (number, list, dict,
    None, True/False) where it is one, else kept as a string, as RecBole reads its command line."""
    overrides = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ConfigError(f"Cannot read argument '{arg}': overrides look like --key=value.")
        overrides[key] = _literal(value)
    return overrides


def _literal(text):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
