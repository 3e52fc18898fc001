"""minicnn: a from-scratch convolutional-network library with a Keras-style API.

    from minicnn import Sequential
    from minicnn.layers import Conv2D, AveragePooling2D, Flatten, Dense

Keras code runs with its import line changed: ``from tensorflow.keras import layers,
models, optimizers, callbacks, datasets, utils, losses, activations`` becomes
``from minicnn import ...`` with the same names (``models.Sequential``,
``optimizers.schedules.ExponentialDecay``, ``datasets.mnist.load_data()``,
``utils.to_categorical``, ``losses.categorical_crossentropy``, ``activations.relu``).

``minicnn.plot`` (matplotlib) is imported on demand: ``from minicnn import plot``.
"""
from . import (activations, callbacks, datasets, initializers, layers, losses, metrics, models,
               optimizers, regularizers, schedules, utils)
from .callbacks import (Callback, CSVLogger, EarlyStopping, History, ModelCheckpoint,
                        ReduceLROnPlateau)
from .layers import *  # noqa: F401,F403 - the layers are the public API
from .layers import __all__ as _layer_names
from .models import Sequential, load_model
from .stats import LayerStatistics

__version__ = "0.1.0"
__all__ = ["Sequential", "load_model", "Callback", "EarlyStopping", "History", "ModelCheckpoint",
           "ReduceLROnPlateau", "CSVLogger", "LayerStatistics",
           "activations", "callbacks", "datasets", "initializers", "layers", "losses", "metrics",
           "models", "optimizers", "regularizers", "schedules", "utils", *_layer_names]
