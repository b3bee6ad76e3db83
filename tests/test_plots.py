"""The figures as functions (vaebench.report.plots) and how a setting looks (vaebench.report.styles).

Frames are built by hand (no training): each test states the property a reader of the figure relies on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

from vaebench.analysis.folder import Results
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS
from vaebench.report import plots, styles


def variance_rows(values: dict[str, list[float]], ks=(1, 4), snr_scale: float = 1.0) -> pd.DataFrame:
    rows = []
    for name, per_k in values.items():
        for k, v in zip(ks, per_k, strict=True):
            snr = snr_scale / np.sqrt(v)
            rows.append(dict(estimator=name, sampler="iid", num_samples=k, seed=0, checkpoint="end", step=10,
                             group="encoder", trace_var=v, trace_var_low=0.9 * v, trace_var_high=1.1 * v, snr=snr,
                             snr_low=0.95 * snr, snr_high=1.05 * snr, objective="elbo", status="ok"))  # fmt: skip
    return pd.DataFrame(rows)


def curve_rows(names: list[str], ks=(1, 4), seeds=(0, 1), same: dict[str, str] | None = None) -> pd.DataFrame:
    """Learning curves; ``same``: estimator -> the one whose curve it copies at K = 1 (identical gradients)."""
    rows = []
    for i, name in enumerate(names):
        for k in ks:
            for seed in seeds:
                source = (same or {}).get(name, name) if k == 1 else name
                j = names.index(source)
                for step in range(0, 101, 20):
                    value = -100 + j - 80 / (1 + step) + 0.1 * seed + 0.01 * k
                    rows.append(dict(estimator=name, sampler="iid", num_samples=k, seed=seed, step=step,
                                     wall_time_s=0.01 * step * (1 + i), metric="test_elbo", value=value,
                                     objective="elbo"))  # fmt: skip
    return pd.DataFrame(rows)


def results_of(**frames) -> Results:
    empty = pd.DataFrame()
    return Results(
        Path("."),
        {},
        frames.get("variance", empty),
        frames.get("convergence", empty),
        frames.get("throughput", empty),
    )


# --- looks -----------------------------------------------------------------------------------------------------


def test_every_builtin_has_its_own_colour_and_marker_and_its_family_line_style() -> None:
    looks = [(styles.color(n), styles.marker(n)) for n in BUILTIN_ESTIMATORS]
    assert len(set(looks)) == len(looks)
    for name in BUILTIN_ESTIMATORS:
        assert styles.line_style(name) == styles.FAMILY_LINES[ESTIMATORS[name].family]
    assert styles.line_style("reparam") != styles.line_style("reinforce")  # pathwise vs score-function


def test_a_new_estimator_gets_a_look_no_builtin_has_the_same_in_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builtin = {(styles.color(n), styles.marker(n)) for n in BUILTIN_ESTIMATORS}
    monkeypatch.setitem(ESTIMATORS, "my-pathwise", ESTIMATORS["reparam"])
    look = (styles.color("my-pathwise"), styles.marker("my-pathwise"))
    assert look[0] not in {colour for colour, _ in builtin}  # never the blue of reparam
    assert styles.line_style("my-pathwise") == styles.line_style("reparam")  # its family's
    # a function of the name alone: the same whether its plugin is loaded or not, on every machine
    monkeypatch.delitem(ESTIMATORS, "my-pathwise")
    assert (styles.color("my-pathwise"), styles.marker("my-pathwise")) == look
    assert styles.style("stl", "rqmc")["fillstyle"] == "left"


def test_identical_rows_share_one_legend_entry() -> None:
    frame = pd.DataFrame(
        dict(estimator=["reparam", "reparam", "iwae", "iwae", "reinforce-loo", "vargrad"],
             sampler="iid", num_samples=[1, 4, 1, 4, 4, 4], trace_var=[10.0, 2.5, 10.0, 4.0, 7.0, 7.0 * (1 + 1e-7)])
    )  # fmt: skip
    hidden, labels = styles.shared_labels(frame, ["trace_var"])
    assert hidden == {("vargrad", "iid")}  # the same everywhere: drawn once...
    assert labels[("reinforce-loo", "iid")] == "reinforce-loo = vargrad"  # ...and named as shared
    assert labels[("iwae", "iid")] == "iwae (= reparam at K=1)"  # the same at K=1 only
    texts = [t.get_text() for t in plots.plot_against_k(frame, "trace_var").legend().get_texts()]
    assert "reinforce-loo = vargrad" in texts and "vargrad" not in texts


# --- panels ----------------------------------------------------------------------------------------------------


def test_panel_functions_take_the_loaded_results_and_return_their_axes() -> None:
    res = results_of(
        variance=variance_rows({"reparam": [10.0, 2.5], "reinforce": [900.0, 300.0]}),
        convergence=curve_rows(["reparam", "reinforce"]),
    )
    _, axes = plots.figure(3)
    assert plots.variance_vs_k(res, ax=axes[0]) is axes[0] and axes[0].get_yscale() == "log"
    assert plots.snr_vs_k(res, ax=axes[1]) is axes[1]
    assert plots.elbo_curves(res, 4, ax=axes[2]) is axes[2]
    assert isinstance(plots.elbo_curves(res, 1, x="wall_time_s"), Axes)  # ax=None: a new figure


@pytest.mark.parametrize("low", [0.031, 0.2, 3.0])
def test_a_log_axis_inside_one_decade_still_has_labelled_ticks(low: float) -> None:
    # SNRs between `low` and 1.5 x low: no power of ten inside, which left the panel without a number
    values = {
        "reparam": [1 / low**2, 1 / (1.5 * low) ** 2],
        "stl": [1 / (1.2 * low) ** 2, 1 / (1.4 * low) ** 2],
    }
    ax = plots.snr_vs_k(results_of(variance=variance_rows(values)))
    bottom, top = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if bottom <= t <= top]
    labels = [ax.yaxis.get_major_formatter()(t, i) for i, t in enumerate(ticks)]
    assert len(ticks) >= 2 and all(labels) and len(set(labels)) == len(labels)


def test_a_figure_of_several_panels_has_one_legend_entry_per_setting() -> None:
    # iwae's curve is reparam's at K = 1 (one gradient): drawn once there, its own line at K = 4
    res = results_of(convergence=curve_rows(["reparam", "iwae", "stl"], same={"iwae": "reparam"}))
    fig = plots.draw(res)["steps"]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["reparam (= iwae at K=1)", "stl", "iwae"]  # registry order


def test_a_crowded_learning_curve_panel_draws_the_best_in_full_and_the_rest_faint() -> None:
    names = list(BUILTIN_ESTIMATORS)[:9]
    ax = plots.elbo_curves(results_of(convergence=curve_rows(names, ks=(4,))), 4)
    alphas = {line.get_label(): line.get_alpha() for line in ax.get_lines()}
    full = [n for n, a in alphas.items() if a in (None, 1.0)]
    # the curves end at -100 + their index: the last four are the highest
    assert sorted(full) == sorted(names[-plots.HIGHLIGHT :])
    assert all(alphas[n] == plots.FAINT for n in names if n not in full)
    assert f"best {plots.HIGHLIGHT} of 9" in ax.get_title()


@pytest.mark.parametrize("fmt", plots.FORMATS)
def test_figures_are_written_in_each_format_and_vector_ones_reproduce(tmp_path: Path, fmt: str) -> None:
    res = results_of(variance=variance_rows({"reparam": [10.0, 2.5]}), convergence=curve_rows(["reparam"]))
    first = plots.write_figures(res, tmp_path / "a", fmt)
    assert set(first) == {"variance", "steps", "wallclock"}
    head = {"pdf": b"%PDF", "svg": b"<?xml", "png": b"\x89PNG"}[fmt]
    for name in first.values():
        assert name.endswith(f".{fmt}") and (tmp_path / "a" / name).read_bytes().startswith(head)
    if fmt != "png":  # no creation date: the same results give the same bytes
        plots.write_figures(res, tmp_path / "b", fmt)
        for name in first.values():
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(ValueError, match="formats are pdf, svg, png"):
        plots.save(plots.figure(1)[0], tmp_path / "x.jpg")


def test_the_scaling_law_panel_takes_the_loaded_results_of_the_reference_scaling_run() -> None:
    import vaebench
    from vaebench.report import scaling

    res = vaebench.load(Path(__file__).resolve().parents[1] / "results" / "reference" / "scaling")
    ax = scaling.scaling_law(res, "snr_norm", checkpoint="toy")
    fits = res.scaling[(res.scaling["checkpoint"] == "toy") & (res.scaling["figure"] == "snr_norm")]
    fits = fits[(fits["group"] == "encoder") & np.isfinite(fits["slope"])]
    assert isinstance(ax, Axes) and len(ax.get_legend_handles_labels()[1]) == len(fits) > 0
