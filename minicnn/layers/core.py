"""Dense, Flatten, Activation, LeakyReLU, Dropout and Input."""
import math

import numpy as np

from kernels import matmul, matmul_tn
from kernels.backend import get_array_module
from .. import activations
from .base import ActivationMixin, Layer, WeightsMixin


class Input:
    """Declares the input shape, as ``keras.Input(shape=(28, 28, 1))``; no batch axis."""

    def __init__(self, shape, name=None):
        self.shape, self.name = tuple(shape), name

    def __repr__(self):
        return f"Input(shape={self.shape})"


class Dense(ActivationMixin, WeightsMixin, Layer):
    """y = activation(x @ kernel + bias).

    Shapes:
        x: (N, D)   kernel: (D, units)   bias: (units,)   y: (N, units)
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 name=None, input_shape=None, input_dim=None):
        if input_dim is not None:
            input_shape = (input_dim,)
        super().__init__(name, input_shape)
        if int(units) <= 0:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.set_activation(activation)
        self.init_weights(kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer, use_bias)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense layer {self.name!r} expects flat inputs of shape (batch, features) but "
                f"would receive shape (None, {', '.join(map(str, input_shape))}). Add a Flatten() "
                "layer before it to turn each sample into a vector.")
        return (self.units,)

    def build(self, input_shape):
        super().build(input_shape)
        self.create_weights((input_shape[0], self.units), self.units)

    def forward(self, x, training=False):
        self.check_input(x)
        z = matmul(x, self.params["kernel"])      # kernels/_gemm.py: shared between threads
        y = self.add_bias_and_activate(z, training)
        if training:
            self._cache = (x, y)
        return y

    def backward(self, dy):
        x, y = self._cache
        dz, dbias = self.activation_and_bias_backward(dy, y)
        matmul_tn(x, dz, out=self.grads["kernel"])         # x.T @ dz
        if self.use_bias:
            self.grads["bias"][...] = dbias
        self.add_regularization_grads()
        return matmul(dz, self.params["kernel"].T) if self.needs_input_grad else None

    def get_config(self):
        return {"name": self.name, "units": self.units,
                "activation": self.activation.get_config(), **self.weights_config()}


class Flatten(Layer):
    """(N, d1, d2, …) -> (N, d1·d2·…), row-major, as Keras does for NHWC."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self.check_input(x)
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape((len(dy), *self.input_shape))


class Activation(ActivationMixin, Layer):
    """Applies an activation on its own: ``Activation("relu")``."""

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.set_activation(activation)

    def forward(self, x, training=False):
        self.check_input(x)
        y = self.activate(x, training)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        return self.activation_backward(dy, self._cache)

    def get_config(self):
        return {"name": self.name, "activation": self.activation.get_config()}


class LeakyReLU(Activation):
    """max(x, 0) + negative_slope·min(x, 0); Keras's default slope is 0.3."""

    def __init__(self, negative_slope=0.3, name=None, input_shape=None, alpha=None):
        slope = negative_slope if alpha is None else alpha   # Keras 2 spelled it alpha
        super().__init__(activations.ReLU(slope), name, input_shape)
        self.negative_slope = slope

    def get_config(self):
        return {"name": self.name, "negative_slope": self.negative_slope}


class Dropout(Layer):
    """Inverted dropout: in training, zero a fraction ``rate`` of the inputs and scale
    the rest by 1/(1 - rate), so the expected activation is unchanged and inference
    is the identity.

    Shapes: x, y: any shape, the same.
    """

    def __init__(self, rate, seed=None, name=None, input_shape=None):
        super().__init__(name, input_shape)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout rate is the fraction dropped and must be in [0, 1), got {rate}")
        self.rate, self.seed = float(rate), seed
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.rate == 0:
            self._cache = None      # backward of this pass is the identity, not the last mask
            return x
        xp = get_array_module(x)
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        scaled_mask = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(1 / (1 - self.rate))
        self._cache = scaled_mask
        return x * scaled_mask

    def backward(self, dy):
        if self._cache is None:     # forward ran in inference mode (or rate 0): identity
            return dy
        return dy * self._cache

    def get_rng_state(self):
        """The state of this layer's own generator (one exists when a seed was given; without
        one the layer draws from the model's generator), or None."""
        return self.rng.bit_generator.state if self.seed is not None else None

    def set_rng_state(self, state):
        """Put the generator back where ``get_rng_state`` saw it, so the same masks follow."""
        self.rng.bit_generator.state = state

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed}
