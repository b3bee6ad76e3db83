"""Tests for vaebench.data: the embedded and synthetic sets, IDX parsing and its errors, the batch iterator."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from vaebench import data
from vaebench.data import DATASETS, batches, load_dataset, read_idx
from vaebench.errors import VaebenchError

TRAIN = "train-images-idx3-ubyte"
TEST = "t10k-images-idx3-ubyte"


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not depend on the developer's $VAEBENCH_DATA."""
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000080N with N = array.ndim unless given)."""
    magic = 0x800 + array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_set(
    folder: Path, gz: bool = False, n_train: int = 6, n_test: int = 3
) -> tuple[np.ndarray, ...]:
    """Write small random train/t10k image files of 4x5 images; returns the (train, test) arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (n_train, 4, 5), dtype=np.uint8),
        rng.integers(0, 256, (n_test, 4, 5), dtype=np.uint8),
    )
    for stem, array in zip((TRAIN, TEST), arrays, strict=True):
        raw = idx_bytes(array)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


# -- digits and synthetic -------------------------------------------------------------------------------------


def test_digits_shapes_ranges_and_split() -> None:
    ds = load_dataset("digits")
    assert ds.train.shape == (1437, 64) and ds.test.shape == (360, 64)
    assert ds.train.dtype == ds.test.dtype == torch.float32
    assert ds.image_shape == (8, 8) and ds.likelihood == "gaussian" and ds.levels == 17
    levels = torch.cat([ds.train, ds.test]) * 16
    assert torch.equal(levels, levels.round()) and levels.min() == 0 and levels.max() == 16
    again = load_dataset("digits", seed=123)  # the split does not depend on the seed
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)


def test_digits_public_loader_fallback_gives_the_same_data(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = load_dataset("digits")
    monkeypatch.setattr(data.datasets, "_digits_csv", lambda: None)  # as if scikit-learn moved its CSV
    slow = load_dataset("digits")
    assert torch.equal(fast.train, slow.train) and torch.equal(fast.test, slow.test)


def test_digits_dequantize_keeps_grey_level_and_is_seeded() -> None:
    plain = load_dataset("digits")
    deq = load_dataset("digits", dequantize=True, seed=1)
    assert deq.train.min() >= 0 and deq.train.max() <= 1
    # x = (v + u) / 17 with u in [0, 1): the grey level is recoverable
    assert torch.equal(torch.floor(deq.train * 17).clamp(max=16), plain.train * 16)
    assert torch.equal(deq.train, load_dataset("digits", dequantize=True, seed=1).train)
    assert not torch.equal(deq.train, load_dataset("digits", dequantize=True, seed=2).train)


@pytest.mark.parametrize("mode", ["fixed", "threshold"])
def test_fixed_binarizations_are_binary_and_reproducible(mode: str) -> None:
    ds = load_dataset("digits", binarize=mode, seed=3)
    assert ds.likelihood == "bernoulli" and ds.binarize == mode
    for x in (ds.train, ds.test):
        assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(ds.train, load_dataset("digits", binarize=mode, seed=3).train)
    if mode == "threshold":
        assert torch.equal(ds.train, (load_dataset("digits").train >= 0.5).float())


def test_synthetic_shapes_and_seed() -> None:
    ds = load_dataset("synthetic", n_train=50, n_test=20, x_dim=6, z_dim=2, noise_std=0.3, seed=4)
    assert ds.train.shape == (50, 6) and ds.test.shape == (20, 6) and ds.train.dtype == torch.float32
    assert ds.image_shape is None and ds.likelihood == "gaussian" and ds.truth is not None
    assert ds.truth.weight.shape == (6, 2) and ds.truth.bias.shape == (6,)
    assert torch.equal(ds.truth.noise_std, torch.full((6,), 0.3, dtype=torch.float64))
    same = load_dataset("synthetic", n_train=50, n_test=20, x_dim=6, z_dim=2, noise_std=0.3, seed=4)
    other = load_dataset("synthetic", n_train=50, n_test=20, x_dim=6, z_dim=2, noise_std=0.3, seed=5)
    assert torch.equal(ds.train, same.train) and torch.equal(ds.truth.weight, same.truth.weight)
    assert not torch.equal(ds.train, other.train)


def test_synthetic_exact_log_marginal_matches_scipy() -> None:
    ds = load_dataset("synthetic", n_train=200, n_test=30, x_dim=7, z_dim=3, seed=6)
    t = ds.truth
    cov = (t.weight @ t.weight.T + torch.diag(t.noise_std**2)).numpy()
    expected = multivariate_normal(mean=t.bias.numpy(), cov=cov).logpdf(ds.test.double().numpy())
    got = ds.exact_log_marginal(ds.test)
    assert got.shape == (30,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_synthetic_samples_follow_the_model() -> None:
    ds = load_dataset("synthetic", n_train=20_000, n_test=1, x_dim=4, z_dim=2, seed=7)
    t = ds.truth
    cov = t.weight @ t.weight.T + torch.diag(t.noise_std**2)
    x = ds.train.double()
    # mean within 5 standard errors per coordinate (false alarm about 6e-7 each)
    se = (torch.diag(cov) / x.shape[0]).sqrt()
    assert ((x.mean(0) - t.bias).abs() < 5 * se).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 0}, "n_train"),
        ({"z_dim": 2.5}, "z_dim"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"binarize": "dynamic"}, "binarized"),
    ],
)
def test_synthetic_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(VaebenchError, match=match):
        load_dataset("synthetic", **kwargs)


