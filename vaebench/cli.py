"""Command line: ``python -m vaebench {run,report,list,verify,compare,plot,table,export}``; wiring only.

The logic lives in the library: ``run`` resolves a configuration (preset -> --config TOML -> flags, see :mod:`vaebench.config`), runs the
suite (:mod:`vaebench.suite`) and writes the report (:mod:`vaebench.report`); ``report DIR`` rebuilds a results
folder's tables from its verified units (or its CSVs) and then its report; ``list`` prints the estimators,
data sets and presets; ``verify`` checks estimators against exact gradients
(:mod:`vaebench.checks.exact_gradients`); ``plot``, ``table`` and ``export`` turn a results folder into
figures, a table for a paper, and TensorBoard or MLflow runs (:mod:`vaebench.report.plots`,
:mod:`vaebench.report.paper`, :mod:`vaebench.trackers`). The commands import the library when they run, so
``--help`` and a bad flag answer at once.

Exit status: 0 done; 1 some units failed (the others are saved; ``--resume`` retries); 2 bad input (a
one-line message, never a traceback); 74 a write was refused (read-only folder, disk full, file-size limit;
finished units are saved); 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (``kill``), after saving what
was finished. SIGXFSZ is ignored, so a file-size limit is a refused write (74), not a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from vaebench import __version__, faults, interrupts
from vaebench.errors import StorageError, VaebenchError
from vaebench.presets import PRESET_DESCRIPTIONS

EXIT_BAD_INPUT = 2
EXIT_FAILED_UNITS = 1
EXIT_STORAGE = 74
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaebench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vaebench {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{run,report,list,verify,compare,plot,table,export}"
    )

    run = sub.add_parser(
        "run",
        help="run the benchmark suite (default: the 13 classic estimators x K in {1, 10} x 3 seeds on digits)",
        description="Run the suite: gradient variance, convergence with test log-likelihood, and throughput. "
        "Options are applied in order: --preset, then --config, then the other flags.",
    )
    run.add_argument("--config", metavar="FILE", help="TOML file of settings (see README: Configuration)")
    run.add_argument(
        "--preset",
        choices=list(PRESET_DESCRIPTIONS),
        help="base settings: " + "; ".join(f"{k}: {v}" for k, v in PRESET_DESCRIPTIONS.items()),
    )
    run.add_argument(
        "--estimators",
        metavar="NAMES",
        help="comma-separated estimator names (a plugin's too, or module:Class), or 'all' (every registered one)",
    )
    run.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="load a module of your own first (its ESTIMATORS, MODELS, DATASETS dicts); repeatable",
    )
    run.add_argument("--samples", metavar="KS", help="comma-separated K values, e.g. 1,10")
    run.add_argument(
        "--problems",
        metavar="NAMES",
        help="comma-separated problems (python -m vaebench list), each on its own data, model and budget, "
        "with the verdicts across them",
    )
    run.add_argument("--samplers", metavar="NAMES", help="comma-separated samplers: iid, antithetic, rqmc")
    run.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="comma-separated seeds, e.g. 0,1,2: one training run of every setting per seed, and the variance "
        "measured on the minibatch of each (unless [variance] seeds is set); the anchor run and the step "
        "timing use the first",
    )
    run.add_argument(
        "--dataset",
        metavar="NAME",
        help="digits, fashion-mnist, mnist, synthetic, gaussian-toy, a plugin's, or a .npz/.npy/.csv file",
    )
    run.add_argument("--data-dir", metavar="DIR", help="folder with the IDX files of fashion-mnist / mnist")
    run.add_argument("--steps", metavar="N", help="training steps per run")
    run.add_argument(
        "--lr-grid",
        metavar="RATES",
        help="comma-separated step sizes, e.g. 1e-3,3e-3,1e-2: every setting trained at each (with its seeds, "
        "one program), its rate chosen on the validation split (--valid-fraction); it must contain train.lr",
    )
    run.add_argument(
        "--valid-fraction",
        metavar="F",
        help="share of the training examples held out for validation (a seeded split), e.g. 0.1",
    )
    run.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step (train.compile = true; its compile time is counted apart)",
    )
    run.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N or auto")
    run.add_argument("--threads", metavar="N", help="torch CPU threads (0: torch's default)")
    run.add_argument(
        "--workers",
        metavar="N",
        help="units run at once in worker processes (0: one per usable core; 1: none)",
    )
    run.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes of this machine; ray: Ray tasks (pip install -e '.[ray]')",
    )
    run.add_argument(
        "--address", metavar="ADDR", help="with --engine ray: the cluster (auto: `ray start --head` here)"
    )
    run.add_argument("--name", help="run name (the default folder is results/<timestamp>-<name>)")
    run.add_argument("--out", metavar="DIR", help="results folder (default: results/<timestamp>-<name>)")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out, skipping finished units"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no per-unit lines")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with each unit's estimated time (from a few timed steps) and run nothing",
    )
    run.add_argument(
        "--log",
        metavar="TRACKERS",
        help="after the report, export the folder to tensorboard and/or mlflow (comma-separated; see `export`)",
    )

    report = sub.add_parser("report", help="rebuild a results folder's report (tables, plots, report.md)")
    report.add_argument("dir", metavar="DIR", help="a results folder written by `vaebench run`")

    listing = sub.add_parser(
        "list",
        help="list the estimators (with citations and options), data sets, models, presets and plugins",
    )
    listing.add_argument(
        "--plugin", action="append", metavar="MODULE", help="load a module of your own first"
    )

    verify = sub.add_parser(
        "verify",
        help="check estimators against exact gradients on a linear-Gaussian VAE (unbiased, or the declared bias)",
        description="Check each estimator against the exact gradient of a linear-Gaussian VAE: the mean of many "
        "estimates must match it coordinate by coordinate (Bonferroni, false-alarm rate 1e-3), or miss it where "
        "the estimator declares a bias. Exit status 1 if any estimator does not behave as it declares.",
    )
    verify.add_argument(
        "names", nargs="*", metavar="NAME", help="estimators, or module:Class (default: every registered one)"
    )
    verify.add_argument("--plugin", action="append", metavar="MODULE", help="load a module of your own first")
    verify.add_argument(
        "--samplers",
        default="all",
        metavar="NAMES",
        help="comma-separated samplers, or 'all' (default): each estimator is checked with those it offers",
    )
    verify.add_argument(
        "--csv", metavar="FILE", help="also write the whole table (one row per K tested) as CSV"
    )

    compare = sub.add_parser(
        "compare",
        help="compare run B with run A: paired differences with intervals for the settings both measured",
        description="Match the settings two results folders share and print B against A with intervals: encoder "
        "and decoder variance ratio, SNR, test ELBO and log-likelihood (paired by seed where the seeds match), "
        "each run's step-time ratio to its own yardstick. A figure measured at other parameters (checkpoint, "
        "data, model, seeds) is marked not comparable. Both folders are read through the same integrity checks "
        "as `report`.",
    )
    compare.add_argument(
        "a", metavar="A", help="the folder to compare against (e.g. results/reference/default)"
    )
    compare.add_argument("b", metavar="B", help="the new run")
    compare.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    compare.add_argument("--force", action="store_true", help="compare even if the data or the model differ")
    compare.add_argument(
        "--fail-on",
        metavar="RULE",
        action="append",
        help="exit 1 if B is worse than A beyond its interval, e.g. trace_var:5%% (repeatable)",
    )
    compare.add_argument(
        "--checkpoint", metavar="LABEL", help="the variance checkpoint (default: both runs' last)"
    )
    compare.add_argument(
        "--against",
        metavar="NAMES",
        help="comma-separated estimators of A that each setting measured in B only is set against at its K, "
        "where the two runs measured at the same parameters, e.g. reparam,stl",
    )
    _paper_parsers(sub)
    return parser


def _paper_parsers(sub) -> None:
    """The commands that turn a results folder into a paper's figures and tables, and into trackers' runs."""
    plot = sub.add_parser(
        "plot",
        help="draw a results folder's figures as PDF, SVG or PNG (the report's figures, for a paper)",
        description="Draw the report's figures from a results folder (read through the same integrity checks as "
        "`report`) and write them in one format: PDF or SVG (vector, for a journal) or PNG.",
    )
    plot.add_argument("dir", metavar="DIR", help="a results folder written by `vaebench run`")
    plot.add_argument(
        "--format", choices=["pdf", "svg", "png"], default="pdf", help="file format (default pdf)"
    )
    plot.add_argument("--out", metavar="OUTDIR", help="where to write them (default: DIR/figures)")
    table = sub.add_parser(
        "table",
        help="the comparison table for a paper: booktabs LaTeX, markdown or CSV",
        description="Print (or write) the comparison table of a results folder: one row per setting, a figure "
        "with its interval per column, the best estimate of each column at each K in bold.",
    )
    table.add_argument("dir", metavar="DIR", help="a results folder written by `vaebench run`")
    table.add_argument(
        "--format", choices=["latex", "markdown", "csv"], default="latex", help="default latex"
    )
    table.add_argument(
        "--columns",
        metavar="NAMES",
        help="comma-separated summary columns (default: the main figures measured)",
    )
    table.add_argument(
        "--intervals",
        choices=["range", "pm", "none"],
        default="range",
        help="value [low, high] (default), ± or none",
    )
    table.add_argument("--digits", type=int, default=3, metavar="N", help="significant figures (default 3)")
    table.add_argument("--out", metavar="FILE", help="write to FILE instead of printing")
    export = sub.add_parser(
        "export",
        help="send a results folder to TensorBoard and/or MLflow",
        description="Write TensorBoard event files (every training curve, the summary figures, the report's "
        "figures) and/or one MLflow run per setting (configuration as parameters, provenance as tags) from a "
        "results folder's tables. Each export replaces the previous one.",
    )
    export.add_argument("dir", metavar="DIR", help="a results folder written by `vaebench run`")
    export.add_argument(
        "--to", required=True, metavar="TRACKERS", help="tensorboard, mlflow, or both: tensorboard,mlflow"
    )
    export.add_argument("--logdir", metavar="DIR", help="TensorBoard's folder (default: DIR/tensorboard)")
    export.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow's store (default: sqlite:///DIR/mlflow/mlflow.db)"
    )


# ------------------------------------------------------------------------------------------------ parsing


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]


def _ints(flag: str, text: str) -> list[int]:
    try:
        return [int(part) for part in _split(text)]
    except ValueError:
        raise VaebenchError(
            f"{flag} takes comma-separated integers, e.g. {flag} 1,10; got {text!r}"
        ) from None


def _int(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise VaebenchError(f"{flag} takes an integer, got {text!r}") from None


def overrides_from(args: argparse.Namespace) -> dict:
    """The nested config overrides (as in the TOML) that the flags of ``run`` ask for."""
    from vaebench.estimators import ESTIMATORS
    from vaebench.plugins import registry

    over: dict = {}
    if args.plugin:
        over["plugins"] = list(args.plugin)
        for module in args.plugin:  # loaded now, so that 'all' below counts their estimators too
            registry.load_module(module)
    if args.estimators is not None:
        names = _split(args.estimators)
        over["estimators"] = list(ESTIMATORS) if names == ["all"] else names
    if args.samples is not None:
        over["samples"] = _ints("--samples", args.samples)
    if getattr(args, "problems", None) is not None:
        over["problems"] = _split(args.problems)
    if args.samplers is not None:
        over["samplers"] = _split(args.samplers)
    if args.seeds is not None:
        over["seeds"] = _ints("--seeds", args.seeds)
    if args.lr_grid is not None:
        try:
            over.setdefault("train", {})["lr_grid"] = [float(part) for part in _split(args.lr_grid)]
        except ValueError:
            raise VaebenchError(
                f"--lr-grid takes comma-separated numbers, e.g. 1e-3,3e-3,1e-2; got {args.lr_grid!r}"
            ) from None
    if args.valid_fraction is not None:
        try:
            over.setdefault("data", {})["valid_fraction"] = float(args.valid_fraction)
        except ValueError:
            raise VaebenchError(
                f"--valid-fraction takes a number, e.g. 0.1; got {args.valid_fraction!r}"
            ) from None
    if args.device is not None:
        over["device"] = args.device
    if args.threads is not None:
        over["threads"] = _int("--threads", args.threads)
    if args.workers is not None:
        over["workers"] = _int("--workers", args.workers)
    if args.name is not None:
        over["name"] = args.name
    if args.dataset is not None:
        over.setdefault("data", {})["name"] = args.dataset
    if args.data_dir is not None:
        if not Path(args.data_dir).is_dir():
            raise VaebenchError(f"--data-dir {args.data_dir!r} is not a folder")
        over.setdefault("data", {})["root"] = args.data_dir
    if args.steps is not None:
        over.setdefault("train", {})["steps"] = _int("--steps", args.steps)
    if getattr(args, "compile", False):
        over.setdefault("train", {})["compile"] = True
    return over


# ------------------------------------------------------------------------------------------------ commands


def _report_writer(problems) -> Callable[..., Path]:
    """The report a run writes, and `report DIR` rebuilds: the one across problems when it has some."""
    from vaebench.report.across import write_across_report
    from vaebench.report.writer import write_report

    return write_across_report if problems else write_report


def cmd_run(args: argparse.Namespace) -> int:
    from vaebench.config import merge, resolve, validate
    from vaebench.report.tables import summary_markdown
    from vaebench.suite import default_out, ownership, run_suite, saved_config

    overrides = overrides_from(args)
    log = None
    if args.log is not None:
        from vaebench import trackers

        log = trackers.parse(args.log)  # a bad name is refused before anything runs
    if args.out is not None and not args.out.strip():
        raise VaebenchError("--out is empty; name a folder, or leave --out out to write under results/")
    if args.resume and args.out is None:
        raise VaebenchError("--resume needs --out DIR: the folder of the run to continue")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        from vaebench import files

        what = files.kind_of(args.out) or "a file"
        raise VaebenchError(f"--out {args.out!r} is {what}, not a folder; choose another --out")
    if args.resume and args.preset is None and args.config is None:
        # the run's own settings; flags that repeat them are fine, flags that change them are refused
        config = merge(saved_config(args.out), overrides)
        notes = validate(config, explicit_estimators="estimators" in overrides)
    else:
        config, notes = resolve(preset_name=args.preset, config_file=args.config, overrides=overrides)
    if config.checks.laws:
        from vaebench.suite.cost import laws_notes

        notes += laws_notes(config)
    quiet = args.quiet
    for note in notes:
        if not quiet:
            print(f"vaebench: note: {note}", file=sys.stderr)
    engine = None
    if args.engine == "ray":
        from vaebench.suite.ray_engine import RayEngine, require_ray

        require_ray()  # a missing Ray is a one-line error before any folder is claimed
        engine = RayEngine(args.address)
    elif args.address is not None:
        raise VaebenchError("--address is for --engine ray")
    if config.problems:  # each problem's refusals and missing data, said once
        from vaebench.suite.units import plan_problems

        for note in plan_problems(config)[1]:
            if not quiet:
                print(f"vaebench: note: {note}", file=sys.stderr)
            notes = [*notes, note]
    if args.dry_run:  # every check the run makes before its first unit, then the plan; nothing is written
        from vaebench.suite import calibration, dispatch
        from vaebench.suite.runner import preflight

        preflight(config, Path(args.out) if args.out is not None else default_out(config), args.resume)
        print(calibration.describe(calibration.estimate(config), dispatch.worker_count(config)))
        return 0
    if args.out is not None:
        out, created = Path(args.out), not Path(args.out).exists()
    else:
        out, created = ownership.new_folder(default_out(config)), True
    try:
        result = run_suite(
            config,
            out,
            engine=engine,
            resume=args.resume,
            notes=notes,
            progress=False if quiet else None,
            log=(lambda line: None) if quiet else None,
            argv=args.argv,
            report=_report_writer(config.problems),
        )
    except KeyboardInterrupt as err:
        if (out / "run.json").is_file():
            print(
                f"vaebench: interrupted; finished units are saved in {out}. Continue with:\n"
                f"  python -m vaebench run --resume --out {out}",
                file=sys.stderr,
            )
        else:
            _discard(out, created)
            print("vaebench: interrupted before the run started; nothing was saved", file=sys.stderr)
        return interrupts.exit_status(err)
    except StorageError as err:
        if (out / "run.json").is_file():
            raise StorageError(
                err.errno,
                f"{err}; finished units are kept: continue with python -m vaebench run --resume --out {out}",
            ) from None
        _discard(out, created)
        raise
    except VaebenchError:
        if not (out / "run.json").is_file():
            _discard(out, created)
        raise
    summary = out / "summary.csv"
    if summary.is_file() and not quiet:
        from vaebench import files

        table = summary_markdown(files.read_csv(summary))
        if table:  # a run of checks only (--preset scaling) has no settings' table
            print(table)
    for line in bottom_line(out):
        print(line)
    print(f"{result.status}: {out / 'report.md'}")  # its duration is said once, there (from run.json's clock)
    if log:
        for line in trackers.export(out, log):
            print(line)
    if result.failed:
        for unit, error in result.failed.items():
            print(f"vaebench: unit {unit} failed: {error}", file=sys.stderr)
        if set(result.failed) - result.permanent:
            print(
                f"vaebench: retry the failed units with: python -m vaebench run --resume --out {out}",
                file=sys.stderr,
            )
        return EXIT_FAILED_UNITS
    return 0


def bottom_line(out: Path) -> list[str]:
    """The run's answer for the terminal: the report's takeaway sentence
    (:func:`vaebench.report.bottom_line.takeaway`) from its verdicts.json. [] when the run judged nothing or
    the file cannot be read (a damaged file costs the summary, never the run's exit)."""
    import json

    from vaebench.report.bottom_line import takeaway

    try:
        verdicts = json.loads((out / "verdicts.json").read_text()).get("verdicts") or []
        said = takeaway(verdicts) if any(v.get("best") for v in verdicts) else ""
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []
    return [f"bottom line ({out / 'verdicts.json'}): {said}"] if said else []


def _discard(out: Path, created: bool) -> None:
    """Remove a results folder this command created if nothing was written into it."""
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def cmd_report(args: argparse.Namespace) -> int:
    from vaebench.provenance import load_run
    from vaebench.suite.rebuild import rebuild

    config = load_run(args.dir).get("config") if Path(args.dir).is_dir() else None
    print(rebuild(args.dir, _report_writer(isinstance(config, dict) and config.get("problems"))))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import inspect

    from vaebench import plugins, problems
    from vaebench.data import DATASET_PLUGINS, DATASETS
    from vaebench.estimators import ESTIMATORS, SAMPLERS
    from vaebench.plugins import registry

    for module in args.plugin or []:
        registry.load_module(module)

    def options(cls) -> str:
        params = inspect.signature(cls.__init__).parameters.values()
        shown = [f"{p.name}={p.default!r}" for p in params if p.name != "self" and p.default is not p.empty]
        return ",".join(shown) or "-"

    print("estimators:")
    width = max(map(len, ESTIMATORS))
    rows = [("", "family", "objective", "min K", "samplers", "options")] + [
        (n, c.family, c.objective, str(c.min_samples), ",".join(c.samplers), options(c))
        for n, c in ESTIMATORS.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for i, (name, *cells) in enumerate(rows):
        line = "  ".join(f"{v:<{w}}" for v, w in zip((name, *cells), widths, strict=True))
        if i == 0:
            print(f"  {line}  summary (citation)")
            continue
        cls = ESTIMATORS[name]
        bias = f" [{cls.bias}]" if cls.bias else ""
        print(f"  {line}  {cls.summary}{bias}  ({cls.citation})")
    print("samplers (--samplers; an estimator takes those that keep it unbiased):")
    for name, text in SAMPLERS.items():
        print(f"  {name:<{width}}  {text}")
    print("data sets (or the path of a .npz, .npy or .csv file):")
    width = max(map(len, [*DATASETS, *DATASET_PLUGINS]))
    for name, text in DATASETS.items():
        print(f"  {name:<{width}}  {text}")
    for name in DATASET_PLUGINS:
        print(f"  {name:<{width}}  a plugin's data set")
    print("models:")
    for name in registry.MODELS:
        print(f"  {name:<{width}}  {'the seed Gaussian VAE' if name == 'gaussian-vae' else 'a plugin model'}")
    print("problems (data, model, budget and the figure that ranks it; vaebench.problems entry points):")
    problems.load_installed_problems()
    width = max(map(len, problems.PROBLEMS))
    for name, problem in problems.PROBLEMS.items():
        why = problem.unavailable()
        print(
            f"  {name:<{width}}  {problem.description}"
            + (f" [not here: {why.splitlines()[0]}]" if why else "")
        )
    print("presets:")
    for name, text in PRESET_DESCRIPTIONS.items():
        print(f"  {name:<{width}}  {text}")
    loaded = registry.records()
    installed = [(kind, ep) for kind in plugins.KINDS for ep in plugins.entry_points(kind)]
    if loaded or installed:
        print("plugins:")
    for rec in loaded:
        print(f"  {rec['kind']} {rec['name']}: {plugins.describe(rec)}")
    for kind, ep in installed:
        if (kind, ep.name) not in registry.LOADED:
            print(
                f"  {kind} {ep.name}: installed entry point {ep.value} (group {ep.group}; loaded when named)"
            )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from vaebench import files
    from vaebench.checks.exact_gradients import verify
    from vaebench.estimators import ESTIMATORS, SAMPLERS
    from vaebench.plugins import registry

    for module in args.plugin or []:
        registry.load_module(module)
    names = registry.estimator_names(args.names)
    if any(n not in ESTIMATORS for n in names):
        registry.load_installed(["estimator"])
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise VaebenchError(
            f"unknown estimator(s) {', '.join(unknown)}; valid names: {', '.join(ESTIMATORS)}"
        )
    samplers = None if args.samplers == "all" else _split(args.samplers)
    bad = [s for s in samplers or [] if s not in SAMPLERS]
    if bad or samplers == []:
        raise VaebenchError(
            f"--samplers: unknown sampler(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SAMPLERS)} or all"
        )
    if args.csv:
        files.writable_target(args.csv)  # before minutes of checks, not after
    checked = names or list(ESTIMATORS)
    print(
        f"verify: {len(checked)} estimator(s) against the exact gradient of a linear-Gaussian VAE (Bonferroni, "
        "false-alarm rate 1e-3 each); one line per estimator and sampler as it finishes",
        flush=True,
    )
    table = verify(names or None, samplers, on_done=lambda rows: print(verdict_line(rows), flush=True))
    passed = table.groupby(["estimator", "sampler"], sort=False)["as_expected"].all()
    print(f"verify: {int(passed.sum())} of {len(passed)} (estimator, sampler) behave as they declare")
    if args.csv:
        files.write_csv(args.csv, table)
        print(f"verify: the table is in {args.csv}")
    return 0 if table["as_expected"].all() else 1


def verdict_line(rows: list[dict]) -> str:
    """``PASS name (sampler): K=k unbiased as declared, max |z| 1.9 < 4.1 (rel. error 0.6%); ...`` for the rows
    of one estimator and sampler: the figure that decided each K (max |z| against the threshold)."""
    first = rows[0]
    parts = []
    for r in rows:
        if not math.isfinite(r["max_z"]):
            parts.append(
                f"K={r['k_tested']}: the mean gradient is NaN or infinite (expected {r['expected']})"
            )
            continue
        found = "unbiased" if r["unbiased"] else "biased"
        sign = "<" if r["unbiased"] else ">="
        claim = "as declared" if r["as_expected"] else f"but declares {r['expected']}"
        parts.append(
            f"K={r['k_tested']} {found} {claim}, max |z| {r['max_z']:.2f} {sign} {r['threshold']:.2f} "
            f"(rel. error {r['rel_error']:.1%})"
        )
    ok = all(r["as_expected"] for r in rows)
    return f"{'PASS' if ok else 'FAIL'} {first['estimator']} ({first['sampler']}): " + "; ".join(parts)


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from vaebench import files
    from vaebench.analysis import compare, guard
    from vaebench.analysis.selection import tuned_rows
    from vaebench.report.compare import render
    from vaebench.suite.rebuild import verified_tables

    if args.csv:
        files.writable_target(args.csv)  # a device, FIFO or folder is refused before anything is read
    (run_a, a), (run_b, b) = verified_tables(args.a), verified_tables(args.b)
    if args.checkpoint is not None:
        measured = [_checkpoints(t["variance"]) for t in (a, b)]
        for folder, labels in zip((args.a, args.b), measured, strict=True):
            if args.checkpoint not in labels:
                raise VaebenchError(
                    f"--checkpoint {args.checkpoint!r}: {folder} measured no variance there (its checkpoints: "
                    f"{', '.join(labels) or 'none'}); name one both runs measured, or leave --checkpoint out"
                )
    differ = compare.differences(run_a, run_b)
    if differ and not args.force:
        raise VaebenchError(
            f"{args.a} and {args.b} measured different data or models ({'; '.join(differ)}), so their figures "
            "are not comparable; pass --force to compare them anyway"
        )
    rules = [guard.parse_rule(text) for text in args.fail_on or []]
    runs = [
        compare.RunResults(run, t["variance"], tuned_rows(t["convergence"]), t["throughput"])
        for run, t in ((run_a, a), (run_b, b))
    ]
    against = _split(args.against or "")
    unknown = [name for name in against if name not in {key[0] for key in compare.settings(runs[0])}]
    if unknown:
        raise VaebenchError(
            f"--against {','.join(unknown)}: {args.a} measured no such estimator; name estimators of A, e.g. "
            "--against reparam"
        )
    table = compare.compare(*runs, checkpoint=args.checkpoint, against=against)
    if rules and table.empty:
        raise VaebenchError(
            f"--fail-on: {args.a} and {args.b} share no setting, so nothing was compared and no rule could fail; "
            "compare runs that measured some of the same estimators and K, or drop --fail-on"
        )
    print(
        render(
            table, compare.only_in_one(*runs), differ, compare.caveats(run_a, run_b), labels=(args.a, args.b)
        )
    )
    if args.csv:
        files.write_csv(args.csv, table)
    failed = pd.concat([guard.check(table, rule) for rule in rules]) if rules else pd.DataFrame()
    worse = failed[failed["worse"]] if not failed.empty else failed
    for _, row in worse.iterrows():
        print(
            f"vaebench: {row['estimator']} K={row['num_samples']}: {row['figure']} worse beyond the rule",
            file=sys.stderr,
        )
    return 1 if not worse.empty else 0


def _checkpoints(variance) -> list[str]:
    """The variance checkpoints a run measured, in its order (none when it measured no variance)."""
    if variance is None or variance.empty or "checkpoint" not in variance:
        return []
    return list(dict.fromkeys(variance["checkpoint"].astype(str)))


def cmd_plot(args: argparse.Namespace) -> int:
    from vaebench.report.plots import write_figures
    from vaebench.results import load

    out = Path(args.out) if args.out else Path(args.dir) / "figures"
    written = write_figures(load(args.dir), out, args.format)
    if not written:
        raise VaebenchError(f"{args.dir} holds nothing to draw (no variance, convergence or throughput rows)")
    for name in written.values():
        print(out / name)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from vaebench import files
    from vaebench.report.paper import render
    from vaebench.results import load

    columns = tuple(_split(args.columns)) if args.columns else None
    text = render(load(args.dir), args.format, columns=columns, intervals=args.intervals, digits=args.digits)
    if args.out:
        files.write_text(args.out, text)
    else:
        print(text, end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vaebench import trackers

    for line in trackers.export(args.dir, trackers.parse(args.to), logdir=args.logdir, uri=args.tracking_uri):
        print(line)
    return 0


COMMANDS = {
    "run": cmd_run,
    "report": cmd_report,
    "list": cmd_list,
    "verify": cmd_verify,
    "compare": cmd_compare,
    "plot": cmd_plot,
    "table": cmd_table,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (argparse errors return 2 instead of raising SystemExit)."""
    faults.reset()
    if hasattr(signal, "SIGXFSZ") and interrupts._main_thread():
        # past a file-size limit a write then fails with EFBIG (a clean message), instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with interrupts.as_interrupts():
            faults.point("main")
            return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt as err:  # during start-up or a command without its own handling
        print("vaebench: interrupted", file=sys.stderr)
        return interrupts.exit_status(err)
    except BrokenPipeError:  # `vaebench list | head`: the reader left; say nothing more, as `ls | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141  # 128 + SIGPIPE, the shell's status for a writer whose reader left


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # bad flags (argparse printed why) or --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    args.argv = argv
    try:
        return COMMANDS[args.command](args)
    except VaebenchError as err:
        print(f"vaebench: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageError as err:
        print(f"vaebench: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_STORAGE


def _one_line(err: Exception) -> str:
    return str(err).strip()
