"""Where minicnn looks for data files, in one place.

Search order for every data set:

1. the ``root=`` argument of ``load_data``, or else the ``MINICNN_DATA``
   environment variable;
2. the user cache, ``$XDG_CACHE_HOME/minicnn`` or ``~/.cache/minicnn``
   (this is also where downloads go);
3. data-set specific system folders (Debian's ``/usr/share/datasets/...``).

Inside a root, each data set has its own sub-folder (``mnist/``,
``fashion-mnist/``) or, for CIFAR, the official folder or archive name.
"""
import os
from pathlib import Path


def cache_dir():
    """The folder downloads are written to (created on demand by the downloader)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "minicnn"


def data_roots(root=None):
    """The roots to search, most specific first: root (or $MINICNN_DATA), then the cache."""
    roots = []
    chosen = root if root is not None else os.environ.get("MINICNN_DATA")
    if chosen:
        roots.append(Path(chosen).expanduser())
    roots.append(cache_dir())
    return roots


def find_first(dirs, names):
    """Return the first existing ``dir / name``, trying every name in each dir in turn.

    ``names`` lists acceptable spellings of one file (e.g. with and without
    ``.gz``); the first folder that holds any of them wins, so a user's own
    copy always beats the cache.
    """
    for folder in dirs:
        for name in names:
            candidate = Path(folder) / name
            if candidate.is_file():
                return candidate
    return None


def offline():
    """True when ``MINICNN_OFFLINE`` asks minicnn never to touch the network."""
    return os.environ.get("MINICNN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
