"""``model.trace(x)``: follow one batch through the network, layer by layer.

For every layer it reports what a learner would work out by hand:

* input and output shapes, batch axis included;
* for Conv2D, the im2col matrix: (N·OH·OW, kh·kw·C_in), one row per output pixel,
  one column per kernel weight, and its size in MB (10**6 bytes);
* forward FLOPs of the matrix products, 2 per multiply-add:
  Conv2D 2·N·OH·OW·kh·kw·C_in·C_out less the window cells that fall in the padding,
  Dense 2·N·D·units. Everything else (pooling, activations, bias adds, BatchNorm,
  Dropout) is a cheap elementwise pass and counts 0;
* forward and backward wall time, backward as training runs it: the first layer with
  weights skips the gradient of its input, which nothing needs, and the layers below it
  run no backward at all (0 ms);
* extra memory: bytes of the output plus what the layer caches for backward, not
  counting arrays it shares with its input, its output or its parameters.

The batch goes through once to warm up (Numba compiles its kernels on first use),
then a few timed times; each layer reports its fastest. The model is left exactly as
it was: BatchNorm statistics, gradients and the random generator are restored afterwards.

``trace_model`` returns a ``Trace``: its repr is the table, its ``rows`` the data.
"""
import time

import numpy as np

from kernels import backend
from kernels._shapes import conv_geometry, inside_cells
from .layers import Conv2D, Dense
from .stats import preserved_training_state
from .threads import compute_threads
from .summary import format_bytes


def conv_sizes(layer, n):
    """(N·OH·OW, kh·kw·C_in, C_out) of a built Conv2D on ``n`` samples: the im2col
    matrix's rows and columns, and the number of filters."""
    kh, kw = layer.kernel_size
    H, W, C_in = layer.input_shape
    OH, OW, *_ = conv_geometry((n, H, W, C_in), kh, kw, layer.strides, layer.padding)
    return n * OH * OW, kh * kw * C_in, layer.filters


def im2col_shape(layer, n):
    """Shape of the im2col matrix a Conv2D builds for a batch of ``n`` (None for other layers).

    A batch too big for the im2col budget (``kernels.set_im2col_budget``) builds it in
    chunks of samples, so less is alive at once than this shape says.
    """
    if not isinstance(layer, Conv2D):
        return None
    rows, columns, _ = conv_sizes(layer, n)
    return (rows, columns)


def forward_flops(layer, n):
    """Floating-point operations of the layer's forward matrix products for ``n`` samples.

    A convolution counts only the multiply-adds of window cells inside the image: the
    padding is zeros, and where it is most of the window minicnn skips it
    (``kernels/_per_position.py``). Without padding that is 2·rows·columns·filters of
    the im2col product.
    """
    if isinstance(layer, Conv2D):
        cells = inside_cells((n, *layer.input_shape), *layer.kernel_size, layer.strides, layer.padding)
        return 2 * n * cells * layer.input_shape[-1] * layer.filters
    if isinstance(layer, Dense):
        return 2 * n * layer.input_shape[0] * layer.units
    return 0


def _arrays(obj):
    """Every array inside a cache (nested tuples, lists and dicts)."""
    if hasattr(obj, "nbytes") and hasattr(obj, "shape"):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _arrays(item)


def _owner(a):
    """The array that owns ``a``'s memory (``a`` itself unless it is a view)."""
    while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
        a = a.base
    return a


def extra_bytes(layer, x, y):
    """Bytes the layer keeps alive between forward and backward: output + cache.

    Arrays that are (views of) the input or the parameters are not new memory, and
    an output that is a view of the input (Flatten) costs nothing.
    """
    seen = {id(_owner(a)) for a in (x, *layer.params.values())}
    total = 0
    kept_input = getattr(layer, "_activation_input", None)  # a Python-function activation's z
    for a in (y, *_arrays(layer._cache), *_arrays(kept_input)):
        owner = _owner(a)
        if id(owner) not in seen:
            seen.add(id(owner))
            total += int(owner.nbytes)
    return total


def _sync(a):
    """Wait for the GPU to finish, so the clock measures the work and not its launch."""
    if backend.is_gpu(a):
        backend.cupy.cuda.Device().synchronize()


def _timed(function, argument):
    start = time.perf_counter()
    result = function(argument)
    _sync(result)
    return result, (time.perf_counter() - start) * 1000.0


