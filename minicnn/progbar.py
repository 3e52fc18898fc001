"""A Keras-3-style progress line, so learners can compare runs with their notebooks:

    938/938 ━━━━━━━━━━━━━━━━━━━━ 4s 4ms/step - accuracy: 0.9588 - loss: 0.1382

On a terminal it redraws in place; in a log file (not a tty) it writes only the
final line of each epoch, as Keras does, so logs stay readable.
"""
import sys
import time

BAR_WIDTH = 20


def format_value(value):
    """Four decimals, or scientific notation for tiny values (Keras's rule)."""
    return f"{value:.4e}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def format_duration(seconds):
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"


def format_per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_logs(logs):
    # Keras 3 prints metrics in sorted order: accuracy, loss, val_accuracy, val_loss.
    return "".join(f" - {key}: {format_value(logs[key])}" for key in sorted(logs))


class Progbar:
    """Progress of one epoch of ``steps`` batches. verbose: 1 = bar, 2 = one line per epoch."""

    def __init__(self, steps, verbose=1, stream=None):
        self.steps, self.verbose = steps, verbose
        self.stream = stream or sys.stdout
        self.dynamic = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, step, logs):
        """Redraw after batch number ``step`` (1-based) on a terminal, at most 20 times a second."""
        now = time.perf_counter()
        if self.verbose != 1 or not self.dynamic or now - self._last_draw < 0.05:
            return
        self._last_draw = now
        per_step = (now - self.start) / step
        eta = per_step * (self.steps - step)
        self._write("\r" + self._bar(step) + f" {format_duration(eta)} "
                    f"{format_per_step(per_step)}" + format_logs(logs))

    def finish(self, logs):
        """The epoch's final line, with validation results if there are any."""
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.steps, 1)
        if self.verbose == 1:
            line = (self._bar(self.steps) + f" {format_duration(elapsed)} "
                    f"{format_per_step(per_step)}")
        else:
            line = f"{self.steps}/{self.steps} - {format_duration(elapsed)} - {format_per_step(per_step)}"
        self._write(("\r" if self.dynamic else "") + line + format_logs(logs) + "\n")

    def _bar(self, step):
        done = int(BAR_WIDTH * step / max(self.steps, 1))
        width = len(str(self.steps))
        return f"{step:>{width}}/{self.steps} " + "━" * done + " " * (BAR_WIDTH - done)

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()
