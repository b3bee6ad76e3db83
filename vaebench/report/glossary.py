"""The words of report.md that carry a technical meaning, defined once, at the end of every report.

The definitions say what the suite computes (they match :mod:`vaebench.analysis`), not what the words mean
elsewhere.
"""

from __future__ import annotations

import math

from vaebench.analysis.budget import MARGIN as TARGET_MARGIN
from vaebench.analysis.plateau import FRACTION, TOLERANCE

_PIXEL = -0.5 * math.log(2 * math.pi * 0.1**2)  # log N(x; x, 0.1²): +1.38 nats at the centre

GLOSSARY: dict[str, str] = {
    "noise floor": (
        "the signal-to-noise ratio that a gradient whose mean is zero shows when the mean is estimated from R "
        "replicates: the mean of |average of R draws| / sd is about √(2/(πR)) for pure noise, so an SNR whose "
        "interval reaches √(2/(πR)) measures no signal, and the report does not rank it."
    ),
    "levelled off": (
        f"converged: a setting's test ELBO changed by less than {TOLERANCE:g} nat over {FRACTION:.0%} of "
        "training while the learning rate was still at least half its peak (the last quarter at a constant "
        "rate, the second quarter under a cosine decay, whose last quarter is flat whether or not the model "
        "converged), interval included (a least-squares line through each seed's curve over that window, the "
        "mean change over seeds with a Student-t interval). Otherwise the curves had not converged and the "
        "test figures compare training that was still gaining, not converged models; with too few evaluations "
        "in that window it cannot be judged."
    ),
    "separated": (
        "two settings are separated when the interval of their contrast excludes no difference: a ratio "
        "(variance, step time, variance x step time) whose 95% interval excludes 1, or a difference (test "
        "figures, paired by seed) whose interval excludes 0. A verdict names a winner only when the best is "
        "separated from every other setting it is compared with. Not separated means these runs cannot order "
        "them, not that they are equal."
    ),
    "paired by seed": (
        "runs with the same seed share the model's initialisation, the order of the minibatches and the test "
        "points, so the difference of two settings' final figures seed by seed removes that shared variation; "
        "the comparison is the mean of the per-seed differences with a Student-t interval over the seeds."
    ),
    "equal compute": (
        "the settings of one K compared at one amount of compute, counted in steps of the K's yardstick setting "
        "(yardstick-step equivalents: each run's steps x its step time over the yardstick's, timed interleaved "
        "in rounds, so a load over the machine cancels): that of the run (setting and seed) that spent the "
        "least, so every other run reached it. Each run's test ELBO there is interpolated linearly between its "
        "two evaluations around it, and the difference to the best setting is paired by seed. Training seconds "
        "are never a budget: each unit's move with the machine's load, and they only draw the wall-clock plot. "
        "At *equal steps* the same is done at the last step of the shortest run. Either holds at its budget "
        "whether or not the curves had converged."
    ),
    "compile time": (
        "with `train.compile` (`--compile`) the training step is compiled by torch.compile at its first call for "
        "each batch shape (the epoch's last short batch compiles again). The seconds of those steps are the "
        "run's `compile_s`, counted apart from its training seconds (`wall_time_s`), so the wall-clock "
        "comparisons and the learning curves against time compare compiled steps, not compilers; 0 for an "
        "eager run. Seeds trained as one program compile once, and each seed's run counts its share (that "
        "compilation's seconds divided by the seeds), so the seeds' `compile_s` add up to what compiling took. "
        "In `throughput.csv`, a compiled row's `compile_s` is the first (compiling) call of its step, timed "
        "alone before the warm-up; 0 for an eager row."
    ),
    "steps to reach a target": (
        f"the steps (and training seconds) a run takes to first come within {TARGET_MARGIN:g} nat of the lowest "
        "final test ELBO among the settings of that K (each setting's mean over seeds): a target that every "
        "setting reaches on average, late enough in training to tell the settings apart. The crossing is interpolated "
        "between two evaluations; a seed whose curve never reaches it is counted as *not reached* and left "
        "out of its setting's mean, and the setting is then not taken as the fastest."
    ),
    "variance x step time": (
        "the encoder gradient variance times the time of one training step. Averaging n gradient estimates "
        "divides the variance by n and multiplies the time by n, so the product does not change with "
        "averaging, and the lower one wins for a fixed compute budget. The report gives it relative to the "
        "yardstick setting of each K (a ratio does not depend on the machine's speed), its interval combining "
        "the variance's bootstrap interval with the step-time ratio's interval over rounds of interleaved "
        "timing."
    ),
    "yardstick": (
        "the setting each K's timing ratios are taken against: `reparam` with iid draws where it was timed (the "
        "plain pathwise step every estimator is an alternative to), else the first timed at that K in registry order."
    ),
    "a positive Gaussian ELBO": (
        "a Gaussian likelihood is a density, not a probability, and a density exceeds 1 when it is narrow: "
        f"log N(x; μ, σ²) = -½ log(2πσ²) - (x - μ)²/(2σ²) is {_PIXEL:+.2f} nats per pixel at σ = 0.1 when the "
        "reconstruction is exact. On dequantized pixels in [0, 1] with a learned per-pixel σ, the ELBO and "
        "log p(x) summed over the pixels can therefore be positive. They compare settings of one run (the "
        "same data and likelihood), not a Bernoulli model's log-likelihood of binarized images, which is a "
        "log-probability and never above 0."
    ),
}
"""Each word, and what it means in the report."""


def section() -> list[str]:
    """The markdown lines of the report's *Words* section."""
    return ["## Words", "", *[f"- **{word}**: {meaning}" for word, meaning in GLOSSARY.items()], ""]