def test_exact_log_marginal_only_for_synthetic() -> None:
    with pytest.raises(VaebenchError, match="synthetic"):
        load_dataset("digits").exact_log_marginal(torch.zeros(1, 64))


def test_unknown_name_and_mode_list_the_valid_ones() -> None:
    with pytest.raises(VaebenchError) as err:
        load_dataset("cifar")
    assert "cifar" in str(err.value) and all(name in str(err.value) for name in DATASETS)
    with pytest.raises(VaebenchError, match="dynamic, fixed, threshold"):
        load_dataset("digits", binarize="sometimes")
    with pytest.raises(VaebenchError, match="either binarize or dequantize"):
        load_dataset("digits", binarize="fixed", dequantize=True)


# -- batches --------------------------------------------------------------------------------------------------


def test_batches_cover_every_example_once_and_are_reproducible() -> None:
    x = torch.arange(23, dtype=torch.float32).unsqueeze(1)
    epoch0 = list(batches(x, 5, seed=1, epoch=0))
    assert [len(b) for b in epoch0] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat(epoch0).squeeze(1).sort().values, x.squeeze(1))
    assert all(torch.equal(a, b) for a, b in zip(epoch0, batches(x, 5, seed=1, epoch=0), strict=True))
    assert not torch.equal(torch.cat(epoch0), torch.cat(list(batches(x, 5, seed=1, epoch=1))))
    assert not torch.equal(torch.cat(epoch0), torch.cat(list(batches(x, 5, seed=2, epoch=0))))
    assert [len(b) for b in batches(x, 5, drop_last=True)] == [5, 5, 5, 5]


def test_dynamic_binarization_is_fresh_per_epoch_and_fixed_is_not() -> None:
    dynamic = load_dataset("digits", binarize="dynamic")
    assert dynamic.likelihood == "bernoulli"
    assert set(dynamic.test.unique().tolist()) == {0.0, 1.0}  # the test set is binarized once
    assert torch.equal(dynamic.train, load_dataset("digits").train)  # train keeps the Bernoulli means

    def epoch_sum(ds: data.Dataset, epoch: int) -> torch.Tensor:
        out = list(ds.batches(100, seed=0, epoch=epoch))
        assert sum(len(b) for b in out) == ds.train.shape[0]
        assert all(set(b.unique().tolist()) <= {0.0, 1.0} for b in out)
        return torch.cat(out).sum(0)  # invariant to the order, so it compares the draws only

    assert torch.equal(epoch_sum(dynamic, 0), epoch_sum(dynamic, 0))
    assert not torch.equal(epoch_sum(dynamic, 0), epoch_sum(dynamic, 1))
    fixed = load_dataset("digits", binarize="fixed")
    assert torch.equal(epoch_sum(fixed, 0), fixed.train.sum(0))
    assert torch.equal(epoch_sum(fixed, 1), fixed.train.sum(0))


def test_batches_bad_input() -> None:
    x = torch.rand(4, 2)
    with pytest.raises(VaebenchError, match="batch_size"):
        batches(x, 0)
    with pytest.raises(VaebenchError, match=r"\[0, 1\]"):
        batches(x + 1, 2, binarize="dynamic")
    with pytest.raises(VaebenchError, match=r"\[N, D\]"):
        batches(x[0], 2)


