"""The registry of problems: the built-ins, and a user's own through the entry-point group ``vaebench.problems``.

`PROBLEMS` is a plain dict, name -> :class:`~vaebench.problems.problem.Problem`, the one source of truth that
``python -m vaebench list`` prints. A package of your own adds problems by declaring, in its
``pyproject.toml``,

.. code-block:: toml

    [project.entry-points."vaebench.problems"]
    my-problem = "my_pkg.problems:MY_PROBLEM"    # one Problem, registered under its own name
    my-suite = "my_pkg.problems"                 # a module with a dict PROBLEMS (name -> Problem)

and :func:`load_installed_problems` registers them (each checked: a `Problem`, a valid name, no clash).

The built-ins' budgets are sized so that a run of every one (``--preset problems``: the classic estimators and
MVD x K in {1, 10} x 3 seeds) fits in about a quarter of an hour on 2 cores, each schedule decayed by a cosine
to 0, so that "levelled off" means the end of the schedule (the ranking figure of reparam at K = 1 moves at
most about a nat over its last quarter), not the best the model can reach:

- ``digits`` is the default run's model and data for a third of its schedule (1000 steps of 100 from 5e-3, the
  step size most settings chose at 3000 steps in the ``tuned`` preset): the test ELBO moves 0.8-0.9 nats over
  the last quarter and ends ~7 nats below the default's 3000 steps; MVD at K = 10 (4Z = 32 decoder passes per
  sample) is its costliest unit.
- ``fashion-mnist-binary`` is a Bernoulli 784-200-16 VAE for 500 steps of 100 images (0.8 epochs) from 3e-3: its
  test ELBO moves ~0.75 nats over the last quarter (~8 below 1000 steps); a step at K = 10 costs ~8x one on
  digits, so three estimators are what a run across every problem can afford on it (reparam, IWAE and DReG,
  whose comparison is the published one on binarized images: Burda et al. 2015, Tucker et al. 2019).
- the global-latent problems train q's free parameters (at most 31 coordinates) with Adam at 1e-2:
  ``blr-breast-cancer`` for 2000 steps on minibatches of 50 of its 455 training rows, so its gradients carry
  minibatch noise as well as Monte Carlo noise (at 1000 steps its ELBO ends ~8 nats lower); ``eight-schools``
  and ``funnel`` for 1000 steps on all of their data (eight rows, or none), within 0.2 nats of 2000 steps.
- ``gaussian-toy`` and ``linear-gaussian``: 1000 steps of 100 (the latter from 1e-2, which ends above 2000
  steps from 3e-3).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

from vaebench import plugins
from vaebench.data import Dataset, find_idx_dir, load_dataset
from vaebench.errors import VaebenchError
from vaebench.model import GaussianVAE
from vaebench.problems import data
from vaebench.problems.models import EightSchools, Funnel, LogisticRegression
from vaebench.problems.problem import Budget, Problem
from vaebench.toy import gaussian_toy

GROUP = "vaebench.problems"
"""The entry-point group of a user's own problems."""

GLOBAL_BUDGET = Budget(steps=1000, batch_size=0, lr=1e-2)
"""The budget of the global-latent problems trained on all of their data."""

GLOBAL_FIGURES = ("elbo", "gap_to_log_z", "khat")


def _fashion_mnist_missing() -> str:
    try:
        find_idx_dir("fashion-mnist")
    except VaebenchError as err:
        return str(err)
    return ""


def _vae(hidden: tuple[int, ...], z_dim: int, **options):
    def build(dataset: Dataset, seed: int) -> GaussianVAE:
        return GaussianVAE(dataset.x_dim, z_dim, hidden=hidden, seed=seed, **options)

    return build


