"""What every example shares: its flags, the data slice, epoch timing and metrics.json.

The examples import it with ``from _common import ...``. Python puts the folder of the
script it runs first on ``sys.path``, so that works from any working directory without
touching ``sys.path``. In Jupyter, start the notebook in ``examples/`` (or copy the few
lines you need).

metrics.json, one per example (the tests check these keys)::

    example, notebook, command, config, versions, threads,
    runs: {run name: {history, epochs, test_loss, test_accuracy,
                      seconds_per_epoch, notebook_accuracy, ...}}

``history`` is ``History.history`` (loss, accuracy, val_loss, val_accuracy per epoch);
``seconds_per_epoch`` is wall time per epoch, validation included, as Keras reports it.
"""
import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import matplotlib
import numba
import numpy as np

import minicnn
from minicnn import Callback

QUICK_TRAIN, QUICK_TEST = 2000, 500
EXAMPLES_DIR = Path(__file__).resolve().parent


def parse_args(name, doc, epochs, batch_size, quick_epochs=2, quick_train=QUICK_TRAIN, extra=None):
    """The flags every example takes, plus ``extra(parser)`` for its own.

    ``epochs=None`` means "each run's own notebook epochs" (the ablation scripts).
    ``--quick`` trains on ``quick_train`` samples, tests on 500 and runs ``quick_epochs`` epochs.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int,
                        help="epochs per run (default: the notebook's" + (f", {epochs})" if epochs else ")"))
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="batch size (default: the notebook's" + (f", {batch_size})" if batch_size else ")"))
    parser.add_argument("--limit", type=int, metavar="N", help="train on the first N training samples only")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and dropout")
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR / "out" / name,
                        help="folder for metrics.json and the PNG plots (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few seconds' smoke run: {quick_train} train / {QUICK_TEST} test samples, "
                             f"{quick_epochs} epoch(s) unless --epochs is given")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.test_limit = None
    if args.quick:
        args.limit = min(args.limit or quick_train, quick_train)
        args.test_limit = QUICK_TEST
    args.epochs = args.epochs or (quick_epochs if args.quick else epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def take(args, train, test):
    """The first ``--limit`` training samples and, with ``--quick``, the first 500 test samples."""
    (x_train, y_train), (x_test, y_test) = train, test
    return (x_train[:args.limit], y_train[:args.limit]), (x_test[:args.test_limit], y_test[:args.test_limit])


class EpochTimer(Callback):
    """Wall-clock seconds of each epoch (training plus validation)."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def versions():
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "minicnn": minicnn.__version__}


def threads():
    """The thread settings behind the timings (the machine's cores are shared)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "MINICNN_NUM_THREADS")
    return {"cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            **{name: os.environ[name] for name in names if name in os.environ}}


class Results:
    """Each run's figures, written to ``OUT/metrics.json`` after every run.

    Writing after every run means a long script that is stopped keeps what it finished.
    """

    def __init__(self, name, notebook, args):
        self.path = args.out / "metrics.json"
        self.args = args
        self.data = {"example": name, "notebook": notebook,
                     "command": shlex.join(["python", f"examples/{name}.py", *sys.argv[1:]]),
                     "config": {key: str(value) if isinstance(value, Path) else value
                                for key, value in vars(args).items()},
                     "versions": versions(), "threads": threads(), "runs": {}}

    def save(self):
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")

    def add(self, run, history, test_results, timer, notebook_accuracy=None):
        """Record one trained model: its History, ``model.evaluate(...)`` and its EpochTimer."""
        test_loss, test_accuracy = test_results
        self.data["runs"][run] = {
            "history": {key: [float(v) for v in values] for key, values in history.history.items()},
            "epochs": len(history.epoch), "test_loss": test_loss, "test_accuracy": test_accuracy,
            "seconds_per_epoch": [round(s, 3) for s in timer.seconds],
            "notebook_accuracy": notebook_accuracy}
        self.save()
        reference = f" (notebook: {notebook_accuracy:.2%})" if notebook_accuracy else ""
        print(f"== {run}: test accuracy {test_accuracy:.4f}{reference}, "
              f"{np.mean(timer.seconds):.1f} s/epoch over {len(timer.seconds)} epoch(s)")

    def fit(self, run, model, x, y, test, notebook_accuracy=None, callbacks=(), **fit_kwargs):
        """``model.fit`` with epochs/batch size from the flags, then evaluate on ``test``
        and record. For the ablations, where every run is trained the same way."""
        timer = EpochTimer()
        fit_kwargs.setdefault("epochs", self.args.epochs)
        fit_kwargs.setdefault("batch_size", self.args.batch_size)
        fit_kwargs.setdefault("verbose", 2)
        print(f"\n== {run}")
        history = model.fit(x, y, callbacks=[*callbacks, timer], **fit_kwargs)
        self.add(run, history, model.evaluate(*test, verbose=0), timer, notebook_accuracy)
        return history

    def histories(self):
        """{run name: history dict}, for one comparison chart."""
        return {run: figures["history"] for run, figures in self.data["runs"].items()}


def show():
    """``plt.show()`` only in an interactive session, so scripts and CI never block."""
    import matplotlib.pyplot as plt
    if matplotlib.is_interactive() or hasattr(sys, "ps1") or "ipykernel" in sys.modules:
        plt.show()
