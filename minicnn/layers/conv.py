"""Conv2D and ZeroPadding2D. The convolution math lives in ``kernels``."""
import numbers

import kernels
from kernels.backend import get_array_module
from .base import ActivationMixin, Layer, WeightsMixin


def is_int(value):
    """True for Python and NumPy integers (np.int64(3) is as good as 3), not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, what):
    """3 -> (3, 3); (2, 3) stays; anything else is an error naming the argument."""
    values = (value, value) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(values) != 2 or not all(is_int(v) and v > 0 for v in values):
        raise ValueError(f"{what} must be a positive integer or a pair of them, such as 3 or "
                         f"(3, 3); got {value!r}")
    return tuple(int(v) for v in values)


def zero_padding(padding):
    """1 -> ((1, 1), (1, 1)); (1, 2) -> ((1, 1), (2, 2)); ((top, bottom), (left, right)) stays."""
    def is_pair(p, test):
        return isinstance(p, (tuple, list)) and len(p) == 2 and all(test(v) for v in p)

    def is_count(v):
        return is_int(v) and v >= 0

    spec = (padding, padding) if is_int(padding) else padding
    if is_pair(spec, is_int):
        spec = tuple((p, p) for p in spec)
    if not is_pair(spec, lambda p: is_pair(p, is_count)):
        raise ValueError("ZeroPadding2D padding is the number of zero rows/columns to add: an "
                         "integer >= 0, (rows, cols), or ((top, bottom), (left, right)); "
                         f"got {padding!r}")
    return tuple(tuple(int(v) for v in p) for p in spec)


class Conv2D(ActivationMixin, WeightsMixin, Layer):
    """2-D convolution over NHWC images: y = activation(conv(x, kernel) + bias).

    Shapes:
        x: (N, H, W, C_in)   kernel: (kh, kw, C_in, filters)   bias: (filters,)
        y: (N, OH, OW, filters), OH = ceil(H / sh) for "same", ceil((H - kh + 1) / sh) for "valid"
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name=None, input_shape=None):
        super().__init__(name, input_shape)
        if not is_int(filters) or filters <= 0:
            raise ValueError(f"Conv2D filters is the number of output channels and must be a "
                             f"positive integer, such as 32; got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.padding = kernels.check_padding(padding)
        self.set_activation(activation)
        self.init_weights(kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer, use_bias)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv2D layer {self.name!r} expects images of shape (batch, height, width, "
                f"channels) but would receive (None, {', '.join(map(str, input_shape))}). For "
                "grayscale images add a channel axis, e.g. x[..., None], and input_shape=(28, 28, 1).")
        (h, w, _), (kh, kw), (sh, sw) = input_shape, self.kernel_size, self.strides
        return (kernels.output_size(h, kh, sh, self.padding),
                kernels.output_size(w, kw, sw, self.padding), self.filters)

    def build(self, input_shape):
        super().build(input_shape)
        kh, kw = self.kernel_size
        self.create_weights((kh, kw, input_shape[2], self.filters), self.filters)

    def forward(self, x, training=False):
        self.check_input(x)
        z, conv_cache = kernels.conv2d_forward(x, self.params["kernel"], None, self.strides, self.padding)
        y = self.add_bias_and_activate(z, training)
        if training:
            self._cache = (conv_cache, y)
        return y

    def backward(self, dy):
        conv_cache, y = self._cache
        dz, dbias = self.activation_and_bias_backward(dy, y)
        dx, dkernel, _ = kernels.conv2d_backward(dz, conv_cache, self.needs_input_grad)
        self.grads["kernel"][...] = dkernel
        if self.use_bias:
            self.grads["bias"][...] = dbias
        self.add_regularization_grads()
        return dx

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "activation": self.activation.get_config(), **self.weights_config()}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image.

    ``padding`` is an int, (rows, cols) applied on both sides, or
    ((top, bottom), (left, right)).

    Shapes: x: (N, H, W, C) -> y: (N, H + top + bottom, W + left + right, C)
    """

    def __init__(self, padding=(1, 1), name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.padding = zero_padding(padding)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        h, w, c = input_shape
        return (h + top + bottom, w + left + right, c)

    def forward(self, x, training=False):
        self.check_input(x)
        return get_array_module(x).pad(x, ((0, 0), *self.padding, (0, 0)))

    def backward(self, dy):
        (top, _), (left, _) = self.padding
        h, w, _ = self.input_shape
        return dy[:, top:top + h, left:left + w, :]

    def get_config(self):
        return {"name": self.name, "padding": self.padding}
