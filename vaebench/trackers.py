"""A results folder sent to the trackers researchers use: TensorBoard event files and MLflow runs.

Both are written from the folder's tidy tables (:func:`vaebench.load`), never from inside training: so a run
logs what its verified units hold, once, however often it was resumed (``run --log`` exports after the report;
``export`` does the same for any folder), and each export replaces the previous one. Both are optional extras
(``pip install 'vaebench[tensorboard]'``, ``'vaebench[mlflow]'``); a missing one is a one-line error.

- **TensorBoard** (``torch.utils.tensorboard``), under ``<folder>/tensorboard`` by default: a run per training
  run, ``<setting>/seed<s>``, with every metric of ``convergence.csv`` against the step (``test_elbo``,
  ``train_objective``, the final ones); a run per setting, ``<setting>``, with its summary figures
  (``summary/<column>``: the mean and the two ends of its interval); and ``figures`` with the report's figures
  as images. ``tensorboard --logdir <folder>/tensorboard`` shows them.
- **MLflow**: one run per setting in the experiment ``vaebench/<folder name>``: the resolved configuration
  (flattened, ``train.steps``) and the setting as parameters, the provenance (versions, device, threads, git
  revision, the run's status) as tags, the summary figures as metrics, and each seed's curves as metrics
  ``seed<s>/<metric>`` against the step. The default store is a SQLite file in the folder,
  ``sqlite:///<folder>/mlflow/mlflow.db`` (MLflow's file store is deprecated), which
  ``mlflow ui --backend-store-uri sqlite:///<folder>/mlflow/mlflow.db`` opens (the UI needs the full
  ``mlflow`` package; the extra installs the client, ``mlflow-skinny``, and the SQL store's dependencies). A
  setting's earlier runs (tag ``vaebench.setting``) are deleted before it is logged again.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vaebench.analysis.folder import Results
from vaebench.analysis.settings import KEYS, with_sampler
from vaebench.errors import VaebenchError
from vaebench.measures.schema import SUMMARY
from vaebench.report import plots
from vaebench.results import load

TRACKERS = ("tensorboard", "mlflow")
"""The trackers ``--log`` and ``export --to`` accept."""

MARKER = ".vaebench-tensorboard"
"""The file that marks a TensorBoard folder as vaebench's, so an export may replace it."""


EXTRAS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}
"""The packages each tracker needs (its extra in pyproject.toml)."""


def parse(text: str) -> list[str]:
    """``tensorboard,mlflow`` as a list, each checked to be one of `TRACKERS` and installed, so that a run
    asked to log refuses before it starts rather than after it has finished."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in TRACKERS]
    if bad or not names:
        raise VaebenchError(
            f"unknown tracker(s) {', '.join(bad) or '(none)'}; choose among {', '.join(TRACKERS)}"
        )
    for name in names:
        missing = [m for m in EXTRAS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise VaebenchError(
                f"{name} needs {', '.join(missing)}, not installed here: pip install 'vaebench[{name}]'"
            )
    return names


def export(
    folder: str | Path, to: list[str], *, logdir: str | Path | None = None, uri: str | None = None
) -> list[str]:
    """Send a results folder to each tracker of ``to``; return one line per tracker saying where it went."""
    results = load(folder)
    said = []
    for name in to:
        if name == "tensorboard":
            said.append(f"tensorboard: {to_tensorboard(results, logdir)}")
        else:
            said.append(f"mlflow: {to_mlflow(results, uri)}")
    return said


def setting_name(estimator: str, sampler: str, k: int) -> str:
    """A setting as one path-safe word: ``reparam_K1``, ``stl-rqmc_K10``."""
    return f"{estimator}{'' if sampler == 'iid' else f'-{sampler}'}_K{int(k)}"


def _settings(frame: pd.DataFrame):
    frame = with_sampler(frame)
    for key, rows in frame.groupby(KEYS, sort=False):
        yield setting_name(*key), rows


def _figures(row: pd.Series) -> dict[str, float]:
    """The finite summary figures of a setting's row (with ``_low``/``_high``) and its count of runs."""
    names = [c for f in SUMMARY.figures for c in (f, f"{f}_low", f"{f}_high")] + ["runs", "diverged"]
    return {c: float(row[c]) for c in names if c in row and pd.notna(row[c]) and np.isfinite(float(row[c]))}


# ------------------------------------------------------------------------------------------------ TensorBoard


