"""The contract probe: what a unit would find out minutes into a run, checked on one batch before the first unit.

- ``train.compile``: a backend name that ``torch.compile`` knows (every backend torch registers, whatever its
  tags), since an unknown one fails every training unit at its first step;
- every setting's estimator is built, so that its constructor checks its options (a plugin's ``MIWAE``
  subclass with ``groups = 0``, an ``mvd`` with ``coupling = "yes"``);
- the model is probed on a batch (:func:`vaebench.plugins.registry.probe_model`): each method of the contract returns
  finite values of its shape, ``log_joint`` and ``log_likelihood`` [K, B], so a plugin model that averages
  over K is refused instead of broadcast;
- every plugin estimator is called on that batch at the smallest K the run gives it: its surrogate must be a
  finite scalar with a finite gradient, its ``elbo`` a finite [B] (:func:`vaebench.plugins.registry.probe_estimator`).

The built-in estimators are checked against exact gradients by the tests and ``vaebench verify``; the probe
only catches what would otherwise be broadcast into figures that mean nothing.
"""

from __future__ import annotations

from vaebench import plugins, rng
from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS, runnable
from vaebench.plugins import registry
from vaebench.suite.context import Context

PROBE_POINTS = 4
"""Datapoints of the batch the probe calls the model and the plugin estimators on."""


def compile_backend(value: bool | str) -> None:
    """Refuse a ``train.compile`` string that is not a ``torch.compile`` backend (listing those there are)."""
    if not isinstance(value, str):
        return
    import torch._dynamo  # heavy: only for a run that names a backend

    if value not in torch._dynamo.list_backends(exclude_tags=()):  # accepted: every backend registered
        known = torch._dynamo.list_backends()  # named: those torch offers for use (not its debugging ones)
        truthy = value.lower() in ("true", "1", "yes", "inductor")
        hint = " (for inductor write compile = true, without quotes)" if truthy else ""
        raise VaebenchError(
            f"train.compile {value!r} is not a torch.compile backend{hint}; known: {', '.join(sorted(known))}; or "
            "set compile = true (inductor) or false"
        )


def check_settings(config: SuiteConfig) -> None:
    """The checks that need no data: the compile backend, and every setting's estimator built.

    Raises:
        VaebenchError: naming the estimator (or the key) and what is wrong.
    """
    compile_backend(config.train.compile)
    for setting in runnable(config.estimators, config.samples, config.samplers):
        try:
            setting.build()
        except VaebenchError as err:
            raise VaebenchError(f"estimator {setting.estimator!r}: {err}") from None
        except Exception as err:  # a plugin's constructor's own bug
            raise VaebenchError(
                f"estimator {setting.estimator!r} raised when built: {plugins.summarize(err)}"
            ) from None


def probe(config: SuiteConfig, ctx: Context) -> None:
    """Call the model and every plugin estimator on a batch of the run's data (see the module docstring).

    Raises:
        VaebenchError: naming the setting or the model, the call and what is wrong.
    """
    settings = runnable(config.estimators, config.samples, config.samplers)
    x = ctx.dataset.train[:PROBE_POINTS].to(ctx.device)
    model = ctx.model_factory(seed=config.seeds[0] if config.seeds else 0).to(ctx.device)
    registry.probe_model(model, x, name=config.model.name)
    first: dict[str, object] = {}
    for setting in settings:
        if setting.estimator not in BUILTIN_ESTIMATORS:
            first.setdefault(setting.estimator, setting)
    for setting in first.values():
        generator = rng.generator(config.seeds[0] if config.seeds else 0, "probe", device=ctx.device)
        registry.probe_estimator(setting.build(), model, x, setting.num_samples, generator, setting.label)
