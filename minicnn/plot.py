"""Pictures of a network and its training, the ones a teacher draws on the board.

    from minicnn import plot
    plot.plot_history(history, path="curves.png")        # loss / accuracy per epoch
    plot.plot_filters(model.layers[0])                    # what the first layer looks for
    plot.plot_feature_maps(model, x_test[0], layer_index=0)
    plot.plot_confusion_matrix(y_test, model.predict(x_test))
    plot.plot_misclassified(x_test, y_test, model.predict(x_test))
    plot.plot_gradient_norms(history)                     # needs the LayerStatistics callback

Every function returns the matplotlib Figure (a notebook shows it) and saves a PNG
when given ``path``. Nothing here calls ``plt.show()``, so nothing blocks. Without a
display (a server, CI) matplotlib draws with its Agg backend; figures are then closed
after drawing so a long script does not pile them up.
"""
import math
import os
import sys

import matplotlib

# A Linux machine with no X/Wayland display cannot open a window: draw off-screen.
# Leave the choice alone when the user (or Jupyter, via MPLBACKEND) has made one.
if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("MPLBACKEND")
        and "matplotlib.pyplot" not in sys.modules):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice
import numpy as np  # noqa: E402

from kernels.backend import to_numpy  # noqa: E402
from .stats import stat_series  # noqa: E402

__all__ = ["plot_history", "plot_filters", "plot_feature_maps", "plot_confusion_matrix",
           "plot_misclassified", "plot_gradient_norms"]


# -- shared helpers ----------------------------------------------------------
def _finish(fig, path):
    """Save ``fig`` as a PNG when asked; close it when no window could ever show it."""
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    if matplotlib.get_backend().lower() == "agg":
        plt.close(fig)       # the Figure stays usable (savefig, notebook display)
    return fig


def _grid(count, cell=1.6, title=None):
    """A figure with exactly ``count`` small image axes in a near-square grid (no ticks)."""
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig = plt.figure(figsize=(cols * cell, rows * cell + (0.4 if title else 0)))
    axes = []
    for i in range(count):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    if title:
        fig.suptitle(title)
    return fig, axes


