r"""The 1-D Gaussian problem of Mohamed et al. 2020, Figures 2-3: the suite's estimators against exact variances.

Mohamed, Rosca, Figurnov & Mnih 2020 ("Monte Carlo Gradient Estimation in Machine Learning", JMLR 21(132),
Section 3, Figures 2-3) compare the variances of the gradient estimators of

    η = ∇_θ E_{N(z; μ, σ²)}[f(z; k)],   θ ∈ {μ, σ},   f ∈ {(z - k)², exp(-k z²), cos(k z)},

computed by numerical integration (their ``variance_numerical_integration.ipynb``, at μ = σ = 1 for Figure 2,
the defaults here). This module computes the same exact variances by quadrature and sets them next to Monte
Carlo variances of the *registered* estimators of the suite, run on a 1-D model, so that agreement proves the
suite's code, not a re-implementation of it.

The 1-D model (:class:`Gaussian1D`): ``posterior(x)`` is N(μ, σ²) with μ and σ the parameters themselves (one
copy per row of x, see below), and ``log_joint(x, z)`` is one of

- f(z) (``cancel_entropy=False``): the estimators then estimate ∇(E_q[f] + H(q)). The entropy's part is exact
  and constant for the pathwise and measure-valued estimators (reparam: log q(μ + σε) = -log σ - ε²/2 - ½ log 2π
  gives ∇ = (0, 1/σ) at every draw; mvd uses the closed form), so their variances are the textbook ones;
- f(z) + log q̄(z) (``cancel_entropy=True``), q̄ being q with its parameters detached: at the current
  parameters log p - log q = f(z) exactly, and log p carries no gradient to (μ, σ). The target
  E_q[log p - log q] = E_q[f] - KL(q || q̄) has the gradient ∇E_q[f] at q̄ = q, and the score-function
  estimators' learning signal is f(z) itself, so they are the textbook forms.

What each quadrature figure is the exact variance of (K = 1, one sample; z = μ + σε; s(z) = ∇_{μ,σ} log q(z) =
(ε/σ, (ε² - 1)/σ); W, W' ~ Weibull(√2, 2); M ~ double-sided Maxwell; U ~ U(0, 1)):

=============================  ================================  ===================================================
estimator (row label)          registered estimator and model    its estimate of (∂_μ, ∂_σ)
=============================  ================================  ===================================================
``pathwise``                   ``reparam``, f                    (f'(z), f'(z) ε + 1/σ)
``score-function``             ``reinforce``, f + log q̄          f(z) s(z)
``score-function-mean``        ``reinforce-ma``, f + log q̄,      (f(z) - E_q f) s(z)
                               baseline frozen at E_q f
``mvd-coupled``                ``mvd`` (coupling=True), f        ((f(μ+σW) - f(μ-σW)) / (√(2π) σ),
                                                                  (f(μ+σM) - f(μ+σMU)) / σ + 1/σ)
``mvd-uncoupled``              ``mvd`` (coupling=False), f       ((f(μ+σW) - f(μ-σW')) / (√(2π) σ),
                                                                  (f(μ+σM) - f(μ+σε')) / σ + 1/σ), ε' ~ N(0, 1)
=============================  ================================  ===================================================

Every estimate has mean ∇E_q[f] (plus the constant (0, 1/σ) for the first model), computed by quadrature of
(E f'(z), E f'(z) ε); the variances are E[(estimate - mean)²] by ``scipy.integrate.quad`` over [-12, 12] (the
Gaussian and Maxwell weights are below e^-70 outside), the uncoupled MVD's as the sum of its two independent
parts' variances, the coupled scale part's inner integral over U by 256-point Gauss-Legendre.

Monte Carlo: the model holds R copies of (μ, σ), parameters of shape [R, 1], one per row of x (zeros [R, 1]).
One call of the estimator at K = 1 on the R rows draws each row's noise independently (the moving-average
baseline is frozen in eval mode), and the gradient of the surrogate (-mean over rows) in row r's copy is
-1/R times row r's estimate: R independent estimates from one call. Their variance is the unbiased sample
variance, with the Student-t interval (:func:`vaebench.stats.mean_interval`) of the mean of the squared
deviations (times R/(R-1)): distribution-free, valid once that mean is nearly normal (the integrands here
have all moments).

:func:`gaussian_1d_check` returns the tidy comparison, one row per (f, k, estimator, parameter).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy import integrate
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators import log_density, make_estimator, stop_gradient
from vaebench.stats import mean_interval

COSTS = ("square", "exp", "cos")
"""f(z; k): ``square`` (z - k)², ``exp`` exp(-k z²), ``cos`` cos(k z)."""

DEFAULT_KS: dict[str, tuple[float, ...]] = {
    "square": (-3.0, 0.0, 3.0),
    "exp": (0.1, 1.0, 10.0),
    "cos": (0.1, 1.0, 10.0),
}
"""k values per cost: the ends and middle of the ranges of the paper's Figures 2-3."""

