"""Activation functions and their derivatives.

Each activation is a small object with two methods:

    forward(z)      -> y          the activation itself
    backward(dy, y) -> dz         the chain rule, written in terms of the output y

Writing the derivative in terms of y (not z) means a layer only has to keep its
output for backward: tanh' = 1 - y², sigmoid' = y(1 - y), relu' = [y > 0].

The module-level functions (``relu(x, alpha=0.1)``, ``tanh(x)``…) let learners call
the math directly, as the course notebooks do.

A plain Python function works as ``activation=`` too (see ``from_function``):

* one that hands its input straight to one of the functions above, such as the
  course's ``lambda x: relu(x, alpha=0.1)``, is recognised as that activation and
  costs nothing extra;
* any other function is differentiated numerically: backward evaluates it twice
  more, at z ± h in float64 (central differences), and the layer keeps its input z
  for that, one more array of the output's size. When the layer is created, this
  derivative is checked against finite differences of the whole function, which
  also catches a function that is not elementwise.
"""
import numpy as np

from kernels.backend import get_array_module


class ActivationFunction:
    """Base class; subclasses set ``name`` and implement forward/backward."""

    name = "linear"
    #: the Python function this activation was recognised from (shown by summary)
    source = None
    #: True when backward needs the input z as well as the output y
    needs_input = False
    #: the name kernels.numba_kernels' bias+activation twins know this activation by
    #: (a key of its FUSED_ACTIVATIONS), or None where only the methods below compute it
    compiled_name = None
    #: relu's slope below zero (the compiled twins take it as a number)
    alpha = 0.0

    def forward(self, z):
        return z

    def forward_in_place(self, z):
        """forward(z), allowed to overwrite z (a layer's own fresh pre-activation): one
        array and one pass over memory fewer where the activation supports it."""
        return self.forward(z)

    def backward(self, dy, y):
        return dy

    def derivative_method(self):
        """How backward differentiates a function given as ``activation=``, or None."""
        if self.source is None:
            return None
        return f"{function_name(self.source)} recognised as {self!r}: exact derivative"

    def get_config(self):
        return self.name

    def __repr__(self):
        return self.name


class Linear(ActivationFunction):
    name = "linear"
    compiled_name = "linear"


class Tanh(ActivationFunction):
    name = "tanh"
    compiled_name = "tanh"

    def forward(self, z):
        return get_array_module(z).tanh(z)

    def forward_in_place(self, z):
        return get_array_module(z).tanh(z, out=z)

    def backward(self, dy, y):
        return dy * (1 - y * y)


