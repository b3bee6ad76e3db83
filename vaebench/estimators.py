r"""Gradient estimators for variational inference, behind one contract.

The objective. For data x, encoder q_φ(z|x) and model p_θ(x, z), with f(z) = log p_θ(x, z) - log q_φ(z|x):

    ELBO(θ, φ) = E_{q_φ(z|x)}[f(z)]                                  (objective "elbo")
    IWAE_K     = E_{z_1..K ~ q}[log (1/K) Σ_k exp f(z_k)]            (objective "iwae", Burda et al. 2015)

The gradient in θ is pathwise for every estimator (the sampling of z does not depend on θ). The estimators
differ in how they handle ∇_φ, where q_φ is also the sampling distribution:

    pathwise (reparameterization): z = μ_φ + σ_φ ⊙ ε, ε ~ N(0, I),   ∇_φ E_q[f] = E_ε[∇_φ f(μ_φ + σ_φ ⊙ ε)]
    score function (REINFORCE):    ∇_φ E_q[f] = E_q[(f(z) - b) ∇_φ log q_φ(z|x)] + E_q[∇_φ f(z)]|_z fixed

where any baseline b independent of z leaves the score-function form unbiased (E_q[∇_φ log q] = 0). The last
term is E_q[-∇_φ log q_φ(z|x)] = 0: it changes no expectation, but it acts like shifting the baseline by one
nat and often costs variance, so the score-function estimators drop it by default, as black-box VI does
(Ranganath, Gerrish & Blei 2014; Pyro's ``TraceGraph_ELBO``); ``score_term=True`` keeps it (see
:class:`Reinforce` for when each is better).

The contract. ``est = make_estimator(name, **options)``; then ``out = est(model, x, num_samples=K)`` with
x [B, D] returns an :class:`EstimatorOutput`:

- ``out.surrogate``: a scalar whose *value* is the negative batch-mean objective estimate and whose
  *gradient* (``out.surrogate.backward()``) is this estimator's estimate of that quantity's gradient. It is
  built as ``-(objective + (s - s.detach()))`` (the trick of Pyro's ``Trace_ELBO.differentiable_loss``), so
  loss curves stay honest whatever the gradient estimator;
- ``out.elbo``: the detached per-datapoint objective estimate [B];
- ``out.objective``: ``"elbo"`` or ``"iwae"`` (also ``est.objective``), so no table mixes objectives silently.

Estimators talk to the model only through ``posterior(x)`` (a ``Normal`` with batch shape [B, Z]) and
``log_joint(x, z)`` ([K, B, Z] -> [K, B]); the closed-form-KL estimator also uses ``prior()`` and
``log_likelihood(x, z)``. Every estimator is vectorised over the K samples. Randomness comes from the optional
``generator`` argument (a ``torch.Generator`` on x's device), or torch's global generator when it is ``None``.

Stateful estimators (moving averages, learned baselines) are ``nn.Module``\ s: optimise their parameters with
the model's, call :meth:`Estimator.prepare` with a batch before building the optimizer (it builds learned
parts and sets running statistics from that batch with the estimator's own noise; an estimator called without
it prepares itself on the first call's batch), and note that their running statistics update only in training
mode (``est.train()``) so that measuring them (``est.eval()``) does not change them. An estimator may rescale
its encoder gradient by a known positive scalar (an adaptive step size, as NVIL's variance normalisation
does); it reports that factor as ``encoder_scale``.

To add an estimator: subclass :class:`Estimator`, implement ``estimate``, give it a docstring with its
gradient formula and reference, and add one line to ``ESTIMATORS`` at the bottom; the CLI choices and the
test parametrization read that dict.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from vaebench.errors import VaebenchError

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns.

    Attributes:
        surrogate: scalar; value = -mean_b(objective estimate), gradient = this estimator's estimate.
        elbo: detached per-datapoint objective estimate [B].
        objective: ``"elbo"`` or ``"iwae"``.
    """

    surrogate: Tensor
    elbo: Tensor
    objective: str


