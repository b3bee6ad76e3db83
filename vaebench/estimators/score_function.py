r"""Score-function (REINFORCE) estimators of the ELBO gradient, with their baselines, and VarGrad.

With z_k ~ q_φ(z|x) drawn without a path to φ and f_k = log p_θ(x, z_k) - log q_φ(z_k|x):

    ∇_φ ELBO ≈ (1/K) Σ_k (f_k - b_k) ∇_φ log q_φ(z_k|x),     ∇_θ ELBO ≈ (1/K) Σ_k ∇_θ log p_θ(x, z_k)

unbiased for any baseline b_k that does not depend on z_k (E_q[∇_φ log q] = 0). A baseline fixed before the
call (none, a moving average, NVIL's b(x)) keeps that property for any sampler whose z_k are marginally q, so
those estimators accept antithetic and RQMC draws; a baseline built from the other samples of the same call
(leave-one-out, VarGrad) does not, since those samples then depend on z_k.

Seeds of the stateful ones. ``reinforce-ma`` and ``reinforce-nvil`` draw their initial statistics (and NVIL
its baseline network's initial weights) when prepared, from streams ``init.statistics`` and
``init.estimator`` of a seed: the ``seed`` option when it is set, else the seed given to
``prepare(model, x, seed=...)`` (the run's: independent runs get independent initial state), else 0, as
before the option became optional (an estimator prepared without a seed behaves as it always did).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators.base import Estimator, check_flag, independent_objective, log_density

DEPENDENT_SAMPLES = (
    "its baseline for sample k is built from the other samples of the call, which antithetic and RQMC "
    "draws make dependent on z_k, so E[b_k ∇ log q(z_k)] ≠ 0 and the gradient would be biased"
)
"""Why the leave-one-out family takes only independent samples."""


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
        sampler: how ε is drawn (:mod:`vaebench.estimators.sampling`); every sampler keeps it unbiased.
    """

    family = "score-function"
    summary = "score function (REINFORCE), no baseline"
    citation = "Williams 1992; Ranganath, Gerrish & Blei 2014, arXiv:1401.0118"

    def __init__(self, score_term: bool = False, sampler: str = "iid"):
        super().__init__(sampler)
        self.score_term = check_flag("score_term", score_term)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
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
        seed: seeds the noise of the initial baseline; None (default): the seed given to :meth:`prepare`
            (the run's), else 0.
        score_term, sampler: see :class:`Reinforce` (the baseline is fixed before the call: every sampler
            keeps it unbiased).
    """

    summary = "score function with a moving-average baseline"
    stateful = True
    citation = "Williams 1992; Mnih & Gregor 2014, arXiv:1402.0030"

    def __init__(
        self, decay: float = 0.9, seed: int | None = None, score_term: bool = False, sampler: str = "iid"
    ):
        super().__init__(score_term, sampler)
        if not 0.0 <= decay < 1.0:
            raise VaebenchError(f"decay must lie in [0, 1), got {decay!r}")
        self.decay, self.seed = decay, seed
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def prepare(self, model, x, seed: int | None = None):
        """Set the baseline from an independent draw at these parameters (once), seeded by the ``seed``
        option, else ``seed`` (the run's), else 0."""
        # Before its first use, the baseline is set from an independent draw (a zero baseline would make the
        # first steps plain REINFORCE, with gradients far larger than any later one). Once: one device read.
        if int(self.steps) == 0:
            self.baseline.copy_(independent_objective(model, x, _seed(self.seed, seed)).mean())
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
        sampler: ``"iid"`` only (the baseline uses the other samples of the call).
    """

    min_samples = 2
    samplers = ("iid",)
    iid_only = DEPENDENT_SAMPLES
    summary = "score function with the leave-one-out baseline over the K samples"
    citation = "Kool, van Hoof & Welling 2019, ICLR DeepRLStructPred workshop; Mnih & Rezende 2016"

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
            untouched) and the noise that initialises c and v; None (default): the seed given to
            :meth:`prepare` (the run's), else 0.
        score_term: also keep -∇_φ log q(z_k) / max(1, √v); see :class:`Reinforce`.
        sampler: see :class:`Reinforce` (b(x), c and v are fixed before the call: every sampler keeps the
            direction unbiased).
    """

    summary = "score function with NVIL's learned baseline b(x), centring and variance normalisation"
    stateful = True
    local_only = (
        "its baseline b(x) is amortised over datapoints, and a global latent has one f for the data set"
    )
    citation = "Mnih & Gregor 2014, arXiv:1402.0030"

    def __init__(
        self,
        hidden: int = 100,
        decay: float = 0.8,
        normalize: bool = True,
        seed: int | None = None,
        score_term: bool = False,
        sampler: str = "iid",
    ):
        super().__init__(score_term, sampler)
        if not 0.0 <= decay < 1.0:
            raise VaebenchError(f"decay must lie in [0, 1), got {decay!r}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise VaebenchError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden, self.decay, self.seed = hidden, decay, seed
        self.normalize = check_flag("normalize", normalize)
        self.baseline_net: nn.Module | None = None
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("variance", torch.ones(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def prepare(self, model, x, seed: int | None = None):
        """Build b_ψ and set c and v from an independent draw (once each), seeded by the ``seed`` option,
        else ``seed`` (the run's), else 0."""
        seed = _seed(self.seed, seed)
        if self.baseline_net is None:
            with rng.seeded(seed, "init.estimator"):
                net = nn.Sequential(nn.Linear(x.shape[-1], self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
            nn.init.zeros_(net[-1].weight)  # start at b(x) = 0: plain centred REINFORCE
            nn.init.zeros_(net[-1].bias)
            self.baseline_net = net.to(device=x.device, dtype=x.dtype)
        # Statistics never set: from an independent draw, before their first use (one device read, once).
        if int(self.steps) == 0:
            with torch.no_grad():
                residual = independent_objective(model, x, seed) - self.baseline_net(x).squeeze(-1)
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
        z = self.sample(q, num_samples, generator).detach()
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


class VarGrad(Estimator):
    r"""VarGrad: the gradient of the log-variance loss (Richter, Boustati, Nüsken, Ruiz & Akyildiz 2020).

    The log-variance loss of q_φ against the posterior, with the sampling distribution r held fixed at q:
    L(φ) = Var_{z~r}[log q_φ(z|x) - log p_θ(x, z)]. Its K-sample estimate at fixed z_k ~ q, with
    f_k = log p_θ(x, z_k) - log q_φ(z_k|x) and f̄ their mean, is the sample variance
    V̂ = (1/(K-1)) Σ_k (f_k - f̄)², whose gradient (the f̄ term vanishes as Σ_k (f_k - f̄) = 0) is

        ∇_φ V̂ = -(2/(K-1)) Σ_k (f_k - f̄) ∇_φ log q_φ(z_k|x)  =  -2 x [reinforce-loo's ∇_φ ELBO estimate].

    So, draw by draw, the encoder gradient of VarGrad is exactly twice that of :class:`ReinforceLeaveOneOut`
    with its default ``score_term=False`` (the leave-one-out baseline (1/(K-1)) Σ_{j≠k} f_j and the sample
    mean with the K/(K-1) correction are the same estimator); in expectation 2 ∇_φ KL(q || p(z|x)), as the
    paper shows for the log-variance loss at r = q. With ``score_term=True`` reinforce-loo adds
    -(1/K) Σ_k ∇_φ log q(z_k), a zero-mean term that VarGrad never has. The factor 2 is reported as
    ``encoder_scale`` (the variance measures divide by it), so on the ELBO-gradient scale VarGrad's variance
    *equals* reinforce-loo's; Adam, whose step ignores a constant factor on a coordinate's gradient (up to its
    ε), trains the two identically. What this entry adds is the log-variance view (the loss V̂ itself, a
    divergence that stays defined for r ≠ q), not a new gradient. The decoder (θ) takes the pathwise ELBO
    gradient (1/K) Σ_k ∇_θ log p_θ(x, z_k): θ's gradient of V̂ would only align p(x, ·) with q up to a
    constant, not fit the data. K >= 2; independent samples only.

    Richter, Boustati, Nüsken, Ruiz & Akyildiz 2020, "VarGrad: A Low-Variance Gradient Estimator for
    Variational Inference", arXiv:2010.10436.
    """

    family = "score-function"
    min_samples = 2
    samplers = ("iid",)
    iid_only = DEPENDENT_SAMPLES
    summary = "gradient of the log-variance loss: exactly 2 x reinforce-loo's encoder gradient"
    citation = "Richter, Boustati, Nüsken, Ruiz & Akyildiz 2020, arXiv:2010.10436"

    @property
    def encoder_scale(self) -> float:
        return 2.0

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
        log_q = log_density(q, z)  # [K, B], gradient to φ
        log_p = model.log_joint(x, z)  # [K, B], gradient to θ
        f = log_p.detach() - log_q
        log_variance = (f - f.mean(0)).square().sum(0) / (num_samples - 1)  # V̂ [B], gradient to φ only
        return self._output((log_p - log_q).detach().mean(0), log_p.mean(0) - log_variance)


def _seed(option: int | None, given: int | None) -> int:
    """The seed of a stateful estimator's initial state: its own option, else the caller's, else 0."""
    for value in (option, given):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise VaebenchError(f"an estimator's seed must be a non-negative integer, got {value!r}")
            return value
    return 0