class Sigmoid(ActivationFunction):
    name = "sigmoid"
    compiled_name = "sigmoid"

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
    compiled_name = "relu"

    def __init__(self, alpha=0.0):
        if alpha < 0:
            raise ValueError(f"relu alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    # Written with arithmetic, not ``where``: NumPy's ``where`` branches on every element,
    # and on a mask as random as a layer's signs it was 8x slower (a 128x28x28x32 batch,
    # float32: leaky forward 13 ms with where, 1.6 ms with maximum).
    def forward(self, z):
        xp = get_array_module(z)
        if self.alpha == 0.0:
            return xp.maximum(z, 0)
        if self.alpha <= 1.0:          # then the larger of z and alpha*z is the leaky relu
            return xp.maximum(z, z * z.dtype.type(self.alpha))
        return xp.where(z > 0, z, z * z.dtype.type(self.alpha))

    def forward_in_place(self, z):
        xp = get_array_module(z)
        if self.alpha == 0.0:
            return xp.maximum(z, 0, out=z)
        if self.alpha <= 1.0:
            return xp.maximum(z, z * z.dtype.type(self.alpha), out=z)
        return self.forward(z)

    def backward(self, dy, y):
        # y > 0 exactly where z > 0, for any alpha >= 0; the slope is 1 there, alpha elsewhere.
        if self.alpha == 0.0:
            return dy * (y > 0)
        alpha = y.dtype.type(self.alpha)
        return dy * ((y > 0) * (1 - alpha) + alpha)

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

    def forward_in_place(self, z):
        # The same operations on z itself: no new arrays (a classifier's last layer runs
        # this on every training step).
        xp = get_array_module(z)
        z -= z.max(axis=-1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        return z

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
        if config["name"] == FunctionActivation.name:
            raise ValueError(
                f"this model's activation was the Python function {config['function']!r}, which "
                "a saved file cannot hold: build the model again in code, then load_weights().")
        return _BY_NAME[config.pop("name")](**config)
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if callable(identifier):
        return from_function(identifier)
    raise ValueError(f"unknown activation {identifier!r}; choose one of "
                     f"{sorted(k for k in _BY_NAME if k)}")


# -- activations given as Python functions ------------------------------------
#: while from_function probes a function: (activation, input, output) of each call below
_probe_calls = None


def _apply(activation, x):
    """activation.forward(x), noted down while from_function is probing."""
    y = activation.forward(x)
    if _probe_calls is not None:
        _probe_calls.append((activation, x, y))
    return y


def linear(x):
    return _apply(Linear(), x)


def tanh(x):
    return _apply(Tanh(), x)


def sigmoid(x):
    return _apply(Sigmoid(), x)


def relu(x, alpha=0.0):
    return _apply(ReLU(alpha), x)


def leaky_relu(x, alpha=0.2):
    return _apply(LeakyReLUFunction(alpha), x)


def softmax(x):
    return _apply(Softmax(), x)


def function_name(function):
    return getattr(function, "__name__", type(function).__name__)


def _probe(shape=(4, 16), seed=0):
    """Random float64 test inputs, spread over the range activations care about."""
    return 2 * np.random.default_rng(seed).standard_normal(shape)


def from_function(function):
    """An activation object for a plain Python function ``f(z) -> y`` (see the module doc).

    Recognised: the function called one of this module's functions on its own input and
    returned that call's result unchanged (checked again on a second input). Anything
    else becomes a ``FunctionActivation`` with a numerical derivative.
    """
    global _probe_calls
    probe = _probe()
    _probe_calls = []
    try:
        y = function(probe)
        calls = _probe_calls
    except Exception:       # FunctionActivation's check reports it with the input it got
        y, calls = None, []
    finally:
        _probe_calls = None
    if len(calls) == 1 and calls[0][1] is probe and calls[0][2] is y:
        activation = calls[0][0]
        other = _probe(seed=1)
        if np.allclose(function(other), activation.forward(other), rtol=1e-12, atol=0):
            activation.source = function
            return activation
    return FunctionActivation(function)


class FunctionActivation(ActivationFunction):
    """Any elementwise Python function, differentiated by central differences.

    Shapes: z, y, dy, dz all alike, e.g. (N, units) or (N, H, W, filters).
    """

    name = "function"
    needs_input = True
    #: central-difference step relative to max(1, |z|): about the cube root of float64's
    #: epsilon, where truncation and rounding errors balance (error ~ 1e-10 relative)
    STEP = 6e-6

    def __init__(self, function):
        self.function = function
        self.check_derivative()

    def forward(self, z):
        return self.function(z)

    def slope(self, z):
        """f'(z) elementwise, by central differences in float64."""
        xp = get_array_module(z)
        z = z.astype(np.float64)
        h = self.STEP * xp.maximum(1.0, xp.abs(z))
        return (self.function(z + h) - self.function(z - h)) / (2 * h)

    def backward(self, dy, y, z):
        return (dy * self.slope(z)).astype(dy.dtype)

    def check_derivative(self, step=1e-4, tolerance=1e-4):
        """Compare backward with finite differences of sum(f(z)·R) on a random probe.

        Perturbing one z_j at a time sees every output it moves, so a function whose
        outputs mix positions (not elementwise) fails here, as does one too rough to
        differentiate. Raises ValueError saying which.
        """
        z = _probe()
        upstream = np.random.default_rng(2).standard_normal(z.shape)
        try:
            y = np.asarray(self.function(z))
        except Exception as error:
            raise TypeError(f"activation={function_name(self.function)!r} failed on a float64 "
                            f"array of shape {z.shape}: {error!r}") from error
        if y.shape != z.shape or not np.all(np.isfinite(y)):
            raise ValueError(
                f"activation={function_name(self.function)!r} must map an array to finite values "
                f"of the same shape; on an input of shape {z.shape} it returned "
                f"{'shape ' + str(y.shape) if y.shape != z.shape else 'non-finite values'}.")
        analytic = self.backward(upstream, y, z)
        numeric = np.empty_like(z)
        for j in np.ndindex(z.shape):
            nudged = z.copy()
            nudged[j] += step
            above = (self.function(nudged) * upstream).sum()
            nudged[j] -= 2 * step
            numeric[j] = (above - (self.function(nudged) * upstream).sum()) / (2 * step)
        error = np.abs(analytic - numeric).max() / max(1.0, np.abs(numeric).max())
        if not error < tolerance:
            raise ValueError(
                f"activation={function_name(self.function)!r}: its elementwise derivative "
                f"disagrees with finite differences (relative error {error:.2g}). minicnn can "
                "differentiate a plain function only when it is elementwise and smooth; use a "
                "minicnn activation (activation='relu', activations.relu(x, alpha=...)) or an "
                "Activation layer instead.")

    def derivative_method(self):
        return (f"{function_name(self.function)}: central differences (2 extra calls per "
                "backward), checked against finite differences when the layer was created")

    def get_config(self):
        return {"name": self.name, "function": function_name(self.function)}

    def __repr__(self):
        return function_name(self.function)
