"""The hand-written step: the pytorch/examples VAE training step, written out as a practitioner writes it.

This is the plain hand-written loop the suite must not be slower than (``vae/main.py`` of pytorch/examples):
784-400-20 with ReLU, a sigmoid decoder, summed binary cross-entropy plus the analytic KL(q || N(0, I))
(Kingma & Welling 2014, Appendix B), reparameterized, ``optim.Adam(model.parameters(), lr=1e-3)`` with its
defaults, and ``loss.item()`` every step as the recipe's logging does. None of the suite's code is used.

Its throughput row has ``estimator = "handwritten"`` (:data:`vaebench.measures.schema.HANDWRITTEN`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HandwrittenVAE(nn.Module):
    """The pytorch/examples VAE (``vae/main.py``), written out as a practitioner would: no suite code.

    fc1 x_dim->hidden, fc21/fc22 hidden->z_dim (mean, log-variance), fc3 z_dim->hidden, fc4 hidden->x_dim,
    ReLU, sigmoid output; the defaults are the recipe's 784-400-20.
    """

    def __init__(self, x_dim: int = 784, hidden: int = 400, z_dim: int = 20):
        super().__init__()
        self.x_dim = x_dim
        self.fc1 = nn.Linear(x_dim, hidden)
        self.fc21 = nn.Linear(hidden, z_dim)
        self.fc22 = nn.Linear(hidden, z_dim)
        self.fc3 = nn.Linear(z_dim, hidden)
        self.fc4 = nn.Linear(hidden, x_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: Tensor) -> Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, self.x_dim))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def handwritten_loss(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The recipe's loss: summed binary cross-entropy plus the analytic KL(q || N(0, I)) (Kingma & Welling, App. B)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def handwritten_step(model: HandwrittenVAE, optimizer: torch.optim.Optimizer, x: Tensor) -> float:
    """One training step exactly as the recipe's ``train`` loop does it; returns the loss (``loss.item()``)."""
    optimizer.zero_grad()
    recon_batch, mu, logvar = model(x)
    loss = handwritten_loss(recon_batch, x, mu, logvar)
    loss.backward()
    value = loss.item()
    optimizer.step()
    return value


def build_handwritten_step(
    x: Tensor, hidden: int = 400, z_dim: int = 20, lr: float = 1e-3
) -> tuple[Callable[[], float], HandwrittenVAE, torch.optim.Optimizer]:
    """A fresh hand-written model on x's device and its recipe optimizer; returns (step, model, optimizer).

    The model's initial weights come from torch's global RNG, as in the recipe (seed it, or fork it, first).
    """
    model = HandwrittenVAE(x.shape[-1], hidden, z_dim).to(device=x.device, dtype=x.dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return (lambda: handwritten_step(model, optimizer, x)), model, optimizer
