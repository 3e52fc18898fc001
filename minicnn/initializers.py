"""Weight initialisers with Keras's names, defaults and fan rules.

An initialiser is called as ``init(shape, dtype, rng)`` and returns a new array.
``rng`` is the model's generator, so one seed reproduces a whole model; an
initialiser built with its own ``seed=`` uses that instead.

Fans follow Keras: a Dense kernel (fan_in, fan_out) is used as is; a conv kernel
(kh, kw, C_in, C_out) has fan_in = kh·kw·C_in and fan_out = kh·kw·C_out.
"""
import inspect

import numpy as np


def compute_fans(shape):
    """(fan_in, fan_out) of a kernel shape, as Keras computes them."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer:
    """Base class: subclasses implement ``sample(shape, rng)`` in float64."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype="float32", rng=None):
        if self.seed is not None:
            rng = np.random.default_rng(self.seed)
        elif rng is None:
            rng = np.random.default_rng()
        return np.asarray(self.sample(tuple(shape), rng), dtype=dtype)

    def sample(self, shape, rng):
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments (read from the signature) that rebuild this initialiser."""
        names = inspect.signature(type(self).__init__).parameters
        config = {k: getattr(self, k) for k in names if k != "self" and getattr(self, k) is not None}
        return {"class_name": type(self).__name__, "config": config}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def sample(self, shape, rng):
        return np.zeros(shape)


class Ones(Initializer):
    def sample(self, shape, rng):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        super().__init__()
        self.value = value

    def sample(self, shape, rng):
        return np.full(shape, self.value)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def sample(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def sample(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)


class VarianceScaling(Initializer):
    """The family behind Glorot and He: variance = scale / fan."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def sample(self, shape, rng):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)   # a uniform on ±limit has variance limit²/3
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(variance), shape)
        # Truncating at 2 std shrinks the spread; 0.8796 (Keras's constant) undoes that.
        stddev = np.sqrt(variance) / 0.87962566103423978
        return _truncated_normal(rng, stddev, shape)


def _truncated_normal(rng, stddev, shape):
    """Normal samples redrawn until all lie within two standard deviations."""
    out = rng.normal(0.0, stddev, shape)
    outside = np.abs(out) > 2 * stddev
    while outside.any():
        out[outside] = rng.normal(0.0, stddev, int(outside.sum()))
        outside = np.abs(out) > 2 * stddev
    return out


class GlorotUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform, "variance_scaling": VarianceScaling,
}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier):
    """An initialiser from a Keras name, a saved config or an initialiser object."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return _BY_CLASS[identifier["class_name"]](**identifier["config"])
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"unknown initializer {identifier!r}; choose one of {sorted(_BY_NAME)}")
