"""Comparing two runs, on hand-built frames: every figure's change and interval in both directions, paired and
unpaired seeds, settings in one run only, runs whose data or model differ, the CI guard and the rendering.

The checks are of exact arithmetic on fixed numbers (no sampling), so none can fail by chance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from vaebench.analysis.compare import RunResults, caveats, compare, differences, only_in_one
from vaebench.analysis.guard import check, family_level, parse_rule
from vaebench.errors import VaebenchError
from vaebench.report.compare import render
from vaebench.stats import welch_interval

Z = scipy_stats.norm.isf(0.025)


def variance_rows(
    estimator: str, k: int, figures: dict[str, tuple[float, float, float]], **extra
) -> list[dict]:
    """One encoder row at checkpoint end; ``figures``: metric -> (value, low, high)."""
    row = {"checkpoint": "end", "estimator": estimator, "sampler": "iid", "num_samples": k, "seed": 0,
           "group": "encoder", "status": "ok", "level": 0.95}  # fmt: skip
    for metric, (v, lo, hi) in figures.items():
        row |= {metric: v, f"{metric}_low": lo, f"{metric}_high": hi}
    return [row | extra]


def finals(
    estimator: str, k: int, values: dict[int, float], metric="test_log_likelihood", diverged=()
) -> list[dict]:
    return [
        {
            "estimator": estimator,
            "sampler": "iid",
            "num_samples": k,
            "seed": s,
            "step": 100,
            "metric": metric,
            "value": v,
            "objective": "elbo",
            "diverged": s in diverged,
        }
        for s, v in values.items()
    ]


def timing(estimator: str, k: int, ms: tuple[float, float, float], batch_size: int = 100) -> dict:
    return {"estimator": estimator, "sampler": "iid", "num_samples": k, "batch_size": batch_size, "status": "ok",
            "compiled": False, "amp": False, "step_s_median": ms[0] / 1e3, "step_s_low": ms[1] / 1e3,
            "step_s_high": ms[2] / 1e3}  # fmt: skip


def config(**changes) -> dict:
    base = {
        "data": {"name": "digits", "root": None, "binarize": "none", "dequantize": True, "seed": 0},
        "model": {"z_dim": 8, "hidden": [200], "likelihood": "auto"},
        "train": {"steps": 500, "ll_samples": 5000},
        "variance": {"replicates": 100, "summary_checkpoint": "end"},
        "throughput": {"batch_size": 100},
        "device": "cpu",
        "threads": 1,
    }
    for key, value in changes.items():
        section, _, name = key.partition(".")
        base[section] = dict(base[section], **{name: value}) if name else value
    return {"config": base, "environment": {"device_name": "AMD EPYC"}, "versions": {"torch": "2.13.0"}}


def run(variance=(), convergence=(), throughput=(), **changes) -> RunResults:
    frames = [pd.DataFrame(list(x)) if x else None for x in (variance, convergence, throughput)]
    return RunResults(config(**changes), *frames)


def row(table: pd.DataFrame, figure: str, estimator: str = "reparam", k: int = 1) -> pd.Series:
    [found] = table[
        (table["figure"] == figure) & (table["estimator"] == estimator) & (table["num_samples"] == k)
    ].index
    return table.loc[found]


# -- ratios: variance, SNR, step time -------------------------------------------------------------------------


def test_a_variance_ratio_combines_both_intervals_on_the_log_scale():
    a = run(variance_rows("reparam", 1, {"trace_var": (10, 9, 11), "snr": (1, 0.9, 1.1)}))
    b = run(variance_rows("reparam", 1, {"trace_var": (5, 4.5, 5.5), "snr": (2, 1.8, 2.2)}))
    t = compare(a, b)
    v = row(t, "trace_var")
    assert v["change"] == pytest.approx(0.5)
    assert v["change_low"] == pytest.approx(0.5 * math.exp(-math.hypot(math.log(5 / 4.5), math.log(11 / 10))))
    assert v["change_high"] == pytest.approx(0.5 * math.exp(math.hypot(math.log(5.5 / 5), math.log(10 / 9))))
    assert (v["verdict"], v["better"], v["contrast"]) == ("better", "lower", "B / A")
    assert row(t, "snr")["verdict"] == "better" and row(t, "snr")["change"] == pytest.approx(2)
    back = compare(b, a)  # the other direction: B's variance doubled and its SNR halved
    assert (
        row(back, "trace_var")["change"] == pytest.approx(2) and row(back, "trace_var")["verdict"] == "worse"
    )
    assert row(back, "snr")["verdict"] == "worse"
    assert row(back, "trace_var")["change_low"] == pytest.approx(
        1 / v["change_high"]
    )  # the same interval, inverted


def test_overlapping_intervals_are_no_clear_change_and_a_wider_level_widens():
    a = run(variance_rows("reparam", 1, {"trace_var": (10, 9, 11)}))
    b = run(variance_rows("reparam", 1, {"trace_var": (10.5, 9.5, 11.5)}))
    at95, at99 = (row(compare(a, b, level=lv), "trace_var") for lv in (0.95, 0.99))
    assert at95["verdict"] == "no clear change" and at95["change_low"] < 1 < at95["change_high"]
    z99 = scipy_stats.norm.isf(0.005)
    assert math.log(at99["change_high"] / at99["change"]) == pytest.approx(
        math.log(at95["change_high"] / at95["change"]) * z99 / Z
    )


def test_an_interval_reaching_zero_gives_no_interval_and_decoder_figures_are_separate():
    a = run(
        variance_rows("reparam", 1, {"snr": (0.1, 0.0, 0.3)})
        + variance_rows("reparam", 1, {"snr": (3, 2.8, 3.2)}, group="decoder")
    )
    b = run(
        variance_rows("reparam", 1, {"snr": (0.2, 0.1, 0.3)})
        + variance_rows("reparam", 1, {"snr": (2, 1.8, 2.2)}, group="decoder")
    )
    t = compare(a, b)
    assert row(t, "snr")["verdict"] == "no interval" and row(t, "snr")["change"] == pytest.approx(2)
    assert row(t, "decoder_snr")["verdict"] == "worse"


def interleaved(per_setting: dict[tuple[str, int], float], load: float = 1.0, rounds: int = 8) -> list[dict]:
    """Throughput rows of settings timed interleaved (one group per K): ``per_setting`` -> its step in ms, every
    round's median multiplied by ``load`` and by a round-to-round wobble shared by the settings of a round."""
    wobble = [1.0 + 0.02 * ((r * 7) % 5 - 2) for r in range(rounds)]
    rows = []
    for (name, k), ms in per_setting.items():
        seconds = [ms / 1e3 * load * w * (1 + 0.002 * ((r + len(name)) % 3)) for r, w in enumerate(wobble)]
        rows.append(timing(name, k, (ms * load, ms * load * 0.98, ms * load * 1.02)) | {
            "timing_group": f"K={k}", "round_s": " ".join(f"{t:.9g}" for t in seconds), "rounds": rounds})  # fmt: skip
    return rows


