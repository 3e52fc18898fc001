"""Per-layer activation and gradient statistics, recorded into the History every epoch.

    stats = LayerStatistics(x_train[:256], y_train[:256])
    history = model.fit(x_train, y_train, epochs=10, callbacks=[stats])
    history.history["stats/conv2d/grad_norm"]      # one float per epoch
    minicnn.plot.plot_gradient_norms(history)

At the end of each epoch the callback runs one forward and backward pass on a fixed
*probe* batch (no optimiser step) and writes, for every layer ``<name>``:

    stats/<name>/act_mean     mean of the layer's outputs
    stats/<name>/act_std      their standard deviation
    stats/<name>/grad_norm    L2 norm of dLoss/d(all its parameters)   (layers with parameters)
    stats/<name>/saturated    fraction of tanh outputs with |y| > 0.99, or of sigmoid
                              outputs below 0.01 or above 0.99          (tanh/sigmoid layers)
    stats/<name>/dead_relu    fraction of relu units that output <= 0 for *every* probe
                              sample: they pass no gradient, so they stop learning (relu layers)

A saturated tanh/sigmoid unit has a derivative near 0, so the gradients that reach the
layers below it shrink: the vanishing-gradient story these numbers let you watch.
"""
import contextlib

from kernels.backend import get_array_module
from .activations import ReLU, Sigmoid, Tanh
from .callbacks import Callback

KEY_PREFIX = "stats/"


def stat_key(layer_name, stat):
    """The History key of one statistic: ``stats/<layer>/<stat>``."""
    return f"{KEY_PREFIX}{layer_name}/{stat}"


def stat_series(history, stat):
    """{layer name: list of per-epoch values} of one statistic from a history dict."""
    series = {}
    for key, values in history.items():
        if key.startswith(KEY_PREFIX) and key.endswith("/" + stat):
            series[key[len(KEY_PREFIX):-len(stat) - 1]] = list(values)
    return series


@contextlib.contextmanager
def preserved_training_state(model):
    """Run an extra training-mode pass without leaving a trace on the model.

    A forward with ``training=True`` updates BatchNormalization's moving statistics and
    draws dropout masks from the model's random generator (which also shuffles the
    batches); backward overwrites ``grads``. Everything is put back on exit, so the
    training run continues exactly as if the extra pass had never happened.
    """
    generators = {id(g): g for g in [model.rng, *(layer.rng for layer in model.layers)]}
    rng_states = {key: g.bit_generator.state for key, g in generators.items()}
    saved = [({k: v.copy() for k, v in layer.state.items()},
              {k: v.copy() for k, v in layer.grads.items()}, layer._cache)
             for layer in model.layers]
    try:
        yield
    finally:
        for key, g in generators.items():
            g.bit_generator.state = rng_states[key]
        for layer, (state, grads, cache) in zip(model.layers, saved):
            for store, copies in ((layer.state, state), (layer.grads, grads)):
                for k, value in copies.items():
                    store[k][...] = value      # in place: other objects hold these arrays
            layer._cache = cache


def activation_stats(layer, y):
    """act_mean, act_std and, for tanh/sigmoid/relu layers, saturated or dead_relu.

    Shapes: y: (N, …) the layer's output for the probe batch.
    """
    xp = get_array_module(y)
    stats = {"act_mean": float(y.mean()), "act_std": float(y.std())}
    activation = getattr(layer, "activation", None)
    if isinstance(activation, Tanh):
        stats["saturated"] = float((xp.abs(y) > 0.99).mean())
    elif isinstance(activation, Sigmoid):
        stats["saturated"] = float(((y < 0.01) | (y > 0.99)).mean())
    elif isinstance(activation, ReLU):
        # A unit (one position of the output, batch axis aside) is dead when no sample
        # makes it positive; "<= 0" also covers leaky relus that never turn on.
        stats["dead_relu"] = float((y <= 0).all(axis=0).mean())
    return stats


def gradient_norm(layer):
    """sqrt of the sum of squares of every parameter gradient of ``layer``."""
    return float(sum(float((g.astype("float64") ** 2).sum()) for g in layer.grads.values()) ** 0.5)


class LayerStatistics(Callback):
    """Records per-layer activation and gradient statistics at the end of every epoch.

    ``x_probe``, ``y_probe``: a fixed batch (a few hundred training samples is plenty),
    measured the same way every epoch so the numbers are comparable across epochs.
    The values go into the epoch's ``logs``, which the History records; ``fit`` has
    already printed the progress line by then, so they do not clutter it.
    """

    def __init__(self, x_probe, y_probe):
        super().__init__()
        self.x_probe, self.y_probe = x_probe, y_probe

    def on_train_begin(self, logs=None):
        # Check the probe against the model once, with fit's own error messages.
        self.x_probe, self.y_probe = self.model._prepare(self.x_probe, self.y_probe, "LayerStatistics")

    def measure(self):
        """{history key: value} for the probe batch, leaving the model untouched."""
        model = self.model
        x, y = model._as_batch(self.x_probe, self.y_probe)
        values = {}
        with preserved_training_state(model):
            for layer in model.layers:                     # model.forward, one layer at a time
                x = layer.forward(x, training=True)
                for stat, value in activation_stats(layer, x).items():
                    values[stat_key(layer.name, stat)] = value
            model.backward_from_loss(y, x, need_input_grad=True)   # the gradients fit sees
            for layer in model.layers:
                if layer.grads:
                    values[stat_key(layer.name, "grad_norm")] = gradient_norm(layer)
        return values

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.measure())
