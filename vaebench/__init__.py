"""vaebench: measure the gradient estimators of variational inference on one shared Gaussian VAE.

The package is built in layers. A module imports only modules of its own layer or of layers below it, never
one above, and no two modules import each other; only the command line (``cli``) imports the library lazily,
so ``--help`` answers at once (``tests/test_layers.py`` checks all of this from the code's imports):

1. **ground**: ``errors``, ``rng`` (every random stream), ``stats``, ``progress``, ``provenance``, ``files``
   (every write, atomic), ``faults`` (fault-injection hooks), ``interrupts`` (signals), ``devices`` (the one
   device rule), ``presets`` (their names, for ``--help``);
2. **core**: ``model``, ``toy`` (the Gaussian toy of Rainforth et al.), ``exact``, ``data``, ``estimators``
   (the contract, the registry, ``Setting``), ``optim``, ``plugins`` (finding and hashing a user's modules,
   the registries of what can run, built in or added, and the data sets plugins add), ``problems`` (named bundles of data, model, budget and figures of merit);
3. **config**: the sections (each field with its type and constraints), the presets, strict TOML, validation, the configuration's hash;
4. **train**: the step, the loop, recording, evaluation, checkpoints;
5. **measures**: variance, convergence, throughput (one setting in, one tidy table out) and the results
   schema;
6. **analysis**: tables in, tables out (summaries, convergence, scaling fits, the one contrast of two
   figures, the yardstick's step-time ratios, the published claims, the step size chosen per setting on the validation split, and the verdicts of the bottom line);
7. **checks**: exact-gradient verification, the STL landing, the pytorch-recipe reproduction;
8. **suite**: the plan (the only loops over settings, seeds and checkpoints), execution, integrity,
   ownership, workers and Ray, cost, rebuild; it does not import the report;
9. **report**: reads a results folder through the schema and analysis, and writes only report files;
10. **commands**: ``cli`` and the entry points (``__main__``, ``verify``, ``results``: :func:`load`,
    ``trackers``: TensorBoard and MLflow).

A module's name says which concept it holds. The names used twice are the two halves of one concept
(`PAIRS`): ``analysis/X.py`` computes its table, ``report/X.py`` puts that table into words and never
computes a figure of its own: ``claims`` (the published claims, one table), ``compare`` (two runs),
``scaling`` (the laws in K), ``across`` (the conclusions across problems) and ``settings`` (a setting's key and label; its table cell, † and ‡); and
``convergence``: ``measures/convergence.py`` measures one training run (curves and final figures),
``analysis/convergence.py`` summarises those rows over seeds (means, intervals, diverged runs).
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "rng", "stats", "progress", "provenance", "files", "faults", "interrupts", "devices",
                "presets")),
    ("core", ("model", "toy", "exact", "data", "estimators", "optim", "plugins", "problems")),
    ("config", ("config",)),
    ("train", ("train",)),
    ("measures", ("measures",)),
    ("analysis", ("analysis",)),
    ("checks", ("checks",)),
    ("suite", ("suite",)),
    ("report", ("report",)),
    ("commands", ("cli", "__main__", "verify", "results", "trackers")),
)  # fmt: skip
"""The layers, lowest first: (name, the top-level modules and packages of ``vaebench`` in it)."""


def load(folder):
    """Read a results folder into a :class:`vaebench.results.Results` (its tables, verdicts and provenance).

    Imported when called, so that ``import vaebench`` stays free of torch and pandas; see
    :mod:`vaebench.results`.
    """
    from vaebench.results import load as _load

    return _load(folder)


def header(column: str) -> str:
    """The header of a results column in tables (:func:`vaebench.measures.dictionary.header`)."""
    from vaebench.measures.dictionary import header as _header

    return _header(column)


def describe(column: str):
    """What a results column means, its unit and direction (:func:`vaebench.measures.dictionary.describe`)."""
    from vaebench.measures.dictionary import describe as _describe

    return _describe(column)


PAIRS: tuple[str, ...] = ("claims", "compare", "scaling", "settings", "convergence", "across")
"""Module names used twice, as the compute and render (or measure and summarise) halves of one concept."""
