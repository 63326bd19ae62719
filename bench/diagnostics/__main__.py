"""python -m bench.diagnostics NAME [options]: runs the diagnostic NAME (its own --help)."""

import importlib
import sys

from bench.diagnostics import TOOLS


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + "\n".join(f"  {name:22} {what}" for name, what in TOOLS.items()))
        return 0
    if argv[0] not in TOOLS:
        print(f"error: unknown diagnostic {argv[0]!r}: one of {', '.join(TOOLS)}.", file=sys.stderr)
        return 2
    return importlib.import_module(f"bench.diagnostics.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
