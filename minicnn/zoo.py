"""The course's networks, defined once: the examples, tests and benchmarks all build them here.

Each function returns a new, uncompiled ``Sequential`` with its input shape set, so
``summary()`` works at once. The layer lists follow the notebooks; the comments say
which notebook and what its Keras code wrote where minicnn spells it differently.
"""
from .activations import ReLU
from .layers import (AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                     MaxPooling2D)
from .models import Sequential


def lenet5(seed=None, dtype="float32"):
    """LeNet-5 for 28x28x1 MNIST digits (notebook 1): tanh convolutions, average pooling.

    Its last conv uses "same" padding, as the notebook did, so the 4x4 map stays 4x4 and
    Flatten sees 4*4*120 = 1,920 values (212,906 parameters in all).
    """
    return Sequential([
        Conv2D(6, (5, 5), activation="tanh", input_shape=(28, 28, 1)),
        AveragePooling2D((2, 2)),
        Conv2D(16, (5, 5), activation="tanh"),
        AveragePooling2D((2, 2)),
        Conv2D(120, (5, 5), activation="tanh", padding="same"),
        Flatten(),
        Dense(84, activation="tanh"),
        Dense(10, activation="softmax"),
    ], name="lenet5", seed=seed, dtype=dtype)


def keras_convnet(bn=False, dropout=0.0, seed=None, dtype="float32"):
    """Keras's MNIST convnet on 28x28x1 Fashion-MNIST (notebook 2), optionally with
    BatchNormalization after each conv and Dropout(``dropout``) after each pooling."""
    layers = []
    for filters in (32, 64):
        shape = {"input_shape": (28, 28, 1)} if not layers else {}
        layers.append(Conv2D(filters, (3, 3), activation="relu", **shape))
        if bn:
            layers.append(BatchNormalization())
        layers.append(MaxPooling2D((2, 2)))
        if dropout:
            layers.append(Dropout(dropout))
    layers += [Flatten(), Dropout(0.5), Dense(10, activation="softmax")]
    return Sequential(layers, name="keras_convnet", seed=seed, dtype=dtype)


def fashion_model2(bn=False, seed=None, dtype="float32"):
    """Fashion-MNIST "model 2" (notebook 2): three 3x3 convs with leaky relu (alpha 0.1),
    more dropout, optionally BatchNormalization after each conv."""
    leaky = ReLU(alpha=0.1)          # the notebook's activation=lambda x: relu(x, alpha=0.1)
    norm = lambda: [BatchNormalization()] if bn else []      # noqa: E731 - a fresh layer each time
    return Sequential([
        Conv2D(32, (3, 3), padding="same", activation=leaky, input_shape=(28, 28, 1)), *norm(),
        MaxPooling2D((2, 2)), Dropout(0.3),
        Conv2D(64, (3, 3), padding="same", activation=leaky), *norm(),
        MaxPooling2D((2, 2)), Dropout(0.5),
        Conv2D(128, (3, 3), activation=leaky), *norm(),
        Flatten(),
        Dense(128, activation=leaky), Dropout(0.3),
        Dense(10, activation="softmax"),
    ], name="fashion_model2", seed=seed, dtype=dtype)


def alexnet_like(seed=None, dtype="float32"):
    """The AlexNet-like net for 32x32x3 CIFAR-10 (notebook 4): five convs with
    BatchNormalization, overlapping 3x3/2 max pooling, two 4096-unit dense layers."""
    def conv(filters, size, **options):
        return [Conv2D(filters, size, padding="same", activation="relu", **options),
                BatchNormalization()]
    pool = lambda: MaxPooling2D((3, 3), strides=(2, 2), padding="same")   # noqa: E731
    return Sequential([
        *conv(96, (11, 11), strides=(4, 4), input_shape=(32, 32, 3)), pool(),
        *conv(256, (5, 5)), pool(),
        *conv(384, (3, 3)), *conv(384, (3, 3)), *conv(256, (3, 3)), pool(),
        Flatten(),
        Dense(4096, activation="relu"), Dropout(0.5),
        Dense(4096, activation="relu"), Dropout(0.5),
        Dense(10, activation="softmax"),
    ], name="alexnet_like", seed=seed, dtype=dtype)


def mlp(input_shape=(28, 28), hidden=(128,), activation="sigmoid", classes=10, seed=None,
        dtype="float32"):
    """Flatten, one Dense(``units``, ``activation``) per entry of ``hidden``, then a softmax
    layer (the Fashion-MNIST and CIFAR MLP studies, notebooks 3 and 5)."""
    return Sequential([
        Flatten(input_shape=input_shape),
        *[Dense(units, activation=activation) for units in hidden],
        Dense(classes, activation="softmax"),
    ], name="mlp", seed=seed, dtype=dtype)
