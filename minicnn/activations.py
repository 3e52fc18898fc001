"""Activation functions and their derivatives.

Each activation is a small object with two methods:

    forward(z)      -> y          the activation itself
    backward(dy, y) -> dz         the chain rule, written in terms of the output y

Writing the derivative in terms of y (not z) means a layer only has to keep its
output for backward: tanh' = 1 - y², sigmoid' = y(1 - y), relu' = [y > 0].

The module-level functions (``relu(x, alpha=0.1)``, ``tanh(x)``…) let learners call
the math directly, as the course notebooks do.
"""
from kernels.backend import get_array_module


class ActivationFunction:
    """Base class; subclasses set ``name`` and implement forward/backward."""

    name = "linear"

    def forward(self, z):
        return z

    def backward(self, dy, y):
        return dy

    def get_config(self):
        return self.name

    def __repr__(self):
        return self.name


class Linear(ActivationFunction):
    name = "linear"


class Tanh(ActivationFunction):
    name = "tanh"

    def forward(self, z):
        return get_array_module(z).tanh(z)

    def backward(self, dy, y):
        return dy * (1 - y * y)


class Sigmoid(ActivationFunction):
    name = "sigmoid"

    def forward(self, z):
        xp = get_array_module(z)
        # exp(-|z|) never overflows; the two branches are the same function.
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, dy, y):
        return dy * y * (1 - y)


class ReLU(ActivationFunction):
    """max(z, 0), or a leaky slope ``alpha`` for z < 0 (Keras's relu(x, negative_slope))."""

    name = "relu"

    def __init__(self, alpha=0.0):
        if alpha < 0:
            raise ValueError(f"relu alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    def forward(self, z):
        if self.alpha == 0.0:
            return get_array_module(z).maximum(z, 0)
        return get_array_module(z).where(z > 0, z, z * z.dtype.type(self.alpha))

    def backward(self, dy, y):
        # y > 0 exactly where z > 0, for any alpha >= 0.
        if self.alpha == 0.0:
            return dy * (y > 0)
        return dy * get_array_module(y).where(y > 0, 1, y.dtype.type(self.alpha)).astype(y.dtype)

    def get_config(self):
        return self.name if self.alpha == 0.0 else {"name": "leaky_relu", "alpha": self.alpha}

    def __repr__(self):
        return self.name if self.alpha == 0.0 else f"leaky_relu(alpha={self.alpha})"


class LeakyReLUFunction(ReLU):
    """Keras's ``leaky_relu`` (default slope 0.2 in Keras 3; the LeakyReLU layer uses 0.3)."""

    name = "leaky_relu"

    def __init__(self, alpha=0.2):
        super().__init__(alpha)

    def get_config(self):
        return {"name": "leaky_relu", "alpha": self.alpha}


class Softmax(ActivationFunction):
    """Row-wise softmax over the last axis."""

    name = "softmax"

    def forward(self, z):
        xp = get_array_module(z)
        # Subtracting each row's max keeps exp() from overflowing and does not
        # change the result; the max must be per row, not over the whole batch.
        e = xp.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, dy, y):
        # Jacobian-vector product: dz_i = y_i (dy_i - sum_j dy_j y_j).
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


_BY_NAME = {
    "linear": Linear, None: Linear, "tanh": Tanh, "sigmoid": Sigmoid,
    "relu": ReLU, "leaky_relu": LeakyReLUFunction, "softmax": Softmax,
}


def get(identifier):
    """Turn a name, config dict or activation object into an activation object."""
    if isinstance(identifier, ActivationFunction):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        return _BY_NAME[config.pop("name")](**config)
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if callable(identifier):
        raise TypeError(
            f"activation={identifier!r} is a plain Python function: minicnn needs its derivative "
            "for backpropagation, which a function alone does not give. Use a minicnn activation "
            "instead, e.g. activation='relu', activation='leaky_relu' or, for the notebook's "
            "`lambda x: relu(x, alpha=0.1)`, activation=minicnn.activations.ReLU(alpha=0.1) "
            "(or a LeakyReLU(0.1) layer).")
    raise ValueError(f"unknown activation {identifier!r}; choose one of "
                     f"{sorted(k for k in _BY_NAME if k)}")


def linear(x):
    return x


def tanh(x):
    return Tanh().forward(x)


def sigmoid(x):
    return Sigmoid().forward(x)


def relu(x, alpha=0.0):
    return ReLU(alpha).forward(x)


def leaky_relu(x, alpha=0.2):
    return ReLU(alpha).forward(x)


def softmax(x):
    return Softmax().forward(x)
