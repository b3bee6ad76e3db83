"""Variance x time of the classic estimators on several problems, and what of it holds across them.

For each problem (:mod:`vaebench.problems`) one anchor model is trained with ``reparam`` at K = 1 for the
problem's budget (``train``, the suite's loop; the Gaussian toy's checkpoint is built, as the suite builds it).
At that checkpoint every estimator x K that applies to the problem (``Problem.unsupported``) is measured by
``measure_variance`` on the minibatch of each variance seed (``measured_minibatch``: the same for every
estimator), stateful ones warmed up on other minibatches where the problem has any. Problems trained on
minibatches (``blr-breast-cancer``) also get the law-of-total-variance split of each setting's gradient noise
into its Monte Carlo and minibatch parts (``decompose_noise`` over 10 minibatches). Then
:mod:`vaebench.analysis.across`: log-ratios of variance x time to ``reparam`` at the same problem, K and seed,
their interquartile mean, probability of improvement and performance profiles with stratified bootstrap
intervals, and the transfer table of the three leaders at each K. Writes ``variance.csv``, ``noise.csv``,
``across.csv`` and ``transfer.csv`` to ``--out`` and prints the tables.

    python benchmarks/across_problems.py [--problems blr-breast-cancer,eight-schools,funnel,gaussian-toy,linear-gaussian]
        [--estimators reparam,stl,reparam-cv,reinforce-ma,reinforce-loo,iwae,dreg] [--samples 1,10]
        [--seeds 0,1,2] [--replicates 100] [--out across-problems]

The suite, once its units carry a ``problem`` column, computes the same tables from its own runs; this script
is the study until then, and the check that the pieces fit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from vaebench.analysis.across import across, leaders, transfer, variance_time_scores
from vaebench.estimators import Setting, make_estimator, unsupported
from vaebench.measures.variance import (
    VarianceOptions,
    decompose_noise,
    measure_variance,
    measured_minibatch,
    warm_up,
    warm_up_minibatches,
)
from vaebench.plugins.registry import BUILT_CHECKPOINTS
from vaebench.problems import get_problem
from vaebench.train import TrainSpec, train

PROBLEMS = "blr-breast-cancer,eight-schools,funnel,gaussian-toy,linear-gaussian"
ESTIMATORS = "reparam,stl,reparam-cv,reinforce-ma,reinforce-loo,iwae,dreg"


def anchor(name: str):
    """The problem, its data, its batch size and the model at its measured checkpoint."""
    problem = get_problem(name)
    data = problem.load()
    batch = problem.budget.batch_size or data.train.shape[0]
    if name in BUILT_CHECKPOINTS:
        return problem, data, batch, BUILT_CHECKPOINTS[name](data, seed=0)
    model = problem.build(data, seed=0)
    b = problem.budget
    train(
        model,
        Setting("reparam", 1),
        data,
        TrainSpec(steps=b.steps, batch_size=batch, lr=b.lr, lr_schedule=b.lr_schedule),
    )
    return problem, data, batch, model


def measure(name: str, estimators: list[str], samples: list[int], seeds: list[int], replicates: int):
    problem, data, batch, model = anchor(name)
    options = VarianceOptions(resamples=200)
    rows, noise = [], []
    for estimator in estimators:
        for k in samples:
            why = unsupported(estimator, k) or problem.unsupported(estimator, k)
            if why:
                print(f"  {name}: skipped {estimator} K={k}: {why}")
                continue
            for seed in seeds:
                x = measured_minibatch(data, batch, seed)
                others = warm_up_minibatches(data, batch, seed) if batch < data.train.shape[0] else [x]
                est = warm_up(make_estimator(estimator), model, others, num_samples=k, seed=seed)
                row = measure_variance(model, est, x, k, replicates, seed=seed, options=options)
                row = row[row["group"] == "encoder"].iloc[0]
                rows.append(
                    {
                        "problem": name,
                        "estimator": estimator,
                        "num_samples": k,
                        "seed": seed,
                        "value": row["work_normalized_var"],
                        "trace_var": row["trace_var"],
                    }
                )
            if batch < data.train.shape[0]:
                batches = list(data.batches(batch, seed=0, drop_last=True))[:10]
                parts = decompose_noise(model, est, batches, k, 20, options=options)
                noise.append(parts[parts["group"] == "encoder"].assign(problem=name))
    return rows, noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=PROBLEMS)
    parser.add_argument("--estimators", default=ESTIMATORS)
    parser.add_argument("--samples", default="1,10")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--out", default="across-problems")
    args = parser.parse_args()
    torch.set_num_threads(1)
    estimators, samples, seeds = (
        args.estimators.split(","),
        [int(k) for k in args.samples.split(",")],
        [int(s) for s in args.seeds.split(",")],
    )
    rows, noise = [], []
    start = time.perf_counter()
    for name in args.problems.split(","):
        got, parts = measure(name, estimators, samples, seeds, args.replicates)
        rows += got
        noise += parts
        print(f"{name}: {len(got)} measurements, {time.perf_counter() - start:.0f} s so far")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variance = pd.DataFrame(rows)
    table = across(variance_time_scores(variance))
    moves = transfer(variance_time_scores(variance), leaders(table, 3))
    variance.to_csv(out / "variance.csv", index=False)
    table.to_csv(out / "across.csv", index=False)
    moves.to_csv(out / "transfer.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 120):
        if noise:
            parts = pd.concat(noise)
            parts.to_csv(out / "noise.csv", index=False)
            print(
                parts[
                    [
                        "problem",
                        "estimator",
                        "num_samples",
                        "mc_var",
                        "minibatch_var",
                        "mc_fraction",
                        "mc_fraction_low",
                        "mc_fraction_high",
                    ]
                ]
                .round(3)
                .to_string(index=False)
            )
        print(table[table["statistic"] != "profile"].round(3).to_string(index=False))
        print(
            table[(table["statistic"] == "profile") & (table["tau"] == 2.0)].round(3).to_string(index=False)
        )
        print(moves.to_string(index=False))
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
