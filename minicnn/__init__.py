"""minicnn: a from-scratch convolutional-network library with a Keras-style API.

    from minicnn import Sequential
    from minicnn.layers import Conv2D, AveragePooling2D, Flatten, Dense

``minicnn.plot`` (matplotlib) is imported on demand: ``from minicnn import plot``.
"""
from . import activations, callbacks, initializers, layers, losses, optimizers, regularizers
from .callbacks import Callback, EarlyStopping, History
from .layers import *  # noqa: F401,F403 - the layers are the public API
from .layers import __all__ as _layer_names
from .models import Sequential, load_model
from .stats import LayerStatistics

__version__ = "0.1.0"
__all__ = ["Sequential", "load_model", "Callback", "EarlyStopping", "History", "LayerStatistics",
           "activations", "callbacks", "initializers", "layers", "losses", "optimizers",
           "regularizers", *_layer_names]
