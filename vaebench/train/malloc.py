"""Freed activations kept for the next step, not handed back to the operating system (glibc's malloc).

A training step allocates and frees the same tensors every step. glibc returns a freed block of more than its
*mmap threshold* to the operating system at once, and trims the top of the heap when more than its *trim
threshold* is free there; both adapt to the largest block freed so far (starting at 128 KiB), so a step whose
activations are megabytes (S seeds stacked, or K = 10 rows of a 784-pixel decoder) gets fresh, zero-filled
pages from the kernel at every step (figures in benchmarks/README.md). Single-seed steps at the suite's sizes
barely fault.

:func:`keep_freed_memory` fixes the two thresholds once per process (``mallopt``): blocks up to 32 MiB come
from the heap and up to 256 MiB of freed heap is kept. The cost is memory the process keeps between steps
(at most the step's own peak). Elsewhere than Linux with glibc it does nothing. Training calls it; it changes
no number, only how fast the same ones come.
"""

from __future__ import annotations

import ctypes
import platform

MMAP_THRESHOLD = 32 << 20  # bytes: larger blocks are still mapped afresh (glibc's maximum on 64-bit)
TRIM_THRESHOLD = 256 << 20  # bytes of free heap kept at its top before any is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (module docstring); whether they are set."""
    if _done:
        return _done[0]
    ok = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            mallopt = ctypes.CDLL(None).mallopt
            ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # no mallopt in this process's C library
            ok = False
    _done.append(ok)
    return ok
