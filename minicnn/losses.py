"""Loss functions: the value (mean over the batch) and its gradient.

    loss.value(y_true, y_pred)    -> float
    loss.gradient(y_true, y_pred) -> dL/dy_pred, shape of y_pred

Cross-entropy on probabilities clips them to [1e-7, 1 - 1e-7], as Keras does, so a
confident wrong answer costs about 16 instead of infinity.

When the model ends in softmax and the loss is a cross-entropy, ``compile`` uses
``logits_gradient`` instead: the combined derivative is simply (p - t)/N, which
stays exact where the separate softmax and log derivatives would divide by ~0.
"""
import numpy as np

from kernels.backend import get_array_module, to_numpy

EPSILON = 1e-7


class Loss:
    name = None
    #: whether the fused softmax gradient ``logits_gradient`` applies
    pairs_with_softmax = False

    def check_labels(self, y_true, output_shape):
        """Raise a ValueError when labels and model output cannot go together."""

    def __repr__(self):
        return self.name


class CategoricalCrossentropy(Loss):
    """-Σ t·log p per sample; labels are one-hot rows, shape (N, K)."""

    name = "categorical_crossentropy"
    pairs_with_softmax = True

    def value(self, y_true, y_pred):
        xp = get_array_module(y_pred)
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        return float(-(y_true * xp.log(p)).sum() / len(y_pred))

    def gradient(self, y_true, y_pred):
        xp = get_array_module(y_pred)
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)  # clip has zero slope outside
        return (-y_true / xp.clip(y_pred, EPSILON, 1 - EPSILON) * inside / len(y_pred)).astype(y_pred.dtype)

    def logits_gradient(self, y_true, y_pred):
        return ((y_pred - y_true) / y_pred.dtype.type(len(y_pred))).astype(y_pred.dtype)

    def check_labels(self, y_true, output_shape):
        if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1 and output_shape[-1] > 1):
            raise ValueError(
                f"categorical_crossentropy needs one-hot labels of shape (N, {output_shape[-1]}) but "
                f"got integer labels of shape {y_true.shape}. Either convert them with "
                "minicnn.utils.to_categorical(y) or use loss='sparse_categorical_crossentropy'.")
        if y_true.shape[-1] != output_shape[-1]:
            raise ValueError(
                f"labels have {y_true.shape[-1]} columns but the model outputs {output_shape[-1]} "
                f"values per sample (output shape {output_shape}); the last Dense layer needs "
                f"{y_true.shape[-1]} units.")


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """The same loss with integer class labels, shape (N,) or (N, 1)."""

    name = "sparse_categorical_crossentropy"

    def _one_hot(self, y_true, y_pred):
        xp = get_array_module(y_pred)
        one_hot = xp.zeros_like(y_pred)
        one_hot[self._label_cells(y_true, y_pred)] = 1
        return one_hot

    @staticmethod
    def _label_cells(y_true, y_pred):
        """(rows, labels): index y_pred[rows, labels] is each sample's true-class probability."""
        xp = get_array_module(y_pred)
        labels = y_true.reshape(-1).astype(np.int64)
        return xp.arange(len(labels)), labels

    def value(self, y_true, y_pred):
        # The one-hot sum of the parent class, without the zeros: only the true class counts.
        xp = get_array_module(y_pred)
        p = xp.clip(y_pred[self._label_cells(y_true, y_pred)], EPSILON, 1 - EPSILON)
        return float(-xp.log(p).sum() / len(y_pred))

    def gradient(self, y_true, y_pred):
        return super().gradient(self._one_hot(y_true, y_pred), y_pred)

    def logits_gradient(self, y_true, y_pred):
        # (p - t)/N with t one-hot, computed in place on a copy of p: the same numbers
        # as the parent's, without building t (this runs on every training step).
        dz = y_pred.copy()
        dz[self._label_cells(y_true, y_pred)] -= 1
        dz /= y_pred.dtype.type(len(y_pred))
        return dz

    def check_labels(self, y_true, output_shape):
        if y_true.ndim == 2 and y_true.shape[1] > 1:
            raise ValueError(
                f"sparse_categorical_crossentropy needs integer labels of shape (N,) but got "
                f"one-hot labels of shape {y_true.shape}. Use loss='categorical_crossentropy' "
                "or pass y.argmax(axis=1).")
        labels = to_numpy(y_true)
        if labels.dtype.kind not in "biuf":
            raise ValueError(
                f"sparse_categorical_crossentropy needs integer class labels 0..{output_shape[-1] - 1} "
                f"but got an array of dtype {labels.dtype} (e.g. {labels.reshape(-1)[:1]}). Map "
                "class names to integers first, e.g. np.unique(y, return_inverse=True)[1].")
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):   # NaN fails too
            bad = labels.reshape(-1)[labels.reshape(-1) != np.round(labels.reshape(-1))][0]
            raise ValueError(
                f"sparse_categorical_crossentropy needs whole-number class labels but got {bad}; "
                "check the label array for NaN or fractions (y.astype(int) truncates them).")
        if labels.size and (labels.min() < 0 or labels.max() >= output_shape[-1]):
            raise ValueError(
                f"labels run from {labels.min()} to {labels.max()}, but the model outputs only "
                f"{output_shape[-1]} classes (output shape {output_shape}); the last Dense layer "
                f"needs at least {int(labels.max()) + 1} units.")


