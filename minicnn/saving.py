"""Saving and loading models as ``.npz`` archives, without pickle.

- ``save_weights`` / ``load_weights``: every layer's arrays, named "000.conv2d.kernel".
- ``save_model`` / ``read_model``: the same, plus the architecture and compile settings
  as JSON text and the optimiser's state, so training can resume where it stopped
  (``minicnn.models.load_model`` turns what ``read_model`` returns into a model).

Files are written to a temporary file beside the target and renamed into place, so a
crash mid-save leaves the previous file intact. Reading never unpickles, checks each
array's header against the bytes stored before reading them, and reports every kind
of damage as one exception, ``SavedFileError``.
"""
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from kernels.backend import to_device, to_numpy
from .optimizers import Optimizer, from_config

CONFIG_KEY = "__model_config__"
OPTIMIZER_PREFIX = "__optimizer__"


class SavedFileError(ValueError):
    """A saved model or weights file is damaged or was not written by minicnn.

    The message starts with the file's path and says what was wrong.
    """


# -- writing --------------------------------------------------------------------
def atomic_save_npz(path, arrays):
    """Write ``arrays`` (name -> array) to ``path`` via a temporary file and a rename.

    The temporary name is unique (two threads saving to one path do not collide) and
    carries this process's id, so a later save can remove what a killed process left.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist; "
                                "create it first, e.g. os.makedirs(folder, exist_ok=True)")
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                    suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(path):
    """Delete ``.<name>.<pid>.*.tmp`` files beside ``path`` whose process no longer runs."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)                # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:            # it exists but belongs to someone else
        return True
    return True


def weight_arrays(model):
    """{"000.conv2d.kernel": array, …} for every layer, in Keras's weight order."""
    arrays = {}
    for index, layer in enumerate(model.layers):
        for key, value in (*layer.params.items(), *layer.state.items()):
            arrays[f"{index:03d}.{layer.name}.{key}"] = to_numpy(value)
    return arrays


def save_weights(model, path):
    atomic_save_npz(path, weight_arrays(model))


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
    """Everything ``save_model`` writes: weights, optimiser slots and the JSON description
    (architecture, compile settings, the optimiser's scalars, the generators' states)."""
    config = {**model.get_config(), **rng_states(model)}
    arrays = weight_arrays(model)
    if isinstance(model.optimizer, Optimizer):
        optimizer = model.optimizer
        scalars, slots = optimizer.get_state()
        config["compile"] = {
            "optimizer": {"class_name": type(optimizer).__name__, "config": optimizer.get_config(),
                          "state": scalars},
            "loss": model.loss.name,
            "metrics": [name for name, _ in model.metrics],
        }
        for (slot, index), value in slots.items():
            arrays[f"{OPTIMIZER_PREFIX}.{slot}.{index}"] = to_numpy(value)
    arrays[CONFIG_KEY] = np.array(json.dumps(config))
    return arrays


def save_model(model, path):
    """Architecture, compile settings, weights, optimiser state and generator states in one file."""
    atomic_save_npz(path, model_arrays(model))


# -- reading --------------------------------------------------------------------
def read_npz(path):
    """All arrays of an archive as a dict; any damage gives one SavedFileError."""
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for info in archive.infolist():
                with archive.open(info) as member:
                    arrays[info.filename.removesuffix(".npy")] = _read_npy(member, info)
            return arrays
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except SavedFileError as error:
        raise SavedFileError(f"{path}: {error}") from error
    # zipfile and NumPy's header parser fail in many ways on damaged bytes (BadZipFile,
    # NotImplementedError, RuntimeError, SyntaxError, zlib.error, ...): one message for all.
    except Exception as error:  # noqa: BLE001
        raise SavedFileError(f"{path} is not a readable minicnn archive (truncated, corrupted or "
                             f"not written by minicnn): {type(error).__name__}: {error}") from error


def _read_npy(member, info):
    """One ``.npy`` member: the header is checked against the stored size before any data is read."""
    version = np.lib.format.read_magic(member)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise SavedFileError(f"{info.filename} has .npy format version {version}, not 1.0 or 2.0")
    shape, fortran_order, dtype = read_header(member)
    if dtype.hasobject:
        raise SavedFileError(f"{info.filename} holds Python objects; minicnn stores plain "
                             "numbers only and never unpickles")
    size = math.prod(shape) * dtype.itemsize
    data = member.read(size + 1)       # reaching the end makes zipfile check the CRC
    if len(data) != size:
        raise SavedFileError(f"{info.filename}: the header declares shape {shape} of {dtype} "
                             f"({size} bytes) but {len(data)} bytes follow")
    order = "F" if fortran_order else "C"
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy()


def read_model(path):
    """(config, weights, optimizer slots) of a file written by ``save_model``.

    config: the JSON description (architecture, "rng_state", "compile" when compiled);
    weights: {key: array} as ``load_weights`` takes them; slots: {(slot, index): array}.
    """
    arrays = read_npz(path)
    if CONFIG_KEY not in arrays:
        raise SavedFileError(f"{path} holds weights only (save_weights); rebuild the model in code "
                             "and call model.load_weights(path), or save with model.save(path)")
    try:
        config = json.loads(str(arrays.pop(CONFIG_KEY)))
        slots = {}
        for key in [k for k in arrays if k.startswith(OPTIMIZER_PREFIX + ".")]:
            _, slot, index = key.split(".")
            slots[(slot, int(index))] = arrays.pop(key)
    except ValueError as error:
        raise SavedFileError(f"{path}: the model description is damaged: {error}") from error
    if not isinstance(config, dict):
        raise SavedFileError(f"{path}: the model description is not a JSON object")
    return config, arrays, slots


def _by_position(path, arrays):
    """{(layer index, weight name): array}; layer names may differ between models (and hold dots)."""
    out = {}
    for key, value in arrays.items():
        index, _, rest = key.partition(".")
        weight = rest.rpartition(".")[2]
        if not index.isdigit() or not weight:
            raise SavedFileError(f"{path}: {key!r} is not a weight name like '000.conv2d.kernel'")
        out[(int(index), weight)] = value
    return out


def load_weights(model, path, arrays=None):
    """Copy saved arrays into the model, matched by position; checks count and shapes first."""
    arrays = read_npz(path) if arrays is None else arrays
    arrays = {k: v for k, v in arrays.items() if not k.startswith("__")}
    saved = _by_position(path, arrays)
    expected = len(weight_arrays(model))
    if len(saved) != expected:
        raise ValueError(f"{path} holds {len(saved)} weight arrays but the model has "
                         f"{expected}; was it saved from a different architecture?")
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


def set_optimizer_state(optimizer, model, path, spec, slots):
    """Give ``optimizer`` the saved scalars and slots, checking each slot against its parameter."""
    params = model._trainable()[0]
    for (slot, index), value in slots.items():
        if not 0 <= index < len(params) or value.shape != params[index].shape:
            wanted = params[index].shape if 0 <= index < len(params) else "no such parameter"
            raise SavedFileError(f"{path}: optimizer slot {slot!r} of parameter {index} has shape "
                                 f"{value.shape}; the parameter's is {wanted}")
    # on the model's device: a run resumed on the GPU (BackupAndRestore) updates GPU weights
    optimizer.set_state(spec["state"], {key: to_device(value.astype(model.dtype), model.device)
                                        for key, value in slots.items()})


def restore_optimizer(model, path, spec, slots):
    """Build the saved optimiser and give it its state (``set_optimizer_state``)."""
    optimizer = from_config(spec["class_name"], spec["config"])
    set_optimizer_state(optimizer, model, path, spec, slots)
    return optimizer
