"""The former name of :mod:`vaebench.measures.variance.baseline` (kept so older imports work)."""

from vaebench.measures.variance.baseline import (  # noqa: F401
    DEFAULT_REFERENCE_SAMPLES,
    baseline_gradient,
    reference_gradient,
)