class ElementwiseLoss(Loss):
    """A loss on targets shaped like the output; targets (N,) for an output (N, 1) are
    given the missing last axis, as Keras does, instead of broadcasting to (N, N)."""

    @staticmethod
    def aligned(y_true, y_pred):
        if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
            return y_true.reshape(y_pred.shape)
        return y_true

    def check_labels(self, y_true, output_shape):
        per_sample = tuple(y_true.shape[1:])
        if per_sample != tuple(output_shape) and not (per_sample == () and tuple(output_shape) == (1,)):
            raise ValueError(
                f"{self.name} needs targets shaped like the model's output, (N, "
                f"{', '.join(map(str, output_shape))}), but got targets of shape {y_true.shape}. "
                f"Reshape them (y.reshape(len(y), {', '.join(map(str, output_shape))})) or change "
                "the last layer's units.")


class MeanSquaredError(ElementwiseLoss):
    """mean((p - t)²) over the last axis, then over the batch."""

    name = "mean_squared_error"

    def value(self, y_true, y_pred):
        return float(((y_pred - self.aligned(y_true, y_pred)) ** 2).mean())

    def gradient(self, y_true, y_pred):
        return (2 * (y_pred - self.aligned(y_true, y_pred)) / y_pred.size).astype(y_pred.dtype)


class BinaryCrossentropy(ElementwiseLoss):
    """-mean(t·log p + (1 - t)·log(1 - p)) for probabilities p (a sigmoid output)."""

    name = "binary_crossentropy"

    def value(self, y_true, y_pred):
        y_true = self.aligned(y_true, y_pred)
        xp = get_array_module(y_pred)
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        return float(-(y_true * xp.log(p) + (1 - y_true) * xp.log(1 - p)).mean())

    def gradient(self, y_true, y_pred):
        y_true = self.aligned(y_true, y_pred)
        xp = get_array_module(y_pred)
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
        return ((p - y_true) / (p * (1 - p)) * inside / y_pred.size).astype(y_pred.dtype)


_BY_NAME = {cls.name: cls for cls in
            (CategoricalCrossentropy, SparseCategoricalCrossentropy, MeanSquaredError, BinaryCrossentropy)}
_BY_NAME["mse"] = MeanSquaredError


def per_sample(loss, y_true, y_pred):
    """Each sample's own loss, shape (N,): the value of ``loss`` on its one-row batch.

    Used by Keras's loss functions below and by sample-weighted training. It loops over
    the samples, so it costs about one small NumPy call per sample.
    """
    xp = get_array_module(y_pred)
    return xp.asarray([loss.value(y_true[i:i + 1], y_pred[i:i + 1]) for i in range(len(y_pred))])


# Keras's loss *functions*, ``losses.categorical_crossentropy(y_true, y_pred)``: per-sample
# values, shape (N,); ``compile(loss=losses.categorical_crossentropy)`` uses the class.
def categorical_crossentropy(y_true, y_pred):
    return per_sample(CategoricalCrossentropy(), y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred):
    return per_sample(SparseCategoricalCrossentropy(), y_true, y_pred)


def binary_crossentropy(y_true, y_pred):
    return per_sample(BinaryCrossentropy(), y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return per_sample(MeanSquaredError(), y_true, y_pred)


mse = mean_squared_error
_BY_FUNCTION = {categorical_crossentropy: CategoricalCrossentropy,
                sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
                binary_crossentropy: BinaryCrossentropy, mean_squared_error: MeanSquaredError}


def get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    if callable(identifier) and identifier in _BY_FUNCTION:
        return _BY_FUNCTION[identifier]()
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; choose one of {sorted(_BY_NAME)}, a Loss "
                     "object or one of minicnn.losses' functions (a loss of your own needs its "
                     "gradient: subclass minicnn.losses.Loss)")
