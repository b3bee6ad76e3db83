"""``python -m vaebench.verify [NAME ...]``: the same as ``python -m vaebench verify [NAME ...]``.

The exact-gradient check itself is :mod:`vaebench.checks.exact_gradients`. Its functions were importable from
here in earlier releases; for one release they still are, with a `DeprecationWarning`.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from vaebench import cli
from vaebench.checks import exact_gradients


def __getattr__(name: str) -> Any:
    if hasattr(exact_gradients, name) and not name.startswith("_"):
        warnings.warn(
            f"vaebench.verify.{name} is deprecated; import it from vaebench.checks.exact_gradients",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(exact_gradients, name)
    raise AttributeError(f"module 'vaebench.verify' has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """``vaebench verify`` with these arguments."""
    return cli.main(["verify", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