def _show_image(ax, image):
    """Draw one (H, W), (H, W, 1) or (H, W, 3) image, stretched to its own min..max."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")


def _labels(y):
    """Integer class labels from integer labels, one-hot rows or probabilities.

    Shapes: y: (N,), (N, 1) or (N, K).  Returns (N,) int.
    """
    y = to_numpy(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y)).astype(int)


def _class_name(class_names, label):
    return str(class_names[label]) if class_names is not None else str(label)


def _runs(histories):
    """{run name: history dict} from a History, a history dict, or a dict of those."""
    def as_dict(h):
        return h.history if hasattr(h, "history") else h
    histories = as_dict(histories)
    if not isinstance(histories, dict):
        raise TypeError(f"expected a History or a dict, got {type(histories).__name__}")
    values = list(histories.values())
    if values and all(hasattr(v, "history") or isinstance(v, dict) for v in values):
        return {name: as_dict(h) for name, h in histories.items()}      # several runs
    return {"": histories}


# -- training curves -----------------------------------------------------------
def plot_history(histories, path=None, title=None):
    """Loss and metric curves per epoch: one panel per quantity, validation dashed.

    ``histories``: a History, its ``.history`` dict, or {run name: History or dict}
    to compare several runs (an ablation) on the same axes, one colour per run.
    """
    runs = _runs(histories)
    names = {key[4:] if key.startswith("val_") else key
             for h in runs.values() for key in h if "/" not in key}   # "stats/…" keys aside
    panels = sorted(names, key=lambda name: (name != "loss", name))
    if not panels:
        raise ValueError("the history is empty: nothing to plot (did fit run for an epoch?)")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for colour, (run, h) in enumerate(runs.items()):
            for key, style, split in ((metric, "-", "train"), ("val_" + metric, "--", "val")):
                if key in h:
                    epochs = np.arange(1, len(h[key]) + 1)
                    label = f"{run} {split}".strip()
                    ax.plot(epochs, h[key], style, color=f"C{colour}", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def plot_gradient_norms(history, path=None):
    """Per-layer gradient norms over training, from what ``LayerStatistics`` recorded.

    A log scale, one line per layer with parameters. With {run name: History}, one
    panel per run on a shared scale: e.g. tanh vs relu, where the tanh layers far from
    the loss get gradients orders of magnitude smaller (vanishing gradients).
    """
    runs = _runs(history)
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.8), squeeze=False, sharey=True)
    for ax, (run, h) in zip(axes[0], runs.items()):
        norms = stat_series(h, "grad_norm")
        if not norms:
            raise ValueError("no gradient norms in this history: train with "
                             "callbacks=[minicnn.stats.LayerStatistics(x_probe, y_probe)]")
        for layer, values in norms.items():
            ax.semilogy(np.arange(1, len(values) + 1), values, marker=".", label=layer)
        ax.set_xlabel("epoch")
        ax.set_title(f"{run}: gradient norm per layer" if run else "gradient norm per layer")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("‖dLoss/dweights‖")
    fig.tight_layout()
    return _finish(fig, path)


# -- inside the network --------------------------------------------------------
def plot_filters(conv_layer, path=None):
    """Each filter of a Conv2D as a small image: edges, blobs and colours it responds to.

    kernel: (kh, kw, C_in, filters). C_in = 1 draws grey, C_in = 3 RGB; deeper layers'
    filters are drawn as the mean over their input channels (only a rough hint).
    Each filter is stretched to its own range, so compare shapes, not brightness.
    """
    kernel = to_numpy(conv_layer.params["kernel"])
    _, _, c_in, filters = kernel.shape
    fig, axes = _grid(filters, title=f"{conv_layer.name}: {filters} filters "
                                     f"{kernel.shape[0]}×{kernel.shape[1]}×{c_in}")
    for i, ax in enumerate(axes):
        w = kernel[..., i]                                   # (kh, kw, C_in)
        _show_image(ax, w if c_in in (1, 3) else w.mean(axis=-1))
    return _finish(fig, path)


def plot_feature_maps(model, image, layer_index, path=None, max_maps=32):
    """The output of layer ``layer_index`` for one image: one small picture per channel.

    image: (H, W, C), or (H, W) for a one-channel model. A layer with flat outputs
    (Dense, Flatten) is drawn as one bar chart of its values.
    """
    image = to_numpy(image)
    if image.ndim == 2 and model.input_shape is not None and len(model.input_shape) == 3:
        image = image[..., None]                              # (H, W) -> (H, W, 1)
    x, _ = model._prepare(image[None], what="plot_feature_maps")
    x, _ = model._as_batch(x)
    target = model.layers[layer_index]
    for layer in model.layers:                                # inference mode: no dropout
        x = layer.forward(x)
        if layer is target:
            break
    maps = to_numpy(x)[0]
    label = f"{target.name} ({type(target).__name__}), output {maps.shape}"
    if maps.ndim != 3:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar(np.arange(maps.size), maps.ravel())
        ax.set_xlabel("unit")
        ax.set_title(label)
        return _finish(fig, path)
    count = min(maps.shape[-1], max_maps)
    fig, axes = _grid(count, title=label)
    for channel, ax in enumerate(axes):
        _show_image(ax, maps[..., channel])
        ax.set_title(str(channel), fontsize=8)
    return _finish(fig, path)


# -- what the model gets wrong -------------------------------------------------
def plot_confusion_matrix(y_true, y_pred, class_names=None, path=None):
    """Counts of (true class, predicted class): the diagonal is right, the rest are the
    confusions. y_true, y_pred: integer labels, one-hot rows or predicted probabilities."""
    true, pred = _labels(y_true), _labels(y_pred)
    k = max(len(class_names) if class_names is not None else 0, int(true.max()) + 1, int(pred.max()) + 1)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (true, pred), 1)                         # one count per sample
    fig, ax = plt.subplots(figsize=(1 + 0.5 * k, 0.8 + 0.5 * k) if k > 8 else (5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    names = [_class_name(class_names, i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=0 if class_names is None else 45,
                  ha="center" if class_names is None else "right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:                                               # numbers stay readable
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    ax.set_title(f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f} on {matrix.sum()} samples")
    fig.tight_layout()
    return _finish(fig, path)


def plot_misclassified(x, y_true, y_pred, class_names=None, n=25, path=None):
    """The first ``n`` images the model got wrong, titled "true → predicted".

    x: (N, H, W), (N, H, W, 1) or (N, H, W, 3) images; y as in plot_confusion_matrix.
    """
    x, true, pred = to_numpy(x), _labels(y_true), _labels(y_pred)
    wrong = np.flatnonzero(true != pred)[:n]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return _finish(fig, path)
    fig, axes = _grid(len(wrong), cell=1.8,
                      title=f"{np.count_nonzero(true != pred)} of {len(true)} misclassified")
    for ax, i in zip(axes, wrong):
        _show_image(ax, x[i])
        ax.set_title(f"{_class_name(class_names, true[i])} → {_class_name(class_names, pred[i])}",
                     fontsize=8, color="firebrick")
    return _finish(fig, path)