def _passes(model, x, y_true, dy_rng):
    """Forward then backward through every layer; per-layer rows with times and memory.

    Backward starts from the loss's gradient when labels ``y_true`` are given, else from
    a random upstream gradient (the same arithmetic, so the same times).
    """
    rows = []
    for layer in model.layers:
        y, ms = _timed(lambda a: layer.forward(a, training=True), x)
        n = x.shape[0]
        col = im2col_shape(layer, n)
        rows.append({"name": layer.name, "type": type(layer).__name__,
                     "input_shape": tuple(x.shape), "output_shape": tuple(y.shape),
                     "im2col_shape": col,
                     "im2col_mb": None if col is None else col[0] * col[1] * x.dtype.itemsize / 1e6,
                     "flops": forward_flops(layer, n), "forward_ms": ms,
                     "memory_bytes": extra_bytes(layer, x, y)})
        x = y
    if y_true is not None:
        dy = model.loss.gradient(y_true, x)
    else:   # a fixed seed keeps runs comparable
        dy = dy_rng.standard_normal(x.shape).astype(x.dtype)
        dy = backend.to_device(dy, "gpu") if backend.is_gpu(x) else dy
    first_trainable = model._first_trainable()
    for index in range(len(model.layers) - 1, -1, -1):
        layer, row = model.layers[index], rows[index]
        if index < first_trainable:
            row["backward_ms"] = 0.0
            continue
        layer.needs_input_grad = index > first_trainable
        try:
            dy, row["backward_ms"] = _timed(layer.backward, dy)
        finally:
            layer.needs_input_grad = True
    return rows


def _human(n):
    """705600 -> '705.6k', 3072000 -> '3.07M': FLOP counts a person can read."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def format_table(rows):
    """The rows of ``trace_model`` as aligned text, with totals."""
    def shape(s):
        return "(" + ", ".join(map(str, s)) + ")"
    header = ("Layer (type)", "Input", "Output", "im2col (MB)", "FLOPs", "fwd ms", "bwd ms", "Memory")
    lines = [header]
    for r in rows:
        col = "" if r["im2col_shape"] is None else f"{shape(r['im2col_shape'])} {r['im2col_mb']:.3f}"
        lines.append((f"{r['name']} ({r['type']})", shape(r["input_shape"]), shape(r["output_shape"]),
                      col, _human(r["flops"]), f"{r['forward_ms']:.3f}", f"{r['backward_ms']:.3f}",
                      format_bytes(r["memory_bytes"])))
    lines.append(("Total", "", "", "", _human(sum(r["flops"] for r in rows)),
                  f"{sum(r['forward_ms'] for r in rows):.3f}",
                  f"{sum(r['backward_ms'] for r in rows):.3f}",
                  format_bytes(sum(r["memory_bytes"] for r in rows))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "-" * len(text[0]))
    text.insert(-1, "-" * len(text[0]))
    text.append("FLOPs: conv/dense matrix products only, 2 per multiply-add, padding not "
                "counted; pooling, activations, bias, BatchNorm and Dropout count 0.")
    return "\n".join(text)


class Trace:
    """What ``model.trace`` returns: ``repr`` (and ``str``) is the table, ``rows`` the data.

    ``trace[i]`` and ``for row in trace`` reach the rows directly; each is a dict with
    name, type, input_shape, output_shape, im2col_shape, im2col_mb, flops, forward_ms,
    backward_ms and memory_bytes.
    """

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, index):
        return self.rows[index]

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self):
        return format_table(self.rows)


def trace_model(model, x, y=None, print_fn=None, repeat=3):
    """Trace one batch ``x`` (labels ``y`` optional) through ``model``; returns a ``Trace``.

    Each row is a dict: name, type, input_shape, output_shape, im2col_shape (None
    unless Conv2D), im2col_mb, flops, forward_ms, backward_ms, memory_bytes.
    ``print_fn`` (e.g. ``print``), when given, also receives the table.

    Times are the fastest of ``repeat`` passes, after one warm-up pass, on the thread
    count ``fit`` starts with (``minicnn.threads.num_threads()``).

    Shapes: x: (N, *model.input_shape); y: labels as ``fit`` takes them; a small N
    (1-32) is enough.
    """
    if y is not None:
        model._require_compiled("trace with labels")   # the loss gives backward's start
    x, y = model._prepare(x, y, what="trace")
    x, y = model._as_batch(x, y)
    with preserved_training_state(model), compute_threads():     # the threads fit would use
        _passes(model, x, y, np.random.default_rng(0))            # warm-up: JIT compilation
        runs = [_passes(model, x, y, np.random.default_rng(0)) for _ in range(max(repeat, 1))]
    rows = runs[0]
    for key in ("forward_ms", "backward_ms"):   # the fastest run: the least disturbed by
        for i, row in enumerate(rows):          # other programs, as timeit reports
            row[key] = min(run[i][key] for run in runs)
    trace = Trace(rows)
    if print_fn is not None:
        print_fn(repr(trace))
    return trace
