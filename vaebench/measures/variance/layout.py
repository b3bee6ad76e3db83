"""Where each parameter's gradient lives (the flat order and groups), a sample of R gradient estimates, and the
options that say how the engines compute one (:class:`Engine`) and how the measure summarises it
(:class:`VarianceOptions`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError, check_int

METHODS = ("batched", "tiled", "vmap", "naive")
"""Engines of :func:`~vaebench.measures.variance.engines.gradient_sample` (see that module's docstring)."""


@dataclass(frozen=True)
class Engine:
    """How the replicate gradients are computed; the figures do not depend on it beyond rounding.

    Attributes:
        method: one of `METHODS` (``batched``: the tiled engine where the model allows it, else vmap).
        chunk_size: replicates per pass (default: sized by device and activations).
        factored: let the tiled engine keep the weights of layers whose input is the same in every replicate
            (the encoder's first) as factors (a, δ) instead of blocks (:class:`GradientSample`).
        rescale: divide the encoder's blocks by the estimator's ``encoder_scale``.
    """

    method: str = "batched"
    chunk_size: int | None = None
    factored: bool = False
    rescale: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise VaebenchError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, 1)


@dataclass(frozen=True)
class VarianceOptions:
    """How the variance measure computes and summarises its replicates.

    Attributes:
        method, chunk_size: as in :class:`Engine`.
        level: level of every interval.
        resamples: bootstrap resamples per interval.
        timing_repeats: timed gradient estimates for ``seconds_per_estimate`` (their median).
        weights: the importance-weight diagnostics of the rows (:mod:`vaebench.measures.weights`), which the
            scaling laws' regime rule reads: None or 0 (the default: none drawn, NaN columns, no cost), S draws
            per datapoint, or the :func:`~vaebench.measures.weights.weight_summary` of this model and
            minibatch, drawn once and shared by every estimator and K measured there (they depend on
            neither). Drawing is not free: S = 4000 draws per datapoint cost about what one measurement at
            R = 100 and K = 10 does (:mod:`vaebench.measures.variance.diagnostics`).
    """

    method: str = "batched"
    chunk_size: int | None = None
    level: float = 0.95
    resamples: int = 1000
    timing_repeats: int = 5
    weights: int | Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        Engine(self.method, self.chunk_size)  # the same checks
        if not 0 < self.level < 1:
            raise VaebenchError(f"level must lie strictly between 0 and 1, got {self.level!r}")
        check_int("resamples", self.resamples, 1)
        check_int("timing_repeats", self.timing_repeats, 1)

    def engine(self, factored: bool = False) -> Engine:
        """The engine these options ask for."""
        return Engine(self.method, self.chunk_size, factored=factored)


@dataclass(frozen=True)
class Layout:
    """How the parameters are ordered and grouped.

    Attributes:
        params: the trainable parameters (encoder first for a GaussianVAE).
        groups: group name -> indices into ``params``; always has ``all``.
        encoder: indices of the encoder's parameters (those NVIL rescales).
    """

    params: list[nn.Parameter]
    groups: dict[str, list[int]]
    encoder: list[int]

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.params)


def layout(model: nn.Module) -> Layout:
    """The order of ``model``'s trainable parameters and its groups (``encoder``, ``decoder``, ``all``).

    Models without ``parameter_groups()`` get the single group ``all``.
    """
    named = model.parameter_groups() if hasattr(model, "parameter_groups") else {}
    params: list[nn.Parameter] = []
    groups: dict[str, list[int]] = {}
    for name, group in named.items():
        mine = [p for p in group if p.requires_grad and all(p is not q for q in params)]
        groups[name] = list(range(len(params), len(params) + len(mine)))
        params += mine
    params += [p for p in model.parameters() if p.requires_grad and all(p is not q for q in params)]
    if not params:
        raise VaebenchError("the model has no trainable parameters: there is no gradient to measure")
    groups["all"] = list(range(len(params)))
    return Layout(params, groups, groups.get("encoder", []))


@dataclass(frozen=True)
class GradientSample:
    """R independent gradient estimates, one block [R, numel] per parameter of ``layout``.

    The engines allocate one array [R, P] and hand out its column ranges as the blocks (``data``); the
    summary then reduces runs of adjacent parameters in one go. A sample built from separate blocks (``data``
    None) works too. A weight in ``factors`` (index -> (a [B, in], δ [R, B, out]), asked for with
    ``Engine(factored=True)``) is kept as factors instead: replicate r's gradient is δ_rᵀ a, its
    block is left unwritten, and :meth:`block` forms it when asked.
    """

    blocks: list[Tensor]
    layout: Layout
    method: str = ""  # the engine that computed it: tiled, vmap or naive
    data: Tensor | None = None  # [R, P]: the blocks are its column ranges, in order
    factors: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)

    @property
    def replicates(self) -> int:
        return self.blocks[0].shape[0]

    def block(self, i: int) -> Tensor:
        """Parameter i's block [R, numel] (formed from its factors if it has them)."""
        if i not in self.factors:
            return self.blocks[i]
        shared, deltas = self.factors[i]
        return torch.matmul(deltas.transpose(1, 2), shared).reshape(deltas.shape[0], -1)

    def group(self, name: str) -> list[Tensor]:
        """The blocks of one group."""
        return [self.block(i) for i in self.layout.groups[name]]

    def flat(self, group: str = "all") -> Tensor:
        """[R, P_group] concatenated (a copy)."""
        return torch.cat(self.group(group), dim=1)

    def segments(self) -> list[tuple[Tensor | None, list[int]]]:
        """The sample as column ranges [R, width] of adjacent parameters that belong to the same groups, each
        with the indices of its parameters: one range per group for a VAE (encoder, decoder) when the blocks
        share one array, else one per block. A factored weight is a range of its own, given as None."""
        groups = [
            frozenset(g for g, members in self.layout.groups.items() if i in members)
            for i in range(len(self.blocks))
        ]
        runs: list[list[int]] = []
        for i, member_of in enumerate(groups):
            joins = runs and runs[-1][-1] not in self.factors and groups[runs[-1][-1]] == member_of
            if self.data is not None and i not in self.factors and joins:
                runs[-1].append(i)
            else:
                runs.append([i])
        offsets = [0]
        for block in self.blocks:
            offsets.append(offsets[-1] + block.shape[1])
        return [
            (
                None
                if run[0] in self.factors
                else self.blocks[run[0]]
                if self.data is None
                else self.data[:, offsets[run[0]] : offsets[run[-1] + 1]],
                run,
            )
            for run in runs
        ]