FORMS: dict[str, tuple[str, dict, bool]] = {
    "pathwise": ("reparam", {}, False),
    "score-function": ("reinforce", {}, True),
    "score-function-mean": ("reinforce-ma", {}, True),
    "mvd-coupled": ("mvd", {"coupling": True}, False),
    "mvd-uncoupled": ("mvd", {"coupling": False}, False),
}
"""Row label -> (registered estimator, its options, whether the model cancels the entropy); see the table above."""

PARAMETERS = ("mu", "sigma")
FAMILY_LEVEL = 0.95
"""Level of the suite's check over all its rows at once: each row's interval at 1 - 0.05 / rows
(Bonferroni), so a correct suite misses somewhere with probability at most 5% per run."""
LIMIT = 12.0  # integration range [-LIMIT, LIMIT] in standard units
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)
_U, _U_WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2  # Gauss-Legendre on [0, 1]


def cost(name: str, z, k: float, lib=np):
    """f(z; k) for a cost of `COSTS`, with ``lib`` numpy or torch."""
    if name == "square":
        return (z - k) ** 2
    if name == "exp":
        return lib.exp(-k * z**2)
    if name == "cos":
        return lib.cos(k * z)
    raise VaebenchError(f"unknown cost {name!r}; valid costs: {', '.join(COSTS)}")


def cost_derivative(name: str, z: np.ndarray, k: float) -> np.ndarray:
    """f'(z; k) for a cost of `COSTS`."""
    if name == "square":
        return 2 * (z - k)
    if name == "exp":
        return -2 * k * z * np.exp(-k * z**2)
    if name == "cos":
        return -k * np.sin(k * z)
    raise VaebenchError(f"unknown cost {name!r}; valid costs: {', '.join(COSTS)}")


class Gaussian1D(nn.Module):
    """q = N(μ, σ²) in one dimension with (μ, σ) as parameters, one copy per row, and log p(x, z) from a cost.

    Args:
        name: a cost of `COSTS`.
        k: its parameter.
        mu, sigma: the parameters of q.
        rows: copies of (μ, σ): x must have this many rows.
        cancel_entropy: log p(x, z) = f(z) + log q̄(z) instead of f(z) (see the module docstring).
    """

    def __init__(self, name: str, k: float, mu: float, sigma: float, rows: int, cancel_entropy: bool = False):
        super().__init__()
        cost(name, 0.0, k)  # an unknown cost fails here
        if not sigma > 0:
            raise VaebenchError(f"sigma must be > 0, got {sigma!r}")
        self.name, self.k, self.cancel_entropy = name, float(k), cancel_entropy
        self.loc = nn.Parameter(torch.full((rows, 1), float(mu), dtype=torch.float64))
        self.scale = nn.Parameter(torch.full((rows, 1), float(sigma), dtype=torch.float64))

    def posterior(self, x: Tensor) -> Normal:
        if x.shape != (self.loc.shape[0], 1):
            raise VaebenchError(
                f"x must have shape [{self.loc.shape[0]}, 1] (one row per copy), got {list(x.shape)}"
            )
        return Normal(self.loc, self.scale, validate_args=False)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """[K, B, 1] -> [K, B]."""
        value = cost(self.name, z[..., 0], self.k, torch)
        if self.cancel_entropy:
            value = value + log_density(stop_gradient(self.posterior(x)), z)
        return value


