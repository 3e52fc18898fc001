"""PyTorch twins of minicnn models, for side-by-side training benchmarks.

Two halves, so that the process that trains the PyTorch twin never imports minicnn:

* ``twin_spec(model)`` (needs minicnn, not torch) turns a built ``Sequential`` into a
  list of plain dicts: layer kind, sizes, activation and the exact TF-style padding
  amounts from ``kernels._shapes.pad_amounts`` (PyTorch has no asymmetric "same").
* ``build_twin(spec)`` (needs torch, not minicnn) builds an ``nn.Module`` from that list,
  and ``load_keras_weights(twin, weights)`` copies ``model.get_weights()`` into it.

Layout, handled once here: minicnn is NHWC with HWIO kernels, PyTorch is NCHW with OIHW
weights. The twin takes the NHWC batch as it is and permutes it to NCHW once at the
input; with ``channels_last=True`` the permuted view already has PyTorch's channels-last
strides, so no copy is made. Before ``Flatten`` it permutes back to NHWC, so the Dense
that follows sees features in minicnn's (Keras's) order and takes the same kernel.

Weights: Conv2D kernel (kh, kw, cin, cout) -> weight (cout, cin, kh, kw); Dense kernel
(in, out) -> Linear weight (out, in); BatchNormalization gamma, beta, moving mean and
variance -> weight, bias, running_mean, running_var, with momentum 1 - Keras's.
A final softmax is left out: the twin returns logits and trains with
``nn.CrossEntropyLoss``, which is softmax + cross-entropy in one stable step, the same
loss minicnn's fused softmax/cross-entropy computes.
"""


# -- spec (minicnn side) -------------------------------------------------------
def _activation_name(activation):
    config = activation.get_config()
    if isinstance(config, dict):               # leaky relu: {"name": "leaky_relu", "alpha": a}
        return (config["name"], float(config.get("alpha", 0.0)))
    return (config, 0.0)


def twin_spec(model):
    """Plain-dict description of a built minicnn ``Sequential`` (see the module docstring)."""
    from kernels._shapes import pad_amounts
    from minicnn import layers as L

    def pads(input_shape, window, strides, padding):
        (h, w), (kh, kw), (sh, sw) = input_shape[:2], window, strides
        return (*pad_amounts(h, kh, sh, padding), *pad_amounts(w, kw, sw, padding))  # t, b, l, r

    spec = [{"kind": "input", "shape": tuple(model.input_shape)}]
    for i, layer in enumerate(model.layers):
        last = i == len(model.layers) - 1
        shape = layer.input_shape
        if isinstance(layer, L.Conv2D):
            item = {"kind": "conv", "in": shape[2], "filters": layer.filters,
                    "kernel_size": layer.kernel_size, "strides": layer.strides,
                    "pad": pads(shape, layer.kernel_size, layer.strides, layer.padding),
                    "bias": layer.use_bias}
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            item = {"kind": "maxpool" if isinstance(layer, L.MaxPooling2D) else "avgpool",
                    "pool_size": layer.pool_size, "strides": layer.strides,
                    "pad": pads(shape, layer.pool_size, layer.strides, layer.padding)}
        elif isinstance(layer, L.Dense):
            item = {"kind": "dense", "in": shape[0], "units": layer.units, "bias": layer.use_bias}
        elif isinstance(layer, L.Flatten):
            item = {"kind": "flatten", "nhwc": len(shape) == 3}
        elif isinstance(layer, L.Dropout):
            item = {"kind": "dropout", "rate": layer.rate}
        elif isinstance(layer, L.BatchNormalization):
            if not (layer.center and layer.scale):
                raise NotImplementedError("twin_spec: BatchNormalization without center/scale")
            item = {"kind": "batchnorm", "channels": shape[-1], "rank": len(shape),
                    "momentum": layer.momentum, "epsilon": layer.epsilon}
        elif isinstance(layer, L.Activation):
            item = {"kind": "activation"}
        else:
            raise NotImplementedError(f"twin_spec: no PyTorch twin for {type(layer).__name__}")
        if hasattr(layer, "activation"):
            name, alpha = _activation_name(layer.activation)
            if name == "softmax" and last:
                name = "logits"                 # CrossEntropyLoss applies the softmax
            item["activation"], item["alpha"] = name, alpha
        item["name"] = layer.name
        spec.append(item)
    return spec


