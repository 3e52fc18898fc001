"""Read IDX files (the MNIST format) and load an MNIST-like data set.

An IDX file is a big-endian header followed by raw values::

    bytes 0-1  zero
    byte  2    value type (0x08 = uint8, ...)
    byte  3    number of dimensions, ndim
    then ndim  uint32 sizes, then prod(sizes) values

MNIST and Fashion-MNIST ship four of them, usually gzipped.  Local copies may
be re-gzipped (so their checksum differs from the official one), hence the
careful header and size checks here instead of a hash.
"""
import gzip
import zlib

import numpy as np

from . import _download, _paths
from ._errors import DatasetFormatError

# IDX type byte -> big-endian NumPy dtype.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """Read one IDX file (gzipped or not) into a NumPy array in native byte order.

    Raises DatasetFormatError naming ``path`` for a truncated or corrupt file.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetFormatError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_len:
        raise DatasetFormatError(f"{path}: IDX header is truncated or has {ndim} dimensions")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_len != expected:
        raise DatasetFormatError(
            f"{path}: header promises shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header_len} bytes; it is truncated or corrupt")
    data = np.frombuffer(raw, dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))   # copy: native order and writable


def _read_bytes(path):
    """The file's bytes, gunzipped when it starts with the gzip magic number."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: corrupt or truncated gzip data ({err})") from err


def load_idx_dataset(subdir, root, split_sizes, num_classes=10, extra_dirs=()):
    """Find (or download) and read the four files of an MNIST-like data set.

    Args:
        subdir: folder name inside each data root and the key into the
            download tables, e.g. ``"mnist"`` or ``"fashion-mnist"``.
        root: the ``root=`` argument of ``load_data`` (None: $MINICNN_DATA).
        split_sizes: ``{"train": 60000, "test": 10000}``, checked exactly.
        extra_dirs: system folders searched after the cache (Debian's copy).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``; images uint8 (N, 28, 28),
        labels uint8 (N,).
    """
    dirs = [base / subdir for base in _paths.data_roots(root)] + list(extra_dirs)
    paths = {}
    for names in FILES.values():
        for name in names:
            paths[name] = _paths.find_first(dirs, [name + ".gz", name])
    missing = [name + ".gz" for name, path in paths.items() if path is None]
    if missing:
        cache = _paths.cache_dir() / subdir
        fetched = _download.fetch_all(subdir, missing, cache, searched=dirs)
        paths.update({p.name[: -len(".gz")]: p for p in fetched})
    return tuple(_load_split(paths, split, split_sizes[split], num_classes) for split in FILES)


def _load_split(paths, split, size, num_classes):
    """Read and cross-check one split's image and label files."""
    image_path, label_path = (paths[name] for name in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.shape != (size, 28, 28):
        raise DatasetFormatError(
            f"{image_path}: expected uint8 images of shape {(size, 28, 28)}, "
            f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != (size,):
        raise DatasetFormatError(
            f"{label_path}: expected {size} uint8 labels, got {labels.dtype} {labels.shape}")
    if labels.max(initial=0) >= num_classes:
        raise DatasetFormatError(f"{label_path}: label {labels.max()} is not below {num_classes}")
    return images, labels