def _normal(g) -> float:
    return integrate.quad(
        lambda e: math.exp(-0.5 * e * e) / math.sqrt(2 * math.pi) * g(e), -LIMIT, LIMIT, limit=400
    )[0]


def _weibull(g) -> float:
    return integrate.quad(lambda w: w * math.exp(-0.5 * w * w) * g(w), 0.0, LIMIT, limit=400)[0]


def _maxwell(g) -> float:
    return integrate.quad(
        lambda m: m * m * math.exp(-0.5 * m * m) / math.sqrt(2 * math.pi) * g(m), -LIMIT, LIMIT, limit=400
    )[0]


def _variance(expect, g) -> float:
    mean = expect(g)
    return expect(lambda v: (g(v) - mean) ** 2)


def quadrature_variances(
    name: str, k: float, mu: float = 1.0, sigma: float = 1.0
) -> dict[tuple[str, str], float]:
    """Exact variance of each estimator form of `FORMS` for each parameter: (form, parameter) -> variance."""
    f = lambda z: float(cost(name, z, k))  # noqa: E731
    df = lambda z: float(cost_derivative(name, z, k))  # noqa: E731
    at = lambda e: mu + sigma * e  # noqa: E731
    grad = {"mu": _normal(lambda e: df(at(e))), "sigma": _normal(lambda e: df(at(e)) * e)}
    mean_f = _normal(lambda e: f(at(e)))
    forms = {
        "pathwise": {"mu": lambda e: df(at(e)), "sigma": lambda e: df(at(e)) * e},
        "score-function": {
            "mu": lambda e: f(at(e)) * e / sigma,
            "sigma": lambda e: f(at(e)) * (e * e - 1) / sigma,
        },
        "score-function-mean": {
            "mu": lambda e: (f(at(e)) - mean_f) * e / sigma,
            "sigma": lambda e: (f(at(e)) - mean_f) * (e * e - 1) / sigma,
        },
    }
    out = {}
    for form, parts in forms.items():
        for p, g in parts.items():
            out[form, p] = _normal(lambda e, g=g, p=p: (g(e) - grad[p]) ** 2)
    c = math.sqrt(2 * math.pi) * sigma
    out["mvd-coupled", "mu"] = _weibull(lambda w: ((f(at(w)) - f(at(-w))) / c - grad["mu"]) ** 2)

    def coupled_scale(m: float) -> float:  # E_U[((f(μ+σm) - f(μ+σmU)) / σ - ∂_σ)²], Gauss-Legendre in U
        inner = (f(at(m)) - cost(name, mu + sigma * m * _U, k)) / sigma - grad["sigma"]
        return float(_U_WEIGHTS @ inner**2)

    out["mvd-coupled", "sigma"] = _maxwell(coupled_scale)
    out["mvd-uncoupled", "mu"] = (
        _variance(_weibull, lambda w: f(at(w))) + _variance(_weibull, lambda w: f(at(-w)))
    ) / c**2
    out["mvd-uncoupled", "sigma"] = (
        _variance(_maxwell, lambda m: f(at(m))) + _variance(_normal, lambda e: f(at(e)))
    ) / sigma**2
    return out


