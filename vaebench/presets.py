"""The presets by name, each in one line: plain data, so the command line's ``--help`` needs no torch.

The presets themselves are :func:`vaebench.config.preset` (:mod:`vaebench.config.sections`); a test checks that
both name the same ones.
"""

PRESET_DESCRIPTIONS: dict[str, str] = {
    "quick": "a smoke test in well under a minute: a tiny VAE, 60 steps, K in {1, 4}, 2 seeds",
    "default": "the 13 classic estimators x K in {1, 10} x 3 seeds on digits, 64-100-8 VAE, 3000 cosine-decayed steps, seeds trained as one program (minutes on a CPU)",
    "scaling": "the scaling laws in K and the published claims checked: the Gaussian toy and a near-posterior VAE, K from 1 to 1000, STL at the posterior, 1-D quadrature (about a minute)",
    "families": "the later estimator families (MVD, Renyi, RWS, tail-adaptive, MIWAE/CIWAE/PIWAE) beside reparam, IWAE, DReG, as the default run",
    "fashion-mnist": "the reference study: reparam, IWAE, DReG at K in {1, 5, 50} x 3 seeds on Fashion-MNIST, Burda et al.'s model, 24,000 cosine-decayed steps of 25 (about 2 h on 2 cores)",
    "problems": "every built-in problem (python -m vaebench list), each on its own data, model and budget: the classic estimators that apply x K in {1, 10} x 3 seeds, and the verdicts across problems",
    "paper": "Fashion-MNIST (or MNIST), dynamic binarization, Burda et al.'s 2x200 tanh, z=50, 200k steps",
    "tuned": "the default run at 5 step sizes (1e-3 to 1e-2) per setting, each estimator read at the one chosen on a validation tenth of the training digits (several times the default's cost)",
    "ovis": "Lievin et al. 2020's Gaussian VAE: IWAE-STL, DReG, IWAE, TVO, OVIS at K in {5, 10, 50} on thresholded Fashion-MNIST, 2x200 tanh, z=200, batch 24, Adam 3e-4 (about 40 min on 2 cores)",
}
