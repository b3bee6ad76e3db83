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
    """R independent gradient estimates, one block [R, numel] per parameter of ``layout``."""

    blocks: list[Tensor]
    layout: Layout
    method: str = ""  # the engine that computed it: tiled, vmap or naive

    @property
    def replicates(self) -> int:
        return self.blocks[0].shape[0]

    def group(self, name: str) -> list[Tensor]:
        """The blocks of one group."""
        return [self.blocks[i] for i in self.layout.groups[name]]

    def flat(self, group: str = "all") -> Tensor:
        """[R, P_group] concatenated (a copy)."""
        return torch.cat(self.group(group), dim=1)
