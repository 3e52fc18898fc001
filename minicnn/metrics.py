"""Metrics reported during training. ``accuracy`` picks its meaning from the labels.

Like Keras's ``metrics=["accuracy"]``:
- one output unit            -> binary accuracy (prediction > 0.5)
- labels shaped like output  -> categorical accuracy (argmax of both)
- integer labels (N,)/(N, 1) -> sparse categorical accuracy
"""
from kernels.backend import get_array_module


def accuracy(y_true, y_pred):
    """Fraction of correct predictions in a batch, as a float.

    Shapes:
        y_true: (N, K) one-hot, (N,) or (N, 1) integers, or (N, 1) 0/1 for one output.
        y_pred: (N, K) scores or probabilities.
    """
    xp = get_array_module(y_pred)
    if y_pred.shape[-1] == 1:
        correct = (y_pred > 0.5).reshape(-1) == (y_true.reshape(-1) > 0.5)
    elif y_true.shape == y_pred.shape:
        correct = y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)
    else:
        correct = y_true.reshape(-1) == y_pred.argmax(axis=-1)
    return int(xp.count_nonzero(correct)) / correct.size   # the mean, without np.mean's overhead


_BY_NAME = {"accuracy": accuracy, "acc": accuracy}


def get(identifier):
    """(name shown in logs, function) for a metric name or a callable(y_true, y_pred)."""
    if callable(identifier):
        return identifier.__name__, identifier
    if identifier in _BY_NAME:
        return "accuracy", _BY_NAME[identifier]
    raise ValueError(f"unknown metric {identifier!r}; minicnn knows {sorted(_BY_NAME)} "
                     "or any function f(y_true, y_pred) -> float")
