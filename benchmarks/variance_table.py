"""Trace variance and SNR (95% intervals) of every estimator at K in {1, 10} on digits, at one shared checkpoint.

The table of the variance issue's closing note: a 64-200-8 GaussianVAE trained for 500 `reparam` steps
(batch 128, Adam 1e-3, seed 0), then every registered estimator measured at those parameters on one minibatch
of 128 with 200 replicate gradients. Prints a markdown table and writes the tidy rows to a CSV.

    python benchmarks/variance_table.py [--out digits_variance.csv] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from vaebench.data import load_dataset
from vaebench.estimators import ESTIMATORS
from vaebench.measures.variance import variance_study
from vaebench.model import GaussianVAE
from vaebench.training import train


def cell(row, field: str) -> str:
    return f"{row[field]:.3g} [{row[field + '_low']:.3g}, {row[field + '_high']:.3g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="digits_variance.csv", help="CSV of the tidy rows")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits")

    def factory() -> GaussianVAE:
        return GaussianVAE(data.x_dim, 8, hidden=(200,), seed=0)

    run = train(
        factory(), "reparam", data, num_samples=1, steps=500, batch_size=128, seed=0, checkpoint_at=(500,)
    )
    frame = variance_study(
        {"end": (500, run.checkpoints[500])}, factory, list(ESTIMATORS), [1, 10], data,
        replicates=200, seeds=[0], batch_size=128,
    )  # fmt: skip
    frame.to_csv(args.out, index=False)
    print(
        "| estimator | K | encoder trace_var | encoder SNR | all trace_var | all SNR | all snr_norm | reference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in (1, 10):
        for name in ESTIMATORS:
            rows = frame[(frame.estimator == name) & (frame.num_samples == k)].set_index("group")
            if rows.status.iloc[0] != "ok":
                print(f"| {name} | {k} | {rows.skip_reason.iloc[0]} | | | | | |")
                continue
            enc, tot = rows.loc["encoder"], rows.loc["all"]
            print(
                f"| {name} | {k} | {cell(enc, 'trace_var')} | {cell(enc, 'snr')} | {cell(tot, 'trace_var')} "
                f"| {cell(tot, 'snr')} | {cell(tot, 'snr_norm')} | {enc.reference} |"
            )


if __name__ == "__main__":
    main()
