"""The pytorch/examples VAE recipe, reproduced with the suite's own loop: a regression check of the pipeline.

:func:`pytorch_examples_recipe` is the VAE of pytorch/examples (``vae/main.py``); :func:`run_recipe` trains
it as one convergence measurement. On MNIST it reaches the published test loss
`PYTORCH_EXAMPLES_MNIST_TEST_LOSS` (mean -ELBO per test image); ``benchmarks/reproduce_recipe.py`` writes the
figures with their provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from vaebench.data import load_dataset
from vaebench.estimators import Setting
from vaebench.measures.convergence import LogLikelihood, measure_convergence
from vaebench.model import GaussianVAE
from vaebench.train import TrainSpec

PYTORCH_EXAMPLES_MNIST_TEST_LOSS = 105.56
"""Test loss (mean -ELBO per test image, nats) of the pytorch/examples VAE after 10 epochs on MNIST."""


@dataclass(frozen=True)
class Recipe:
    """A complete training setup: data, model, estimator and training options.

    Attributes:
        name: a label for reports.
        dataset: data set name for :func:`~vaebench.data.load_dataset`.
        dataset_options: its preprocessing options.
        model_options: :class:`~vaebench.model.GaussianVAE` options besides x_dim and seed.
        setting: the estimator and K.
        spec: the training loop's settings.
        published_test_loss: the published test loss (mean -ELBO per test image), when there is one.
    """

    name: str
    dataset: str
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    setting: Setting = Setting("reparam", 1)
    spec: TrainSpec = TrainSpec(epochs=1)
    published_test_loss: float | None = None

    def model_factory(self, x_dim: int) -> Callable[[int], GaussianVAE]:
        """``seed -> GaussianVAE`` for data of dimension ``x_dim``."""
        return lambda seed: GaussianVAE(x_dim, seed=seed, **self.model_options)


def pytorch_examples_recipe(dataset: str = "mnist", epochs: int = 10) -> Recipe:
    """The VAE of pytorch/examples (``vae/main.py``): the suite's end-to-end regression check.

    784-400-20 with ReLU, a Bernoulli decoder on grey-level pixels in [0, 1] (not binarized), loss = summed
    BCE + analytic KL per image (= -ELBO, the ``reparam-analytic-kl`` estimator at K = 1), Adam with learning
    rate 1e-3, batch 128, 10 epochs, PyTorch's default layer initialisation. On MNIST it reaches test loss
    `PYTORCH_EXAMPLES_MNIST_TEST_LOSS` (mean -ELBO per test image); the test loss here is the same quantity,
    ``-final_test_elbo``.

    Differences that do not change the model class: the encoder is one 784-400-40 network whose last layer
    gives (μ, raw scale) with σ = softplus(raw) + 1e-3, where pytorch/examples has two 400-20 heads (fc21,
    fc22) giving μ and log σ² (the same layer widths and parameter count); the loss here is the batch mean,
    not the batch sum (Adam is invariant to that scale up to its ε); the test ELBO averages 10 samples per
    image instead of 1 (the same expectation, less noise).

    Args:
        dataset: ``"mnist"`` (the published figure) or ``"fashion-mnist"`` (the suite's own figure in
            ``results/reference/``); any other name of :data:`~vaebench.data.DATASETS` works too.
        epochs: training epochs (10 in the recipe).
    """
    return Recipe(
        name=f"pytorch-examples-vae-{dataset}",
        dataset=dataset,
        dataset_options={"binarize": None, "dequantize": False},
        model_options={"z_dim": 20, "hidden": (400,), "likelihood": "bernoulli", "activation": "relu"},
        setting=Setting("reparam-analytic-kl", 1),
        spec=TrainSpec(epochs=epochs, batch_size=128, lr=1e-3, optimizer="adam"),
        published_test_loss=PYTORCH_EXAMPLES_MNIST_TEST_LOSS if dataset == "mnist" and epochs == 10 else None,
    )


def run_recipe(
    recipe: Recipe, *, root=None, seed: int = 0, ll_samples: int = 0, device=None, progress: bool = False
) -> pd.DataFrame:
    """Load the recipe's data, train with it and measure, as one `measure_convergence` run.

    Args:
        recipe: from e.g. :func:`pytorch_examples_recipe`.
        root: folder of the IDX files (``load_dataset``'s ``root``).
        seed: the run's seed.
        ll_samples: importance samples of the test log-likelihood (0, the default, skips it: k = 5000 on
            10,000 28x28 test images is slow on a CPU).
        device: where to train (default: the CPU).
        progress: show a progress bar.

    Returns:
        The run's frame; the recipe's test loss is ``-value`` of its ``final_test_elbo`` row.
    """
    data = load_dataset(recipe.dataset, root, seed=seed, **recipe.dataset_options)
    spec = replace(recipe.spec, device=device, progress=progress)
    model = recipe.model_factory(data.x_dim)(seed)
    return measure_convergence(
        model, recipe.setting, data, spec, seed=seed, likelihood=LogLikelihood(samples=ll_samples)
    )
