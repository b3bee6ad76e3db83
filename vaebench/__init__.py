"""vaebench: measure the gradient estimators of variational inference on one shared Gaussian VAE.

The package is built in layers. A module imports only modules of its own layer or of layers below it, never
one above, and no two modules import each other; only the command line (``cli``) imports the library lazily,
so ``--help`` answers at once (``tests/test_layers.py`` checks all of this from the code's imports):

1. **ground**: ``errors``, ``rng`` (every random stream), ``stats``, ``progress``, ``provenance``, ``files``
   (every write, atomic), ``faults`` (fault-injection hooks), ``interrupts`` (signals), ``devices`` (the one
   device rule), ``plugins`` (finding and hashing a user's modules), ``presets`` (their names, for ``--help``);
2. **core**: ``model``, ``stacked_model`` (S seeds of a model as one module, for training seeds together),
   ``toy`` (the Gaussian toy of Rainforth et al.), ``exact``, ``data``, ``estimators`` (the contract, the
   registry, ``Setting``), ``optim``, ``registry`` (what can run: built-ins and plugins);
3. **config**: the schema, the presets, strict TOML, validation, the configuration's hash;
4. **train**: the step, the loop, recording, evaluation, checkpoints;
5. **measures**: variance, convergence, throughput (one setting in, one tidy table out) and the results
   schema;
6. **analysis**: tables in, tables out (summaries, plateaus, scaling fits, step-time ratios of interleaved
   timing, the step size chosen per setting on the validation split, and the verdicts of the report's bottom
   line);
7. **checks**: exact-gradient verification, the STL landing, the pytorch-recipe reproduction;
8. **suite**: the plan (the only loops over settings, seeds and checkpoints), execution, integrity,
   ownership, workers and Ray, cost, rebuild; it does not import the report;
9. **report**: reads a results folder through the schema and analysis, and writes only report files;
10. **commands**: ``cli`` and the entry points (``__main__``, ``verify``) and the deprecated ``training``.

Two modules share a file name only as the two halves of one concept, one in each layer:

- ``analysis.settings`` computes what a setting is (its keys, their order, the sampler default, the bias an
  estimator declares at a K); ``report.settings`` renders it (a setting's label, its table cells, † and ‡);
- ``measures.convergence`` measures one training run (curves and final figures, one tidy table);
  ``analysis.convergence`` summarises those rows over seeds (means, intervals, diverged runs).
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "rng", "stats", "progress", "provenance", "files", "faults", "interrupts", "devices",
                "plugins", "presets")),
    ("core", ("model", "stacked_model", "toy", "exact", "data", "estimators", "optim", "registry")),
    ("config", ("config",)),
    ("train", ("train",)),
    ("measures", ("measures",)),
    ("analysis", ("analysis",)),
    ("checks", ("checks",)),
    ("suite", ("suite",)),
    ("report", ("report",)),
    ("commands", ("cli", "__main__", "verify", "training")),
)  # fmt: skip
"""The layers, lowest first: (name, the top-level modules and packages of ``vaebench`` in it)."""
