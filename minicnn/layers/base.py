"""The one shape every layer has.

    build(input_shape)          create parameters; shapes exclude the batch axis
    forward(x, training=False)  -> y; with training=True, keep what backward needs
    backward(dy)                -> dx; fills self.grads (overwritten, never summed)

    params  trainable arrays with Keras names ("kernel", "bias", "gamma", "beta")
    grads   same keys as params
    state   non-trainable arrays ("moving_mean", "moving_variance")
"""
import numpy as np

import kernels
from kernels.backend import check_device, get_array_module, is_gpu, to_device
from .. import activations, initializers, regularizers


class Layer:
    def __init__(self, name=None, input_shape=None):
        self.name = name
        self.built = False
        self.params = {}
        self.grads = {}
        self.state = {}
        self._cache = None
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.output_shape = None
        self.dtype = np.float32
        # False only during a training backward that needs no dx below this layer (the
        # model's first weighted layer): backward may skip it. The model sets it for one
        # call and puts it back, so a layer's own backward(dy) always returns dx.
        self.needs_input_grad = True
        # The model hands every layer its generator, so one seed drives everything.
        self.rng = np.random.default_rng()
        self.device = "cpu"     # where the arrays live; ``to`` changes it, built or not

    # -- the protocol -------------------------------------------------------
    def build(self, input_shape):
        """Create parameters for inputs of ``input_shape`` (no batch axis)."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training=False):
        """``layer(x)``, as in Keras: build for x's shape if needed, then forward.

        Shapes: x: (N, *input_shape); returns (N, *output_shape).
        """
        x = x if is_gpu(x) else np.asarray(x)
        if not self.built:
            self.build(x.shape[1:])
            self.to(self.device)        # built after a move to the GPU: its weights go there too
        return self.forward(x.astype(self.dtype, copy=False), training=training)

    def to(self, device):
        """Move parameters, gradients and state to "cpu" (NumPy) or "gpu" (CuPy); the
        layer then takes inputs of that kind (a layer not yet built builds there). Returns
        the layer."""
        check_device(device)            # refused here, not at the first batch, when there is no GPU
        for store in (self.params, self.grads, self.state):
            for key in store:
                store[key] = to_device(store[key], device)
        self.device = device
        return self

    # -- helpers shared by all layers ---------------------------------------
    def add_param(self, name, shape, initializer):
        self.params[name] = initializers.get(initializer)(shape, self.dtype, self.rng)
        self.grads[name] = np.zeros_like(self.params[name])

    def regularization_penalty(self):
        """Sum of this layer's weight penalties (0.0 for layers without any)."""
        return 0.0

    def count_params(self):
        """Every weight, trainable or not, as Keras counts them (BatchNormalization's
        moving statistics included); ``count_state`` gives the non-trainable part."""
        return sum(int(w.size) for w in (*self.params.values(), *self.state.values()))

    def count_state(self):
        return sum(int(s.size) for s in self.state.values())

    def get_weights(self):
        """Trainable then non-trainable arrays, in Keras's order, as NumPy copies."""
        from kernels.backend import to_numpy
        return [to_numpy(w).copy() for w in (*self.params.values(), *self.state.values())]

    def set_weights(self, weights):
        targets = [*self.params.items(), *self.state.items()]
        if len(weights) != len(targets):
            raise ValueError(f"layer {self.name!r} has {len(targets)} weight arrays "
                             f"({[k for k, _ in targets]}) but was given {len(weights)}")
        for (key, target), value in zip(targets, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(f"layer {self.name!r}: weight {key!r} has shape {target.shape} "
                                 f"but the value given has shape {value.shape}")
            # in place (the optimiser holds this same array), copied to the GPU if it lives there
            target[...] = get_array_module(target).asarray(value)

    def get_config(self):
        """Constructor arguments that rebuild this layer (see ``from_config``)."""
        return {"name": self.name}

    def __repr__(self):
        def short(value):   # an initialiser's config dict reads best as its class name
            return value["class_name"] if isinstance(value, dict) and "class_name" in value else value
        args = ", ".join(f"{k}={short(v)!r}" for k, v in self.get_config().items()
                         if k != "name" and v is not None)
        return f"{type(self).__name__}({args})"

    def check_input(self, x):
        """Raise a clear error when ``x`` does not match the built input shape."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) was built for inputs of shape "
                f"(batch, {', '.join(map(str, self.input_shape))}) but got an array of shape "
                f"{tuple(x.shape)}.")


class ActivationMixin:
    """For layers that end in an activation (Dense, Conv2D, Activation).

    When the model ends in softmax and trains with a cross-entropy loss, the training
    step sets ``fused_with_loss`` for the duration of one backward: the loss then hands
    back dL/dz directly ((p - t)/N), so backward must not apply the softmax derivative
    a second time. Outside that call it is False and backward is the true derivative.
    """

    fused_with_loss = False

    def set_activation(self, activation):
        self.activation = activations.get(activation)
        self._activation_input = None

    def activate(self, z, training, z_is_own=False):
        """y = activation(z). While training, also keep z when the activation's derivative
        needs it (a plain Python function); the built-in ones work from y alone.

        ``z_is_own``: z is an array this layer just made (Dense's and Conv2D's x·W + b),
        so the activation may overwrite it instead of writing a new array; never for an
        input another layer still holds (the Activation layer's)."""
        if self.activation.needs_input:
            if training:
                self._activation_input = z
            return self.activation.forward(z)
        return self.activation.forward_in_place(z) if z_is_own else self.activation.forward(z)

    def activation_backward(self, dy, y):
        if self.fused_with_loss:
            return dy
        if self.activation.needs_input:
            return self.activation.backward(dy, y, self._activation_input)
        return self.activation.backward(dy, y)

    # Dense and Conv2D: the bias and the activation together, after x·W
    def add_bias_and_activate(self, z, training):
        """y = activation(z + bias), where z is this layer's own fresh x·W (overwritten).

        The readable path is ``z += bias`` and then ``activate``; on NumPy arrays with a
        built-in activation the compiled twin does both in one pass over memory (for the
        first layer of a small convnet, two thirds of its time went to these passes).
        """
        bias = self.params.get("bias")
        compiled = kernels.compiled_twins(z)
        if compiled is not None and self.activation.compiled_name is not None:
            return compiled.bias_activation(z, bias, self.activation.compiled_name, self.activation.alpha)
        if bias is not None:
            z += bias
        return self.activate(z, training, z_is_own=True)

    def activation_and_bias_backward(self, dy, y):
        """(dz, dbias): the gradient before the activation and the bias's gradient (None
        without a bias), in one compiled pass where ``add_bias_and_activate`` had one.

        Shapes: dy, y: (N, ..., C).  dz: like y; dbias: (C,).
        """
        name = "linear" if self.fused_with_loss else self.activation.compiled_name
        compiled = kernels.compiled_twins(dy)
        if compiled is not None and name is not None:
            dz, dbias = compiled.activation_backward(dy, y, name, self.activation.alpha)
        else:
            dz = self.activation_backward(dy, y)
            dbias = kernels.bias_gradient(dz) if self.use_bias else None
        return dz, (dbias if self.use_bias else None)


class WeightsMixin:
    """Kernel/bias creation and regularisation shared by Dense and Conv2D."""

    def init_weights(self, kernel_initializer, bias_initializer, kernel_regularizer,
                     bias_regularizer, use_bias):
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def create_weights(self, kernel_shape, units):
        self.add_param("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (units,), self.bias_initializer)

    def regularizer_pairs(self):
        return [(name, reg) for name, reg in
                (("kernel", self.kernel_regularizer), ("bias", self.bias_regularizer))
                if reg is not None and name in self.params]

    def regularization_penalty(self):
        return sum(reg.penalty(self.params[name]) for name, reg in self.regularizer_pairs())

    def add_regularization_grads(self):
        for name, reg in self.regularizer_pairs():
            self.grads[name] += reg.gradient(self.params[name])

    def weights_config(self):
        def ser(obj):
            return None if obj is None else obj.get_config()
        return {"use_bias": self.use_bias,
                "kernel_initializer": ser(self.kernel_initializer),
                "bias_initializer": ser(self.bias_initializer),
                "kernel_regularizer": ser(self.kernel_regularizer),
                "bias_regularizer": ser(self.bias_regularizer)}
