"""Encoder gradient variance of estimators x samplers x K at the default preset's end checkpoint (95% intervals).

The table of the estimators-and-samplers issue's closing note. The default preset's model (digits, 64-200-8
tanh VAE, Gaussian likelihood, σ_x initialised at 0.1) is trained by the suite's own anchor unit (reparam,
K = 1, 500 Adam steps, batch 100, seed 0); at its end checkpoint every (estimator, sampler, K) asked for is
measured by the suite's own variance units (one minibatch of 100 per variance seed, the same for every
estimator, and the same noise stream, so estimators that draw alike see the same ε), with more replicates
than the preset's 100. Figures are pooled over the variance seeds' minibatches
(`vaebench.analysis.summaries.variance_by_k`). Prints a markdown table, then the ratios the issue asks about,
and writes the tidy rows to a CSV.

    python benchmarks/estimator_table.py [--replicates 400] [--seeds 0,1,2] [--samples 1,16]
        [--estimators reparam,stl,...] [--samplers iid,antithetic,rqmc] [--out estimator_table.csv]

A ratio's interval is exp(log r ± 1.96 √(s_a² + s_b²)) with each s read off its figure's 95% interval as if
the two were independent; estimators measured on the same noise are positively correlated, so the interval
is conservative. ``vargrad`` and ``reinforce-loo`` see the same draws and their encoder gradients differ by
the known factor 2 that the measure divides out, so their figures coincide to rounding (said when they do).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import pandas as pd
import torch

from vaebench.analysis.summaries import variance_by_k
from vaebench.config import resolve
from vaebench.report.formatting import fmt_number
from vaebench.suite import store
from vaebench.suite.context import Context
from vaebench.suite.execute import execute
from vaebench.suite.units import ANCHOR, Unit

ESTIMATORS = "reparam,stl,reparam-cv,reinforce-loo,vargrad,iwae,dreg,iwae-stl,vimco"
COMPARISONS = [  # (numerator, denominator): (estimator, sampler, K)
    (("reparam-cv", "iid", 1), ("reparam", "iid", 1)),
    (("reparam-cv", "iid", 16), ("reparam", "iid", 16)),
    (("reparam", "rqmc", 16), ("reparam", "iid", 16)),
    (("stl", "rqmc", 16), ("stl", "iid", 16)),
    (("reparam", "antithetic", 16), ("reparam", "iid", 16)),
    (("vimco", "iid", 16), ("iwae", "iid", 16)),
    (("vimco", "iid", 16), ("dreg", "iid", 16)),
    (("vargrad", "iid", 16), ("reinforce-loo", "iid", 16)),
]
Z95 = 1.959963984540054


def cell(row: pd.Series, field: str) -> str:
    return f"{fmt_number(row[field])} [{fmt_number(row[field + '_low'])}, {fmt_number(row[field + '_high'])}]"


def log_se(row: pd.Series, field: str) -> float:
    return math.log(row[f"{field}_high"] / max(row[f"{field}_low"], 1e-300)) / (2 * Z95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default=ESTIMATORS, help="comma-separated registered names")
    parser.add_argument("--samplers", default="iid,antithetic,rqmc", help="comma-separated samplers")
    parser.add_argument("--samples", default="1,16", help="comma-separated K values")
    parser.add_argument("--replicates", type=int, default=400, help="gradient replicates per measurement")
    parser.add_argument("--seeds", default="0,1,2", help="variance seeds (one minibatch each)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="estimator_table.csv", help="CSV of the tidy rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = lambda text: [part.strip() for part in text.split(",") if part.strip()]  # noqa: E731
    seeds = [int(s) for s in split(args.seeds)]
    config, _ = resolve(
        overrides={
            "estimators": split(args.estimators),
            "samples": [int(k) for k in split(args.samples)],
            "samplers": split(args.samplers),
            "variance": {"replicates": args.replicates, "seeds": seeds, "checkpoints": ["end"]},
        }
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(config, tmp)
        anchor_unit = Unit(ANCHOR, "checkpoints")
        anchor = execute(anchor_unit, ctx)
        store.save(anchor_unit, anchor, ctx.out, "estimator-table")
        parts = [execute(Unit("variance", f"end-s{s}", seed=s, checkpoint="end"), ctx) for s in seeds]
    saved = anchor["checkpoints"]["end"]
    frame = pd.concat(parts, ignore_index=True)
    frame.to_csv(args.out, index=False)
    table = variance_by_k(frame, checkpoint="end").set_index(["estimator", "sampler", "num_samples"])
    print(
        f"default preset, end checkpoint (step {saved['step']}), {args.replicates} replicates x variance seeds "
        f"{args.seeds} (minibatches of {config.variance.batch_size}); {time.perf_counter() - started:.0f} s\n"
    )
    print("| estimator | sampler | K | encoder trace_var | encoder SNR | variance x seconds |")
    print("|---|---|---|---|---|---|")
    for (name, sampler, k), row in table.iterrows():
        print(
            f"| `{name}` | {sampler} | {k} | {cell(row, 'trace_var')} | {cell(row, 'snr')} "
            f"| {cell(row, 'work_normalized_var')} |"
        )
    print("\n| ratio of encoder trace variance | value [95%] |\n|---|---|")
    for a, b in COMPARISONS:
        if a not in table.index or b not in table.index:
            continue
        ra, rb = table.loc[a], table.loc[b]
        ratio = ra["trace_var"] / rb["trace_var"]
        if abs(ratio - 1) < 1e-5:  # float32 rounding of two arithmetic routes to the same numbers
            text = f"1 to rounding (relative difference {abs(ratio - 1):.0e}: same draws, same gradient)"
        else:
            half = Z95 * math.hypot(log_se(ra, "trace_var"), log_se(rb, "trace_var"))
            text = f"{fmt_number(ratio)} [{fmt_number(ratio * math.exp(-half))}, {fmt_number(ratio * math.exp(half))}]"
        print(f"| {a[0]} ({a[1]}) / {b[0]} ({b[1]}), K={a[2]} | {text} |")


if __name__ == "__main__":
    main()