class Estimator(nn.Module):
    """Base class: validates K, then calls :meth:`estimate`."""

    objective: ClassVar[str] = "elbo"
    min_samples: ClassVar[int] = 1
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    name: str = ""
    _prepared: bool = False  # a plain attribute, so checking it never reads the device

    def __init__(self):
        super().__init__()
        self.register_load_state_dict_post_hook(_loaded)

    def forward(
        self, model: nn.Module, x: Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> EstimatorOutput:
        if not isinstance(x, Tensor):
            raise VaebenchError(f"x must be a torch.Tensor of shape [B, D], got {type(x).__name__}")
        check_num_samples(num_samples, self.min_samples, self.name)
        if not self._prepared:  # never use state that was never set: prepare on this batch first
            self.prepare(model, x)
        return self.estimate(model, x, num_samples, generator)

    def estimate(
        self, model: nn.Module, x: Tensor, num_samples: int, generator: torch.Generator | None
    ) -> EstimatorOutput:
        raise NotImplementedError

    def prepare(self, model: nn.Module, x: Tensor) -> None:
        """Build any state that depends on the data (before the optimizer is made); a no-op by default.

        Called by the first ``forward`` if nobody called it before. Subclasses that override it must end by
        calling ``super().prepare(model, x)`` (which marks the estimator prepared) and keep it idempotent.
        """
        self._prepared = True

    @property
    def encoder_scale(self) -> float:
        """Known positive factor this estimator applies to its encoder gradient (1 for unbiased ones)."""
        return 1.0

    def _output(self, objective: Tensor, score: Tensor | None = None) -> EstimatorOutput:
        """Assemble the surrogate from the objective [B] (with its pathwise gradient) and a score term [B].

        The score term contributes its gradient only, never its value.
        """
        total = objective.mean()
        if score is not None:
            score = score.mean()
            total = total + (score - score.detach())
        return EstimatorOutput(surrogate=-total, elbo=objective.detach(), objective=self.objective)


def _loaded(module: Estimator, incompatible_keys) -> None:
    """After ``load_state_dict``: check at the next call whether the loaded statistics were ever set."""
    module._prepared = False


def check_num_samples(num_samples: int, minimum: int = 1, name: str = "") -> int:
    """Raise a clear error unless K is an integer >= minimum."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < minimum:
        why = (
            " (the leave-one-out baseline averages the other K-1 samples; use K >= 2 or another estimator)"
            if minimum > 1
            else ""
        )
        who = f" for {name}" if name else ""
        raise VaebenchError(f"num_samples (K) must be an integer >= {minimum}{who}{why}, got {num_samples!r}")
    return num_samples


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise VaebenchError(f"{name} must be True or False, got {value!r}")
    return value


_STATISTICS_STREAM = 7  # the stream of an estimator's seed that initialises its running statistics


@torch.no_grad()
def independent_objective(model: nn.Module, x: Tensor, seed: int) -> Tensor:
    """f = log p(x, z) - log q(z|x) at one z ~ q(z|x) per datapoint, from noise of the estimator's own: [1, B].

    Running statistics are initialised from these draws before their first use. The noise comes from a
    generator seeded by (``seed``, a stream of its own), independent of every draw the estimator is later
    called with, so a baseline built from it does not depend on any step's samples and leaves the estimator
    unbiased (the paper's Algorithm 1 would update before use, with the same samples: slightly biased).
    """
    state = np.random.SeedSequence([seed, _STATISTICS_STREAM]).generate_state(2, dtype=np.uint32)
    gen = torch.Generator(device=x.device).manual_seed(int(state[0]) << 32 | int(state[1]))
    q = model.posterior(x)
    z = sample_posterior(q, 1, gen)
    return model.log_joint(x, z) - log_density(q, z)


def sample_posterior(q: Normal, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterized draws z = μ + σ ⊙ ε from q with batch shape [B, Z] -> [K, B, Z]."""
    loc = q.loc
    eps = torch.randn((num_samples, *loc.shape), generator=generator, dtype=loc.dtype, device=loc.device)
    return loc + q.scale * eps


def log_density(q: Normal, z: Tensor) -> Tensor:
    """log q(z) summed over the latent dimension: z [K, B, Z] -> [K, B].

    Σ_j [-(z_j - μ_j)² / (2σ_j²) - log σ_j] - (Z/2) log 2π, written out rather than ``q.log_prob(z).sum(-1)``:
    the same density with a third of the autograd nodes, and Σ log σ taken once over [B, Z], not per sample.
    """
    z_score = (z - q.loc) / q.scale
    return -0.5 * z_score.square().sum(-1) - (q.scale.log().sum(-1) + z.shape[-1] * _HALF_LOG_2PI)


def stop_gradient(q: Normal) -> Normal:
    """q with its parameters detached: log q still depends on z, no longer on φ directly."""
    return Normal(q.loc.detach(), q.scale.detach(), validate_args=False)


class Reparam(Estimator):
    r"""Pathwise (reparameterization) gradient of the ELBO, K samples averaged.

    ∇ ELBO ≈ (1/K) Σ_k ∇ f(μ_φ(x) + σ_φ(x) ⊙ ε_k),  ε_k ~ N(0, I)  (the seed's z = μ + σ ε).

    Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Rezende et al. 2014.
    """

    summary = "pathwise gradient, z = mu + sigma * eps (the reparameterization trick)"
    reference = "Kingma & Welling 2014, arXiv:1312.6114"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator)
        return self._output((model.log_joint(x, z) - log_density(q, z)).mean(0))


class ReparamAnalyticKL(Estimator):
    r"""Pathwise reconstruction term with the KL divergence in closed form.

    ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z));  ∇ ≈ (1/K) Σ_k ∇ log p(x | μ + σ ε_k) - ∇ KL  (exact KL).

    Kingma & Welling 2014, Appendix B (the estimator of the pytorch/examples VAE).
    """

    summary = "pathwise reconstruction term, closed-form KL(q || p)"
    reference = "Kingma & Welling 2014, arXiv:1312.6114, eq. 10"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator)
        kl = kl_divergence(q, model.prior()).sum(-1)
        return self._output(model.log_likelihood(x, z).mean(0) - kl)


