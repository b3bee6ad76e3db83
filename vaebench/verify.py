"""``python -m vaebench.verify [NAME ...]``: the same as ``python -m vaebench verify [NAME ...]``.

The exact-gradient check itself is :mod:`vaebench.checks.exact_gradients`.
"""

from __future__ import annotations

import sys

from vaebench import cli


def main(argv: list[str] | None = None) -> int:
    """``vaebench verify`` with these arguments."""
    return cli.main(["verify", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
