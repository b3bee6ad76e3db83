"""The one home of randomness: every random number in vaebench comes from a named stream of a seed.

A run has one user seed s per replicate. Everything random it does (the data it draws, the order of the
batches, the initial weights, the latent noise of training, the noise of every evaluation and of every
variance replicate) is drawn from its own *stream* of s: a generator seeded from the hash

    state(s, stream, i_1, ..., i_n) = SeedSequence(entropy=s, spawn_key=(id(stream), i_1, ..., i_n))

(numpy's SeedSequence: O'Neill's hash mixing, the scheme numpy uses to spawn independent child generators).
Two streams, or two indices of one stream, give statistically independent numbers, and changing how one
consumer draws (more evaluation samples, another data preprocessing) never shifts the numbers of another.

The stream ids live in one table, `STREAMS`, so two consumers cannot pick the same number by accident (an
earlier layout used SeedSequence([s, 1]) for both the synthetic data's samples and the variance measure's
baseline gradient). Indices go in the spawn key, after the stream id: unlike trailing entries of a plain
entropy list (which SeedSequence pads with zeros, so [s, 2] and [s, 2, 0] collide), every spawn-key word is
mixed in, so (s, stream) and (s, stream, 0) differ.

Functions:
    `generator`: a ``torch.Generator`` on a device for one stream (index) of a seed.
    `numpy_generator`: the same for numpy (bootstrap resampling, fixed permutations).
    `derive_seed`: a 63-bit integer for APIs that take an integer seed (torch's global RNG under `seeded`).
    `seeded`: a context in which torch's *global* RNG is forked and seeded from one stream, for code that
        draws from it implicitly (``nn.Linear``'s initialisation, compiled or vmapped steps); the caller's
        global RNG state is restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from vaebench.errors import VaebenchError

STREAMS: dict[str, int] = {
    # data (vaebench.data)
    "data.split": 1,  # the fixed train/test permutation of the digits (seed fixed, not the run's)
    "data.truth": 2,  # the synthetic linear-Gaussian model's parameters
    "data.sample": 3,  # the synthetic data drawn from it
    "data.dequantize": 4,  # uniform dequantization noise; index: 0 train, 1 test
    "data.binarize": 5,  # fixed Bernoulli binarization; index: 0 train, 1 test
    "data.batches": 6,  # minibatch order (and dynamic binarization); index: epoch
    "data.toy_truth": 7,  # the Gaussian toy's true prior mean μ (vaebench.data.gaussian_toy)
    "data.toy_sample": 8,  # the Gaussian toy's points; index: 0 train, 1 test
    "data.file_split": 9,  # the train/test permutation of a .npy or .csv data file (vaebench.data.arrays)
    "data.valid": 15,  # the validation examples carved from the training set, and their binarization
    # initialisation
    "init.model": 10,  # the model's layers (GaussianVAE(seed=...))
    "init.estimator": 11,  # an estimator's own network (NVIL's baseline)
    "init.statistics": 12,  # the draw that initialises an estimator's running statistics
    "init.toy_checkpoint": 13,  # the perturbation of the Gaussian toy's built checkpoint (vaebench.toy)
    "init.near_posterior": 14,  # the perturbation of a linear-Gaussian encoder away from the exact posterior
    # training and its evaluation (vaebench.train, vaebench.measures.convergence)
    "train.noise": 20,  # latent noise of the training steps
    "eval.elbo": 21,  # noise of the test ELBO, reseeded identically at every evaluation
    "eval.log_likelihood": 22,  # importance samples of the final test log-likelihood
    "eval.valid": 23,  # noise of the final validation ELBO (what a step-size grid selects on)
    # gradient variance (vaebench.measures.variance)
    "variance.replicates": 30,  # the replicate gradient estimates; index: batch
    "variance.baseline_gradient": 31,  # the sampled gradient replicates are compared with
    "variance.timing": 32,  # the timed gradient estimates
    "variance.warm_up": 33,  # the steps that warm an estimator's state before it is frozen
    "variance.weights": 34,  # the importance weights of the weight diagnostics (vaebench.measures.weights)
    "variance.bootstrap": 35,  # the bootstrap resamples of the variance figures' intervals
    # throughput (vaebench.measures.throughput)
    "throughput.noise": 40,  # latent noise of the timed steps
    "throughput.data": 41,  # dynamic binarization of the timed batch
    "throughput.matmul": 42,  # the operands of the matrix-multiply ceiling
    # the dry run's cost calibration (vaebench.suite.cost)
    "cost.data": 45,  # dynamic binarization of the timed batch
    "cost.eval": 46,  # the noise of the timed test-ELBO evaluation
    # verification (vaebench.checks.exact_gradients)
    "verify.model": 50,  # the perturbation of the small exact model and its batch
    "verify.state": 51,  # perturbing and warming an estimator's state
    # STL's landing check (vaebench.checks.landing)
    "landing.model": 60,  # the linear-Gaussian model built for it
    "landing.data": 61,  # its minibatch
    # the scaling laws' evidence (vaebench.checks.laws)
    "checks.batch": 62,  # the measured minibatch of the near-posterior linear-Gaussian checkpoint
    # checks against exact answers (vaebench.checks)
    "checks.gaussian_1d": 63,  # the Monte Carlo estimates of the 1-D Gaussian check; index: (f, k, form)
    # the contract probe of a plugin's estimator on a batch (vaebench.suite.probe, verify)
    "probe": 64,
    # problems and the conclusions across them (vaebench.problems, vaebench.analysis.across)
    "problems.split": 70,  # the fixed train/test permutation of a problem's data (seed fixed, not the run's)
    "problems.merit": 71,  # the draws from q of a global-latent problem's figures of merit
    "problems.verify": 72,  # the conjugate regression's data in the global-latent check; index: part
    "across.bootstrap": 73,  # the stratified bootstrap over problems and seeds
}
"""Every random stream of a seed, by name; ids are unique, so no two consumers share numbers."""


def _state(seed: int, stream: str, index: tuple[int, ...], words: int) -> np.ndarray:
    try:
        stream_id = STREAMS[stream]
    except KeyError:
        raise KeyError(f"unknown random stream {stream!r}; register it in vaebench.rng.STREAMS") from None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise VaebenchError(f"a seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(stream_id, *map(int, index))).generate_state(
        words, dtype=np.uint32
    )


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """A 63-bit integer seed for stream ``stream`` (a key of `STREAMS`) at ``index`` of ``seed``."""
    hi, lo = _state(seed, stream, index, 2)
    return (int(hi) & 0x7FFF_FFFF) << 32 | int(lo)


def generator(seed: int, stream: str, *index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` for one stream (and index) of ``seed``.

    Args:
        seed: the run's seed (a non-negative integer).
        stream: a key of `STREAMS`.
        *index: integers naming a sub-stream, e.g. an epoch or a batch number.
        device: where the generator lives (a CUDA generator for CUDA tensors).

    Returns:
        A freshly seeded generator; equal arguments give equal numbers.
    """
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, *index))


def numpy_generator(seed: int, stream: str, *index: int) -> np.random.Generator:
    """A numpy ``Generator`` (PCG64) for one stream (and index) of ``seed``."""
    return np.random.default_rng(_state(seed, stream, index, 4))


@contextlib.contextmanager
def seeded(seed: int, stream: str, *index: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Fork torch's global RNG, seed it from one stream of ``seed``, and restore the caller's state on exit.

    This is the one way vaebench lets code draw from the global RNG, for draws that take no generator:
    ``nn.Linear``'s initialisation (``with seeded(seed, "init.model"): layer = nn.Linear(...)`` gives the same
    weights for the same seed, whatever ran before) and compiled or vmapped steps. With a CUDA ``device``,
    that device's generator is forked and seeded too.
    """
    device = None if device is None else torch.device(device)
    cuda = device is not None and device.type == "cuda"
    value = derive_seed(seed, stream, *index)
    with torch.random.fork_rng(devices=[device] if cuda else []):
        # Seed only the generators fork_rng restores: torch.manual_seed would also reseed every CUDA device
        # and leave them so after the block.
        torch.random.default_generator.manual_seed(value)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(value)
        yield