class StickingTheLanding(Estimator):
    r"""Pathwise gradient without the score term of log q ("sticking the landing").

    ∇_φ ≈ (1/K) Σ_k ∂/∂z [log p(x, z) - log q_{φ'}(z|x)]|_{φ'=φ fixed} · ∂z_k/∂φ

    The dropped term ∇_φ log q_φ(z)|_z has zero mean, so the estimator stays unbiased, and its variance
    vanishes as q approaches the true posterior. Roeder, Wu & Duvenaud 2017, arXiv:1703.09194.
    """

    summary = "pathwise gradient with the zero-mean score term of log q dropped"
    reference = "Roeder, Wu & Duvenaud 2017, arXiv:1703.09194"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator)
        return self._output((model.log_joint(x, z) - log_density(stop_gradient(q), z)).mean(0))


class Reinforce(Estimator):
    r"""Score-function (REINFORCE) gradient, K samples averaged, no baseline.

    With z_k ~ q_φ(z|x) drawn without a path to φ and f_k = log p_θ(x, z_k) - log q_φ(z_k|x):

        ∇_φ ≈ (1/K) Σ_k (f_k - b_k) ∇_φ log q_φ(z_k|x),   ∇_θ ≈ (1/K) Σ_k ∇_θ log p_θ(x, z_k)

    with b_k = 0 here; subclasses supply baselines b_k that do not depend on z_k, which keeps it unbiased.
    Williams 1992; Paisley, Blei & Jordan 2012; Ranganath, Gerrish & Blei 2014.

    Options:
        score_term: also keep the φ-gradient of f at fixed z, -(1/K) Σ_k ∇_φ log q_φ(z_k|x). Its expectation
            is 0 (E_q[∇_φ log q] = 0), so both choices are unbiased; it turns the weight of ∇_φ log q from
            f - b into f - b - 1, a baseline shifted by one nat. Dropped by default, as in black-box VI
            (Ranganath et al. 2014; Pyro's ``TraceGraph_ELBO``). Neither is better everywhere: keeping it
            changes the variance by E[(1 - 2(f - b)) ||∇_φ log q||²], so dropping it helps when the centred
            signal is mostly below 1/2 nat where the score is large. Measured at the end of the default
            digits run: reinforce-loo at K=10, encoder variance 47.4 without it against 57.3 with it (-17%);
            plain reinforce, whose f sits above 0 there, +5%. Every estimator of this family takes it.
    """

    summary = "score function (REINFORCE), no baseline"
    reference = "Williams 1992; Ranganath, Gerrish & Blei 2014, arXiv:1401.0118"

    def __init__(self, score_term: bool = False):
        super().__init__()
        self.score_term = _check_flag("score_term", score_term)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator).detach()
        log_q = log_density(q, z)  # [K, B], gradient to φ
        # f is pathwise in θ; in φ its only gradient would be the zero-mean -∇ log q, kept only on request.
        f = model.log_joint(x, z) - (log_q if self.score_term else log_q.detach())
        signal = self.learning_signal(x, f.detach())
        return self._output(f.mean(0), (signal * log_q).mean(0))

    def learning_signal(self, x: Tensor, f: Tensor) -> Tensor:
        """The weight of ∇ log q(z_k): f_k minus a baseline that does not depend on z_k. [K, B] -> [K, B]."""
        return f