# -- IDX files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["", "mnist", "MNIST/raw"])
def test_mnist_from_folder(tmp_path: Path, gz: bool, layout: str) -> None:
    train, test = write_idx_set(tmp_path / layout, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.source == str(tmp_path / layout) and ds.image_shape == (4, 5) and ds.levels == 256
    assert ds.train.dtype == torch.float32 and ds.train.shape == (6, 20) and ds.test.shape == (3, 20)
    np.testing.assert_array_equal(ds.train.numpy() * 255, train.reshape(6, 20).astype(np.float32))
    np.testing.assert_array_equal(ds.test.numpy() * 255, test.reshape(3, 20).astype(np.float32))


def test_gzip_detected_by_magic_bytes_not_extension(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "gz-named-plain").write_bytes(gzip.compress(idx_bytes(array)))
    (tmp_path / "plain-named.gz").write_bytes(idx_bytes(array))
    for name in ("gz-named-plain", "plain-named.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name, ndim=3), array)


def test_fashion_mnist_from_env_var_before_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_set(tmp_path)
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path))
    assert load_dataset("fashion-mnist").source == str(tmp_path)
    with pytest.raises(VaebenchError):  # a top-level $VAEBENCH_DATA is Fashion-MNIST, never read as MNIST
        load_dataset("mnist")


def test_wrong_magic_names_the_file(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    bad = tmp_path / TRAIN
    bad.write_bytes(idx_bytes(np.zeros((6, 4, 5), np.uint8), magic=0x00000801))
    with pytest.raises(VaebenchError, match="magic number") as err:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(err.value) and "0x00000803" in str(err.value)


@pytest.mark.parametrize("cut", [1, 100, 110])
def test_truncated_payload_names_the_file_and_sizes(tmp_path: Path, cut: int) -> None:
    write_idx_set(tmp_path)
    bad = tmp_path / TEST
    raw = bad.read_bytes()  # 16 header bytes + 60 data bytes
    bad.write_bytes(raw[: len(raw) - cut])
    with pytest.raises(VaebenchError, match="truncated") as err:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(err.value)
    if cut == 1:
        assert "60 data bytes" in str(err.value) and "has 59" in str(err.value)


def test_extra_bytes_are_an_error(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    bad = tmp_path / TRAIN
    bad.write_bytes(bad.read_bytes() + b"\x00")
    with pytest.raises(VaebenchError, match="120 data bytes, but the file has 121"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_gzip_names_the_file(tmp_path: Path, damage: str) -> None:
    write_idx_set(tmp_path, gz=True)
    bad = tmp_path / (TRAIN + ".gz")
    raw = bytearray(bad.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[-6] ^= 0xFF  # inside the CRC-32 trailer: the stream decodes but fails its check
    bad.write_bytes(bytes(raw))
    with pytest.raises(VaebenchError, match="gzip") as err:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(err.value)


def test_mismatched_image_shapes(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / TEST).write_bytes(idx_bytes(np.zeros((3, 5, 5), np.uint8)))
    with pytest.raises(VaebenchError, match="test images"):
        load_dataset("mnist", tmp_path)


def test_missing_files_list_every_folder_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / TRAIN).write_bytes(b"")  # half a data set
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    with pytest.raises(VaebenchError) as err:
        load_dataset("fashion-mnist", tmp_path / "given")
    msg = str(err.value)
    for folder in (
        "given",
        "given/fashion-mnist",
        "given/FashionMNIST/raw",
        "env",
        "env/FashionMNIST/raw",
        "debian",
    ):
        assert str(tmp_path / folder) in msg
    assert f"{tmp_path / 'given'}: no {TEST}[.gz]" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg and "$VAEBENCH_DATA" in msg


def test_mnist_without_any_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VaebenchError, match="No folder given") as err:
        load_dataset("mnist")
    assert "--data-dir" in str(err.value) and "apt-get" not in str(err.value)


# -- the real Fashion-MNIST from Debian's package -------------------------------------------------------------

needs_debian = pytest.mark.skipif(
    not (data.DEBIAN_FASHION_MNIST / (TRAIN + ".gz")).is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)


@needs_debian
def test_fashion_mnist_from_debian() -> None:
    ds = load_dataset("fashion-mnist", data.DEBIAN_FASHION_MNIST)
    assert ds.train.shape == (60_000, 784) and ds.test.shape == (10_000, 784)
    assert ds.train.dtype == torch.float32 and ds.image_shape == (28, 28)
    assert ds.train.min() == 0 and ds.train.max() == 1 and ds.source == str(data.DEBIAN_FASHION_MNIST)
    labels = read_idx(data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz", ndim=1)
    assert labels.shape == (10_000,) and set(np.unique(labels).tolist()) == set(range(10))