def _builtins() -> dict[str, Problem]:
    vae_figures = ("test_elbo", "test_log_likelihood")
    problems = [
        Problem(
            "digits",
            "the default run's 64-100-8 Gaussian VAE (tanh) on dequantized 8x8 digits, for a third of its "
            "schedule (1000 steps from 5e-3); ranked by the test ELBO",
            lambda: load_dataset("digits", dequantize=True),
            _vae((100,), 8, init_decoder_scale=0.1),
            Budget(steps=1000, batch_size=100, lr=5e-3),
            vae_figures,
            "test_elbo",
        ),
        Problem(
            "fashion-mnist-binary",
            "Fashion-MNIST (Debian's dataset-fashion-mnist) dynamically binarized, a Bernoulli 784-200-16 VAE; "
            "ranked by the test ELBO",
            lambda: load_dataset("fashion-mnist", binarize="dynamic"),
            _vae((200,), 16, likelihood="bernoulli"),
            Budget(steps=500, batch_size=100, lr=3e-3),
            vae_figures,
            "test_elbo",
            requires=_fashion_mnist_missing,
            estimators=("reparam", "iwae", "dreg"),
            limit="a step at K=10 costs ~8x one on digits: the three of the published comparison on binarized images",
        ),
        Problem(
            "blr-breast-cancer",
            "Bayesian logistic regression on scikit-learn's breast cancer (455 train / 114 test rows, 30 "
            "standardised features), prior N(0, I), mean-field q over 31 weights, not amortised (Mohamed et "
            "al. 2020, section 8); ranked by the full-data ELBO, its objective",
            data.breast_cancer,
            lambda d, seed: LogisticRegression(d.x_dim - 1, d.train.shape[0]),
            Budget(steps=2000, batch_size=50, lr=1e-2),
            ("elbo", "predictive_log_likelihood", "khat"),
            "elbo",
            global_latents=True,
        ),
        Problem(
            "eight-schools",
            "the non-centred eight-schools model (Rubin 1981), 10 global latents, mean-field q: a funnel between "
            "τ and the school effects; ranked by the ELBO (log Z unknown)",
            data.eight_schools,
            lambda d, seed: EightSchools(d.train.shape[0]),
            GLOBAL_BUDGET,
            ("elbo", "khat"),
            "elbo",
            global_latents=True,
        ),
        Problem(
            "funnel",
            "Neal's funnel in 10 dimensions, v ~ N(0, 9), x_i | v ~ N(0, e^v), log Z = 0: heavy-tailed weights "
            "by construction; ranked by the ELBO (= -KL(q ‖ p), the gap to log Z with its sign turned)",
            data.no_data,
            lambda d, seed: Funnel(),
            GLOBAL_BUDGET,
            GLOBAL_FIGURES,
            "elbo",
            global_latents=True,
        ),
        Problem(
            "gaussian-toy",
            "the Gaussian toy of Rainforth et al. 2018 (D = 20, exact log p(x)); ranked by the test ELBO",
            lambda: load_dataset("gaussian-toy"),
            lambda d, seed: gaussian_toy(d.x_dim),
            Budget(steps=1000, batch_size=100, lr=3e-3),
            ("test_elbo", "gap_to_log_z"),
            "test_elbo",
        ),
        Problem(
            "linear-gaussian",
            "a linear-Gaussian VAE (20-5, learned σ_x) on the synthetic set with exact log p(x); ranked by the "
            "test ELBO",
            lambda: load_dataset("synthetic"),
            _vae((), 5),
            Budget(steps=1000, batch_size=100, lr=1e-2),
            ("test_elbo", "test_log_likelihood", "gap_to_log_z"),
            "test_elbo",
        ),
    ]
    return {p.name: p for p in problems}


PROBLEMS: dict[str, Problem] = _builtins()
"""Every problem by name: the built-ins first, then those :func:`register_problem` added."""

BUILTIN_PROBLEMS: tuple[str, ...] = tuple(PROBLEMS)


def get_problem(name: str) -> Problem:
    """The registered problem ``name`` (a clear error listing the valid names otherwise)."""
    if name not in PROBLEMS:
        raise VaebenchError(f"unknown problem {name!r}; valid names: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]


def register_problem(problem: Problem, origin: str = "") -> None:
    """Add a user's problem to `PROBLEMS` (the same object again: nothing).

    Raises:
        VaebenchError: not a `Problem`, an invalid name, or a name a built-in or another problem has.
    """
    where = f" from {origin}" if origin else ""
    if not isinstance(problem, Problem):
        raise VaebenchError(f"problem plugin{where} is a {type(problem).__name__}, not a vaebench Problem")
    plugins.check_name("problem", problem.name, origin or "a problem plugin")
    if problem.name in BUILTIN_PROBLEMS:
        raise VaebenchError(f"problem {problem.name!r}{where} clashes with the built-in problem: rename it")
    current = PROBLEMS.get(problem.name)
    if current is not None and current is not problem:
        raise VaebenchError(f"problem {problem.name!r}{where} clashes with another plugin's: rename one")
    PROBLEMS[problem.name] = problem


def unregister_problem(name: str) -> None:
    """Remove a user's problem (a built-in cannot be removed; an unknown name is ignored)."""
    if name in BUILTIN_PROBLEMS:
        raise VaebenchError(f"problem {name!r} is built in; only plugins can be unregistered")
    PROBLEMS.pop(name, None)


def load_installed_problems(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> list[str]:
    """Register every installed entry point of group `GROUP` (``entry_points``: those to load instead).

    Returns:
        The names registered, in order.
    """
    if entry_points is None:
        entry_points = sorted(
            importlib.metadata.entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value)
        )
    names = []
    for ep in entry_points:
        try:
            obj = ep.load()
        except Exception as err:  # a plugin's own failure: one line, naming the entry point
            raise VaebenchError(
                f"problem entry point {ep.name!r} ({ep.value}) failed to load: {plugins.summarize(err)}"
            ) from None
        table = getattr(obj, "PROBLEMS", None) if not isinstance(obj, Problem) else {obj.name: obj}
        if not isinstance(table, dict):
            raise VaebenchError(
                f"problem entry point {ep.name!r} ({ep.value}) is neither a Problem nor a module with a dict PROBLEMS"
            )
        for problem in table.values():
            register_problem(problem, f"entry point {ep.name} ({ep.value})")
            names.append(problem.name)
    return names
