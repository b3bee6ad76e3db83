"""The training step's estimator and model under ``torch.compile``, with the noise drawn outside and compile time kept apart.

What is compiled is step 2 of :mod:`vaebench.train.step`, the estimator's surrogate on (x, ε): its forward
graph and, through AOTAutograd, its backward; the optimizer step stays the fused kernel it already is. The
compiled function takes the noise ε as an input (compiled graphs cannot take a ``torch.Generator``): the loop
draws it just before, from the run's own ``train.noise`` generator, with exactly the call the estimator would
make (:func:`vaebench.train.stacking.draw_noise`), and the estimator uses it through
:meth:`~vaebench.estimators.Estimator.sample`. So a compiled run sees the same numbers as an eager one and
differs from it only by the compiler's rounding. (The other way, seeding torch's global generator at every
step through :func:`vaebench.rng.seeded`, would give a compiled run other noise than an eager one, and costs a
seed derivation and a fork of the global generator per step.)

Compilation happens at the first call for each input shape (``dynamic=False``: one graph per batch size, e.g.
an epoch's last short batch): :meth:`CompiledSurrogate.compiles` says whether a call will compile, so the loop
counts that step's time as compile time (`~vaebench.train.loop.TrainResult.compile_time_s`), not training
time; the step's own arithmetic, milliseconds next to seconds of compilation, goes with it.

On CUDA, ``compile=True`` uses ``mode="reduce-overhead"`` (CUDA graphs: one launch per step where the eager
step is launch-bound); on a CPU the default mode. A graph's outputs are overwritten by its next replay, so each
call marks a new step and returns copies of the surrogate and the objective (two small kernels), which the
latched divergence check keeps for several steps.

A stateful estimator updates its state in the forward pass (``reinforce-ma``'s baseline, NVIL's statistics).
Inductor keeps the value read before the update for the backward pass (gradients within 1.2e-6 of eager,
measured); the ``aot_eager`` debugging backend of torch 2.13 recomputes the learning signal in the backward
pass from the state *after* the update (encoder gradients 0.2% to 1% off, measured), so it is refused for
an estimator with state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator


def compile_options(compile: bool | str, device: torch.device) -> dict[str, object]:
    """``torch.compile`` keywords for `TrainSpec.compile`: True is inductor (CUDA graphs on CUDA), a str a backend."""
    if compile is True:
        return {"backend": "inductor", "mode": "reduce-overhead" if device.type == "cuda" else None}
    return {"backend": compile}


class CompiledSurrogate:
    """``(x, ε) -> (scale · surrogate, per-row objective)`` of an estimator on a model, compiled.

    Args:
        model: the model (or a stacked form: x [S·B, D], ε [K, S·B, Z]).
        estimator: the estimator, prepared.
        num_samples: K.
        compile: `TrainSpec.compile` (True, or a backend name).
        device: where the step runs.
        scale: factor on the surrogate (S for S stacked seeds, so each seed's gradient is its own).
    """

    def __init__(
        self,
        model: nn.Module,
        estimator: Estimator,
        num_samples: int,
        compile: bool | str,
        device: torch.device,
        scale: float = 1.0,
    ):
        def surrogate(x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
            out = estimator(model, x, num_samples=num_samples, generator=eps)
            return out.surrogate * scale if scale != 1.0 else out.surrogate, out.elbo

        self.options = compile_options(compile, device)
        if self.options["backend"] == "aot_eager" and any(True for _ in estimator.buffers()):
            raise VaebenchError(
                f"compile={compile!r} gives wrong gradients for an estimator with state "
                f"({estimator.name or type(estimator).__name__}): the aot_eager backend recomputes its learning "
                "signal in the backward pass from the state its forward pass updated; use compile=True (inductor)"
            )
        try:
            self.function = torch.compile(surrogate, dynamic=False, **self.options)
        except Exception as error:  # an unknown backend surfaces as several exception types
            raise VaebenchError(f"torch.compile with {self.options} failed: {error}") from error
        self.shapes: set[tuple[tuple[int, ...], ...]] = set()
        self.graphs = self.options.get("mode") == "reduce-overhead"

    def compiles(self, x: Tensor, eps: Tensor) -> bool:
        """Whether the next call with these shapes compiles (its first call for them)."""
        return (tuple(x.shape), tuple(eps.shape)) not in self.shapes

    def __call__(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        self.shapes.add((tuple(x.shape), tuple(eps.shape)))
        try:
            if not self.graphs:
                return self.function(x, eps)
            # a CUDA graph's outputs live in its memory pool, overwritten by the next replay; the loop keeps a
            # step's losses until the latched divergence check reads them, steps later: keep copies
            torch.compiler.cudagraph_mark_step_begin()
            surrogate, objective = self.function(x, eps)
            return surrogate.clone(), objective.clone()
        except VaebenchError:
            raise
        except Exception as error:  # the compiler's own failures (no C++ compiler, an unsupported operation)
            raise VaebenchError(
                f"torch.compile with {self.options} failed on the training step: {error}; train with "
                "compile=False (an estimator must draw its noise through Estimator.sample to be compiled)"
            ) from error
