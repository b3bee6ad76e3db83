"""What the suite can run: the estimators, models and data sets, built in or added by plugins.

The registries are plain dicts, each the one source of truth for its kind:

- estimators: :data:`vaebench.estimators.ESTIMATORS` (name -> class; :func:`~vaebench.estimators.register`);
- models: `MODELS` here (name -> factory; the built-in ``gaussian-vae`` is :class:`~vaebench.model.GaussianVAE`,
  ``gaussian-toy`` the Gaussian toy of :mod:`vaebench.toy`);
- data sets: :data:`vaebench.data.DATASETS` (built in) and
  :data:`~vaebench.plugins.data_sets.DATASET_PLUGINS` (:func:`~vaebench.plugins.data_sets.register_dataset`),
  besides data files named by their path.

The contracts a plugin must keep:

- an **estimator** is a subclass of :class:`~vaebench.estimators.Estimator` (see
  :mod:`vaebench.estimators.contract`);
- a **model** is built as ``factory(x_dim, z_dim, seed=..., **options)`` and is an ``nn.Module`` with
  ``posterior(x)`` (a ``Normal``-like object with ``loc`` and ``scale`` [B, Z]), ``log_joint(x, z)`` and
  ``log_likelihood(x, z)`` ([K, B, Z] -> [K, B]), ``prior()`` (``loc`` and ``scale`` [Z]) and
  ``parameter_groups()`` (``{"encoder": [...], "decoder": [...]}``, the parameters the variance measure
  reports apart); a class is checked when it is loaded, a factory's product when it is built
  (:func:`build_model`), and :func:`probe_model` checks the shapes on a batch;
- a **data set** is ``factory(seed=...)`` returning a :class:`~vaebench.data.Dataset` or its train and test
  arrays (see :mod:`vaebench.plugins.data_sets`).

Plugins are loaded (:mod:`vaebench.plugins` finds them) by :func:`load_module`, :func:`load_spec` and
:func:`load_installed`; each returns the provenance records of what it added, :func:`records` all of them.
A configuration reaches them through :func:`load_configured` (before it is validated) and :func:`used` (the
records of those it uses: run.json keeps them, the configuration's hash includes their fingerprints, a
resume compares them).
A worker process (local or Ray) calls :func:`reload` with the driver's records: it imports the same plugins
and refuses to run when its copy of their source differs from the driver's.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from vaebench import plugins
from vaebench.data import DATASETS, is_data_file
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Estimator, EstimatorOutput, register, unregister
from vaebench.model import GaussianVAE
from vaebench.plugins.data_sets import DATASET_PLUGINS, register_dataset, unregister_dataset
from vaebench.toy import gaussian_toy, toy_checkpoint

MODELS: dict[str, Callable[..., nn.Module]] = {"gaussian-vae": GaussianVAE, "gaussian-toy": gaussian_toy}
"""Models by name: ``factory(x_dim, z_dim, seed=..., **options)`` -> an ``nn.Module`` keeping the model contract."""

BUILT_CHECKPOINTS: dict[str, Callable[..., nn.Module]] = {"gaussian-toy": toy_checkpoint}
"""Models whose measured checkpoint is built, not trained: name -> ``build(dataset, seed=...)``, the model at
that checkpoint. The suite's anchor run builds it instead of training (the Gaussian toy: its optimum for the
data, every parameter perturbed by N(0, 0.01²), as Rainforth et al. 2018 measure it)."""

BUILTIN_MODELS: tuple[str, ...] = tuple(MODELS)

MODEL_METHODS = ("posterior", "log_joint", "prior", "log_likelihood", "parameter_groups")
"""The methods the estimators and the measures call on a model."""

LOADED: dict[tuple[str, str], dict[str, Any]] = {}
"""(kind, name) -> provenance record of every plugin loaded in this process."""


def load_module(module_name: str) -> list[dict[str, Any]]:
    """Load a plugin module by name (``--plugin my_pkg.estimators``): everything in its `plugins.KINDS` dicts.

    Raises:
        VaebenchError: it does not import, declares nothing, or a plugin breaks its contract or clashes.
    """
    module = plugins.import_module(module_name)
    found = {kind: plugins.declared(module, kind) for kind in plugins.KINDS}
    if not any(found.values()):
        raise VaebenchError(
            f"plugin module {module_name!r} declares no plugins: give it a dict ESTIMATORS, MODELS or DATASETS "
            "(name -> class or factory), or name one object as module:Attr"
        )
    return [
        _add(kind, name, module, None, obj, "module")
        for kind, table in found.items()
        for name, obj in table.items()
    ]


def load_spec(spec: str, kind: str = "estimator") -> dict[str, Any]:
    """Load one plugin named ``module:Attr``; it registers under `plugins.spec_name` (the record's ``name``)."""
    module, attribute, obj = plugins.resolve(spec)
    return _add(kind, plugins.spec_name(obj), module, attribute, obj, "spec")


def estimator_names(entries: Iterable[str]) -> list[str]:
    """``--estimators`` entries -> registry names: a ``module:Attr`` entry is loaded and replaced by its name."""
    return [load_spec(e)["name"] if ":" in e else e for e in entries]


def load_installed(kinds: Iterable[str] = tuple(plugins.KINDS)) -> list[dict[str, Any]]:
    """Load every installed distribution's entry points of the groups `plugins.GROUPS` of ``kinds``.

    An entry point ``name = "module:Attr"`` registers that object under ``name``; ``name = "module"`` registers
    the module's dict of that kind.
    """
    out = []
    for kind in kinds:
        for ep in plugins.entry_points(kind):
            module, attribute, obj = plugins.load_entry_point(kind, ep)
            dist = (ep.dist.name, ep.dist.version) if getattr(ep, "dist", None) is not None else None
            if attribute is None and not plugins.declared(module, kind):
                raise VaebenchError(
                    f"entry point {ep.name!r} in group {ep.group!r} names module {module.__name__!r}, which has no "
                    f"dict {plugins.KINDS[kind]}: point it at the {kind} itself (module:Attr)"
                )
            if attribute is None:
                out += [
                    _add(kind, n, module, None, o, "entry point", dist)
                    for n, o in plugins.declared(module, kind).items()
                ]
            else:
                out.append(_add(kind, ep.name, module, attribute, obj, "entry point", dist))
    return out


Config = TypeVar("Config")


def load_configured(config: Config) -> Config:
    """Load what a `~vaebench.config.SuiteConfig` names, before it is validated; return it with its
    ``module:Class`` estimators replaced by the names they registered.

    Its ``plugins`` modules (``--plugin``) are loaded, its ``module:Class`` estimators, and, for a name that no
    built-in or loaded plugin has, the installed packages' entry points of that kind (imported only then).

    Raises:
        VaebenchError: a module that does not import, a class that breaks the contract, a name that clashes.
    """
    for module in config.plugins:
        load_module(module)
    estimators = tuple(estimator_names(config.estimators))
    if any(name not in ESTIMATORS for name in estimators):
        load_installed(["estimator"])
    data = config.data.name
    if not (data in DATASETS or data in DATASET_PLUGINS or is_data_file(data)):
        load_installed(["dataset"])
    if config.model.name not in MODELS:
        load_installed(["model"])
    return dataclasses.replace(config, estimators=estimators)


def used(config) -> list[dict[str, Any]]:
    """The provenance records of the loaded plugins that a `~vaebench.config.SuiteConfig` uses (none for a
    built-in-only run)."""
    return plugins.select(
        records(), estimators=config.estimators, models=[config.model.name], datasets=[config.data.name]
    )


def records() -> list[dict[str, Any]]:
    """The provenance records of every plugin loaded in this process, by kind and name (for run.json)."""
    return [LOADED[key] for key in sorted(LOADED)]


RELOAD_FIX = "install the same version everywhere the run's units are computed"
"""What :func:`reload` tells a worker whose copy of a plugin is not the driver's."""


def reload(recorded: Iterable[dict[str, Any]], fix: str = RELOAD_FIX) -> None:
    """Load in this process (a worker) the plugins a driver recorded, checking that their source is the same.

    A plugin already loaded with the same source is left as it is, so calling this for every unit is cheap. A
    module not on this process's path is looked for under the ``path`` the driver found it in (the same
    machine); elsewhere it must be installed, or shipped with Ray's runtime environment
    (:func:`vaebench.plugins.py_modules`).

    Raises:
        VaebenchError: a plugin does not import here, or its source differs from the driver's (the message
            names both hashes and ends with ``fix``).
    """
    for rec in recorded:
        key = (rec["kind"], rec["name"])
        have = LOADED.get(key)
        if have is None:
            module = _import_for(rec)
            obj = _find(module, rec)
            dist = (rec["distribution"], rec["version"]) if rec.get("distribution") else None
            have = plugins.record(
                rec["kind"], rec["name"], module, rec.get("attribute"), obj, rec["via"], dist
            )
            if have["sha256"] == rec["sha256"]:
                _register(rec["kind"], rec["name"], obj, plugins.origin(rec))
                LOADED[key] = have
        if have["sha256"] != rec["sha256"]:
            raise VaebenchError(
                f"{rec['kind']} plugin {rec['name']!r}: this process's copy of {rec['module']} ({have['file']}, "
                f"sha256 {have['sha256'][:12]}) differs from the one the run recorded ({rec['sha256'][:12]}); {fix}"
            )


def unload() -> None:
    """Remove every loaded plugin from the registries (tests; a process that changes its mind)."""
    for kind, name in list(LOADED):
        if kind == "estimator":
            unregister(name)
        elif kind == "model":
            MODELS.pop(name, None)
        else:
            unregister_dataset(name)
        del LOADED[(kind, name)]


def _add(
    kind: str,
    name: str,
    module: ModuleType,
    attribute: str | None,
    obj: Any,
    via: str,
    dist: tuple[str, str] | None = None,
) -> dict[str, Any]:
    where = f"{module.__name__}:{attribute}" if attribute else f"module {module.__name__}"
    plugins.check_name(kind, name, where)
    rec = plugins.record(kind, name, module, attribute, obj, via, dist)
    _register(kind, name, obj, where)
    return LOADED.setdefault((kind, name), rec)


def _register(kind: str, name: str, obj: Any, where: str) -> None:
    if kind == "estimator":
        register(name, obj, where)
    elif kind == "model":
        register_model(name, obj, where)
    elif name in DATASETS:
        raise VaebenchError(
            f"data set {name!r} from {where} clashes with the built-in data set {name!r}: rename it"
        )
    else:
        register_dataset(name, obj, where)


def _import_for(rec: dict[str, Any]) -> ModuleType:
    top = rec["module"].partition(".")[0]
    path = rec.get("path")
    if importlib.util.find_spec(top) is None and path and Path(path).is_dir() and path not in sys.path:
        sys.path.append(path)  # appended: never shadows what this process finds itself
        importlib.invalidate_caches()
    try:
        return plugins.import_module(rec["module"])
    except VaebenchError as err:
        raise VaebenchError(
            f"{err} (in a worker: every machine computing the run's units needs the plugins the run uses)"
        ) from None


def _find(module: ModuleType, rec: dict[str, Any]) -> Any:
    if rec.get("attribute"):
        obj: Any = module
        for part in rec["attribute"].split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            return obj
    else:
        table = plugins.declared(module, rec["kind"])
        if rec["name"] in table:
            return table[rec["name"]]
    raise VaebenchError(f"{rec['kind']} plugin {rec['name']!r}: {plugins.origin(rec)} is not there any more")


# ------------------------------------------------------------------------------------------------ models


def model_problems(factory: object) -> list[str]:
    """How a model class or factory breaks the model contract, one phrase each ([] if it keeps what it can).

    A class is checked fully (an ``nn.Module`` with `MODEL_METHODS`, built as ``cls(x_dim, z_dim, seed=...)``);
    of a plain factory only the call signature can be checked before it builds a model.
    """
    if not callable(factory):
        return [f"it is a {type(factory).__name__}, not a class or a factory function"]
    found = []
    if isinstance(factory, type):
        if not issubclass(factory, nn.Module):
            found.append("it is not a torch.nn.Module (the suite trains, moves and saves it as one)")
        missing = [m for m in MODEL_METHODS if not callable(getattr(factory, m, None))]
        if missing:
            found.append(f"it lacks {', '.join(missing)}")
    try:
        inspect.signature(factory).bind(1, 1, seed=0)
    except TypeError:
        found.append("it cannot be called as factory(x_dim, z_dim, seed=...)")
    except ValueError:  # no signature to read: trust it until it is called
        pass
    return found


def register_model(name: str, factory: Callable[..., nn.Module], origin: str = "") -> None:
    """Add a plugin's model to `MODELS` after checking it (`model_problems`); same name and object: nothing.

    Raises:
        VaebenchError: it breaks the contract, or ``name`` is a built-in's or another plugin's.
    """
    where = f" from {origin}" if origin else ""
    found = model_problems(factory)
    if found:
        raise VaebenchError(f"model {name!r}{where} does not satisfy the model contract: {'; '.join(found)}")
    if name in BUILTIN_MODELS:
        raise VaebenchError(f"model {name!r}{where} clashes with the built-in model {name!r}: rename it")
    current = MODELS.get(name)
    if current is not None and current is not factory:
        raise VaebenchError(
            f"model {name!r}{where} clashes with the plugin model {name!r}: rename one of them"
        )
    MODELS[name] = factory


def build_model(name: str, x_dim: int, z_dim: int, seed: int = 0, **options) -> nn.Module:
    """A model from `MODELS`, checked to be an ``nn.Module`` with every method of the contract.

    Raises:
        VaebenchError: unknown name, options it does not take, a plugin's failure, or a broken contract.
    """
    if name not in MODELS:
        raise VaebenchError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    try:
        model = MODELS[name](x_dim, z_dim, seed=seed, **options)
    except VaebenchError:
        raise
    except TypeError as err:
        raise VaebenchError(f"model {name!r} cannot be built with these options: {err}") from None
    except Exception as err:  # a plugin's own bug: one line, naming the model
        raise VaebenchError(f"model {name!r} raised while it was built: {plugins.summarize(err)}") from None
    check_model(model, name)
    return model


def check_model(model: object, name: str = "the model") -> None:
    """Raise unless ``model`` is an ``nn.Module`` with every one of `MODEL_METHODS` (all missing ones named)."""
    missing = [m for m in MODEL_METHODS if not callable(getattr(model, m, None))]
    problems = (
        [] if isinstance(model, nn.Module) else [f"it is a {type(model).__name__}, not a torch.nn.Module"]
    )
    problems += [f"it lacks {', '.join(missing)}"] if missing else []
    if problems:
        raise VaebenchError(f"{name!r} does not satisfy the model contract: {'; '.join(problems)}")


@torch.no_grad()
def probe_model(model: nn.Module, x: Tensor, num_samples: int = 2, name: str = "the model") -> None:
    """Call each method of the contract once on a batch x [B, D] and check the shapes it returns: q, the
    joint and the likelihood over [B] datapoints, or over [1] for a model with ``global_latents`` (one z for
    the whole data set, :mod:`vaebench.problems.variational`).

    Raises:
        VaebenchError: a method that raises (its error in one line) or returns the wrong shape (both named).
    """
    b = 1 if getattr(model, "global_latents", False) else x.shape[0]

    def call(method: str, *args):
        try:
            return getattr(model, method)(*args)
        except Exception as err:
            raise VaebenchError(f"model {name!r}: {method} raised {plugins.summarize(err)}") from None

    def expect(what: str, value: object, shape: tuple[int, ...]) -> None:
        _expect(f"model {name!r}: {what}", value, shape)

    q = call("posterior", x)
    loc = getattr(q, "loc", None)
    if not isinstance(loc, Tensor) or loc.dim() != 2 or loc.shape[0] != b:
        rows = "[1, Z] (global latents)" if getattr(model, "global_latents", False) else f"[B, Z] = [{b}, Z]"
        raise VaebenchError(f"model {name!r}: posterior(x) must have loc and scale {rows}")
    z_dim = loc.shape[1]
    expect("posterior(x).scale", getattr(q, "scale", None), (b, z_dim))
    z = loc.expand(num_samples, b, z_dim)
    expect("log_joint(x, z)", call("log_joint", x, z), (num_samples, b))
    expect("log_likelihood(x, z)", call("log_likelihood", x, z), (num_samples, b))
    p = call("prior")
    expect("prior().loc", getattr(p, "loc", None), (z_dim,))
    groups = call("parameter_groups")
    own = {id(p) for p in model.parameters()}
    needed = ("encoder",) if getattr(model, "global_latents", False) else ("encoder", "decoder")
    if not isinstance(groups, dict) or not set(needed) <= set(groups):
        raise VaebenchError(
            f"model {name!r}: parameter_groups() must return a dict with {' and '.join(map(repr, needed))}"
            + (" (q's parameters; a global-latent model may have no decoder)" if len(needed) == 1 else "")
        )
    for group in needed:
        if not all(id(p) in own for p in groups[group]):
            raise VaebenchError(
                f"model {name!r}: parameter_groups()[{group!r}] holds tensors that are not its parameters"
            )


def _expect(what: str, value: object, shape: tuple[int, ...]) -> None:
    """Raise unless ``value`` is a tensor of ``shape`` with finite values (``what`` names it)."""
    got = tuple(value.shape) if isinstance(value, Tensor) else None
    if got != shape:
        shown = f"shape {list(got)}" if got is not None else f"a {type(value).__name__}"
        raise VaebenchError(f"{what} should be a tensor of shape {list(shape)}, got {shown}")
    bad = int((~torch.isfinite(value.detach())).sum())
    if bad:
        raise VaebenchError(
            f"{what} holds {bad} NaN or infinite value(s) of {value.numel()} on a batch of data"
        )


def probe_estimator(
    estimator: Estimator,
    model: nn.Module,
    x: Tensor,
    num_samples: int,
    generator: torch.Generator,
    label: str,
) -> None:
    """Call an estimator once on a batch x [B, D] and check what it returns: a finite scalar surrogate with
    finite gradients, a finite ``elbo`` [B], and its class's ``objective``.

    Raises:
        VaebenchError: naming ``label`` (e.g. ``my-est-K5``), the call, and what is wrong.
    """
    b = x.shape[0]
    model.zero_grad(set_to_none=True)
    try:
        out = estimator(model, x, num_samples=num_samples, generator=generator)
        surrogate = getattr(out, "surrogate", None)
        if isinstance(surrogate, Tensor) and surrogate.dim() == 0 and surrogate.requires_grad:
            surrogate.backward()
    except VaebenchError:
        raise
    except Exception as err:
        raise VaebenchError(
            f"estimator {label}: calling it on a batch of {b} raised {plugins.summarize(err)}"
        ) from None
    if not isinstance(out, EstimatorOutput):
        raise VaebenchError(
            f"estimator {label} returned a {type(out).__name__}, not an EstimatorOutput (build it with "
            "self._output(objective, surrogate_term) or EstimatorOutput(surrogate, elbo, objective))"
        )
    _expect(f"estimator {label}: its surrogate", out.surrogate, ())
    _expect(f"estimator {label}: its elbo", out.elbo, (b,))
    if out.objective != estimator.objective:
        raise VaebenchError(
            f"estimator {label} returned objective {out.objective!r} but declares {estimator.objective!r}"
        )
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    model.zero_grad(set_to_none=True)
    if bad:
        raise VaebenchError(f"estimator {label}: its gradient is NaN or infinite in {', '.join(bad[:3])}")


def names(kind: str) -> list[str]:
    """Every registered name of a kind, built-ins first (data sets: not the files, which need no name)."""
    if kind == "estimator":
        return list(ESTIMATORS)
    if kind == "model":
        return list(MODELS)
    return [*DATASETS, *DATASET_PLUGINS]
