"""How much memory an im2col column matrix may take, and batch chunking to respect it.

The column matrix of a conv layer holds every input pixel ``kh*kw`` times over, so a
big batch can need gigabytes (a learner's laptop swaps, a GPU runs out). The NumPy and
Numba convolutions therefore walk the batch in chunks whose col buffers fit the budget:
forward and backward together, a layer's col-sized buffers (the col matrix and its
gradient) never add up to more than the budget.

The budget is, in order: ``set_im2col_budget(bytes)`` if called, else the environment
variable ``MINICNN_IM2COL_BUDGET_MB`` (read on every call), else 256 MiB.
"""
import math
import os

DEFAULT_BUDGET = 256 * 2**20
_budget = None            # set by set_im2col_budget(); None means "use env or default"
peak_col_bytes = 0        # largest col-sized buffer allocated so far (tests read this)


def set_im2col_budget(nbytes):
    """Cap each col-sized buffer at ``nbytes`` bytes; ``None`` restores the default."""
    global _budget
    if nbytes is not None and int(nbytes) <= 0:
        raise ValueError(f"im2col budget must be a positive number of bytes, got {nbytes!r}")
    _budget = None if nbytes is None else int(nbytes)


def get_im2col_budget():
    """The current budget in bytes."""
    if _budget is not None:
        return _budget
    env = os.environ.get("MINICNN_IM2COL_BUDGET_MB", "").strip()
    if not env:
        return DEFAULT_BUDGET
    try:
        megabytes = float(env)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes * 2**20 >= 1):
        raise ValueError(f"MINICNN_IM2COL_BUDGET_MB must be a positive, finite number of MiB "
                         f"(for example 256), got {env!r}")
    return int(megabytes * 2**20)


def images_per_chunk(N, rows_per_image, cols, itemsize, buffers=1):
    """How many images fit when ``buffers`` col matrices of this shape share the budget.

    At least one image is always processed, even if a single image's col exceeds it.
    """
    per_image = max(rows_per_image * cols * itemsize * buffers, 1)
    return max(1, min(N, get_im2col_budget() // per_image))


def note_col(nbytes):
    """Record the bytes of col-sized buffers alive together, so a test can check the budget."""
    global peak_col_bytes
    peak_col_bytes = max(peak_col_bytes, int(nbytes))


def reset_peak():
    global peak_col_bytes
    peak_col_bytes = 0
