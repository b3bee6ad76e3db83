"""A data set of your own from a file: ``.npz`` with train and test arrays, or ``.npy`` / ``.csv`` split by seed.

Formats (chosen by the file's suffix, `FILE_SUFFIXES`):

- ``.npz`` (``np.savez(path, train=..., test=...)``): the arrays ``train`` [N, D] and ``test`` [M, D], used
  as they are (other arrays in the archive are ignored);
- ``.npy`` (``np.save``): one array [N, D], split at random into train and test;
- ``.csv``: numbers separated by commas, one example per line, with or without a header line (a first line
  with any cell that is not a number is a header); split like ``.npy``.

An array [N, H, W] is a set of images: it is flattened to [N, H·W] and (H, W) kept for plots. Values may be
booleans, integers or floats; they become float32 and are used as they are (no rescaling: the data's own
units, which the Gaussian decoder takes as they come).

The split of one array of N examples: a permutation π from the seed's ``data.file_split`` stream
(:mod:`vaebench.rng`), the first M = round(f·N) examples of π for test (at least one, and at least one left
for training), the rest for training in their order of π; the same seed and fraction give the same split.

Everything is checked where it enters, with a message that names the file and the problem: a path that is
not a regular file (a FIFO would hang the read, ``/dev/zero`` never end it), an ``.npy`` header (or an ``.npz``
member's) declaring more data than the file holds (refused before numpy allocates it), an unreadable,
empty or corrupt file, an ``.npz`` without ``train`` or ``test``, an array of Python objects or complex
numbers, a shape that is not [N, D] or [N, H, W], a non-numeric CSV cell (with its row and column), NaN or
Inf values (how many and where the first is), a value too large for float32, train and test of different
widths, and a training set smaller than the batch size. The file's SHA-256 (of its bytes, as ``sha256sum``
prints it) is returned for provenance; given the SHA-256 a run recorded, a changed file is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vaebench import files, rng
from vaebench.errors import VaebenchError

FILE_SUFFIXES = (".npz", ".npy", ".csv")
"""The data files vaebench reads; a data-set name ending in one of them (any case) is a path."""

TEST_FRACTION = 0.2
"""Default share of a ``.npy`` or ``.csv`` set held out for testing (the digits' split is 80 / 20 too)."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_data_file(name: str) -> bool:
    """Whether a data-set name is the path of a data file (it ends in one of `FILE_SUFFIXES`)."""
    return isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)


@dataclass(frozen=True, eq=False)
class FileData:
    """What a data file holds, checked: float32 tensors, their image shape, where they came from.

    Attributes:
        train: [N, D] training examples.
        test: [M, D] test examples.
        image_shape: (H, W) when the file held images [N, H, W], else None.
        source: the file's absolute path.
        sha256: the SHA-256 of the file's bytes.
        split: how train and test were formed, in words.
    """

    train: Tensor
    test: Tensor
    image_shape: tuple[int, ...] | None
    source: str
    sha256: str
    split: str