def test_step_times_are_compared_only_as_each_runs_ratio_to_its_own_yardstick():
    a = run(throughput=interleaved({("reparam", 1): 2.0, ("dreg", 1): 3.0}))
    busy = run(throughput=interleaved({("reparam", 1): 2.0, ("dreg", 1): 3.0}, load=15.0))  # a loaded machine
    t = compare(a, busy)
    assert "step_ms" not in set(t["figure"])  # seconds of two runs are never set against each other
    r = row(t, "step_ratio", "dreg")
    assert r["a"] == pytest.approx(1.5, rel=0.01) and r["b"] == pytest.approx(1.5, rel=0.01)
    assert r["change"] == pytest.approx(1.0, rel=0.01) and r["verdict"] == "no clear change"
    slower = run(throughput=interleaved({("reparam", 1): 2.0, ("dreg", 1): 6.0}, load=0.5))
    assert row(compare(a, slower), "step_ratio", "dreg")["verdict"] == "worse"  # twice the yardstick's cost
    assert row(compare(slower, a), "step_ratio", "dreg")["verdict"] == "better"


def test_a_figure_measured_at_other_parameters_is_not_comparable_and_never_better_or_worse():
    variance = variance_rows("reparam", 1, {"trace_var": (10, 9, 11)})
    a = run(variance, finals("reparam", 1, {0: -100.0, 1: -101.0}), interleaved({("reparam", 1): 2.0}))
    b = run(variance_rows("reparam", 1, {"trace_var": (1.8, 1.7, 1.9)}), finals("reparam", 1, {0: -90.0, 1: -91.0}),
            interleaved({("reparam", 1): 2.0}), **{"train.steps": 3000})  # fmt: skip
    t = compare(a, b)
    for figure in ("trace_var", "test_log_likelihood"):
        r = row(t, figure)
        assert r["verdict"] == "not comparable" and math.isnan(r["change"]), r.to_dict()
        assert r["method"] == "measured at other parameters: train.steps"
        assert r["b"] < 2 or r["b"] > -92  # each run's own figure is still shown
    assert row(t, "step_ratio")["verdict"] == "no clear change"  # training does not change the step timed
    assert not check(t, parse_rule("test_log_likelihood:0"))["worse"].any()
    assert not check(t, parse_rule("trace_var:0%"))["decided"].any()
    more = run(variance_rows("reparam", 1, {"trace_var": (10, 9, 11)}), **{"variance.replicates": 1000})
    assert row(compare(a, more), "trace_var")["verdict"] == "no clear change"  # precision only: comparable
    other_seeds = run(variance_rows("reparam", 1, {"trace_var": (10, 9, 11)}), seeds=[5])
    assert row(compare(a, other_seeds), "trace_var")["method"].endswith("the variance seeds")
    at_init = variance_rows("reparam", 1, {"trace_var": (10, 9, 11)}, checkpoint="init")
    early, late = run(at_init), run(at_init, **{"train.steps": 3000})
    assert row(compare(early, late, checkpoint="init"), "trace_var")["verdict"] == "no clear change"
    forced = compare(a, run(variance, **{"model.z_dim": 50}))
    assert (forced["verdict"] == "not comparable").all()


