"""The divergence check without a host read per step: flags latched on the device, bad updates masked, runs cut back.

A step is bad when its loss or its gradient norm is NaN, Inf or beyond ``TrainSpec.divergence_bound``. With
``check_every = 1`` the loop reads the flag (with the loss) after every backward pass and stops before a bad
update: exact, and one device synchronisation per step, which on a GPU stalls the queue the CPU would
otherwise run ahead on. With ``check_every = N > 1``, for each of the S seeds a loop trains (1 for `train`):

- :class:`Latch`: the flag is latched on the device, frozen_s |= bad_s, with the first bad step of each seed;
- :class:`UpdateGuard`: no update of a frozen seed is applied, from its first bad step on. A single seed with
  a fused optimizer (Adam, SGD) hands the latch to the optimizer as ``found_inf``: the fused kernel then skips
  the whole step and takes back its step count, on the device (the mechanism of AMP's gradient scaler). Any
  other optimizer, and stacked seeds (``found_inf`` is one flag for all), copy the parameters before the step
  and copy a frozen seed's back after it (a ``where`` over the seed axis). Without either, fused Adam writes
  a NaN gradient into the parameters and both moments; such an update can be prevented but not undone (the
  moments are not invertible once a NaN or Inf is in them), hence the copy;
- :class:`StateGuard`: an estimator's state (baselines, running statistics) changes in its forward pass, so
  it is copied before the step and put back for seeds frozen before that step: it stops where a per-step
  check leaves it, after the bad step's forward pass;
- every N steps, and before anything that reads the run (a record, a kept state, a saved checkpoint, the
  end), the loop reads the first bad steps and the losses since the last read in one transfer (`Latch.read`)
  and cuts a seed that went bad back to the step before its first bad one: counts, train-objective window
  and clock; the steps computed after it are discarded.

The rows, states and diverged step equal those of the per-step check (``tests/test_divergence.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Latch:
    """The device-side divergence flags of S seeds and the losses since the host last read them.

    Args:
        seeds: S.
        device: where the flags live.
    """

    def __init__(self, seeds: int, device: torch.device):
        self.frozen = torch.zeros(seeds, dtype=torch.bool, device=device)
        self.first = torch.zeros(seeds, dtype=torch.long, device=device)  # 0: no bad step yet
        self.losses: list[Tensor] = []

    def observe(self, bad: Tensor, step: int, loss: Tensor) -> Tensor:
        """Latch step ``step``'s flags ``bad`` [S] and keep its losses [S]; return the seeds frozen before it."""
        before = self.frozen
        self.first = torch.where(bad & ~before, step, self.first)
        self.frozen = before | bad
        self.losses.append(loss.detach().reshape(-1))
        return before

    def read(self) -> tuple[list[int], list[list[float]]]:
        """One host read: each seed's first bad step (0: none), and the losses [step][seed] since the last read."""
        seeds, steps = self.first.numel(), len(self.losses)
        values = torch.cat([self.first.double(), *(v.double() for v in self.losses)]).tolist()
        self.losses.clear()
        first = [int(v) for v in values[:seeds]]
        return first, [values[seeds * (i + 1) : seeds * (i + 2)] for i in range(steps)]

    def keep(self, keep: Sequence[int]) -> None:
        """Keep only the seeds at positions ``keep`` (after a read, when others stopped)."""
        index = torch.as_tensor(list(keep), dtype=torch.long, device=self.frozen.device)
        self.frozen, self.first = self.frozen[index], self.first[index]


def _mask(frozen: Tensor, like: Tensor, seed_axis: bool) -> Tensor:
    """``frozen`` [S] shaped to broadcast over ``like``: along its first axis, or one flag for all of it."""
    return frozen.view(-1, *[1] * (like.dim() - 1)) if seed_axis else frozen.reshape(())


class UpdateGuard:
    """Applies the optimizer's step to the seeds that are not frozen (see the module docstring).

    Args:
        optimizer: the run's optimizer.
        parameters: the parameters it updates.
        seed_axis: whether every parameter has the seed axis first (stacked seeds); else one seed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, parameters: Sequence[nn.Parameter], seed_axis: bool):
        self.optimizer, self.parameters, self.seed_axis = optimizer, list(parameters), seed_axis
        fused = all(group.get("fused") for group in optimizer.param_groups)
        self.found_inf = not seed_axis and fused and getattr(optimizer, "_step_supports_amp_scaling", False)
        if self.found_inf:
            self.flag = torch.zeros((), device=self.parameters[0].device)
            optimizer.found_inf = self.flag  # read by the fused kernel at every step
        else:
            self.saved = [torch.empty_like(p) for p in self.parameters]

    def step(self, frozen: Tensor) -> None:
        """``optimizer.step()``, leaving the seeds with ``frozen`` [S] set as they were."""
        if self.found_inf:
            self.flag.copy_(frozen.reshape(()))
            self.optimizer.step()
            return
        with torch.no_grad():
            torch._foreach_copy_(self.saved, [p.detach() for p in self.parameters])
            self.optimizer.step()
            for p, saved in zip(self.parameters, self.saved, strict=True):
                p.copy_(torch.where(_mask(frozen, p, self.seed_axis), saved, p))

    def resize(self) -> None:
        """Rebuild the copies after the parameters changed shape (seeds dropped)."""
        if not self.found_inf:
            self.saved = [torch.empty_like(p) for p in self.parameters]


class StateGuard:
    """Puts an estimator's forward-updated state back for seeds frozen before the step (module docstring).

    Args:
        module: the estimator.
        seed_axis: whether every buffer has the seed axis first.
    """

    def __init__(self, module: nn.Module, seed_axis: bool):
        self.module, self.seed_axis = module, seed_axis
        self.saved: list[Tensor] = []

    def save(self) -> None:
        """Copy the state before the step's forward pass."""
        self.saved = [b.detach().clone() for b in self.module.buffers()]

    def restore(self, frozen_before: Tensor) -> None:
        """Put back the state of the seeds that were frozen before this step."""
        with torch.no_grad():
            for b, saved in zip(self.module.buffers(), self.saved, strict=True):
                b.copy_(torch.where(_mask(frozen_before, b, self.seed_axis), saved, b))