def monte_carlo_estimates(
    name: str,
    k: float,
    form: str,
    draws: int,
    mu: float = 1.0,
    sigma: float = 1.0,
    seed: int = 0,
    index: tuple[int, ...] = (),
) -> dict[str, np.ndarray]:
    """``draws`` independent K = 1 estimates of (∂_μ, ∂_σ) by the registered estimator of ``form``: param -> [draws]."""
    estimator_name, options, cancel = FORMS[form]
    model = Gaussian1D(name, k, mu, sigma, draws, cancel_entropy=cancel)
    x = torch.zeros(draws, 1, dtype=torch.float64)
    est = make_estimator(estimator_name, **options).double()
    est.prepare(model, x)
    if form == "score-function-mean":  # the textbook mean baseline: E_q[f], exact
        est.baseline.fill_(_normal(lambda e: float(cost(name, mu + sigma * e, k))))
    est.eval()
    gen = rng.generator(seed, "checks.gaussian_1d", *index)
    est(model, x, num_samples=1, generator=gen).surrogate.backward()
    # The surrogate is -(1/R) Σ_r (row r's objective): its gradient in row r's copy is -1/R row r's estimate.
    return {"mu": -draws * model.loc.grad[:, 0].numpy(), "sigma": -draws * model.scale.grad[:, 0].numpy()}


def gaussian_1d_check(
    ks: Mapping[str, Iterable[float]] | None = None,
    forms: Iterable[str] = tuple(FORMS),
    *,
    draws: int = 200_000,
    mu: float = 1.0,
    sigma: float = 1.0,
    level: float = 0.95,
    family_level: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Quadrature variance next to the Monte Carlo variance of the registered estimator, per f, k, form, parameter.

    Args:
        ks: cost -> k values (default `DEFAULT_KS`; its keys choose the costs).
        forms: row labels of `FORMS`.
        draws: independent estimates per (f, k, form).
        mu, sigma: the parameters of q.
        level: level of each Monte Carlo interval.
        family_level: if given, ``level`` is replaced by 1 - (1 - family_level) / rows (Bonferroni): every
            row's quadrature figure is then inside its interval with probability at least ``family_level``.
        seed: seeds the Monte Carlo draws (stream ``checks.gaussian_1d``, one index per (f, k, form)).

    Returns:
        Columns ``f, k, estimator`` (the row label), ``registered`` (the suite's estimator and options),
        ``parameter`` (``mu`` or ``sigma``), ``quadrature_var``, ``mc_var``, ``mc_var_low``, ``mc_var_high``,
        ``agrees`` (the quadrature figure inside the interval), ``draws``, ``level``.
    """
    ks = dict(DEFAULT_KS if ks is None else ks)
    forms = list(forms)
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise VaebenchError(f"unknown estimator form(s) {', '.join(unknown)}; valid: {', '.join(FORMS)}")
    if family_level is not None:
        level = 1 - (1 - family_level) / (sum(len(v) for v in ks.values()) * len(forms) * len(PARAMETERS))
    rows = []
    for i, name in enumerate(ks):
        for j, k in enumerate(ks[name]):
            exact = quadrature_variances(name, k, mu, sigma)
            for form in forms:
                estimates = monte_carlo_estimates(
                    name, k, form, draws, mu, sigma, seed, (i, j, list(FORMS).index(form))
                )
                estimator_name, options, _ = FORMS[form]
                registered = estimator_name + "".join(f" {key}={value}" for key, value in options.items())
                for p in PARAMETERS:
                    g = estimates[p]
                    squares = (g - g.mean()) ** 2 * draws / (draws - 1)
                    low, high = mean_interval(squares, level)
                    quad = exact[form, p]
                    rows.append(
                        {"f": name, "k": float(k), "estimator": form, "registered": registered, "parameter": p,
                         "quadrature_var": quad, "mc_var": float(squares.mean()), "mc_var_low": float(low),
                         "mc_var_high": float(high), "agrees": bool(low <= quad <= high), "draws": draws,
                         "level": level}
                    )  # fmt: skip
    return pd.DataFrame(rows)
