"""MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D (NHWC)."""
import kernels
from .base import Layer
from .conv import pair


class _Pooling2D(Layer):
    """Shared set-up of the window poolings; subclasses pick the kernel pair."""

    forward_kernel = backward_kernel = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.pool_size = pair(pool_size, "pool_size")
        # Keras: strides=None means "the same as pool_size" (non-overlapping windows).
        self.strides = self.pool_size if strides is None else pair(strides, "strides")
        self.padding = kernels.check_padding(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects (batch, height, "
                             f"width, channels) inputs, got (None, {', '.join(map(str, input_shape))})")
        (h, w, c), (ph, pw), (sh, sw) = input_shape, self.pool_size, self.strides
        return (kernels.output_size(h, ph, sh, self.padding),
                kernels.output_size(w, pw, sw, self.padding), c)

    def forward(self, x, training=False):
        self.check_input(x)
        y, cache = type(self).forward_kernel(x, self.pool_size, self.strides, self.padding)
        if training:
            self._cache = cache
        return y

    def backward(self, dy):
        return type(self).backward_kernel(dy, self._cache)

    def get_config(self):
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Largest value in each window; the gradient flows to that one input."""

    forward_kernel = staticmethod(kernels.maxpool2d_forward)
    backward_kernel = staticmethod(kernels.maxpool2d_backward)


class AveragePooling2D(_Pooling2D):
    """Mean of each window; the gradient is shared equally among its inputs."""

    forward_kernel = staticmethod(kernels.avgpool2d_forward)
    backward_kernel = staticmethod(kernels.avgpool2d_backward)


class GlobalAveragePooling2D(Layer):
    """Mean over height and width. Shapes: x: (N, H, W, C) -> y: (N, C)."""

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"GlobalAveragePooling2D layer {self.name!r} averages over the height and width of "
                f"(batch, height, width, channels) inputs but would receive (None, "
                f"{', '.join(map(str, input_shape))}); put it after a Conv2D or pooling layer, "
                "before any Flatten or Dense.")
        return (input_shape[-1],)

    def forward(self, x, training=False):
        self.check_input(x)
        return x.mean(axis=(1, 2))

    def backward(self, dy):
        h, w, _ = self.input_shape
        scale = dy.dtype.type(1.0 / (h * w))
        return (dy * scale)[:, None, None, :].repeat(h, axis=1).repeat(w, axis=2)