class ReinforceMovingAverage(Reinforce):
    r"""REINFORCE with a moving-average baseline b = running mean of f over past batches.

    :meth:`prepare` sets b_0 = mean f over one batch at the current parameters, drawn with the estimator's own
    noise (one z per datapoint); after each training-mode step t, b ← α b + (1 - α) mean(f at step t). Step t
    uses the baseline before its own update, so b depends only on earlier and independent samples and the
    estimator stays unbiased. Williams 1992; Mnih & Gregor 2014 (the centring constant C).

    Options:
        decay: α of the moving average.
        seed: seeds the noise of the initial baseline.
        score_term: see :class:`Reinforce`.
    """

    summary = "score function with a moving-average baseline"
    reference = "Williams 1992; Mnih & Gregor 2014, arXiv:1402.0030"

    def __init__(self, decay: float = 0.9, seed: int = 0, score_term: bool = False):
        super().__init__(score_term)
        if not 0.0 <= decay < 1.0:
            raise VaebenchError(f"decay must lie in [0, 1), got {decay!r}")
        self.decay, self.seed = decay, seed
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def prepare(self, model, x):
        # Before its first use, the baseline is set from an independent draw (a zero baseline would make the
        # first steps plain REINFORCE, with gradients far larger than any later one). Once: one device read.
        if int(self.steps) == 0:
            self.baseline.copy_(independent_objective(model, x, self.seed).mean())
            self.steps.fill_(1)
        super().prepare(model, x)

    def learning_signal(self, x, f):
        signal = f - self.baseline.to(f.dtype)
        if self.training:
            with torch.no_grad():  # after use: this step's signal did not see its own samples
                self.baseline.mul_(self.decay).add_((1 - self.decay) * f.mean().to(self.baseline.dtype))
                self.steps.add_(1)
        return signal


class ReinforceLeaveOneOut(Reinforce):
    r"""REINFORCE with the leave-one-out baseline over the K samples of each datapoint.

    b_k = (1/(K-1)) Σ_{j≠k} f_j, so  ∇_φ ≈ (1/(K-1)) Σ_k (f_k - f̄) ∇_φ log q(z_k).
    b_k is independent of z_k, so it is unbiased; needs K >= 2.
    Kool, van Hoof & Welling 2019 ("Buy 4 REINFORCE samples, get a baseline for free!"); Mnih & Rezende 2016.

    Options:
        score_term: see :class:`Reinforce`.
    """

    min_samples = 2
    summary = "score function with the leave-one-out baseline over K samples (K >= 2)"
    reference = "Kool, van Hoof & Welling 2019, ICLR DeepRLStructPred workshop; Mnih & Rezende 2016"

    def learning_signal(self, x, f):
        k = f.shape[0]
        return f - (f.sum(0, keepdim=True) - f) / (k - 1)


