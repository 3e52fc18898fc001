"""What every example shares: its flags, the data slice, epoch timing and metrics.json.

The examples import it with ``from _common import ...``. Python puts the folder of the
script it runs first on ``sys.path``, so that works from any working directory without
touching ``sys.path``. In Jupyter, start the notebook in ``examples/`` (or copy the few
lines you need).

metrics.json, one per example (the tests check these keys)::

    example, notebook, command, config, versions, threads, git, cpu, started,
    runs: {run name: {key, status, history, epochs, epochs_asked, test_loss, test_accuracy,
                      seconds_per_epoch, notebook_accuracy, stopped_early, stop_reason,
                      started, ended, sessions, threads_used, ...}}

``history`` is ``History.history`` (loss, accuracy, val_loss, val_accuracy per epoch);
``epochs`` counts the epochs that ran, ``epochs_asked`` the ones asked for;
``seconds_per_epoch`` is wall time per epoch, validation included, as Keras reports it.
``status`` is "partial" while a run is under way (or was killed) and "done" after it;
``threads_used`` is what the training loop actually ran with (Numba's and BLAS's pools);
each of ``sessions`` (one per call that trained the run) records its start and end, the
epoch it resumed at, its command and the git revision it ran (several runs share one
metrics.json, and a resumed run may span revisions).

Every run is backed up (``BackupAndRestore``) under ``OUT/backup/``, after every epoch, so
running the same command again continues an interrupted run; a finished run's backup is
kept too, and the rerun restores it instead of training again (``--fresh`` starts over).
Backups can be large (AlexNet: 260 MB), so ``OUT/backup/`` ignores itself in git.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numba
import numpy as np
from threadpoolctl import threadpool_info

import minicnn
from minicnn import Callback, EarlyStopping
from minicnn.callbacks import BackupAndRestore

QUICK_TRAIN, QUICK_TEST = 2000, 500
EXAMPLES_DIR = Path(__file__).resolve().parent
# flags that do not change what a run computes, so they are left out of its backup's identity
NOT_IN_RUN_IDENTITY = ("epochs", "out", "runs", "fresh")


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
    parser.add_argument("--fresh", action="store_true",
                        help="discard the backups in OUT/backup/ and train from scratch (by default a "
                             "rerun continues an interrupted run and reuses a finished one)")
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


def write_json(path, data):
    """Write JSON via a temporary file and a rename: a killed run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def command_line():
    """The command that started this script, as one would type it from the repository root."""
    return shlex.join(["python", f"examples/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def versions():
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "minicnn": minicnn.__version__}


def threads():
    """The thread settings asked for in the environment (the machine's cores are shared)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "MINICNN_NUM_THREADS")
    return {"cpu_count": os.cpu_count(), **{name: os.environ[name] for name in names if name in os.environ}}


def threads_in_use():
    """The threads the compute pools really have now: call it inside training."""
    blas = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return {"numba": numba.get_num_threads(), "blas": max(blas) if blas else None}


def git_state():
    """{"revision", "dirty"} of the repository the examples live in (None outside git).
    "dirty" means changed code: the results/ folder the runs write into does not count."""
    def git(*command):
        return subprocess.run(["git", *command], cwd=EXAMPLES_DIR, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        return {"revision": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", ":/", ":!/results"))}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def named_for(title, epochs):
    """The run's name with the epoch count it says replaced by ``epochs`` when they differ:
    "convnet, 15 epochs" run for 2 is recorded as "convnet, 2 of 15 epochs"."""
    def count(match):
        named = int(match.group(1))
        if epochs == named:
            return match.group(0)
        return f"{epochs} of {named} epochs" if epochs < named else f"{epochs} epochs (notebook: {named})"
    return re.sub(r"\b(\d+) epochs\b", count, title)


def stop_reason(callbacks, epoch, nan_epoch):
    """Why training ended before the epochs asked: the non-finite loss or the callback that stopped it."""
    if nan_epoch is not None:
        return f"the loss became NaN or infinite in epoch {nan_epoch + 1}"
    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch:
            return (f"EarlyStopping: {callback.monitor} did not improve for {callback.patience} epochs "
                    f"after epoch {callback.best_epoch + 1} (its best)")
    names = ", ".join(type(c).__name__ for c in callbacks) or "a callback"
    return f"stop_training set after epoch {epoch + 1} (callbacks: {names})"


class RunRecorder(Callback):
    """Each epoch's wall-clock seconds (training plus validation), the threads training
    really used, when each session started and ended, and why training stopped early.

    Its state lives in ``folder/run.json`` beside the run's backup, so a resumed run
    keeps the timings of the epochs it does not redo. An epoch interrupted in the
    middle and resumed counts only the time after the restart.
    """

    def __init__(self, folder, others=()):
        super().__init__()
        self.path = Path(folder) / "run.json"
        self.others = list(others)

    def on_train_begin(self, logs=None):
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        progress = self.model.progress               # where a restored backup put fit
        self.seconds = saved.get("seconds", [])[:progress.epoch]
        resumed = {"epoch": progress.epoch, "step": progress.step} if progress.epoch or progress.step else None
        self.sessions = [*saved.get("sessions", []), {"started": now(), "resumed_at": resumed,
                                                       "command": command_line(), "git": git_state()}]
        self.stopped_early, self.stop_reason = saved.get("stopped_early"), saved.get("stop_reason")
        self.threads_used = threads_in_use()
        self._begun = self._ended = None

    def on_epoch_begin(self, epoch, logs=None):
        self._begun, self._start = epoch, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self._ended = epoch
        self._save()

    def on_train_end(self, logs=None):
        self.sessions[-1]["ended"] = now()
        ran, asked = len(self.model.history.epoch), self.params["epochs"]
        nan_epoch = self._begun if self._begun is not None and self._begun != self._ended else None
        if self._begun is not None or self.stopped_early is None:   # else: a finished run restored
            self.stopped_early = ran < asked
            self.stop_reason = stop_reason(self.others, ran - 1, nan_epoch) if self.stopped_early else None
        self._save()

    def _save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"seconds": self.seconds, "sessions": self.sessions,
                               "stopped_early": self.stopped_early, "stop_reason": self.stop_reason})


class Results:
    """Each run's figures, written to ``OUT/metrics.json`` after every epoch and every run.

    Writing that often means a long script that is stopped keeps what it finished, and
    the runs of an earlier call with the same settings (other ``--runs``) are kept.
    """

    def __init__(self, name, notebook, args):
        self.path = args.out / "metrics.json"
        self.args = args
        config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        self.identity = {k: v for k, v in config.items() if k not in NOT_IN_RUN_IDENTITY}
        self.data = {"example": name, "notebook": notebook,
                     "command": command_line(),
                     "config": config, "versions": versions(), "threads": threads(), "git": git_state(),
                     "cpu": minicnn.threads.cpu_model(), "started": now(), "runs": self._earlier_runs()}

    def _earlier_runs(self):
        """Runs already in OUT/metrics.json from a call with the same settings."""
        if not self.path.exists():
            return {}
        earlier = json.loads(self.path.read_text())
        same = {k: v for k, v in earlier.get("config", {}).items() if k not in NOT_IN_RUN_IDENTITY} == self.identity
        if not same:
            print(f"note: {self.path} was written with other settings; its runs are replaced")
        return earlier.get("runs", {}) if same else {}

    def save(self):
        write_json(self.path, self.data)

    def backup_folder(self, key):
        """OUT/backup/<run>-<settings hash>: another seed, --limit or --quick never resumes it."""
        digest = hashlib.sha1(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:8]
        root = self.args.out / "backup"
        root.mkdir(exist_ok=True)
        (root / ".gitignore").write_text("# backups can be hundreds of MB: never commit them by accident\n*\n")
        return root / f"{re.sub(r'[^A-Za-z0-9]+', '_', key).strip('_')}-{digest}"

    def record(self, name, key, history, recorder, asked, notebook_accuracy=None, note=None, test_results=None):
        """Write one run's entry: "partial" while it trains, "done" with ``model.evaluate(...)``."""
        test_loss, test_accuracy = test_results or (None, None)
        entry = {
            "key": key, "status": "done" if test_results else "partial",
            "history": {key: [float(v) for v in values] for key, values in history.history.items()},
            "epochs": len(history.epoch), "epochs_asked": asked,
            "test_loss": test_loss, "test_accuracy": test_accuracy,
            "seconds_per_epoch": [round(s, 3) for s in recorder.seconds],
            "notebook_accuracy": notebook_accuracy,
            "stopped_early": recorder.stopped_early, "stop_reason": recorder.stop_reason,
            "started": recorder.sessions[0]["started"], "ended": recorder.sessions[-1].get("ended"),
            "sessions": recorder.sessions, "threads_used": recorder.threads_used,
            "seed": self.args.seed, "note": note}
        self.data["runs"][name] = entry
        self.save()

    def fit(self, run, model, x, y, test, notebook_accuracy=None, callbacks=(), key=None, note=None, **fit_kwargs):
        """``model.fit`` with epochs/batch size from the flags, a backup and a RunRecorder,
        then evaluate on ``test`` and record under ``run`` (its epoch count made true).

        ``key`` names the run for the backup and for reproduce.py (default: ``run``);
        ``note`` is stored with it (e.g. that a data set stands in for the notebook's).
        """
        key = key or run
        fit_kwargs.setdefault("epochs", self.args.epochs)
        fit_kwargs.setdefault("batch_size", self.args.batch_size)
        fit_kwargs.setdefault("verbose", 2)
        asked = fit_kwargs["epochs"]
        name = named_for(run, asked)
        folder = self.backup_folder(key)
        if self.args.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        recorder = RunRecorder(folder, callbacks)
        if self.args.quick:         # a smoke run: its figure reproduces nothing
            against = f" {notebook_accuracy:.2%}" if notebook_accuracy else ""
            print(f"\n(quick run: {len(x)} training images, {asked} epoch(s); its accuracy is not "
                  f"comparable with the notebook's{against})" + (f"\n({note})" if note else ""))
            notebook_accuracy = None
        partial = PartialRecord(lambda history: self.record(name, key, history, recorder, asked, notebook_accuracy, note))
        print(f"\n== {name}")
        history = model.fit(x, y, callbacks=[BackupAndRestore(folder, delete_checkpoint=False), *callbacks,
                                             recorder, partial], **fit_kwargs)
        test_results = model.evaluate(*test, verbose=0)
        final_name = named_for(run, len(history.epoch))
        if final_name != name:
            del self.data["runs"][name]
        self.record(final_name, key, history, recorder, asked, notebook_accuracy, note, test_results)
        reference = f" (notebook: {notebook_accuracy:.2%})" if notebook_accuracy else ""
        seconds = np.mean(recorder.seconds) if recorder.seconds else float("nan")
        print(f"== {final_name}: test accuracy {test_results[1]:.4f}{reference}, "
              f"{seconds:.1f} s/epoch over {len(recorder.seconds)} epoch(s)")
        return history

    def histories(self, keys=None):
        """{run name: history dict} of the runs with these keys (default: all), for one chart."""
        return {run: figures["history"] for run, figures in self.data["runs"].items()
                if keys is None or figures.get("key", run) in keys}   # runs recorded before keys: by name


class PartialRecord(Callback):
    """Records the run as "partial" at the start of each epoch, when the History holds
    every epoch finished so far: metrics.json always says how far a killed run got."""

    def __init__(self, write):
        super().__init__()
        self.write = write

    def on_epoch_begin(self, epoch, logs=None):
        self.write(self.model.history)


def show():
    """``plt.show()`` only in an interactive session, so scripts and CI never block."""
    import matplotlib.pyplot as plt
    if matplotlib.is_interactive() or hasattr(sys, "ps1") or "ipykernel" in sys.modules:
        plt.show()
