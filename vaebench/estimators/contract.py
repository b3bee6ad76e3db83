"""The estimator contract, checked: what a class must be and declare before the registry takes it.

The contract in words is the docstring of :mod:`vaebench.estimators`. A registered estimator must be a
subclass of :class:`~vaebench.estimators.base.Estimator`, not merely something with the right methods: the
suite relies on what the base class gives every estimator (the checks of K and of the sampler, ``prepare``
before the first call, and an ``nn.Module`` that training moves to the device, puts in train or eval mode,
optimises and saves in checkpoints). Beyond that it must implement ``estimate(model, x, num_samples,
generator)``, be buildable by name with no options (every constructor argument has a default), and declare
valid class attributes: ``objective`` (one of `OBJECTIVES`, the labels the package docstring defines), ``family`` (one of ``FAMILIES``),
``min_samples`` (an integer >= 1), ``samplers`` (a non-empty tuple of known samplers, with ``iid_only``
saying why the others would bias it), ``stateful`` (a bool) and the strings ``bias``, ``summary`` and
``citation``.
"""

from __future__ import annotations

import inspect

from vaebench.estimators.base import FAMILIES, Estimator
from vaebench.estimators.sampling import SAMPLERS

OBJECTIVES = (
    "elbo",
    "iwae",
    "iwae-subsets",
    "renyi",
    "ciwae",
    "piwae",
    "inclusive-kl",
    "tail-adaptive",
    "tvo",
    "uha",
)
"""Every objective label an estimator may declare (see :mod:`vaebench.estimators` for what each means)."""


def problems(cls: object) -> list[str]:
    """Everything in which ``cls`` breaks the estimator contract, one phrase each ([] when it keeps it)."""
    if not isinstance(cls, type):
        return [f"it is a {type(cls).__name__}, not a class (name the class itself)"]
    if not issubclass(cls, Estimator):
        return [
            "it is not a subclass of vaebench.estimators.Estimator (the base class checks K and the sampler, "
            "prepares state and makes it a module the suite can train, move and save): subclass it"
        ]
    found = []
    if cls.estimate is Estimator.estimate:
        found.append("it does not implement estimate(model, x, num_samples, generator)")
    else:
        try:
            inspect.signature(cls.estimate).bind(None, None, None, 1, None)
        except TypeError:
            found.append("its estimate does not take (model, x, num_samples, generator)")
    required = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        found.append(
            f"its constructor needs {', '.join(required)} without a default (the suite builds estimators by "
            "name, with no options): give every option a default"
        )
    found += _attribute_problems(cls)
    return found


def _attribute_problems(cls: type[Estimator]) -> list[str]:
    found = []
    if cls.objective not in OBJECTIVES:
        found.append(f"objective is {cls.objective!r}, not one of {', '.join(OBJECTIVES)}")
    if cls.family not in FAMILIES:
        found.append(f"family is {cls.family!r}, not one of {', '.join(FAMILIES)}")
    k = cls.min_samples
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        found.append(f"min_samples is {k!r}, not an integer >= 1")
    samplers = cls.samplers
    if not isinstance(samplers, tuple) or not samplers or any(s not in SAMPLERS for s in samplers):
        found.append(f"samplers is {samplers!r}, not a non-empty tuple of {', '.join(SAMPLERS)}")
    elif set(samplers) != set(SAMPLERS) and not (isinstance(cls.iid_only, str) and cls.iid_only.strip()):
        found.append("samplers leaves some out but iid_only does not say why they would bias it")
    if not isinstance(cls.stateful, bool):
        found.append(f"stateful is {cls.stateful!r}, not True or False")
    for attribute in ("bias", "summary", "citation"):
        if not isinstance(getattr(cls, attribute), str):
            found.append(f"{attribute} is {getattr(cls, attribute)!r}, not a string")
    return found
