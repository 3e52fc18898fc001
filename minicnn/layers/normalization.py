"""BatchNormalization with Keras's semantics (per channel, momentum 0.99, epsilon 1e-3).

The three functions below are the readable NumPy definitions (they run on CuPy arrays
too). When the Numba kernels are in use, each hands NumPy arrays to its compiled twin in
``kernels/numba_kernels.py``, which computes the same in one or two passes over memory
(a 128x26x26x32 float32 batch, one thread, on a 2-core machine also running two training
jobs: forward 15 -> 1.9 ms, backward 21 -> 1.8 ms).
"""
import kernels
from kernels.backend import get_array_module
from .base import Layer


def batch_moments(x):
    """Per-channel mean and biased variance (divides by m, as Keras does) of a batch.

    Accumulated in float64 and cast back: a float32 sum over N·H·W values (64·26·26
    = 43 264 per channel in a small convnet) loses about four digits, enough to
    change the gradients by a few percent.

    Shapes: x: (N, C) or (N, H, W, C).  Returns mean, var: (C,), dtype of x.
    """
    compiled = kernels.compiled_twins(x)
    if compiled is not None:
        return compiled.batch_moments(x)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype="float64")
    var = ((x - mean) ** 2).mean(axis=axes)     # x - mean is float64 already
    return mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_forward(x, mean, var, gamma, beta, epsilon):
    """Normalise each channel (last axis) with the given batch statistics.

    Shapes:
        x: (N, C) or (N, H, W, C)   mean, var, gamma, beta: (C,)   y: same as x
    Returns (y, cache); the cache (x_hat, inv_std, gamma) is what batchnorm_backward needs.
    """
    compiled = kernels.compiled_twins(x)
    if compiled is not None:
        return compiled.batchnorm_forward(x, mean, var, gamma, beta, epsilon)
    inv_std = 1 / get_array_module(x).sqrt(var + epsilon)   # epsilon inside the root
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, inv_std, gamma)


def batchnorm_backward(dy, cache):
    """Gradients of batchnorm_forward.

    Every output of a channel depends on every input of that channel through the
    batch mean and variance, so dx has three parts: the direct path through x_hat,
    the path through the mean, and the path through the variance. Summed, with
    m = values per channel:

        dx = inv_std / m · (m·dx_hat - Σ dx_hat - x_hat · Σ(dx_hat · x_hat))

    Shapes: dy: like x.  Returns dx (like x), dgamma (C,), dbeta (C,).
    """
    compiled = kernels.compiled_twins(dy)
    if compiled is not None:
        return compiled.batchnorm_backward(dy, cache)
    x_hat, inv_std, gamma = cache
    axes = tuple(range(dy.ndim - 1))
    m = dy.size // dy.shape[-1]
    def channel_sum(a):   # float64 accumulation, as in batch_moments
        return a.sum(axis=axes, dtype="float64").astype(dy.dtype)

    dbeta = channel_sum(dy)
    dgamma = channel_sum(dy * x_hat)
    dx_hat = dy * gamma
    dx = (inv_std / m) * (m * dx_hat - channel_sum(dx_hat) - x_hat * channel_sum(dx_hat * x_hat))
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


class BatchNormalization(Layer):
    """Training: normalise with batch statistics and update the moving ones as
    moving = moving·momentum + batch·(1 - momentum). Inference: use the moving ones.

    Shapes: x, y: (N, C) after Dense or (N, H, W, C) after Conv2D; one gamma/beta per channel.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 name=None, input_shape=None):
        super().__init__(name, input_shape)
        if axis not in (-1,):
            raise ValueError("minicnn's BatchNormalization normalises the channel axis of NHWC "
                             f"data, axis=-1; got axis={axis}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.initializers = {"beta": beta_initializer, "gamma": gamma_initializer,
                             "moving_mean": moving_mean_initializer,
                             "moving_variance": moving_variance_initializer}

    def build(self, input_shape):
        super().build(input_shape)
        channels = (input_shape[-1],)
        if self.scale:
            self.add_param("gamma", channels, self.initializers["gamma"])
        if self.center:
            self.add_param("beta", channels, self.initializers["beta"])
        for name in ("moving_mean", "moving_variance"):
            self.add_param(name, channels, self.initializers[name])
            self.state[name] = self.params.pop(name)
            del self.grads[name]

    def _gamma_beta(self, x):
        xp = get_array_module(x)
        gamma = self.params["gamma"] if self.scale else xp.ones(self.input_shape[-1], x.dtype)
        beta = self.params["beta"] if self.center else xp.zeros(self.input_shape[-1], x.dtype)
        return gamma, beta

    def forward(self, x, training=False):
        self.check_input(x)
        gamma, beta = self._gamma_beta(x)
        if not training:
            inv_std = 1 / get_array_module(x).sqrt(self.state["moving_variance"] + self.epsilon)
            return (x - self.state["moving_mean"]) * (gamma * inv_std) + beta
        mean, var = batch_moments(x)
        y, self._cache = batchnorm_forward(x, mean, var, gamma, beta, self.epsilon)
        for name, batch_value in (("moving_mean", mean), ("moving_variance", var)):
            moving = self.state[name]
            moving *= self.momentum
            moving += (1 - self.momentum) * batch_value
        return y

    def backward(self, dy):
        dx, dgamma, dbeta = batchnorm_backward(dy, self._cache)
        if self.scale:
            self.grads["gamma"][...] = dgamma
        if self.center:
            self.grads["beta"][...] = dbeta
        return dx

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