def read_file(
    path: str | Path,
    *,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    batch_size: int | None = None,
    sha256: str | None = None,
) -> FileData:
    """Read and check a data file (see the module docstring).

    Args:
        path: a ``.npz``, ``.npy`` or ``.csv`` file.
        test_fraction: share f of the examples held out for testing (``.npy``, ``.csv``), 0 < f < 1.
        seed: seed of the split.
        batch_size: when given, the training set must have at least this many examples.
        sha256: when given, the file's SHA-256 must be this one (the file a run started with).

    Raises:
        VaebenchError: naming the file and what is wrong with it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise VaebenchError(f"{path}: vaebench reads data files ending in {', '.join(FILE_SUFFIXES)}")
    if not (isinstance(test_fraction, int | float) and 0 < test_fraction < 1):
        raise VaebenchError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    kind = files.kind_of(path)
    if kind is not None:  # a FIFO would hang the read, a device (/dev/zero) never end it
        raise VaebenchError(f"{path} is {kind}, not a regular file: save the data to a file and name that")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise VaebenchError(f"{path}: cannot read it ({err.strerror}); check the path") from None
    except MemoryError:
        raise VaebenchError(
            f"{path}: {_gib(path.stat().st_size)} does not fit in memory; use a smaller file"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise VaebenchError(
            f"{path} changed since the run recorded it (sha256 {sha256[:12]} then, {digest[:12]} now): restore "
            "the file, or start a new run"
        )
    if not raw.strip():
        raise VaebenchError(f"{path}: the file is empty")
    if suffix == ".npz":
        train, test = (_check(path, key, a) for key, a in _npz(path, raw).items())
        split = "train and test as stored"
    else:
        array = _check(path, None, _npy(path, raw) if suffix == ".npy" else _csv(path, raw))
        train, test = _split(path, array, test_fraction, seed)
        split = f"a fraction {test_fraction:g} held out for testing, split by seed {seed}"
    (x_train, shape), (x_test, shape_test) = train, test
    if x_train.shape[1] != x_test.shape[1] or shape != shape_test:
        raise VaebenchError(
            f"{path}: train examples have shape {shape or (x_train.shape[1],)} but test examples "
            f"{shape_test or (x_test.shape[1],)}; both need the same features"
        )
    if batch_size is not None and x_train.shape[0] < batch_size:
        raise VaebenchError(
            f"{path}: the training set has {x_train.shape[0]} examples, fewer than the batch size {batch_size}; "
            f"use a batch size of at most {x_train.shape[0]}, or more data"
        )
    return FileData(x_train, x_test, shape, str(path.resolve()), digest, split)


def _npz(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise VaebenchError(f"{path}: not a readable .npz archive ({_reason(err)})") from None
    if isinstance(archive, np.ndarray):
        raise VaebenchError(
            f"{path} holds a single array (a .npy file), not an .npz archive of train and test arrays: rename "
            "it .npy to have it split, or save it with np.savez(path, train=..., test=...)"
        )
    with archive:
        missing = [key for key in ("train", "test") if key not in archive.files]
        if missing:
            held = ", ".join(repr(k) for k in archive.files) or "nothing"
            raise VaebenchError(
                f"{path}: no {' or '.join(repr(k) for k in missing)} array (it holds {held}); save it with "
                "np.savez(path, train=..., test=...), or as one array in a .npy file to have it split"
            )
        out = {}
        for key in ("train", "test"):
            try:
                info = archive.zip.getinfo(f"{key}.npy")
                with archive.zip.open(info) as member:
                    _check_npy_header(
                        path, io.BytesIO(member.read(4096)), info.file_size, f"its {key!r} array"
                    )
                out[key] = archive[key]
            except VaebenchError:
                raise
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
                raise VaebenchError(f"{path}: its {key!r} array is unreadable ({_reason(err)})") from None
            except MemoryError:
                raise VaebenchError(f"{path}: its {key!r} array does not fit in memory") from None
    return out


def _npy(path: Path, raw: bytes) -> np.ndarray:
    _check_npy_header(path, io.BytesIO(raw), len(raw))
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise VaebenchError(f"{path}: not a readable .npy file ({_reason(err)})") from None
    except MemoryError:
        raise VaebenchError(f"{path}: its array does not fit in memory; use a smaller one") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise VaebenchError(f"{path} is an .npz archive, not a single .npy array: rename it .npz")
    return array


def _check_npy_header(path: Path, fh: io.BytesIO, size: int, what: str = "the file") -> None:
    """Refuse a .npy whose header declares more data than ``size`` bytes hold, before numpy allocates it.

    An .npz archive (its zip magic) is let through: its members are checked as they are read.
    """
    if fh.read(2) == b"PK":
        return
    fh.seek(0)
    try:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError):
        return  # not a well-formed header: np.load says why
    declared = math.prod(shape) * dtype.itemsize
    if declared > size - fh.tell():
        raise VaebenchError(
            f"{path}: {what}'s header declares an array of shape {shape} ({dtype}, {_gib(declared)}) but only "
            f"{size - fh.tell()} bytes of data follow; the file is truncated or corrupt: save it again"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n} bytes"


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if "allow_pickle" in text:
        return "it holds Python objects (pickled), not plain numbers"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _csv(path: Path, raw: bytes) -> np.ndarray:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise VaebenchError(
            f"{path}: not a text file (byte {err.start} is not UTF-8); is it really a CSV?"
        ) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    header = any(not _is_number(cell) for cell in next(csv.reader([first])))
    source = io.StringIO(text)
    options = {"header": 0 if header else None, "skipinitialspace": True}
    try:
        frame = pd.read_csv(source, dtype=np.float64, **options)
    except pd.errors.EmptyDataError:  # before ValueError: pandas' errors subclass it
        raise VaebenchError(f"{path}: the CSV has no rows of numbers") from None
    except pd.errors.ParserError as err:
        raise VaebenchError(f"{path}: not a well-formed CSV ({' '.join(str(err).split())})") from None
    except ValueError:  # a cell that is not a number: read it again as text to say which
        _raise_non_numeric(path, pd.read_csv(io.StringIO(text), dtype=str, **options))
    if frame.shape[0] == 0:
        raise VaebenchError(f"{path}: the CSV has a header line but no rows of numbers")
    return frame.to_numpy()


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return not cell.strip()  # an empty cell is a missing number, not a header
    return True


def _raise_non_numeric(path: Path, frame: pd.DataFrame) -> NoReturn:
    for j, column in enumerate(frame.columns):
        values = frame[column]
        bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise VaebenchError(
                f"{path}: {values.iloc[i]!r} at {_where(True, i, j)} is not a number; a CSV of data holds "
                "numbers only (and may start with a header line)"
            )
    raise VaebenchError(f"{path}: a cell is not a number")


def _where(from_csv: bool, i: int, j: int) -> str:
    """Row i, column j (from 0) as the user finds it: in a CSV, from 1 and not counting a header line."""
    if from_csv:
        return f"row {i + 1}, column {j + 1} of the data (counted from 1, after any header)"
    return f"row {i}, column {j} (counted from 0)"


def _check(path: Path, key: str | None, array: np.ndarray) -> tuple[Tensor, tuple[int, ...] | None]:
    what = f"{path}: its {key!r} array" if key else f"{path}: the data"
    return check_array(array, what, from_csv=path.suffix.lower() == ".csv")


def check_array(
    array: np.ndarray, what: str, from_csv: bool = False
) -> tuple[Tensor, tuple[int, ...] | None]:
    """Check one array's type, shape and values -> ([N, D] float32 tensor, (H, W) or None).

    Args:
        array: [N, D] examples, or [N, H, W] images.
        what: how messages name it (``"data.npz: its 'train' array"``).
        from_csv: it was read from a CSV: positions are counted as a reader of the file counts them.

    Raises:
        VaebenchError: beginning with ``what``.
    """
    array = np.asarray(array)
    if array.dtype.kind == "c":
        raise VaebenchError(f"{what} holds complex numbers; vaebench needs real ones")
    if array.dtype.kind not in "biuf":
        raise VaebenchError(f"{what} holds {array.dtype} values, not numbers")
    if array.ndim not in (2, 3):
        fix = "; one feature per example: reshape it to (N, 1)" if array.ndim == 1 else ""
        raise VaebenchError(
            f"{what} has shape {array.shape}: need [N, D] (one row per example) or [N, H, W] (images){fix}"
        )
    if array.shape[0] == 0 or math.prod(array.shape[1:]) == 0:
        raise VaebenchError(f"{what} has shape {array.shape}: no examples or no features")
    image_shape = tuple(array.shape[1:]) if array.ndim == 3 else None
    flat = array.reshape(array.shape[0], -1)
    if flat.dtype.kind == "f":
        bad = ~np.isfinite(flat)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            nan = int(np.isnan(flat).sum())
            counts = ", ".join(
                f"{n} {label}" for n, label in ((nan, "NaN"), (int(bad.sum()) - nan, "infinite")) if n
            )
            empty = " (an empty or NaN cell)" if from_csv else ""
            raise VaebenchError(
                f"{what} has {counts} value(s){empty}, the first at {_where(from_csv, i, j)}: {flat[i, j]}; "
                "remove or impute them"
            )
        big = np.abs(flat) > _FLOAT32_MAX
        if big.any():
            i, j = np.argwhere(big)[0]
            raise VaebenchError(
                f"{what} has values too large for float32 (|x| > 3.4e38), the first at {_where(from_csv, i, j)}: "
                f"{flat[i, j]}; rescale the data"
            )
    return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32)), image_shape


def _split(
    path: Path, data: tuple[Tensor, tuple[int, ...] | None], fraction: float, seed: int
) -> tuple[tuple[Tensor, tuple[int, ...] | None], tuple[Tensor, tuple[int, ...] | None]]:
    x, shape = data
    n = x.shape[0]
    if n < 2:
        raise VaebenchError(f"{path}: holds {n} example; splitting into train and test needs at least 2")
    n_test = min(max(round(fraction * n), 1), n - 1)
    order = torch.from_numpy(rng.numpy_generator(seed, "data.file_split").permutation(n))
    return (x[order[n_test:]], shape), (x[order[:n_test]], shape)


def binarize_unit(
    train: Tensor, test: Tensor, mode: str | None, seed: int, source: str
) -> tuple[Tensor, Tensor]:
    """Binarize data in [0, 1] as the image sets are (see :mod:`vaebench.data.datasets`); None: unchanged.

    ``threshold``: x >= 0.5; ``fixed``: one Bernoulli(x) draw each, seeded; ``dynamic``: ``train`` kept as the
    Bernoulli means (batches are drawn per step), ``test`` drawn once.

    Raises:
        VaebenchError: a value outside [0, 1], which is no Bernoulli mean.
    """
    if mode is None:
        return train, test
    low, high = (float(min(t.min() for t in (train, test))), float(max(t.max() for t in (train, test))))
    if low < 0 or high > 1:
        raise VaebenchError(
            f"{source}: binarize {mode!r} needs values in [0, 1] (Bernoulli means), but they span "
            f"[{low:g}, {high:g}]; rescale the data to [0, 1] or set binarize to none"
        )
    out = []
    for part, x in (("train", train), ("test", test)):
        if mode == "threshold":
            x = (x >= 0.5).to(torch.float32)
        elif mode == "fixed" or (mode == "dynamic" and part == "test"):
            x = torch.bernoulli(x, generator=rng.generator(seed, "data.binarize", int(part == "test")))
        out.append(x)
    return out[0], out[1]
