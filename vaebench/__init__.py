"""vaebench: measure the gradient estimators of variational inference on one shared Gaussian VAE."""

__version__ = "0.1.0"
