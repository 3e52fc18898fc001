"""Read CIFAR "python version" batches safely, from a folder or the .tar.gz.

Each batch is a pickled dict: ``b"data"`` is a uint8 array (N, 3072) whose
rows hold the red, green and blue 32x32 planes one after the other, and
``b"labels"`` (CIFAR-10) or ``b"fine_labels"``/``b"coarse_labels"``
(CIFAR-100) are lists of N ints.

Unpickling can run arbitrary code, and people fetch these files from
mirrors and shares, so ``SafeUnpickler`` only lets through the few NumPy
callables that rebuild an array.  Anything else is refused before it runs.
"""
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from . import _download, _paths
from ._errors import DatasetFormatError

try:                                   # NumPy 2 renamed numpy.core to numpy._core
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:                    # NumPy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something other than plain data and NumPy arrays."""


def _latin1_bytes(text, encoding="latin1"):
    """Python 3 writes bytes as ``_codecs.encode(text, "latin1")`` in protocols < 3; allow only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Every global a CIFAR pickle may name, written by NumPy 1 or 2 (and Python 2
# or 3), mapped to the object we hand back.  Anything not listed is refused.
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_bytes}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[_module, "_reconstruct"] = _multiarray._reconstruct
    _ALLOWED[_module, "scalar"] = _multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[_module, "_frombuffer"] = _numeric._frombuffer


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that builds only dicts, lists, strings, numbers and NumPy arrays."""

    def __init__(self, file, source):
        super().__init__(file, encoding="bytes")   # Python 2 str -> bytes keys, as in the files
        self.source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load '{module}.{name}'. CIFAR batches hold only "
                "plain data and NumPy arrays, so this file is not a CIFAR batch and could run "
                "code if unpickled; nothing from it was executed.") from None


def safe_load(raw, source):
    """Unpickle ``raw`` bytes with SafeUnpickler; ``source`` names the file in errors."""
    try:
        return SafeUnpickler(io.BytesIO(raw), source).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated pickles fail in many ways
        raise DatasetFormatError(f"{source}: not a readable pickle ({type(err).__name__}: {err})") from err


def parse_batch(raw, source, label_key):
    """Turn one batch file's bytes into images and labels.

    Returns:
        x: uint8 (N, 32, 32, 3), NHWC.
        y: uint8 (N,).
    """
    batch = safe_load(raw, source)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetFormatError(f"{source}: expected a dict with b'data' and {label_key!r}, got {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetFormatError(f"{source}: b'data' should be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{source}: {data.shape[0]} image rows but {labels.size} entries in {label_key!r}")
    if labels.size and labels.dtype.kind not in "iu":   # 3.7 or NaN would otherwise load as 3 or 0
        example = labels.reshape(-1)[:1].tolist()
        raise DatasetFormatError(f"{source}: {label_key!r} should hold whole-number class labels, "
                                 f"got {labels.dtype} values such as {example}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise DatasetFormatError(f"{source}: labels outside 0-255 in {label_key!r}")
    # Rows are channel-planar (3, 32, 32); Keras and minicnn want NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, labels.astype(np.uint8)


# A CIFAR batch is 10000 rows of 3072 bytes plus labels and names: about 31 MB.
MAX_BATCH_BYTES = 64 << 20


def _read_folder(folder, names):
    """{name: (bytes, path)} for the batch files of an extracted folder."""
    return {name: ((folder / name).read_bytes(), str(folder / name)) for name in names}


def _read_archive(archive, folder_name, names):
    """{name: (bytes, "archive:member")} read straight from the .tar.gz, nothing extracted."""
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in names and Path(member.name).parent.name == folder_name:
                    if member.size > MAX_BATCH_BYTES:   # checked before reading: no gzip bombs
                        raise DatasetFormatError(
                            f"{archive}: {member.name} claims {member.size} bytes; a CIFAR batch "
                            f"holds about 31 MB")
                    found[name] = (tar.extractfile(member).read(), f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetFormatError(f"{archive}: corrupt or truncated archive ({err})") from err
    lost = [name for name in names if name not in found]
    if lost:
        raise DatasetFormatError(f"{archive}: no {folder_name}/{lost[0]} inside the archive")
    return found


def read_batches(dataset, folder_name, archive_name, names, root):
    """Locate the data set (folder, then archive, per root; else download) and read ``names``.

    Returns {name: (bytes, source description)}.
    """
    for base in _paths.data_roots(root):
        folder = base / folder_name
        if all((folder / name).is_file() for name in names):
            return _read_folder(folder, names)
        if (base / archive_name).is_file():
            return _read_archive(base / archive_name, folder_name, names)
    searched = [str(base) for base in _paths.data_roots(root)]
    hint = f"(an extracted {folder_name}/ folder inside one of them works too)"
    archive = _download.fetch_all(dataset, [archive_name], _paths.cache_dir(), searched, hint)[0]
    return _read_archive(archive, folder_name, names)


def load_split(files, names, label_key, size, num_classes):
    """Concatenate the batches ``names`` and check the total and the label range.

    Returns x uint8 (size, 32, 32, 3) and y uint8 (size, 1) as Keras does.
    """
    parts = [parse_batch(*files[name], label_key) for name in names]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    where = files[names[0]][1] if len(names) == 1 else f"{files[names[0]][1]} and the other batches"
    if len(x) != size:
        raise DatasetFormatError(f"{where}: expected {size} images in total, found {len(x)}")
    if y.size and y.max() >= num_classes:
        raise DatasetFormatError(f"{where}: label {y.max()} is not below {num_classes}")
    return np.ascontiguousarray(x), y.reshape(-1, 1)