def test_a_new_setting_of_b_is_set_against_the_baselines_of_a():
    a = run(variance_rows("reparam", 10, {"trace_var": (10, 9, 11)}) + variance_rows("stl", 10, {"trace_var": (4, 3.8, 4.2)}),
            finals("reparam", 10, {0: -100.0, 1: -101.0, 2: -99.0}))  # fmt: skip
    b = run(variance_rows("reparam", 10, {"trace_var": (10, 9, 11)}) + variance_rows("dreg", 10, {"trace_var": (2, 1.9, 2.1)}),
            finals("dreg", 10, {0: -99.0, 1: -100.0, 2: -98.0}))  # fmt: skip
    assert set(compare(a, b)["estimator"]) == {"reparam"}  # by default, only what both measured
    t = compare(a, b, against=("reparam", "stl"))
    new = t[(t["estimator"] == "dreg") & t["figure"].isin(["trace_var", "test_log_likelihood"])]
    assert set(zip(new["figure"], new["against"], strict=True)) == {
        ("trace_var", "reparam"), ("trace_var", "stl"), ("test_log_likelihood", "reparam")}  # fmt: skip
    vs_stl = new[(new["figure"] == "trace_var") & (new["against"] == "stl")].iloc[0]
    assert vs_stl["change"] == pytest.approx(0.5) and vs_stl["verdict"] == "better"
    ll = new[new["figure"] == "test_log_likelihood"].iloc[0]
    assert ll["change"] == pytest.approx(1.0) and ll["method"].startswith("paired by seed (3 seeds)")
    md = render(t, only_in_one(a, b))
    assert "| dreg K=10 vs A's stl | encoder grad variance |" in md
    steps = RunResults(config(**{"train.steps": 3000}), b.variance, b.convergence)
    against = compare(a, steps, against=("reparam",))
    assert (against.loc[against["estimator"] == "dreg", "verdict"] == "not comparable").all()


