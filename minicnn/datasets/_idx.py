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
import math
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


def read_idx(path, shape=None):
    """Read one IDX file (gzipped or not) into a NumPy array in native byte order.

    The header is read and checked first, then exactly the bytes it declares (in
    chunks, straight into the array), so a gzip bomb or a header claiming 10^12
    values costs no memory. ``shape``, when given, must match the header's.

    Raises DatasetFormatError naming ``path`` for a truncated or corrupt file.
    """
    with _open_maybe_gzipped(path) as f:
        try:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
                raise DatasetFormatError(f"{path}: not an IDX file (bad magic number {magic.hex()})")
            ndim = magic[3]
            dims = f.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise DatasetFormatError(f"{path}: IDX header is truncated or has {ndim} dimensions")
            header_shape = tuple(int(v) for v in np.frombuffer(dims, ">u4"))
            if shape is not None and header_shape != tuple(shape):
                raise DatasetFormatError(f"{path}: header declares shape {header_shape}, "
                                         f"expected {tuple(shape)}")
            dtype = np.dtype(IDX_DTYPES[magic[2]])
            expected = math.prod(header_shape) * dtype.itemsize   # Python ints: no overflow
            if expected > MAX_BYTES:
                raise DatasetFormatError(f"{path}: header declares shape {header_shape} "
                                         f"({expected} bytes), more than any data set minicnn reads")
            data = np.empty(expected, np.uint8)
            got = _read_into(f, data)
            extra = len(f.read(1))
        except (EOFError, OSError, zlib.error) as err:
            raise DatasetFormatError(f"{path}: corrupt or truncated gzip data ({err})") from err
    if got != expected or extra:
        held = f"{got} bytes" if not extra else "more"
        raise DatasetFormatError(
            f"{path}: header promises shape {header_shape} ({expected} bytes of data) "
            f"but the file holds {held}; it is truncated or corrupt")
    return data.view(dtype).reshape(header_shape).astype(dtype.newbyteorder("="))


# The largest IDX payload accepted: MNIST's training images are 47 MB.
MAX_BYTES = 1 << 30


def _open_maybe_gzipped(path):
    """A binary file object, decompressing on the fly when the file starts with gzip's magic."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_into(f, buffer, chunk=1 << 20):
    """Fill ``buffer`` (a uint8 array) from ``f`` chunk by chunk; returns the bytes read."""
    view, done = memoryview(buffer), 0
    while done < len(buffer):
        n = f.readinto(view[done:done + chunk])
        if not n:
            break
        done += n
    return done


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
    images, labels = read_idx(image_path, (size, 28, 28)), read_idx(label_path, (size,))
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