class ReinforceNVIL(Reinforce):
    r"""REINFORCE with NVIL's learned input-dependent baseline, centring and variance normalisation.

    Learning signal, with b_ψ(x) a small network and running mean c and variance v of r = f - b_ψ(x):

        l_k = (f_k - b_ψ(x) - c) / max(1, √v),    ∇_φ ≈ (1/K) Σ_k l_k ∇_φ log q(z_k)

    b_ψ is trained alongside the model to minimise E[(f - b_ψ(x) - c)^2]. The normalisation divides the
    encoder gradient by the known factor max(1, √v), an adaptive step size (reported as ``encoder_scale``):
    the direction is unbiased, the scale is that of the ELBO gradient over max(1, √v). :meth:`prepare` sets c
    and v from one batch at the current parameters, drawn with the estimator's own noise, before their first
    use (starting from c = 0, v = 1 made the first encoder gradient hundreds of times any later one, and
    Adam's second moment remembered it for the whole run); after each training-mode step they update with
    decay α, after use, so step t's signal depends only on earlier and independent samples. Mnih & Gregor
    2014, "Neural Variational Inference and Learning in Belief Networks".

    Options:
        hidden: width of b_ψ's hidden layer (100 tanh units in the paper).
        decay: α of the running averages (0.8 in the paper).
        normalize: divide by max(1, √v) (the paper's variance normalisation).
        seed: seeds the initial weights of b_ψ (drawn from a forked generator; torch's global state is
            untouched) and the noise that initialises c and v.
        score_term: also keep -∇_φ log q(z_k) / max(1, √v); see :class:`Reinforce`.
    """

    summary = "score function with NVIL's learned baseline b(x), centring and variance normalisation"
    reference = "Mnih & Gregor 2014, arXiv:1402.0030"

    def __init__(
        self,
        hidden: int = 100,
        decay: float = 0.8,
        normalize: bool = True,
        seed: int = 0,
        score_term: bool = False,
    ):
        super().__init__(score_term)
        if not 0.0 <= decay < 1.0:
            raise VaebenchError(f"decay must lie in [0, 1), got {decay!r}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise VaebenchError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden, self.decay, self.seed = hidden, decay, seed
        self.normalize = _check_flag("normalize", normalize)
        self.baseline_net: nn.Module | None = None
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("variance", torch.ones(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def prepare(self, model, x):
        if self.baseline_net is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = nn.Sequential(nn.Linear(x.shape[-1], self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
            nn.init.zeros_(net[-1].weight)  # start at b(x) = 0: plain centred REINFORCE
            nn.init.zeros_(net[-1].bias)
            self.baseline_net = net.to(device=x.device, dtype=x.dtype)
        # Statistics never set: from an independent draw, before their first use (one device read, once).
        if int(self.steps) == 0:
            with torch.no_grad():
                residual = independent_objective(model, x, self.seed) - self.baseline_net(x).squeeze(-1)
            self.center.copy_(residual.mean())
            self.variance.copy_(residual.var(unbiased=False))
            self.steps.fill_(1)
        super().prepare(model, x)

    @property
    def encoder_scale(self) -> float:
        return float(self._scale()) if self.normalize else 1.0

    def _scale(self) -> Tensor:
        """1 / max(1, √v) as a 0-d tensor on the buffers' device (reading it as a float would sync a GPU)."""
        return self.variance.sqrt().clamp(min=1.0).reciprocal()

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator).detach()
        log_q = log_density(q, z)
        log_p = model.log_joint(x, z)
        f = log_p - log_q
        b = self.baseline_net(x).squeeze(-1)  # [B]
        center = self.center.to(f.dtype).clone()
        scale = self._scale().to(f.dtype) if self.normalize else 1.0
        residual = f.detach() - b.detach()  # r = f - b(x), [K, B]
        signal = (residual - center) * scale
        # Gradient only: θ pathwise and unscaled; every φ term scaled by 1/max(1, √v); ψ regresses f - c.
        baseline_loss = (f.detach() - center - b).pow(2).mean(0)
        path = log_p - scale * log_q if self.score_term else log_p
        score = (path + signal * log_q).mean(0) - baseline_loss
        if self.training:
            self._update(residual)
        return self._output(f.detach().mean(0), score)

    @torch.no_grad()
    def _update(self, residual: Tensor) -> None:
        mean = residual.mean().to(self.center.dtype)
        var = residual.var(unbiased=False).to(self.variance.dtype) if residual.numel() > 1 else 0.0
        self.center.mul_(self.decay).add_((1 - self.decay) * mean)
        self.variance.mul_(self.decay).add_((1 - self.decay) * var)
        self.steps.add_(1)


class IWAE(Estimator):
    r"""Pathwise gradient of the importance-weighted bound IWAE_K (objective "iwae", not the ELBO).

    log w_k = f(z_k),  IWAE_K ≈ log (1/K) Σ_k w_k,  ∇ ≈ Σ_k w̃_k ∇ log w_k  with w̃ = softmax(log w).
    Equals the ELBO at K = 1; tightens towards log p(x) as K grows. Burda, Grosse & Salakhutdinov 2015.
    """

    objective = "iwae"
    summary = "importance-weighted bound, pathwise gradient (objective: IWAE_K, not the ELBO)"
    reference = "Burda, Grosse & Salakhutdinov 2015, arXiv:1509.00519"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator)
        log_w = model.log_joint(x, z) - log_density(q, z)
        return self._output(torch.logsumexp(log_w, 0) - math.log(num_samples))


class DReG(Estimator):
    r"""Doubly-reparameterized gradient of the IWAE bound (objective "iwae").

        ∇_θ ≈ Σ_k w̃_k ∇_θ log w_k,     ∇_φ ≈ Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ   (log q's parameters fixed)

    Unbiased for the same gradient as :class:`IWAE`, with encoder variance that does not grow with K.
    Built from one decoder pass over [z, stop_grad(z)]: the θ weights w̃² + (w̃ - w̃²) = w̃, the φ weight w̃².
    Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152.
    """

    objective = "iwae"
    summary = "doubly-reparameterized IWAE gradient (objective: IWAE_K)"
    reference = "Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = sample_posterior(q, num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        path, fixed = log_joint[:num_samples], log_joint[num_samples:]
        log_w = path - log_density(stop_gradient(q), z)  # [K, B]: φ only through z
        weights = torch.softmax(log_w.detach(), 0)
        squared = weights.pow(2)
        score = (squared * log_w + (weights - squared) * fixed).sum(0)
        bound = torch.logsumexp(log_w.detach(), 0) - math.log(num_samples)
        return self._output(bound, score)


ESTIMATORS: dict[str, type[Estimator]] = {
    "reparam": Reparam,
    "reparam-analytic-kl": ReparamAnalyticKL,
    "stl": StickingTheLanding,
    "reinforce": Reinforce,
    "reinforce-ma": ReinforceMovingAverage,
    "reinforce-loo": ReinforceLeaveOneOut,
    "reinforce-nvil": ReinforceNVIL,
    "iwae": IWAE,
    "dreg": DReG,
}


def make_estimator(name: str, **options) -> Estimator:
    """Build a registered estimator by name.

    Args:
        name: a key of :data:`ESTIMATORS`.
        **options: the estimator's own options (e.g. ``decay`` for ``reinforce-ma``, ``score_term`` for every
            score-function estimator).

    Raises:
        VaebenchError: unknown name (the message lists the valid ones) or an option it does not take.
    """
    if name not in ESTIMATORS:
        raise VaebenchError(f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)  # nn.Module's *args, **kwargs
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise VaebenchError(
            f"estimator {name!r} got unknown option(s) {', '.join(unknown)}; it takes: {takes}"
        )
    estimator = cls(**options)
    estimator.name = name
    return estimator