# -- differences: test ELBO and log-likelihood, paired or not ----------------------------------------------------


def test_matching_seeds_are_paired_and_pairing_sees_what_welch_cannot():
    """Seeds differ by 20 nats between themselves but B gains about one nat on each: only pairing sees it."""
    base = {0: -100.0, 1: -120.0, 2: -80.0}
    gain = {0: 1.0, 1: 1.2, 2: 0.8}
    a = run(convergence=finals("reparam", 1, base))
    b = run(convergence=finals("reparam", 1, {s: v + gain[s] for s, v in base.items()}))
    paired = row(compare(a, b), "test_log_likelihood")
    diffs = np.array(list(gain.values()))
    half = scipy_stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert paired["change"] == pytest.approx(1.0)
    assert (paired["change_low"], paired["change_high"]) == pytest.approx((1 - half, 1 + half))
    assert paired["method"] == "paired by seed (3 seeds), Student-t" and paired["verdict"] == "better"
    assert row(compare(b, a), "test_log_likelihood")["verdict"] == "worse"
    _, low, high, _ = welch_interval(np.array(list(base.values())), np.array(list(base.values())) + diffs)
    assert low < 0 < high  # unpaired, the same numbers say nothing


def test_other_seeds_are_compared_unpaired_with_welch():
    a = run(convergence=finals("reparam", 1, {0: -100.0, 1: -101.0, 2: -99.0}, metric="final_test_elbo"))
    b = run(
        convergence=finals("reparam", 1, {3: -90.0, 4: -92.0, 5: -91.0, 6: -89.0}, metric="final_test_elbo")
    )
    r = row(compare(a, b), "final_test_elbo")
    assert r["method"] == "unpaired (seeds 0,1,2 vs 3,4,5,6), Welch" and (r["n_a"], r["n_b"]) == (3, 4)
    expected = scipy_stats.ttest_ind(
        [-90, -92, -91, -89], [-100, -101, -99], equal_var=False
    ).confidence_interval(0.95)
    assert r["change"] == pytest.approx(9.5)
    assert (r["change_low"], r["change_high"]) == pytest.approx((expected.low, expected.high))
    assert r["verdict"] == "better" and row(compare(b, a), "final_test_elbo")["verdict"] == "worse"


def test_a_diverged_seed_is_left_out_so_the_seeds_no_longer_match():
    a = run(convergence=finals("reparam", 1, {0: -100.0, 1: -101.0, 2: -99.0}))
    b = run(convergence=finals("reparam", 1, {0: -100.0, 1: -500.0, 2: -99.0}, diverged=(1,)))
    r = row(compare(a, b), "test_log_likelihood")
    assert (
        r["n_b"] == 2
        and r["method"].startswith("unpaired (seeds 0,1,2 vs 0,2)")
        and r["b"] == pytest.approx(-99.5)
    )


def test_welch_interval_matches_scipy_and_degenerates_honestly():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 4.0, 9.0])
    d, low, high, df = welch_interval(a, b, 0.9)
    result = scipy_stats.ttest_ind(b, a, equal_var=False)
    ci = result.confidence_interval(0.9)
    assert d == pytest.approx(b.mean() - a.mean()) and (low, high) == pytest.approx((ci.low, ci.high))
    assert df == pytest.approx(result.df)
    assert math.isnan(welch_interval(a[:1], b)[1]) and welch_interval(np.ones(2), np.ones(3))[1:3] == (
        0.0,
        0.0,
    )


