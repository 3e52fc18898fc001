"""The ``model.summary()`` table, laid out like Keras 3's, and a text ``plot_model``."""
import os
from pathlib import Path


def format_bytes(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024


def summary_table(model):
    """Rows of (name (type), output shape, parameter count) plus the totals, as text."""
    rows = [(f"{layer.name} ({type(layer).__name__})",
             "(None, " + ", ".join(map(str, layer.output_shape)) + ")",
             f"{layer.count_params():,}") for layer in model.layers]
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [*rows, header]) + 2 for i in range(3)]
    widths = [max(w, minimum) for w, minimum in zip(widths, (33, 24, 15))]

    def line(left, fill, mid, right):
        return left + mid.join(fill * w for w in widths) + right

    def row(cells, sep):
        name, shape, count = cells
        return (sep + f" {name:<{widths[0] - 1}}" + sep + f" {shape:<{widths[1] - 1}}"
                + sep + f"{count:>{widths[2] - 1}} " + sep)

    # As in Keras 3: the total counts every weight, BatchNormalization's moving statistics too.
    frozen = sum(layer.count_state() for layer in model.layers)
    trainable = sum(layer.count_params() for layer in model.layers) - frozen
    itemsize = model.dtype.itemsize
    lines = [f'Model: "{model.name}"', line("┏", "━", "┳", "┓"), row(header, "┃"),
             line("┡", "━", "╇", "┩"), *(row(r, "│") for r in rows), line("└", "─", "┴", "┘"),
             f" Total params: {trainable + frozen:,} ({format_bytes((trainable + frozen) * itemsize)})",
             f" Trainable params: {trainable:,} ({format_bytes(trainable * itemsize)})",
             f" Non-trainable params: {frozen:,} ({format_bytes(frozen * itemsize)})",
             *derivative_notes(model)]
    return "\n".join(lines)


def derivative_notes(model):
    """One line per layer whose activation was given as a Python function: how its
    derivative is computed (Keras's summary has no such line; minicnn needs the derivative)."""
    notes = []
    for layer in model.layers:
        activation = getattr(layer, "activation", None)
        method = activation.derivative_method() if activation is not None else None
        if method is not None:
            notes.append(f"   {layer.name}: {method}")
    return [" Activations given as Python functions:", *notes] if notes else []


def plot_model(model, to_file=None, show_shapes=True, show_layer_names=True, print_fn=print):
    """A text diagram of the model, in the place of ``keras.utils.plot_model``'s image.

    One box per layer, top to bottom, with its name, type and output shape (batch axis
    as None); shapes and names are always shown. With ``to_file`` the text is also
    written next to it with a ``.txt`` suffix (``model.png`` -> ``model.txt``).
    """
    if not model.built:
        raise ValueError("plot_model needs a built model: give the first layer input_shape=(...)")
    def shape(s):
        return "(None, " + ", ".join(map(str, s)) + ")"
    boxes = [("input", "InputLayer", shape(model.input_shape)),
             *((layer.name, type(layer).__name__, shape(layer.output_shape)) for layer in model.layers)]
    width = max(len(f"{name} ({kind})  {out}") for name, kind, out in boxes) + 2
    lines = []
    for index, (name, kind, out) in enumerate(boxes):
        if index:
            lines += [" " * (width // 2) + "│", " " * (width // 2) + "▼"]
        label = f"{name} ({kind})"
        lines += ["┌" + "─" * width + "┐",
                  "│ " + label + " " * (width - len(label) - len(out) - 2) + out + " │",
                  "└" + "─" * width + "┘"]
    text = "\n".join(lines)
    if to_file is not None:
        path = Path(to_file).with_suffix(".txt")
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)     # never a half-written diagram
        text += f"\n(written to {path})"
    if print_fn is not None:
        print_fn(text)
