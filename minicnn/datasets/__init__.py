"""Keras-style data set loaders: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``.

Each module has ``load_data(...)`` returning ``(x_train, y_train), (x_test, y_test)``
with Keras's shapes and dtypes.  Files are looked up under ``root=`` or
``$MINICNN_DATA``, then ``$XDG_CACHE_HOME/minicnn`` (``~/.cache/minicnn``), and
downloaded (sha256-checked) into that cache when missing.  Set
``MINICNN_OFFLINE=1`` to forbid downloads; the error then says which files to
place where.
"""
from . import cifar10, cifar100, fashion_mnist, mnist
from ._errors import DatasetFormatError, DatasetNotFoundError

__all__ = ["mnist", "fashion_mnist", "cifar10", "cifar100",
           "DatasetFormatError", "DatasetNotFoundError"]