# -- which settings, which folders ------------------------------------------------------------------------------


def test_settings_in_one_run_only_are_listed_and_not_compared():
    a = run(variance_rows("reparam", 1, {"trace_var": (1, 0.9, 1.1)}) + variance_rows("vimco", 10, {"trace_var": (1, 0.9, 1.1)}),
            finals("vimco", 10, {0: -1.0, 1: -2.0}))  # fmt: skip
    b = run(
        variance_rows("reparam", 1, {"trace_var": (1, 0.9, 1.1)})
        + variance_rows("dreg", 1, {"trace_var": (1, 0.9, 1.1)})
    )
    t = compare(a, b)
    assert set(t["estimator"]) == {"reparam"}
    only = only_in_one(a, b)
    assert only.to_dict("records") == [
        {
            "estimator": "vimco",
            "sampler": "iid",
            "num_samples": 10,
            "only_in": "A",
            "measures": "variance, convergence",
        },
        {"estimator": "dreg", "sampler": "iid", "num_samples": 1, "only_in": "B", "measures": "variance"},
    ]


def test_folders_whose_data_or_model_differ_are_named_and_the_same_config_is_comparable():
    same = config()
    assert differences(same, config()) == []
    other = config(**{"data.name": "fashion-mnist", "data.binarize": "dynamic", "model.z_dim": 50})
    assert differences(same, other) == [
        "data.name: 'digits' in A, 'fashion-mnist' in B",
        "data.binarize: 'none' in A, 'dynamic' in B",
        "model.z_dim: 8 in A, 50 in B",
    ]
    assert (
        differences(config(**{"model.hidden": [200]}), config(**{"model.hidden": (200,)})) == []
    )  # list or tuple


def test_the_datas_sha256_decides_and_the_idx_folder_alone_does_not():
    a, b = config(**{"data.root": "/data/one"}), config(**{"data.root": "/data/two"})
    assert differences(a, b) == [
        "data.root: '/data/one' in A, '/data/two' in B"
    ]  # no hash: the folder is all we know
    a["data"], b["data"] = {"sha256": "ab" * 32}, {"sha256": "ab" * 32}
    assert differences(a, b) == []
    b["data"] = {"sha256": "cd" * 32}
    assert differences(a, b) == ["data sha256: 'abababababab' in A, 'cdcdcdcdcdcd' in B"]


def test_a_model_plugin_with_other_source_is_a_difference_an_estimator_plugin_a_caveat():
    rec = {"kind": "model", "name": "mine", "module": "my_pkg", "attribute": None, "sha256": "1" * 64,
           "version": None, "file": "my_pkg/__init__.py"}  # fmt: skip
    a, b = config(), config()
    a["plugins"], b["plugins"] = [rec], [dict(rec, sha256="2" * 64)]
    [found] = differences(a, b)
    assert found.startswith("model plugin 'mine': its source changed")
    a["plugins"], b["plugins"] = [dict(rec, kind="estimator")], [dict(rec, kind="estimator", sha256="2" * 64)]
    assert differences(a, b) == [] and caveats(a, b)[0].startswith(
        "estimator plugin 'mine': its source changed"
    )


def test_caveats_name_training_variance_and_machine_differences():
    b = config(**{"train.steps": 1000, "variance.replicates": 200, "threads": 4})
    b["environment"] = {"device_name": "NVIDIA H100"}
    assert caveats(config(), b) == [
        "train.steps: 500 in A, 1000 in B (changes the test ELBO and log-likelihood)",
        "variance.replicates: 100 in A, 200 in B (changes the variance and SNR)",
        "threads: 1 in A, 4 in B (changes the step-time ratios)",
        "machine: 'AMD EPYC' in A, 'NVIDIA H100' in B (the step-time ratios compare machines too)",
    ]


# -- the guard ---------------------------------------------------------------------------------------------------


