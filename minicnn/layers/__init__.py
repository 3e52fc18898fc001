"""Every layer minicnn has, importable as ``from minicnn.layers import Conv2D``."""
from .base import Layer
from .conv import Conv2D, ZeroPadding2D
from .core import Activation, Dense, Dropout, Flatten, Input, LeakyReLU
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D

__all__ = ["Layer", "Input", "Dense", "Flatten", "Activation", "LeakyReLU", "Dropout",
           "Conv2D", "ZeroPadding2D", "MaxPooling2D", "AveragePooling2D",
           "GlobalAveragePooling2D", "BatchNormalization"]

#: class name -> class, used to rebuild a saved model from its JSON description
LAYER_CLASSES = {name: globals()[name] for name in __all__ if name not in ("Layer", "Input")}
