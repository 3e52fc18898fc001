"""Saving and loading models as ``.npz`` archives, without pickle.

- ``save_weights`` / ``load_weights``: every layer's arrays, named "000.conv2d.kernel".
- ``save_model`` / ``load_model``: the same, plus the architecture and compile settings
  as JSON text and the optimiser's state, so training can resume where it stopped.

Files are written to a temporary name and renamed into place, so a crash mid-save
leaves the previous file intact. Loading uses ``allow_pickle=False``: an archive
can hold only plain arrays, never code.
"""
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from kernels.backend import to_numpy

CONFIG_KEY = "__model_config__"
OPTIMIZER_PREFIX = "__optimizer__"


def atomic_save_npz(path, arrays):
    """Write ``arrays`` (name -> array) to ``path`` via a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(path):
    """All arrays of an archive as a dict; a damaged file gives one clear error."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ValueError(f"{path} is not a readable minicnn archive (truncated, corrupted or not "
                         f"written by minicnn): {error}") from error


def weight_arrays(model):
    """{"000.conv2d.kernel": array, …} for every layer, in Keras's weight order."""
    arrays = {}
    for index, layer in enumerate(model.layers):
        for key, value in (*layer.params.items(), *layer.state.items()):
            arrays[f"{index:03d}.{layer.name}.{key}"] = to_numpy(value)
    return arrays


def save_weights(model, path):
    atomic_save_npz(path, weight_arrays(model))


def _by_position(arrays):
    """{(layer index, weight name): array}; layer names may differ between models."""
    out = {}
    for key, value in arrays.items():
        if not key.startswith("__"):
            index, _layer_name, weight = key.split(".")
            out[(int(index), weight)] = value
    return out


def load_weights(model, path, arrays=None):
    """Copy saved arrays into the model, matched by position; checks count and shapes first."""
    arrays = read_npz(path) if arrays is None else arrays
    saved = _by_position(arrays)
    if len(saved) != len(weight_arrays(model)):
        raise ValueError(f"{path} holds {len(saved)} weight arrays but the model has "
                         f"{len(weight_arrays(model))}; was it saved from a different architecture?")
    for index, layer in enumerate(model.layers):
        values = []
        for weight, current in (*layer.params.items(), *layer.state.items()):
            value = saved.get((index, weight))
            if value is None:
                raise ValueError(f"{path} has no {weight!r} for layer {index} ({layer.name!r})")
            if value.shape != current.shape:
                raise ValueError(f"{path}: layer {layer.name!r} weight {weight!r} has shape "
                                 f"{current.shape} in the model but {value.shape} in the file")
            values.append(value)
        layer.set_weights(values)


def layer_specs(model):
    """[{"class_name": "Conv2D", "config": {…}}, …]: the architecture, layer by layer."""
    return [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in model.layers]


def rng_states(model):
    """{"rng_state": the model's generator, "layer_rng_states": {index: a seeded Dropout's own}},
    as JSON-able dicts: with them, training continues with the same shuffles and masks."""
    own = {str(index): layer.get_rng_state() for index, layer in enumerate(model.layers)
           if hasattr(layer, "get_rng_state")}
    return {"rng_state": model.rng.bit_generator.state,
            "layer_rng_states": {index: state for index, state in own.items() if state is not None}}


def set_rng_states(model, config):
    """Restore what ``rng_states`` saw (files from before layer states existed have none)."""
    model.rng.bit_generator.state = config["rng_state"]
    for index, state in config.get("layer_rng_states", {}).items():
        model.layers[int(index)].set_rng_state(state)


def model_arrays(model):
    """Everything ``save_model`` writes: weights, optimiser slots and the JSON description."""
    from .optimizers import Optimizer
    config = {"name": model.name, "dtype": model.dtype.name, "input_shape": model.input_shape,
              "layers": layer_specs(model), **rng_states(model)}
    arrays = weight_arrays(model)
    if isinstance(model.optimizer, Optimizer):
        optimizer = model.optimizer
        config["compile"] = {
            "optimizer": {"class_name": type(optimizer).__name__, "config": optimizer.get_config(),
                          "iterations": optimizer.iterations,
                          "extra": {k: v for k, v in vars(optimizer).items() if k == "_u_product"}},
            "loss": model.loss.name,
            "metrics": [name for name, _ in model.metrics],
        }
        for (slot, index), value in optimizer.slots.items():
            arrays[f"{OPTIMIZER_PREFIX}.{slot}.{index}"] = to_numpy(value)
    arrays[CONFIG_KEY] = np.array(json.dumps(config))
    return arrays


def set_optimizer_state(optimizer, spec, arrays, dtype):
    """Step count, Nadam's running product and the slots saved by ``model_arrays``."""
    optimizer.iterations = spec["iterations"]
    vars(optimizer).update(spec["extra"])
    for key, value in arrays.items():
        if key.startswith(OPTIMIZER_PREFIX):
            _, slot, index = key.split(".")
            optimizer.slots[(slot, int(index))] = value.astype(dtype)


def save_model(model, path):
    """Architecture, compile settings, weights, optimiser state and generator states in one file."""
    atomic_save_npz(path, model_arrays(model))


def load_model(path):
    """Rebuild a model saved with ``model.save(path)``, ready to predict or resume training."""
    from .layers import LAYER_CLASSES
    from .models import Sequential
    from .optimizers import from_config
    arrays = read_npz(path)
    if CONFIG_KEY not in arrays:
        raise ValueError(f"{path} holds weights only (save_weights); rebuild the model in code "
                         "and call model.load_weights(path), or save with model.save(path)")
    try:
        config = json.loads(str(arrays.pop(CONFIG_KEY)))
        model = Sequential(name=config["name"], dtype=config["dtype"])
        model.input_shape = tuple(config["input_shape"])
        for spec in config["layers"]:
            model.add(LAYER_CLASSES[spec["class_name"]](**spec["config"]))
        set_rng_states(model, config)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: the model description is damaged: {error}") from error
    load_weights(model, path, {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)})
    if "compile" in config:
        spec = config["compile"]
        optimizer = from_config(spec["optimizer"]["class_name"], spec["optimizer"]["config"])
        set_optimizer_state(optimizer, spec["optimizer"], arrays, model.dtype)
        model.compile(optimizer=optimizer, loss=spec["loss"], metrics=spec["metrics"])
    return model
