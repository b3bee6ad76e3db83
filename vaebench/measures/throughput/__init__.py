"""What a training step costs: time, datapoints/s, latent samples/s, peak memory and achieved FLOP/s.

A *step* is what training does: the estimator's forward pass, ``surrogate.backward()`` and an Adam step over
the model's and the estimator's parameters (:func:`build_step`; the benchmarks in ``benchmarks/`` time the
same callable). :func:`measure_interleaved` times several prebuilt steps together: it warms them up, then
takes them round-robin in R rounds of n steps each with the device synchronized (CUDA events on a GPU;
:func:`~vaebench.measures.throughput.timing.time_interleaved`), and reports per step the median step time
with its quartiles and a 95% bootstrap interval, and the median of each round (``round_s``), from which
:mod:`vaebench.analysis.yardstick` forms the ratio of two steps timed together with an interval over rounds: a
ratio survives a change of the machine's load that an absolute time does not. :func:`measure_throughput`
is one step timed that way on its own. Throughputs are B / t and K·B / t.

Achieved fraction of the matrix-multiply ceiling (nanoGPT's ``estimate_mfu``, with a *measured* ceiling so CPU
and GPU read alike). The FLOPs of a step are counted analytically for the linear layers: an ``nn.Linear(n, m)``
applied to R rows costs 2·R·n·m FLOPs forward and about twice that backward (the gradients of its input and
of its weight), so

    flops_per_step = 3 · Σ_layers 2 · R_layer · n_in · n_out,

with the rows R_layer seen on one recorded forward pass (B for the encoder and an estimator's baseline network,
K·B for the decoder, 2·K·B for DReG, which decodes z and its detached copy). The ceiling is the FLOP/s of a
large square matmul timed in the same process (:func:`~vaebench.measures.throughput.timing.matmul_ceiling`), so

    ceiling_fraction = flops_per_step / step_s_median / matmul_ceiling_flops.

Everything else in a step (elementwise maths, the optimizer, Python overhead) is the gap between that fraction
and 1. The hand-written row (``estimator="handwritten"``, :mod:`~vaebench.measures.throughput.handwritten`) is the
plain hand-written pytorch/examples VAE step, measured in the same run, so the suite's own overhead shows.
"""

from vaebench.measures.throughput.handwritten import (
    HandwrittenVAE,
    build_handwritten_step,
    handwritten_loss,
    handwritten_step,
)
from vaebench.measures.throughput.steps import (
    ROUNDS,
    StepOptions,
    Timing,
    build_handwritten,
    build_step,
    estimate_flops,
    measure_handwritten,
    measure_interleaved,
    measure_throughput,
    variant_label,
)
from vaebench.measures.throughput.timing import (
    count_linear_flops,
    matmul_ceiling,
    summarize_times,
    synchronize,
    time_interleaved,
    time_steps,
    track_peak_memory,
)

__all__ = [
    "ROUNDS",
    "HandwrittenVAE",
    "StepOptions",
    "Timing",
    "build_handwritten",
    "build_handwritten_step",
    "build_step",
    "count_linear_flops",
    "estimate_flops",
    "handwritten_loss",
    "handwritten_step",
    "matmul_ceiling",
    "measure_handwritten",
    "measure_interleaved",
    "measure_throughput",
    "summarize_times",
    "synchronize",
    "time_interleaved",
    "time_steps",
    "track_peak_memory",
    "variant_label",
]
