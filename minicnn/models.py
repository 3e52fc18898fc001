"""Sequential: a stack of layers trained with Keras's compile / fit / evaluate / predict."""
import itertools
import math
import re

import numpy as np

from kernels import backend
from . import losses, metrics as metrics_module, optimizers, saving
from .activations import Softmax
from .layers import LAYER_CLASSES, Input, Layer
from .progbar import Progbar
from .stats import preserved_training_state
from .summary import summary_table
from .threads import compute_threads
from .training import TrainingLoop, check_batch_size


def snake_case(name):
    """Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, as Keras names layers."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Sequential(TrainingLoop):
    """Layers applied one after the other.

    One ``np.random.Generator`` (from ``seed``) drives weight initialisation, shuffling
    and dropout, so the same seed gives the same run. ``dtype`` is float32 for
    training; use float64 for gradient checks.
    """

    def __init__(self, layers=None, name="sequential", seed=None, dtype="float32"):
        self.name = name
        self.layers = []
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.input_shape = None
        self.optimizer = self.loss = None
        self.metrics = []            # (name, function) pairs
        self.stop_training = False
        self.history = None
        self.thread_chooser = None   # made by fit, kept across fits; .history: threads per epoch
        self.device = "cpu"
        for layer in layers or []:
            self.add(layer)

    # -- building -------------------------------------------------------------
    def add(self, layer):
        """Append a layer (or declare the input with ``Input(shape)`` first)."""
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come before every other layer")
            self.input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a minicnn layer, got {layer!r}")
        if layer.name is None:
            taken = {l.name for l in self.layers}
            base = snake_case(type(layer).__name__)
            layer.name = next(n for n in itertools.chain([base], (f"{base}_{i}" for i in itertools.count(1)))
                              if n not in taken)
        if getattr(layer, "seed", None) is None:
            layer.rng = self.rng
        layer.dtype = self.dtype
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        self.layers.append(layer)
        if self.input_shape is not None:
            self.build(self.input_shape)

    def build(self, input_shape):
        """Build every layer not yet built, passing each its input shape (no batch axis)."""
        self.input_shape = shape = tuple(input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
                layer.to(self.device)   # a model moved to the GPU builds its new layers there
            elif layer.input_shape != shape:
                raise ValueError(f"layer {layer.name!r} was built for input shape {layer.input_shape} "
                                 f"but now receives {shape}")
            shape = layer.output_shape

    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.built else None

    # -- the two passes -------------------------------------------------------
    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy, need_input_grad=True):
        """Backpropagate dy = dL/d(output) through every layer; returns dL/dx.

        Always the true derivative of the model's output, whatever ``compile`` chose:
        ``model.backward(model.loss.gradient(y, y_pred))`` is the textbook chain rule.
        With need_input_grad=False the pass stops at the first layer with weights and
        skips that layer's input gradient (returns None): training needs no dL/dx, and
        for an MLP behind Flatten this saves a third of the backward arithmetic.
        """
        return self._backward(dy, need_input_grad, dy_is_logits_gradient=False)

    def _backward(self, dy, need_input_grad, dy_is_logits_gradient):
        """backward, where dy may be dL/dlogits of a softmax output (the fused training step).

        Both choices hold for this call only: the layers' flags are set here and put
        back in ``finally``, so nothing stale reaches the next caller (trace, saliency maps).
        """
        stop = 0 if need_input_grad else self._first_trainable()
        last = self.layers[-1]
        try:
            last.fused_with_loss = dy_is_logits_gradient
            for index in range(len(self.layers) - 1, stop - 1, -1):
                layer = self.layers[index]
                layer.needs_input_grad = need_input_grad or index > stop
                dy = layer.backward(dy)
        finally:
            last.fused_with_loss = False
            for layer in self.layers:
                layer.needs_input_grad = True
        return dy if need_input_grad else None

    def _first_trainable(self):
        """Index of the first layer with weights (len(layers) when none): training needs no
        gradient below it, so its backward pass stops there (``trace`` times the same)."""
        return next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))

    def _fuses_softmax(self):
        """Whether training hands the last layer dL/dlogits = (p - t)/N (softmax + cross-entropy)."""
        activation = getattr(self.layers[-1], "activation", None)
        return self.loss.pairs_with_softmax and isinstance(activation, Softmax)

    def backward_from_loss(self, y, y_pred, need_input_grad=False, sample_weight=None):
        """The training step's backward for targets y: softmax + cross-entropy are
        differentiated together, (p - t)/N, which stays exact where p is near 0 or 1.
        With per-sample loss weights, row i of the gradient is scaled by sample_weight[i]."""
        fused = self._fuses_softmax()
        dy = self.loss.logits_gradient(y, y_pred) if fused else self.loss.gradient(y, y_pred)
        if sample_weight is not None:
            weights = backend.to_device(sample_weight, self.device)
            dy *= weights.reshape((-1,) + (1,) * (dy.ndim - 1))
        return self._backward(dy, need_input_grad, fused)

    def regularization_penalty(self):
        return sum(layer.regularization_penalty() for layer in self.layers)

    # -- compile and train ----------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimiser, the loss and the metrics (Keras's defaults)."""
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = [metrics_module.get(m) for m in (metrics or [])]

    def _require_compiled(self, what):
        if self.optimizer is None:
            raise RuntimeError(f"call model.compile(optimizer=..., loss=..., metrics=[...]) before {what}()")

    def _prepare(self, x, y=None, what="fit"):
        """Check x (and y) against the model and each other; returns them as arrays."""
        x = np.asarray(x) if not backend.is_gpu(x) else x
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"{what}() got no samples: x has shape {x.shape}")
        if not self.built:
            if not self.layers:
                raise ValueError("the model has no layers; add some before fitting")
            self.build(x.shape[1:])
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"the model expects inputs of shape (batch, {', '.join(map(str, self.input_shape))}) "
                f"but x has shape {tuple(x.shape)}"
                + (". Add a channel axis with x[..., None]."
                   if x.shape[1:] == self.input_shape[:-1] and self.input_shape[-1] == 1 else "."))
        if y is None:
            return x, None
        y = np.asarray(y) if not backend.is_gpu(y) else y
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match")
        self.loss.check_labels(y, self.output_shape)
        return x, y

    def _as_batch(self, x, y=None):
        """Cast one batch to the model's dtype and device (labels stay integers for sparse losses)."""
        x = backend.to_device(x.astype(self.dtype, copy=False), self.device)
        if y is not None:
            if not isinstance(self.loss, losses.SparseCategoricalCrossentropy):
                y = y.astype(self.dtype, copy=False)
            y = backend.to_device(y, self.device)
        return x, y

    def _trainable(self):
        params, grads = [], []
        for layer in self.layers:
            for key in layer.params:
                params.append(layer.params[key])
                grads.append(layer.grads[key])
        return params, grads

    @property
    def trainable_weights(self):
        """The trainable arrays (kernel, bias, gamma, beta…), in the order ``gradients`` uses."""
        return self._trainable()[0]

    def _sample_weights(self, y, sample_weight=None, class_weight=None):
        """One loss weight per sample from ``sample_weight`` or ``class_weight``, or None.

        class_weight maps a class index to a weight; the class of a one-hot label is its
        argmax. As in Keras 3, the two cannot be given together.
        """
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("give sample_weight or class_weight, not both")
            labels = backend.to_numpy(y)
            labels = labels.argmax(axis=-1) if labels.ndim == 2 and labels.shape[1] > 1 else labels.reshape(-1)
            missing = sorted(set(labels.astype(int).tolist()) - set(class_weight))
            if missing:
                raise ValueError(f"class_weight has no weight for classes {missing}; give every "
                                 f"class that occurs in y a weight")
            return np.array([class_weight[c] for c in labels.astype(int)], dtype=self.dtype)
        if sample_weight is None:
            return None
        weights = np.asarray(sample_weight, dtype=self.dtype)
        if weights.shape != (len(y),):
            raise ValueError(f"sample_weight needs one weight per sample, shape ({len(y)},), "
                             f"but has shape {weights.shape}")
        return weights

    def _loss_value(self, y, y_pred, sample_weight=None):
        """The batch's mean loss plus regularisation; with per-sample weights
        sum(w_i · loss_i) / N, as Keras computes it."""
        if sample_weight is None:
            value = self.loss.value(y, y_pred)
        else:
            weights = backend.to_device(sample_weight, self.device)
            value = float((losses.per_sample(self.loss, y, y_pred) * weights).mean())
        return value + self.regularization_penalty()

    def _train_step(self, x, y, sample_weight=None):
        """Forward, loss, backward and one optimiser step. Returns (loss, y_pred)."""
        y_pred = self.forward(x, training=True)
        loss_value = self._loss_value(y, y_pred, sample_weight)
        self.backward_from_loss(y, y_pred, sample_weight=sample_weight)  # stops at the first weighted layer
        self.optimizer.apply(*self._trainable())
        return loss_value, y_pred

    @compute_threads()
    def gradients(self, x, y, sample_weight=None):
        """dLoss/dw for one batch, without changing the model: a list of NumPy arrays in
        the order of ``model.trainable_weights``.

        The pass runs as a training step does (dropout on, BatchNormalization on batch
        statistics) but updates no weight, no moving statistic and no optimiser state,
        and leaves the random generator where it was. Needs ``compile`` (for the loss).

            for w, g in zip(model.trainable_weights, model.gradients(x[:32], y[:32])): ...
        """
        self._require_compiled("gradients")
        x, y = self._prepare(x, y, "gradients")
        weights = self._sample_weights(y, sample_weight)
        x, y = self._as_batch(x, y)
        with preserved_training_state(self):
            self.backward_from_loss(y, self.forward(x, training=True), sample_weight=weights)
            return [backend.to_numpy(g).copy() for g in self._trainable()[1]]

    def _batch_logs(self, y, y_pred):
        return {name: fn(y, y_pred) for name, fn in self.metrics}

    def _results(self, values, return_dict):
        """Keras's return value: a dict, a list [loss, metrics…], or the loss alone."""
        if return_dict:
            return dict(zip(["loss", *(name for name, _ in self.metrics)], values))
        return values if self.metrics else values[0]

    @compute_threads()
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One step on one batch; returns [loss, metrics…] measured before the update."""
        self._require_compiled("train_on_batch")
        x, y = self._prepare(x, y, "train_on_batch")
        weights = self._sample_weights(y, sample_weight, class_weight)
        x, y = self._as_batch(x, y)
        loss_value, y_pred = self._train_step(x, y, weights)
        return self._results([loss_value, *self._batch_logs(y, y_pred).values()], return_dict)

    def __call__(self, x, training=False):
        """``model(x)``: the forward pass on one batch, as a Keras model call.

        Shapes: x: (N, *input_shape) -> (N, *output_shape), on the model's device.
        """
        x, _ = self._prepare(x, what="__call__")
        return self.forward(self._as_batch(x)[0], training=training)

    # -- inference ------------------------------------------------------------
    @compute_threads()
    def predict(self, x, batch_size=32, verbose=0):
        """The last layer's outputs for every sample, as a NumPy array (inference mode)."""
        batch_size = check_batch_size(batch_size)
        x, _ = self._prepare(x, what="predict")
        outputs = [backend.to_numpy(self.forward(self._as_batch(x[i:i + batch_size])[0]))
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs)

    @compute_threads()
    def evaluate(self, x, y, batch_size=32, verbose=1, return_dict=False):
        """Mean loss (and metrics) over (x, y) in inference mode: ``[loss, accuracy]``,
        the loss alone when the model was compiled without metrics, or with
        ``return_dict=True`` a dict {"loss": …, "accuracy": …}."""
        self._require_compiled("evaluate")
        batch_size = check_batch_size(batch_size)
        x, y = self._prepare(x, y, "evaluate")
        totals = np.zeros(1 + len(self.metrics))
        bar = Progbar(math.ceil(len(x) / batch_size), verbose)
        for start in range(0, len(x), batch_size):
            xb, yb = self._as_batch(x[start:start + batch_size], y[start:start + batch_size])
            y_pred = self.forward(xb)
            values = [self.loss.value(yb, y_pred), *self._batch_logs(yb, y_pred).values()]
            totals += np.array(values) * len(xb)
        results = totals / len(x)
        results[0] += self.regularization_penalty()
        results = [float(v) for v in results]
        if verbose:
            bar.finish(self._results(results, return_dict=True))
        return self._results(results, return_dict)

    # -- weights, summary, saving, devices -----------------------------------
    def get_weights(self):
        """Every layer's arrays in Keras order (kernel, bias; gamma, beta, moving stats)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        expected = sum(len(layer.get_weights()) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"the model has {expected} weight arrays but {len(weights)} were given")
        for layer in self.layers:
            count = len(layer.params) + len(layer.state)
            layer.set_weights(weights[:count])
            weights = weights[count:]

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=print):
        """Print Keras's table: layer (type), output shape, parameter count, and totals."""
        if not self.built:
            raise ValueError("the model is not built yet: give the first layer input_shape=(...), "
                             "start with Input(shape), or call fit/build first")
        text = summary_table(self)
        print_fn(text)
        return text

    def get_config(self):
        """The architecture as plain JSON-able data: name, dtype, input shape, layer configs."""
        return {"name": self.name, "dtype": self.dtype.name, "input_shape": self.input_shape,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        """A new, untrained model from ``get_config()``'s output (built when the shape is known)."""
        model = cls(name=config["name"], dtype=config["dtype"])
        if config["input_shape"] is not None:
            model.input_shape = tuple(int(n) for n in config["input_shape"])
        for spec in config["layers"]:
            if spec["class_name"] not in LAYER_CLASSES:
                raise ValueError(f"unknown layer class {spec['class_name']!r}")
            model.add(LAYER_CLASSES[spec["class_name"]](**spec["config"]))
        return model

    def save_weights(self, path):
        saving.save_weights(self, path)

    def load_weights(self, path):
        saving.load_weights(self, path)

    def save(self, path):
        saving.save_model(self, path)

    def to(self, device):
        """Move parameters, state and optimiser slots to "cpu" or "gpu" (needs CuPy)."""
        for layer in self.layers:
            layer.to(device)
        if self.optimizer is not None:
            self.optimizer.to(device)
        self.device = device
        return self

    def trace(self, x, y=None, print_fn=None):
        """Send one batch through forward and backward and report, per layer, the shapes,
        im2col size, FLOPs, time and memory (see ``minicnn.trace``).

        Returns a ``Trace``: a notebook shows it as a table (so does ``print``), and
        ``trace.rows`` (or ``trace[i]``) holds each layer's figures as a dict. With labels
        ``y`` (compiled model), backward starts from the loss's gradient; without, from a
        random one, which times the same. ``print_fn=print`` also prints the table.
        """
        from .trace import trace_model
        return trace_model(self, x, y, print_fn)

    def __repr__(self):
        return f"Sequential(name={self.name!r}, layers={self.layers!r})"


def load_model(path, custom_objects=None):
    """Rebuild a model saved with ``model.save(path)``, ready to predict or resume training.

    custom_objects: {name: function} for metrics that are your own functions, as in Keras:
    ``load_model(path, custom_objects={"top2": top2})``.
    Raises saving.SavedFileError (a ValueError) naming the file when it is damaged.
    """
    config, weights, slots = saving.read_model(path)
    custom_objects = dict(custom_objects or {})
    try:
        model = Sequential.from_config(config)
        saving.load_weights(model, path, weights)
        saving.set_rng_states(model, config)
        if "compile" in config:
            spec = config["compile"]
            metrics = [_saved_metric(path, name, custom_objects) for name in spec["metrics"]]
            model.compile(optimizer=saving.restore_optimizer(model, path, spec["optimizer"], slots),
                          loss=spec["loss"], metrics=metrics)
    except saving.SavedFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise saving.SavedFileError(f"{path}: the model description is damaged or does not match "
                                    f"its weights: {type(error).__name__}: {error}") from error
    return model


def _saved_metric(path, name, custom_objects):
    """A metric saved by name: minicnn's own, or the user's function from custom_objects."""
    if name in custom_objects:
        return custom_objects[name]
    try:
        metrics_module.get(name)
    except ValueError:
        raise saving.SavedFileError(
            f"{path} was compiled with the metric {name!r}, which is not one of minicnn's. Pass "
            f"your function when loading: load_model(path, custom_objects={{{name!r}: {name}}})") from None
    return name

