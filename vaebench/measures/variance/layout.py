"""Where each parameter's gradient lives: the flat order and groups, and a sample of R gradient estimates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError


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
    None) works too.
    """

    blocks: list[Tensor]
    layout: Layout
    method: str = ""  # the engine that computed it: tiled, vmap or naive
    data: Tensor | None = None  # [R, P]: the blocks are its column ranges, in order

    @property
    def replicates(self) -> int:
        return self.blocks[0].shape[0]

    def group(self, name: str) -> list[Tensor]:
        """The blocks of one group."""
        return [self.blocks[i] for i in self.layout.groups[name]]

    def flat(self, group: str = "all") -> Tensor:
        """[R, P_group] concatenated (a copy)."""
        return torch.cat(self.group(group), dim=1)

    def segments(self) -> list[tuple[Tensor, list[int]]]:
        """The sample as column ranges [R, width] of adjacent parameters that belong to the same groups, each
        with the indices of its parameters: one range per group for a VAE (encoder, decoder) when the blocks
        share one array, else one per block."""
        groups = [
            frozenset(g for g, members in self.layout.groups.items() if i in members)
            for i in range(len(self.blocks))
        ]
        runs: list[list[int]] = []
        for i, member_of in enumerate(groups):
            if self.data is not None and runs and groups[runs[-1][-1]] == member_of:
                runs[-1].append(i)
            else:
                runs.append([i])
        if self.data is None:
            return [(self.blocks[run[0]], run) for run in runs]
        offsets = [0]
        for block in self.blocks:
            offsets.append(offsets[-1] + block.shape[1])
        return [(self.data[:, offsets[run[0]] : offsets[run[-1] + 1]], run) for run in runs]
