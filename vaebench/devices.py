"""The one device rule: every device vaebench runs on is resolved here, once, with one set of messages.

A device is given as ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when torch sees a GPU, else the
CPU), a ``torch.device``, or None (the device of what is already there: a tensor's, or a module's first
parameter's; the CPU when there is none). :func:`resolve` turns any of these into a ``torch.device``, with a
CUDA device always carrying its index, and refuses a device that is not there with a `VaebenchError` that
says what to use instead. The configuration checks its ``device`` key with the same function, so a bad
device is refused before any work starts, in the same words wherever it was given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError


def auto() -> str:
    """``"cuda"`` when torch sees a CUDA device, else ``"cpu"``: what ``"auto"`` means."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve(device: str | torch.device | None = None, like: Tensor | nn.Module | None = None) -> torch.device:
    """The ``torch.device`` that ``device`` names (see the module docstring).

    Args:
        device: the device, or None for ``like``'s device.
        like: a tensor or a module whose device a None ``device`` means.

    Raises:
        VaebenchError: an unknown device, or a CUDA device torch does not see.
    """
    if device is None:
        return _device_of(like)
    if isinstance(device, str) and device == "auto":
        device = auto()
    if isinstance(device, str) and not (
        device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise VaebenchError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise VaebenchError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VaebenchError(
                f"device {str(device)!r} requested but torch sees no CUDA device; use --device cpu (or auto)"
            )
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise VaebenchError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise VaebenchError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or auto")
    return device


def _device_of(like: Tensor | nn.Module | None) -> torch.device:
    if isinstance(like, Tensor):
        return like.device
    if isinstance(like, nn.Module):
        first = next(iter(like.parameters()), None)
        if first is None:
            first = next(iter(like.buffers()), None)
        return first.device if first is not None else torch.device("cpu")
    return torch.device("cpu")
