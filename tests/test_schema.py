"""The results schema: measures return what it declares, and frames read back are completed to it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vaebench.analysis import summaries
from vaebench.analysis.scaling import SCALING_COLUMNS
from vaebench.measures import schema
from vaebench.measures.convergence import UNIT_COLUMNS
from vaebench.measures.variance.summary import FIGURES


def _frame(spec: schema.Table) -> pd.DataFrame:
    return pd.DataFrame([dict.fromkeys(spec.columns, 1.0)])


def test_the_measures_column_tuples_are_the_declared_ones() -> None:
    # problem and trained_as are added where the units are combined, lr by a step-size grid's unit
    assert ("problem", *UNIT_COLUMNS[:4], "lr", *UNIT_COLUMNS[4:], "trained_as") == schema.CONVERGENCE.columns
    assert SCALING_COLUMNS == schema.SCALING.columns
    assert FIGURES == schema.VARIANCE_FIGURES


@pytest.mark.parametrize("name", sorted(schema.TABLES))
def test_every_figure_has_its_bounds_and_every_declared_frame_conforms(name: str) -> None:
    spec = schema.table(name)
    for figure in spec.figures:
        assert {figure, f"{figure}_low", f"{figure}_high"} <= set(spec.columns)
    frame = _frame(spec)
    assert schema.conform(frame, name) is frame
    required_only = frame[list(spec.required)]
    assert schema.conform(required_only, name) is required_only


@pytest.mark.parametrize("name", sorted(schema.TABLES))
def test_a_drifted_frame_is_an_internal_error_naming_the_columns(name: str) -> None:
    spec = schema.table(name)
    frame = _frame(spec)
    key = next(k for k in spec.keys if k in spec.required)  # not the optional problem the suite adds
    with pytest.raises(schema.SchemaError, match=f"{name} measure.*missing.*{key}.*bug in vaebench"):
        schema.conform(frame.drop(columns=key), name)
    with pytest.raises(schema.SchemaError, match=r"undeclared.*'surprise'"):
        schema.conform(frame.assign(surprise=0), name)


def test_a_declaration_that_names_an_unknown_column_is_refused() -> None:
    with pytest.raises(schema.SchemaError, match="figure column"):
        schema.Table("t", columns=("a", "b"), keys=("a",), figures=("b",))


def test_complete_adds_declared_defaults_and_fills_their_gaps() -> None:
    partial = pd.DataFrame({"estimator": ["reparam", "stl"], "num_samples": [1, 1], "seed": [0, 0],
                            "sampler": ["antithetic", np.nan], "step_s_median": [0.1, 0.2]})  # fmt: skip
    done = schema.complete(partial, "throughput")
    assert set(schema.THROUGHPUT.columns) <= set(done)
    assert list(done["sampler"]) == ["antithetic", "iid"]
    assert list(done["status"]) == ["ok", "ok"] and list(done["variant"]) == ["eager", "eager"]
    assert not done["compiled"].any() and done["ceiling_fraction"].isna().all()  # not there: not measured
    assert "sampler" in partial and partial["sampler"].isna().any()  # the input is left as it was
    assert schema.complete(pd.DataFrame(), "throughput").empty


def test_the_summary_table_conforms_and_omits_what_was_not_measured() -> None:
    rows = [
        {"estimator": name, "sampler": "iid", "num_samples": k, "seed": 0, "checkpoint": "end", "group": "encoder",
         "status": "ok", "trace_var": v, "trace_var_low": v / 2, "trace_var_high": 2 * v, "snr": 1.0,
         "snr_low": 0.5, "snr_high": 1.5, "snr_floor": 0.1}
        for name, k, v in (("reparam", 1, 1.0), ("stl", 1, 0.5))
    ]  # fmt: skip
    summary = summaries.summary_table(pd.DataFrame(rows), None, None, checkpoint="end")
    schema.conform(summary, "summary")
    assert "step_ms" not in summary and "final_test_elbo" not in summary  # not measured: not in the table
    assert list(summary["trace_var"]) == [1.0, 0.5]
    assert math.isnan(summary["work_normalized_var"].iloc[0])  # a declared variance figure the rows lack