# -- twin (torch side) -----------------------------------------------------------
def _torch():
    import torch
    return torch


def _activation_module(nn, name, alpha):
    if name in ("linear", "logits"):
        return None
    table = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
    if name == "relu" and alpha:
        return nn.LeakyReLU(alpha)
    if name == "leaky_relu":
        return nn.LeakyReLU(alpha)
    if name == "softmax":
        return nn.Softmax(dim=1)
    if name not in table:
        raise NotImplementedError(f"build_twin: activation {name!r}")
    return table[name]()


def build_twin(spec, channels_last=True):
    """An ``nn.Module`` computing the same function as the minicnn model ``spec`` describes.

    Its ``forward`` takes an NHWC float32 tensor (or (N, D) / (N, H, W) for models that
    start with Flatten) and returns logits (N, classes). ``twin.keras_layers`` lists the
    modules that hold weights, in the order of ``model.get_weights()``.
    """
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class Pad(nn.Module):
        """TF "same" padding, possibly asymmetric; -inf for max pooling."""

        def __init__(self, pad, value):
            super().__init__()
            t, b, l, r = pad
            self.pad, self.value = (l, r, t, b), value

        def forward(self, x):
            return F.pad(x, self.pad, value=self.value)

    class FlattenNHWC(nn.Module):
        """minicnn flattens NHWC rows: permute back from NCHW first."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_input = len(spec[0]["shape"]) == 3
            self.channels_last = channels_last
            body, self.keras_layers = [], []
            for item in spec[1:]:
                kind = item["kind"]
                if kind == "conv":
                    if any(item["pad"]):
                        body.append(Pad(item["pad"], 0.0))
                    conv = nn.Conv2d(item["in"], item["filters"], item["kernel_size"],
                                     stride=item["strides"], bias=item["bias"])
                    body.append(conv)
                    self.keras_layers.append(("conv", conv))
                elif kind == "maxpool":
                    if any(item["pad"]):
                        body.append(Pad(item["pad"], float("-inf")))
                    body.append(nn.MaxPool2d(item["pool_size"], item["strides"]))
                elif kind == "avgpool":
                    if any(item["pad"]):   # Keras averages the real cells only; not needed yet
                        raise NotImplementedError("build_twin: AveragePooling2D with 'same' padding")
                    body.append(nn.AvgPool2d(item["pool_size"], item["strides"]))
                elif kind == "dense":
                    linear = nn.Linear(item["in"], item["units"], bias=item["bias"])
                    body.append(linear)
                    self.keras_layers.append(("dense", linear))
                elif kind == "flatten":
                    body.append(FlattenNHWC() if item["nhwc"] else nn.Flatten())
                elif kind == "dropout":
                    body.append(nn.Dropout(item["rate"]))
                elif kind == "batchnorm":
                    bn_class = nn.BatchNorm2d if item["rank"] == 3 else nn.BatchNorm1d
                    bn = bn_class(item["channels"], eps=item["epsilon"], momentum=1 - item["momentum"])
                    body.append(bn)
                    self.keras_layers.append(("batchnorm", bn))
                act = _activation_module(nn, item.get("activation", "linear"), item.get("alpha", 0.0))
                if act is not None:
                    body.append(act)
            self.body = nn.Sequential(*body)

        def forward(self, x):
            if self.image_input:
                x = x.permute(0, 3, 1, 2)          # NHWC -> NCHW view (channels-last strides)
                if not self.channels_last:
                    x = x.contiguous()
            return self.body(x)

    twin = Twin()
    if channels_last:
        twin = twin.to(memory_format=torch.channels_last)
    return twin


def load_keras_weights(twin, weights):
    """Copy minicnn/Keras-ordered arrays (``model.get_weights()``) into the twin, in place."""
    torch = _torch()
    weights = list(weights)
    with torch.no_grad():
        for kind, module in twin.keras_layers:
            if kind == "conv":
                kernel = weights.pop(0)
                module.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            elif kind == "dense":
                module.weight.copy_(torch.from_numpy(weights.pop(0).T.copy()))
            else:   # batchnorm
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(module, name).copy_(torch.from_numpy(weights.pop(0)))
                continue
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(weights.pop(0)))
    if weights:
        raise ValueError(f"{len(weights)} weight arrays left over after filling the twin")
    return twin