def to_tensorboard(results: Results, logdir: str | Path | None = None) -> Path:
    """Write the event files (see the module docstring); return the log folder."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VaebenchError(
            "TensorBoard export needs the tensorboard package: pip install 'vaebench[tensorboard]'"
        ) from None
    logdir = Path(logdir) if logdir is not None else results.folder / "tensorboard"
    if logdir.exists():
        if not (logdir / MARKER).is_file() and any(logdir.iterdir()):
            raise VaebenchError(
                f"{logdir} holds files vaebench did not write; choose another --logdir or empty it"
            )
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    (logdir / MARKER).write_text("written by vaebench export; replaced by the next export\n")
    for name, rows in _settings(results.convergence):
        for seed, run in rows.groupby("seed"):
            with SummaryWriter(str(logdir / name / f"seed{int(seed)}")) as writer:
                for row in run.sort_values("step").itertuples(index=False):
                    writer.add_scalar(row.metric, float(row.value), int(row.step))
    for name, rows in _settings(results.summary):
        with SummaryWriter(str(logdir / name)) as writer:
            for column, value in _figures(rows.iloc[0]).items():
                writer.add_scalar(f"summary/{column}", value, 0)
    figures = plots.draw(results)
    if figures:
        with SummaryWriter(str(logdir / "figures")) as writer:
            for key, fig in figures.items():
                writer.add_figure(key, fig, 0, close=False)
    return logdir


# ------------------------------------------------------------------------------------------------ MLflow


def default_uri(folder: Path) -> str:
    """The MLflow store inside a results folder: a SQLite file under ``<folder>/mlflow``."""
    return f"sqlite:///{(folder / 'mlflow' / 'mlflow.db').resolve()}"


def _flat(data: object, prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``{"a.b": "value"}``; lists and other values as JSON text."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    text = data if isinstance(data, str) else json.dumps(data)
    return {prefix[:-1]: text[:5000]}  # MLflow's limits: 6000 characters a parameter, 8000 a tag


def provenance_tags(results: Results) -> dict[str, str]:
    """The run's provenance as MLflow tags: everything of run.json but the configuration and the unit counts."""
    kept = {
        k: v for k, v in results.provenance.items() if k not in ("config", "units", "invocations", "notes")
    }
    return {"vaebench.folder": str(results.folder.resolve()), **_flat(kept)}


def to_mlflow(results: Results, uri: str | None = None) -> str:
    """Log one MLflow run per setting (see the module docstring); return the tracking URI."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise VaebenchError("MLflow export needs the mlflow extra: pip install 'vaebench[mlflow]'") from None
    if results.summary.empty:
        raise VaebenchError(
            f"{results.folder} has no summary.csv, the settings MLflow's runs are made of; write it with: "
            f"python -m vaebench report {results.folder}"
        )
    if uri is None:
        (results.folder / "mlflow").mkdir(exist_ok=True)
        uri = default_uri(results.folder)
    client = MlflowClient(tracking_uri=uri)
    name = f"vaebench/{results.folder.resolve().name}"
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(
        name, artifact_location=(results.folder / "mlflow" / "artifacts").resolve().as_uri()
    )  # fmt: skip
    params = _flat(results.config)
    tags = provenance_tags(results)
    curves = {key: rows for key, rows in _settings(results.convergence)}
    now = int(time.time() * 1000)
    for key, rows in _settings(results.summary):
        for old in client.search_runs([experiment], filter_string=f"tags.`vaebench.setting` = '{key}'"):
            client.delete_run(old.info.run_id)
        row = rows.iloc[0]
        run = client.create_run(experiment, run_name=key, tags={**tags, "vaebench.setting": key})
        setting = {"setting.estimator": row["estimator"], "setting.sampler": row["sampler"],
                   "setting.num_samples": str(int(row["num_samples"]))}  # fmt: skip
        metrics = [Metric(c, v, now, 0) for c, v in _figures(row).items()]
        for r in curves.get(key, pd.DataFrame()).itertuples(index=False):
            if np.isfinite(r.value):
                metrics.append(Metric(f"seed{int(r.seed)}/{r.metric}", float(r.value), now, int(r.step)))
        pairs = [Param(k, str(v)) for k, v in {**params, **setting}.items()]
        for i in range(0, len(pairs), 100):  # MLflow's batch limits: 100 parameters, 1000 metrics
            client.log_batch(run.info.run_id, params=pairs[i : i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
        client.set_terminated(run.info.run_id)
    return uri


__all__ = ["TRACKERS", "default_uri", "export", "parse", "provenance_tags", "to_mlflow", "to_tensorboard"]
