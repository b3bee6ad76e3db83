"""Data sets from the user's own files (.npz, .npy, .csv): what is read, how it is split, its SHA-256, and one
clear error per kind of bad file, naming the file and the problem."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from vaebench import rng
from vaebench.data import load_dataset, read_file
from vaebench.errors import VaebenchError


def values(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return rng.numpy_generator(seed, "data.sample").random(shape)


def test_an_npz_is_read_as_stored_with_its_sha256(tmp_path: Path):
    train, test = values((12, 3)), values((5, 3), 1)
    path = tmp_path / "mine.npz"
    np.savez(path, train=train, test=test, labels=np.arange(12))  # other arrays are ignored
    ds = load_dataset(str(path))
    assert torch.equal(ds.train, torch.from_numpy(train.astype(np.float32)))
    assert torch.equal(ds.test, torch.from_numpy(test.astype(np.float32)))
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ds.name == str(path) and str(path.resolve()) in ds.source and ds.image_shape is None
    assert (ds.likelihood, ds.binarize, ds.dequantize, ds.levels) == ("gaussian", None, False, None)
    assert next(ds.batches(4)).shape == (4, 3)  # usable by the training loop as it is


def test_images_are_flattened_and_keep_their_shape_for_plots(tmp_path: Path):
    path = tmp_path / "images.npz"
    np.savez(path, train=np.zeros((6, 4, 5), np.uint8), test=np.ones((2, 4, 5), bool))
    ds = load_dataset(str(path))
    assert ds.train.shape == (6, 20) and ds.test.shape == (2, 20) and ds.image_shape == (4, 5)
    assert ds.train.dtype == ds.test.dtype == torch.float32 and ds.test.eq(1).all()


def test_an_npy_is_split_by_a_seeded_fraction(tmp_path: Path):
    data = values((50, 2))
    path = tmp_path / "one.npy"
    np.save(path, data)
    a, again, other = (load_dataset(str(path), seed=s) for s in (0, 0, 1))
    assert a.train.shape == (40, 2) and a.test.shape == (10, 2)  # the default fraction 0.2
    assert torch.equal(a.test, again.test) and not torch.equal(a.test, other.test)
    rows = torch.cat([a.train, a.test])  # a partition of the rows: nothing lost or repeated
    assert torch.equal(
        rows[rows[:, 0].argsort()], torch.from_numpy(data.astype(np.float32))[data[:, 0].argsort()]
    )
    assert load_dataset(str(path), test_fraction=0.5).test.shape == (25, 2)
    assert "fraction 0.2 held out for testing, split by seed 1" in other.source


def test_a_csv_with_or_without_header_gives_the_same_data(tmp_path: Path):
    data = values((10, 3)).round(4)
    plain, headed = tmp_path / "plain.csv", tmp_path / "headed.csv"
    np.savetxt(plain, data, delimiter=",", fmt="%.4f")
    np.savetxt(headed, data, delimiter=",", fmt="%.4f", header="a,b,c", comments="")
    a, b = load_dataset(str(plain)), load_dataset(str(headed))
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test) and a.train.shape == (8, 3)
    assert a.sha256 != b.sha256  # the bytes differ, so the provenance does


def test_data_in_the_unit_interval_can_be_binarized_and_nothing_is_dequantized(tmp_path: Path):
    path = tmp_path / "unit.npz"
    np.savez(path, train=values((20, 4)), test=values((6, 4), 1))
    fixed = load_dataset(str(path), binarize="fixed", seed=2)
    assert set(fixed.train.unique().tolist()) == {0.0, 1.0} and fixed.likelihood == "bernoulli"
    dynamic = load_dataset(str(path), binarize="dynamic")
    assert 0 < dynamic.train.min() and set(dynamic.test.unique().tolist()) <= {
        0.0,
        1.0,
    }  # means kept for training
    with pytest.raises(VaebenchError, match="cannot be dequantized"):
        load_dataset(str(path), dequantize=True)
    np.savez(path, train=values((20, 4)) * 3, test=values((6, 4)))
    with pytest.raises(
        VaebenchError, match=r"binarize 'threshold' needs values in \[0, 1\].*span \[0.*, 2.9"
    ):
        load_dataset(str(path), binarize="threshold")


def save_npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


ok = values((10, 3))
with_nan = ok.copy()
with_nan[3, 1] = np.nan
with_inf = ok.copy()
with_inf[7, 0] = -np.inf
huge = ok.copy()
huge[2, 2] = 1e300

BAD = [
    ("missing.npz", lambda p: None, "cannot read it (No such file or directory)"),
    ("empty.npz", lambda p: p.write_bytes(b""), "the file is empty"),
    ("corrupt.npz", lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a readable .npz archive"),
    (
        "cut.npy",
        lambda p: (np.save(p, ok), p.write_bytes(p.read_bytes()[:-40])),
        "the file is truncated or corrupt",
    ),
    ("no-test.npz", lambda p: save_npz(p, train=ok, x=ok), "no 'test' array (it holds 'train', 'x')"),
    ("single.npz", lambda p: p.write_bytes(npy_bytes(ok)), "holds a single array (a .npy file)"),
    (
        "archive.npy",
        lambda p: p.write_bytes(npz_bytes(train=ok, test=ok)),
        "is an .npz archive, not a single .npy array",
    ),
    (
        "objects.npy",
        lambda p: p.write_bytes(npy_bytes(np.array([{"a": 1}, None]), True)),
        "holds Python objects (pickled), not plain numbers",
    ),
    (
        "flat.npy",
        lambda p: np.save(p, np.arange(10.0)),
        "has shape (10,): need [N, D] (one row per example) or [N, H, W] (images); one feature per example: reshape it to (N, 1)",
    ),
    ("video.npy", lambda p: np.save(p, np.zeros((4, 2, 3, 3))), "has shape (4, 2, 3, 3): need [N, D]"),
    ("complex.npy", lambda p: np.save(p, ok + 1j), "holds complex numbers"),
    ("words.npy", lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), "holds <U1 values, not numbers"),
    (
        "nan.npz",
        lambda p: save_npz(p, train=with_nan, test=ok),
        "its 'train' array has 1 NaN value(s), the first at row 3, column 1 (counted from 0): nan",
    ),
    (
        "inf.npz",
        lambda p: save_npz(p, train=ok, test=with_inf),
        "its 'test' array has 1 infinite value(s), the first at row 7, column 0",
    ),
    (
        "huge.npy",
        lambda p: np.save(p, huge),
        "values too large for float32 (|x| > 3.4e38), the first at row 2, column 2",
    ),
    (
        "text.csv",
        lambda p: p.write_text("a,b,c\n1,2,3\n4,5,x\n"),
        "'x' at row 2, column 3 of the data (counted from 1, after any header) is not a number",
    ),
    (
        "hole.csv",
        lambda p: p.write_text("1,2\n3,\n5,6\n"),
        "has 1 NaN value(s) (an empty or NaN cell), the first at row 2, column 2 of the data",
    ),
    ("ragged.csv", lambda p: p.write_text("1,2\n3,4,5\n"), "not a well-formed CSV (Error tokenizing data"),
    ("binary.csv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe"), "not a text file (byte"),
    ("header-only.csv", lambda p: p.write_text("a,b\n"), "has a header line but no rows of numbers"),
    (
        "widths.npz",
        lambda p: save_npz(p, train=ok, test=values((4, 4))),
        "train examples have shape (3,) but test examples (4,)",
    ),
    (
        "one.npy",
        lambda p: np.save(p, ok[:1]),
        "holds 1 example; splitting into train and test needs at least 2",
    ),
]


@pytest.mark.parametrize("name, make, expected", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_gets_one_message_naming_the_file_and_the_problem(tmp_path: Path, name, make, expected):
    path = tmp_path / name
    make(path)
    with pytest.raises(VaebenchError) as err:
        load_dataset(str(path))
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text, text
    assert expected in text, text


def test_too_few_rows_for_the_batch_and_a_changed_file_are_refused(tmp_path: Path):
    path = tmp_path / "small.npz"
    np.savez(path, train=ok[:8], test=ok[8:])
    with pytest.raises(VaebenchError, match="the training set has 8 examples, fewer than the batch size 10"):
        load_dataset(str(path), batch_size=10)
    recorded = read_file(path).sha256
    assert load_dataset(str(path), sha256=recorded).sha256 == recorded
    np.savez(path, train=ok[:9], test=ok[9:])
    with pytest.raises(
        VaebenchError, match=f"small.npz changed since the run recorded it \\(sha256 {recorded[:12]} then"
    ):
        load_dataset(str(path), sha256=recorded)


def test_names_that_are_neither_a_set_nor_a_data_file(tmp_path: Path):
    with pytest.raises(
        VaebenchError,
        match=r"unknown data set 'mine.txt'; valid names: digits, .*ending in \.npz, \.npy, \.csv",
    ):
        load_dataset("mine.txt")
    with pytest.raises(VaebenchError, match="test_fraction must be between 0 and 1"):
        read_file(tmp_path / "x.npy", test_fraction=1.0)
