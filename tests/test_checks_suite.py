"""The checks as units of the suite: the rebuilt scaling preset, the claims section, the toy in the suite, and
the one rule of seeds.

The preset's own verdicts are pinned by `test_the_published_snr_claims_are_reproduced`, which runs the three
SNR claims' units exactly as the preset does (the toy checkpoint, K from 1 to 1000, the preset's replicates).
Each law is judged at 5% (its slope's interval against theory ± tolerance), so a correct suite fails one of
the three with probability at most about 15% over the draws; the draws are seeded, so the test is
deterministic, and the figures it gave are stated in the preset's reference run (results/reference/scaling).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from vaebench import cli
from vaebench.analysis.claims import CLAIMS
from vaebench.checks import laws
from vaebench.config import preset, resolve
from vaebench.errors import VaebenchError
from vaebench.suite.units import plan


def test_the_scaling_preset_runs_the_checks_only() -> None:
    config = preset("scaling")
    units = plan(config)
    assert {u.kind for u in units} == {"landing", "laws", "quadrature"}  # no training, no anchor run
    assert {u.checkpoint for u in units if u.kind == "laws"} == {"toy", "near-posterior"}
    assert max(config.samples) >= 1000 and len(config.samples) >= 3
    assert {"iwae", "dreg"} <= {u.estimator for u in units if u.kind == "laws"}


def _run(tmp_path: Path, toml: str, monkeypatch: pytest.MonkeyPatch, replicates=None) -> Path:
    if replicates is not None:
        monkeypatch.setattr(laws, "replicates", replicates)
    path = tmp_path / "run.toml"
    path.write_text(toml)
    out = tmp_path / "out"
    assert cli.main(["run", "--config", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_the_published_snr_claims_are_reproduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run(
        tmp_path,
        'preset = "scaling"\nestimators = ["iwae", "dreg", "ovis-mc"]\n[checks]\nlaws = ["toy"]\nlanding = true\n'
        "quadrature = false\n",
        monkeypatch,
    )
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    for claim in ("rainforth-encoder", "rainforth-decoder", "tucker-snr", "lievin-snr", "roeder"):
        assert claims.loc[claim, "verdict"] == "agrees", claims.loc[claim].to_dict()
    others = {c.key for c in CLAIMS if c.preset != "scaling"}  # measured by the other presets' runs
    assert set(claims.index[claims["verdict"].str.startswith("not measured")]) == {"mohamed", *others}
    fits = pd.read_csv(out / "scaling.csv")
    assert set(fits["checkpoint"]) == {"toy"} and (fits["verdict"] == "agrees").all()
    text = (out / "report.md").read_text()
    assert "## Published claims" in text and "## Scaling laws in K" in text
    assert (
        "![scaling laws at toy](scaling_laws_toy.png)" in text
        and (out / "scaling_laws_toy.png").stat().st_size > 0
    )


def test_a_shrunk_scaling_run_writes_its_tables_and_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _run(
        tmp_path,
        'preset = "scaling"\nestimators = ["reparam", "iwae"]\nsamples = [1, 3, 10]\n'
        '[checks]\nlaws = ["near-posterior"]\nlanding = false\nquadrature = false\n',
        monkeypatch,
        replicates=lambda name, k: 20,
    )
    rows = pd.read_csv(out / "laws.csv")
    assert set(rows["checkpoint"]) == {"near-posterior"} and set(rows["run"]) == {"built"}
    assert rows["khat_max"].notna().all()  # every row carries its checkpoint's weight diagnostic
    assert sorted(rows["num_samples"].unique()) == [1, 3, 10]
    assert not (out / "variance.csv").exists() and not (out / "convergence.csv").exists()
    claims = pd.read_csv(out / "claims.csv")
    assert (claims["verdict"] == "not measured in this run").all()  # the claims are the toy's
    assert "## Scaling laws in K" in (out / "report.md").read_text()


def test_the_toy_in_the_suite_is_built_not_trained() -> None:
    config, notes = resolve(preset_name="quick", overrides={"data": {"name": "gaussian-toy"}})
    assert config.model.name == "gaussian-toy" and config.variance.checkpoints == ("end",)
    assert any("built checkpoint" in n for n in notes)
    with pytest.raises(VaebenchError, match="built checkpoint"):
        resolve(
            preset_name="quick",
            overrides={"data": {"name": "gaussian-toy"}, "variance": {"checkpoints": ["init", "end"]}},
        )
    kept, _ = resolve(
        preset_name="quick", overrides={"data": {"name": "gaussian-toy"}, "model": {"name": "gaussian-vae"}}
    )
    assert kept.model.name == "gaussian-vae"  # asked for: a VAE trained on the toy's data


def test_the_anchor_of_the_toy_is_its_built_checkpoint(tmp_path: Path) -> None:
    import torch

    from vaebench.data import load_dataset
    from vaebench.suite.context import Context
    from vaebench.suite.execute import execute
    from vaebench.suite.units import ANCHOR
    from vaebench.toy import toy_checkpoint

    config, _ = resolve(preset_name="quick", overrides={"data": {"name": "gaussian-toy"}})
    (anchor,) = [u for u in plan(config) if u.kind == ANCHOR]
    saved = execute(anchor, Context(config, tmp_path))
    assert saved["estimator"] == "built" and list(saved["checkpoints"]) == ["end"]
    built = toy_checkpoint(load_dataset("gaussian-toy"), seed=config.seeds[0]).state_dict()
    state = saved["checkpoints"]["end"]["state"]
    assert all(torch.equal(state[k], built[k]) for k in built)


def test_checks_keys_are_checked() -> None:
    with pytest.raises(VaebenchError, match=r"checks\.laws entry"):
        resolve(preset_name="quick", overrides={"checks": {"laws": ["digits"]}})
    with pytest.raises(VaebenchError, match="measures nothing"):
        resolve(
            preset_name="quick",
            overrides={
                "variance": {"enabled": False},
                "train": {"enabled": False},
                "throughput": {"enabled": False},
            },
        )


def test_the_checks_section_leaves_older_hashes_alone() -> None:
    from vaebench.config import config_hash

    base = preset("quick")
    asked = dataclasses.replace(base, checks=dataclasses.replace(base.checks, quadrature=True))
    assert config_hash(asked) != config_hash(base)
    # at its defaults the section is left out of the hash: the units of folders written before it verify
    data = config_hash(base)
    assert data == config_hash(dataclasses.replace(base, checks=type(base.checks)()))


# --- seeds: one rule ------------------------------------------------------------------------------------------


def test_seeds_reach_the_variance_measure_unless_it_names_its_own() -> None:
    config, _ = resolve(preset_name="quick", overrides={"seeds": [4, 5]})
    assert config.variance_seeds == (4, 5)
    assert {u.seed for u in plan(config) if u.kind == "variance"} == {4, 5}
    own, _ = resolve(preset_name="quick", overrides={"seeds": [4, 5], "variance": {"seeds": [9]}})
    assert {u.seed for u in plan(own) if u.kind == "variance"} == {9}
