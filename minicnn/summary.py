"""The ``model.summary()`` table, laid out like Keras 3's."""


def format_bytes(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024


def summary_table(model):
    """Rows of (name (type), output shape, parameter count) plus the totals, as text."""
    rows = [(f"{layer.name} ({type(layer).__name__})",
             "(None, " + ", ".join(map(str, layer.output_shape)) + ")",
             f"{layer.count_params() + layer.count_state():,}") for layer in model.layers]
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [*rows, header]) + 2 for i in range(3)]
    widths = [max(w, minimum) for w, minimum in zip(widths, (33, 24, 15))]

    def line(left, fill, mid, right):
        return left + mid.join(fill * w for w in widths) + right

    def row(cells, sep):
        name, shape, count = cells
        return (sep + f" {name:<{widths[0] - 1}}" + sep + f" {shape:<{widths[1] - 1}}"
                + sep + f"{count:>{widths[2] - 1}} " + sep)

    trainable = sum(layer.count_params() for layer in model.layers)
    frozen = sum(layer.count_state() for layer in model.layers)
    itemsize = model.dtype.itemsize
    lines = [f'Model: "{model.name}"', line("┏", "━", "┳", "┓"), row(header, "┃"),
             line("┡", "━", "╇", "┩"), *(row(r, "│") for r in rows), line("└", "─", "┴", "┘"),
             f" Total params: {trainable + frozen:,} ({format_bytes((trainable + frozen) * itemsize)})",
             f" Trainable params: {trainable:,} ({format_bytes(trainable * itemsize)})",
             f" Non-trainable params: {frozen:,} ({format_bytes(frozen * itemsize)})"]
    return "\n".join(lines)
