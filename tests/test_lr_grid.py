"""A step-size grid trained as one stacked program equals separate runs at each rate; the validation split
it selects on is a seeded part of the training data, disjoint from what trains and from the test set; the
selection reads the validation rows alone, never picks a rate at which a seed diverged, and flags an edge.

Every slice (seed, lr) of a stacked grid is compared with its own `train` run at that rate (``spec.lr = lr``):
curves, kept and final states, estimator state, divergence and resumption, to the float tolerance of
``tests/test_train_seeds.py`` (the rescaled step, θ + r (θ' − θ), rounds differently from the optimizer's own
step at rate r·η: ~1e-7 relative). Nothing here is statistical.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_seeds import StopAfter, assert_same_run, vae

from vaebench import cli
from vaebench.analysis.selection import select_lr
from vaebench.analysis.summaries import summary_table
from vaebench.analysis.verdicts import QUESTIONS, changes
from vaebench.cli import build_parser, overrides_from
from vaebench.config import resolve
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import Setting
from vaebench.measures.convergence import LogLikelihood, measure_convergence_seeds
from vaebench.model import GaussianVAE
from vaebench.suite.units import plan
from vaebench.train import Checkpointer, TrainSpec, train, train_seeds

SEEDS, LRS = [0, 1], [1e-3, 3e-3, 1e-2]  # larger rates amplify rounding in Adam, stacked or not
SLICES = [(s, lr) for s in SEEDS for lr in LRS]  # seed-major, as the suite stacks them


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def spec(**options) -> TrainSpec:
    base = {"steps": 20, "eval_every": 5, "keep": (0, 10), "lr": 3e-3, "lr_schedule": "cosine"}
    return TrainSpec(**{**base, **options})


def grid(digits, setting, train_spec, slices=SLICES, **options):
    return train_seeds(
        [vae(s) for s, _ in slices],
        setting,
        digits,
        train_spec,
        seeds=[s for s, _ in slices],
        lrs=[lr for _, lr in slices],
        **options,
    )


def apart(digits, setting, train_spec, slices=SLICES):
    return [train(vae(s), setting, digits, replace(train_spec, lr=lr), seed=s) for s, lr in slices]


@pytest.mark.parametrize(
    ("name", "k", "optimizer", "check_every"),
    [
        ("reparam", 1, "adam", 1),
        ("reinforce-ma", 2, "adam", 1),  # estimator state per slice
        ("reinforce-nvil", 1, "adam", 3),  # a network of its own, trained at the slice's rate; latched check
        ("iwae", 3, "sgd", 1),
        ("stl", 2, "rmsprop", 1),
        ("dreg", 2, "adamax", 1),
    ],
)
def test_each_slice_equals_its_own_run_at_its_rate(digits, name, k, optimizer, check_every):
    setting = Setting(name, k)
    train_spec = spec(optimizer=optimizer, check_every=check_every)
    results = grid(digits, setting, train_spec)
    owns = apart(digits, setting, spec(optimizer=optimizer))
    for result, own in zip(results, owns, strict=True):
        assert result.seeds_stacked == len(SLICES) and result.note == ""
        assert_same_run(result, own)
    # the rates matter: the slices of one seed end in different places
    first, last = (torch.cat([v.flatten() for v in r.final_state.values()]) for r in (results[0], results[2]))
    assert not torch.allclose(first, last, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("check_every", [1, 4])  # read every step, or latched on the device
def test_a_slice_at_too_large_a_rate_diverges_alone(digits, check_every):
    # at lr 50 Adam's first steps throw the weights far enough for the loss to pass the bound
    slices = [(0, 1e-3), (0, 50.0), (1, 1e-3)]
    train_spec = spec(steps=30, lr_schedule="constant", lr=1e-3, divergence_bound=1e6)
    results = grid(digits, Setting("reparam", 1), replace(train_spec, check_every=check_every), slices)
    owns = apart(digits, Setting("reparam", 1), train_spec, slices)
    assert [r.diverged for r in results] == [False, True, False]
    for result, own in zip(results, owns, strict=True):
        assert_same_run(result, own)


@pytest.mark.parametrize("stop", [4, 13])
def test_a_stacked_grid_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, digits, stop):
    setting, train_spec = Setting("reinforce-ma", 2), spec(keep=(0, 6, 11))
    whole = grid(digits, setting, train_spec)
    path = tmp_path / "unit.pt"
    with pytest.raises(KeyboardInterrupt):
        grid(digits, setting, train_spec, checkpoint=StopAfter(path, stop))
    assert Checkpointer(path, 0.0).load()["slices"] == [list(s) for s in SLICES]
    resumed = grid(digits, setting, train_spec, checkpoint=Checkpointer(path, 0.0))
    for a, b in zip(resumed, whole, strict=True):
        assert_same_run(a, b)


def test_a_checkpoint_of_another_grid_is_not_resumed(tmp_path, digits):
    setting, train_spec = Setting("reparam", 1), spec(steps=6)
    path = tmp_path / "unit.pt"
    with pytest.raises(KeyboardInterrupt):
        grid(digits, setting, train_spec, checkpoint=StopAfter(path, 3))
    other = [(s, lr * 2) for s, lr in SLICES]
    resumed = grid(digits, setting, train_spec, other, checkpoint=Checkpointer(path, 0.0))
    for a, b in zip(resumed, apart(digits, setting, train_spec, other), strict=True):
        assert_same_run(a, b)


def test_a_grid_that_cannot_stack_trains_each_slice_at_its_rate(tmp_path, digits):
    class Mine(GaussianVAE):
        pass

    setting, train_spec, slices = Setting("reparam", 1), spec(steps=6), [(0, 1e-3), (0, 1e-2)]
    results = train_seeds(
        [vae(0, Mine), vae(0, Mine)],
        setting,
        digits,
        train_spec,
        seeds=[0, 0],
        lrs=[1e-3, 1e-2],
        checkpoint=Checkpointer(tmp_path / "unit.pt", 0.0),
    )
    owns = [train(vae(0, Mine), setting, digits, replace(train_spec, lr=lr), seed=0) for _, lr in slices]
    for result, own in zip(results, owns, strict=True):
        assert result.seeds_stacked == 1 and "no batched form" in result.note
        assert_same_run(result, own)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit.seed0-lr0.001.pt", "unit.seed0-lr0.01.pt"]


def test_slices_must_be_distinct_and_rates_positive(digits):
    setting = Setting("reparam", 1)
    with pytest.raises(VaebenchError, match=r"distinct \(seed, lr\) slices, got seeds \[0, 0\]$"):
        grid(digits, setting, spec(), [(0, 1e-3), (0, 1e-3)])
    with pytest.raises(VaebenchError, match="one lr per slice"):
        train_seeds([vae(0)], setting, digits, spec(), seeds=[0], lrs=[1e-3, 3e-3])
    with pytest.raises(VaebenchError, match="lrs must be positive"):
        grid(digits, setting, spec(), [(0, 1e-3), (0, -1e-3)])
    with pytest.raises(VaebenchError, match="lrs must be positive"):
        grid(digits, setting, spec(), [(0, 1e-3), (0, float("nan"))])


def rows(x: torch.Tensor) -> list[bytes]:
    """The rows of ``x`` as a sorted multiset (exact bytes)."""
    return sorted(r.tobytes() for r in x.numpy())


@pytest.mark.parametrize(
    ("name", "options"), [("digits", {}), ("synthetic", {"n_train": 500, "n_test": 100})]
)
def test_the_validation_split_is_seeded_and_disjoint_from_train_and_test(name, options):
    data = load_dataset(name, **options)
    split = data.with_validation(0.2)
    n = data.train.shape[0]
    assert split.valid.shape == (round(0.2 * n), data.x_dim) and split.train.shape[0] == n - round(0.2 * n)
    assert rows(torch.cat([split.train, split.valid])) == rows(data.train)  # a partition of the training rows
    assert torch.equal(split.test, data.test)
    if name == "synthetic":  # continuous rows are unique: no validation row is a training or test row
        assert not set(rows(split.valid)) & (set(rows(split.train)) | set(rows(split.test)))
    again = data.with_validation(0.2)
    assert torch.equal(again.valid, split.valid) and torch.equal(again.train, split.train)
    other = load_dataset(name, seed=1, **options).with_validation(0.2)
    assert not torch.equal(other.valid, split.valid)  # the data set's seed draws it


def test_no_validation_fraction_changes_nothing_and_bad_ones_are_refused(digits):
    assert digits.with_validation(0) is digits and digits.valid is None
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(VaebenchError, match="valid_fraction must lie in"):
            digits.with_validation(bad)
    with pytest.raises(VaebenchError, match="leaves at least one"):
        digits.with_validation(1e-6)
    with pytest.raises(VaebenchError, match="already has a validation set"):
        digits.with_validation(0.1).with_validation(0.1)


def test_under_dynamic_binarization_the_validation_set_is_binarized_once():
    split = load_dataset("digits", binarize="dynamic", dequantize=False).with_validation(0.1)
    assert set(split.valid.unique().tolist()) <= {0.0, 1.0}
    assert not set(split.train.unique().tolist()) <= {0.0, 1.0}  # still Bernoulli means


GRID = [1e-3, 3e-3, 1e-2]


def grid_frame(valid: dict, diverged=frozenset(), seeds=(0, 1, 2)) -> pd.DataFrame:
    """Final rows of a grid: ``valid[(estimator, lr)]`` the mean validation ELBO (seed s adds s/10), test rows
    drawn at random, ``diverged`` the (estimator, lr, seed) slices that diverged."""
    gen = np.random.default_rng(0)
    rows = []
    for (name, lr), mean in valid.items():
        for s in seeds:
            gone = (name, lr, s) in diverged
            for metric, value in (
                ("valid_elbo", mean + s / 10),
                ("final_test_elbo", gen.normal(-50, 5)),
                ("test_log_likelihood", gen.normal(-45, 5)),
                ("test_elbo", gen.normal(-50, 5)),  # a curve row: kept at the chosen rate too
            ):
                rows.append(
                    {
                        "estimator": name,
                        "sampler": "iid",
                        "num_samples": 1,
                        "lr": lr,
                        "seed": s,
                        "step": 100,
                        "metric": metric,
                        "value": value,
                        "objective": "elbo",
                        "diverged": gone,
                    }
                )
    return pd.DataFrame(rows)


def test_selection_picks_the_best_mean_validation_rate_and_reports_the_test_figures_there():
    valid = {("a", 1e-3): -60, ("a", 3e-3): -50, ("a", 1e-2): -55, ("b", 1e-3): -40, ("b", 3e-3): -45}
    valid |= {("b", 1e-2): -48}
    df = grid_frame(valid)
    choices, tuned = select_lr(df)
    chosen = choices.set_index("estimator")
    assert chosen.loc["a", "lr"] == 3e-3 and chosen.loc["a", "lr_edge"] == ""
    assert chosen.loc["b", "lr"] == 1e-3 and chosen.loc["b", "lr_edge"] == "low"  # at the grid's end: flagged
    assert chosen.loc["a", "valid_elbo"] == pytest.approx(-50 + 0.1) and chosen.loc["a", "valid_seeds"] == 3
    assert chosen.loc["a", "valid_elbo_low"] < -50 + 0.1 < chosen.loc["a", "valid_elbo_high"]
    assert chosen.loc["a", "lr_grid"] == "0.001 0.003 0.01"
    assert list(tuned.columns) == list(df.columns)
    expected = df[((df.estimator == "a") & (df.lr == 3e-3)) | ((df.estimator == "b") & (df.lr == 1e-3))]
    pd.testing.assert_frame_equal(tuned.reset_index(drop=True), expected.reset_index(drop=True))


def test_a_rate_at_which_a_seed_diverged_is_never_chosen():
    valid = {("a", lr): v for lr, v in zip(GRID, (-60, -50, -40), strict=True)}
    choices, tuned = select_lr(grid_frame(valid, diverged={("a", 1e-2, 1)}))
    (choice,) = choices.to_dict("records")
    assert choice["lr"] == 3e-3 and choice["excluded"] == "0.01" and choice["lr_edge"] == ""
    every = {("a", lr, s) for lr in GRID for s in (0, 1, 2)}
    choices, tuned = select_lr(grid_frame(valid, diverged=every))
    assert np.isnan(choices["lr"].iloc[0]) and choices["lr_edge"].iloc[0] == "" and tuned.empty


def test_selection_never_reads_the_test_set():
    valid = {(name, lr): -50 - 10 * abs(i - j) for i, name in enumerate("abc") for j, lr in enumerate(GRID)}
    df = grid_frame(valid)
    choices, _ = select_lr(df)
    test = ~df["metric"].isin(["valid_elbo"])
    for seed in range(5):  # every test figure permuted, or made absurd: the same choices
        shuffled = df.copy()
        shuffled.loc[test, "value"] = np.random.default_rng(seed).permutation(
            df.loc[test, "value"].to_numpy()
        )
        pd.testing.assert_frame_equal(select_lr(shuffled)[0], choices)
    absurd = df.assign(value=df["value"].where(~test, np.nan))
    pd.testing.assert_frame_equal(select_lr(absurd)[0], choices)
    assert list(choices["lr"]) == GRID and list(choices["lr_edge"]) == ["low", "", "high"]


def test_selection_needs_a_grid_and_a_validation_split():
    df = grid_frame({("a", 1e-3): -50})
    with pytest.raises(VaebenchError, match="missing column"):
        select_lr(df.drop(columns="lr"))
    with pytest.raises(VaebenchError, match=r"data\.valid_fraction"):
        select_lr(df[df["metric"] != "valid_elbo"])


def test_a_grid_unit_measures_every_slice_and_the_summary_reports_the_chosen_rate():
    data = load_dataset("digits").with_validation(0.2)
    rates, seeds = [1e-3, 1e-2], [0, 1]
    slices = [(s, lr) for s in seeds for lr in rates]
    frame, note = measure_convergence_seeds(
        [vae(s) for s, _ in slices],
        Setting("reparam", 1),
        data,
        spec(steps=10),
        seeds=[s for s, _ in slices],
        lrs=[lr for _, lr in slices],
        likelihood=LogLikelihood(samples=0, points=50),
    )
    assert note == "" and list(frame.columns[:5]) == ["estimator", "sampler", "num_samples", "seed", "lr"]
    final = frame[frame["metric"] == "valid_elbo"].set_index(["seed", "lr"])["value"]
    assert sorted(final.index) == sorted(slices)
    best = max(rates, key=lambda lr: (final.xs(lr, level="lr").mean(), -lr))
    summary = summary_table(None, frame, None).iloc[0]
    assert summary["lr"] == best and summary["lr_grid"] == "0.001 0.01"
    assert summary["lr_edge"] == ("low" if best == rates[0] else "high")
    tests = frame[(frame["metric"] == "final_test_elbo") & (frame["lr"] == best)]["value"]
    assert summary["final_test_elbo"] == pytest.approx(tests.mean())
    assert summary["valid_elbo"] == pytest.approx(final.xs(best, level="lr").mean()) and summary["runs"] == 2


def test_the_grid_is_configured_checked_and_planned_as_one_unit_per_setting():
    base = {"estimators": ["reparam"], "samples": [1], "seeds": [0, 1]}
    grid = {**base, "train": {"lr": 3e-3, "lr_grid": [1e-3, 3e-3, 1e-2]}, "data": {"valid_fraction": 0.1}}
    config, _ = resolve(preset_name="quick", overrides=grid)
    (unit,) = [u for u in plan(config) if u.kind == "convergence"]
    assert unit.seeds == (0, 1) and unit.lrs == (1e-3, 3e-3, 1e-2)
    assert unit.name == "reparam-K1-s0+1-lr0.001+0.003+0.01"
    one_by_one = {**grid, "train": {**grid["train"], "stack_seeds": False}}
    units = [
        u for u in plan(resolve(preset_name="quick", overrides=one_by_one)[0]) if u.kind == "convergence"
    ]
    assert [(u.seeds, u.lrs) for u in units] == [((0,), unit.lrs), ((1,), unit.lrs)]  # the rates still stack
    plain, _ = resolve(preset_name="quick", overrides=base)
    assert all(not u.lrs for u in plan(plain)) and plain.data.valid_fraction == 0
    for bad, match in (
        ({"train": {"lr": 3e-3, "lr_grid": [1e-3, 1e-2]}, "data": {"valid_fraction": 0.1}}, "must contain"),
        ({"train": {"lr": 3e-3, "lr_grid": [1e-3, 3e-3]}}, "valid_fraction"),
        ({"train": {"lr": 3e-3, "lr_grid": [3e-3, -1.0]}, "data": {"valid_fraction": 0.1}}, "lr_grid"),
        ({"data": {"valid_fraction": 1.0}}, "valid_fraction must lie"),
    ):
        with pytest.raises(VaebenchError, match=match):
            resolve(preset_name="quick", overrides={**base, **bad})


def test_the_flags_set_the_grid_and_the_split():
    args = build_parser().parse_args(["run", "--lr-grid", "1e-3,3e-3", "--valid-fraction", "0.2"])
    over = overrides_from(args)
    assert over["train"]["lr_grid"] == [1e-3, 3e-3] and over["data"]["valid_fraction"] == 0.2
    with pytest.raises(VaebenchError, match="--lr-grid takes comma-separated numbers"):
        overrides_from(build_parser().parse_args(["run", "--lr-grid", "fast"]))


def verdict(question: str, k: int, winner: str | None) -> dict:
    return {"question": question, "K": k, "winner": winner, "best": winner or "a"}


def test_a_changed_convergence_verdict_is_named_and_the_others_are_not_compared():
    ll, variance = QUESTIONS[2], QUESTIONS[0]
    shared = [verdict(ll, 1, "a"), verdict(ll, 10, None), verdict(variance, 1, "a"), verdict(ll, 5, "b")]
    tuned = [verdict(ll, 1, "a"), verdict(ll, 10, "c"), verdict(variance, 1, "b"), verdict(ll, 5, None)]
    assert changes(shared, tuned) == [
        f"{ll} at K=10: not separated at the shared rate, `c` wins tuned",
        f"{ll} at K=5: `b` wins at the shared rate, not separated tuned",
    ]
    assert changes(shared, shared) == []


def test_a_shrunk_run_with_a_grid_reports_each_setting_at_its_chosen_rate(tmp_path):
    out, tiny = tmp_path / "run", tmp_path / "tiny.toml"
    tiny.write_text("[throughput]\nenabled = false\n[variance]\nenabled = false\n")
    args = [
        "run",
        "--preset",
        "quick",
        "--workers",
        "1",
        "--estimators",
        "reparam,reinforce-loo",
        "--samples",
        "2",
    ]
    args += [
        "--seeds",
        "0,1",
        "--steps",
        "20",
        "--lr-grid",
        "1e-3,1e-2",
        "--valid-fraction",
        "0.2",
        "--quiet",
    ]
    assert cli.main([*args, "--config", str(tiny), "--out", str(out)]) == 0
    convergence = pd.read_csv(out / "convergence.csv")
    assert sorted(convergence.groupby(["estimator", "seed", "lr"]).groups) == [
        (name, seed, lr) for name in ("reinforce-loo", "reparam") for seed in (0, 1) for lr in (1e-3, 1e-2)
    ]
    summary = pd.read_csv(out / "summary.csv").set_index("estimator")
    choices, _ = select_lr(convergence)
    assert summary["lr"].to_dict() == choices.set_index("estimator")["lr"].to_dict()
    assert set(summary["lr_grid"]) == {"0.001 0.01"} and summary["valid_elbo"].notna().all()
    report = (out / "report.md").read_text()
    assert "chosen on the validation split from {0.001, 0.01}" in report
    document = json.loads((out / "verdicts.json").read_text())
    assert document["changed_by_tuning"] == changes(document["verdicts_at_shared_lr"], document["verdicts"])
    assert cli.main(["compare", str(out), str(out)]) == 0  # compare reads the chosen rates too