def guarded(b_var: tuple[float, float, float], b_ll: dict[int, float], rule: str) -> pd.DataFrame:
    a = run(variance_rows("reparam", 1, {"trace_var": (10, 9.5, 10.5), "snr": (1, 0.95, 1.05)}),
            finals("reparam", 1, {0: -100.0, 1: -101.0, 2: -99.0}))  # fmt: skip
    b = run(
        variance_rows("reparam", 1, {"trace_var": b_var, "snr": (1, 0.95, 1.05)}), finals("reparam", 1, b_ll)
    )
    return check(compare(a, b), parse_rule(rule))


def test_the_guard_fails_only_past_the_margin_beyond_the_interval():
    same_ll = {0: -100.0, 1: -101.0, 2: -99.0}
    assert guarded((13, 12.5, 13.5), same_ll, "trace_var:5%")[
        "worse"
    ].all()  # 30% worse, interval well past 5%
    assert not guarded((10.6, 10.1, 11.1), same_ll, "trace_var:5%")[
        "worse"
    ].any()  # 6% worse, interval reaches 5%
    assert not guarded((7, 6.5, 7.5), same_ll, "trace_var:0%")["worse"].any()  # better is never worse
    worse_ll = {0: -102.0, 1: -103.1, 2: -100.9}  # 2 nats lower on every seed
    assert guarded((10, 9.5, 10.5), worse_ll, "test_log_likelihood:1")["worse"].all()
    assert not guarded((10, 9.5, 10.5), worse_ll, "test_log_likelihood:3")["worse"].any()
    relative = guarded((10, 9.5, 10.5), worse_ll, "test_log_likelihood:1%").iloc[0]
    assert relative["limit"] == pytest.approx(-1.0) and relative["worse"]  # 1% of |A| = 1 nat


def test_an_undecided_setting_never_fails_and_bad_rules_are_refused():
    a = run(variance_rows("reparam", 1, {"trace_var": (10, math.nan, math.nan)}))
    b = run(variance_rows("reparam", 1, {"trace_var": (50, 49, 51)}))
    r = check(compare(a, b), parse_rule("trace_var:5%")).iloc[0]
    assert not r["decided"] and not r["worse"]
    for text, message in [
        ("trace_var", "is not FIGURE:MARGIN"),
        ("variance:5%", "unknown figure 'variance'"),
        ("trace_var:0.05", "compared as a ratio B / A, so its margin is a percentage"),
        ("snr:100%", "cannot fall by 100% or more"),
    ]:
        with pytest.raises(VaebenchError, match=message):
            parse_rule(text)
    assert str(parse_rule(" step_ratio : 10% ")) == "step_ratio:10%" and family_level(
        0.05, 10
    ) == pytest.approx(0.99)


# -- the rendering -----------------------------------------------------------------------------------------------


def test_the_table_renders_as_markdown_and_as_aligned_text():
    a = run(
        variance_rows("reparam", 1, {"trace_var": (10, 9, 11)})
        + variance_rows("vimco", 10, {"trace_var": (1, 0.9, 1.1)})
    )
    b = run(variance_rows("reparam", 1, {"trace_var": (5, 4.5, 5.5)}))
    table, only = compare(a, b), only_in_one(a, b)
    md = render(table, only, ["model.z_dim: 8 in A, 50 in B"], labels=("results/reference/default", "new"))
    assert "| setting | figure | A | B | B vs A | verdict | how |" in md
    assert "| reparam K=1 | encoder grad variance | 10 [9, 11] | 5 [4.5, 5.5] | ×0.5 [0.4" in md
    assert (
        "- Only in A (not in B): vimco K=10." in md
        and "- Data or model differ: model.z_dim: 8 in A, 50 in B." in md
    )
    assert md.startswith("A: results/reference/default\nB: new\n")
    text = render(table, only, fmt="text").splitlines()
    header, line = text[3], text[4]
    assert header.startswith("setting") and line.startswith("reparam K=1")
    assert header.index("figure") == line.index("encoder grad variance")  # columns aligned
