"""IDX files (MNIST, Fashion-MNIST): where to find them and how to read them without trusting them.

A truncated or corrupt file is an error naming the file, never a silently wrong shape.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from vaebench import files
from vaebench.errors import VaebenchError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's package `dataset-fashion-mnist` installs the IDX files."""

IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_TORCHVISION_DIRS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


def _candidate_dirs(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    """Folders to search, in order: root, $VAEBENCH_DATA, Debian's (fashion-mnist only)."""
    sub = [Path(name), Path(_TORCHVISION_DIRS[name]) / "raw"]
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root), *(Path(root) / s for s in sub)]
    env = os.environ.get("VAEBENCH_DATA")
    if env:
        # $VAEBENCH_DATA holds Fashion-MNIST at its top level (the convention) and other sets in
        # subfolders, so a Fashion-MNIST folder is never read as MNIST by accident.
        dirs += ([Path(env)] if name == "fashion-mnist" else []) + [Path(env) / s for s in sub]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def _idx_path(folder: Path, stem: str) -> Path | None:
    """The plain IDX file if present (faster to read), else the .gz, else None (one that is not a regular file
    is found too, for `read_idx` to refuse by name)."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.exists():
            return path
    return None


def require_idx(folder: Path, stem: str) -> Path:
    path = _idx_path(folder, stem)
    if path is None:  # only if the file vanished between the search and the read
        raise VaebenchError(f"{folder}: {stem}[.gz] disappeared while loading")
    return path


def find_idx_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The first folder holding both train and t10k image files of an IDX data set.

    Looked in, in order, for a base B: B, B/<name>, B/<FashionMNIST|MNIST>/raw (torchvision's layout), with
    B = `root`, then `$VAEBENCH_DATA` (Fashion-MNIST also at its top level), then for "fashion-mnist" Debian's
    /usr/share/datasets/fashion-mnist. Files may be plain or gzipped. Fashion-MNIST and MNIST use the same
    file names, so `root` must point at the set asked for.

    Raises:
        VaebenchError: nothing found; the message lists every folder looked in and how to get the files.
    """
    looked = []
    for folder in _candidate_dirs(name, root):
        missing = [f"{s}[.gz]" for s in IDX_FILES.values() if _idx_path(folder, s) is None]
        if not missing:
            return folder
        looked.append(
            f"  {folder}: " + ("does not exist" if not folder.is_dir() else "no " + ", ".join(missing))
        )
    if name == "fashion-mnist":
        how = "install Debian's package (apt-get install dataset-fashion-mnist), or pass --data-dir DIR"
        env = "$VAEBENCH_DATA to a folder holding them"
    else:
        how, env = "pass --data-dir DIR", f"$VAEBENCH_DATA to a folder with them in {name}/ or MNIST/raw/"
    raise VaebenchError(
        f"{name}: IDX files train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] not found.\n"
        + ("Looked in:\n" + "\n".join(looked) if looked else "No folder given and $VAEBENCH_DATA is not set.")
        + f"\nTo fix: {how} (root=DIR) holding the files, or set {env}."
    )


def read_idx(path: Path, *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, plain or gzipped (detected by the magic bytes 1f 8b).

    Format: 2 zero bytes, type code 0x08 (uint8), the number of dimensions n, n big-endian uint32 sizes, then
    the data in C order; the magic number is 0x00000803 for image files and 0x00000801 for label files.

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels), or None for any.

    Returns:
        A read-only uint8 array with the header's shape, e.g. [N, 28, 28].

    Raises:
        VaebenchError: naming the file, for a corrupt gzip stream, a wrong magic number, or a payload whose
            size disagrees with the header.
    """
    kind = files.kind_of(path)
    if kind is not None:  # a FIFO would hang the read, a device never end it
        raise VaebenchError(f"{path} is {kind}, not a regular file: put the IDX file itself there")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise VaebenchError(
                    f"{path}: corrupt or truncated gzip stream ({e}); download it again"
                ) from None
    except OSError as e:
        raise VaebenchError(f"{path}: cannot read IDX file ({e})") from None
    except MemoryError:
        raise VaebenchError(
            f"{path}: too large to load into memory; is it really an IDX image file?"
        ) from None
    want = f"0x{0x800 + ndim:08x}" if ndim is not None else "0x000008NN"
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or (ndim is not None and raw[3] != ndim):
        magic = f"0x{raw[:4].hex()}" if len(raw) >= 4 else f"only {len(raw)} bytes"
        raise VaebenchError(
            f"{path}: not an IDX file of unsigned bytes: magic number {magic}, expected {want}"
        )
    n = raw[3]
    header = 4 + 4 * n
    if len(raw) < header:
        raise VaebenchError(
            f"{path}: truncated IDX header: {len(raw)} bytes, the header alone needs {header}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=n, offset=4))
    expected, actual = math.prod(shape), len(raw) - header
    if actual != expected:
        raise VaebenchError(
            f"{path}: truncated or corrupt IDX file: header says shape {shape}, i.e. {expected} data bytes, "
            f"but the file has {actual}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
