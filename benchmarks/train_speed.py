"""Whole-model training speed: minicnn against PyTorch CPU, measured in one run.

    python benchmarks/train_speed.py                           # default: every model, quick sizes
    python benchmarks/train_speed.py --models lenet,mlp --epochs 3 --threads 2 --full
    MINICNN_DATA=../shared/data python benchmarks/train_speed.py --limit 6400

For each model the same network is built in minicnn and (when ``import torch`` works) in
PyTorch (benchmarks/_torch_models.py), with the same initial weights copied across, the
same batch order (one permutation per epoch, shared), float32, the same thread count,
Adam with Keras's defaults (lr 1e-3, epsilon 1e-7) and the same loss. Each
(framework, model) pair trains in its own child process (multiprocessing "spawn"), one
after the other, so each has the machine to itself and its peak memory is its own:
``ru_maxrss`` of that child (the whole process: interpreter, libraries, data, model,
training), plus its RSS just before training.

Per pair: a warm-up of a few batches (``warmup_s``: Numba compiling or loading its cache
for minicnn, one-time allocations for both), then the weights and optimiser are reset and
``--epochs`` epochs are timed one by one; best and median epoch seconds, ms/step, and test
accuracy after the timed epochs. The machine may be shared, so every comparison is a
ratio from the same run. Startup (``python -c "import minicnn"`` and the first training
step in a fresh process with a warm Numba cache) is timed separately.

Writes ``--out`` (JSON: machine, settings, startup, per-model results) and a markdown
table of minicnn/PyTorch ratios next to it (same name, ``.md``), and prints the table.
"""
import argparse
import json
import multiprocessing
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):    # _machine/_torch_models, and minicnn from this checkout
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _machine import machine_info  # noqa: E402

#: What each model trains on, as the notebooks did. ``samples``: the notebook's training
#: set per epoch; ``quick``: the default cap, so the default run fits in ~10 minutes on
#: 2 cores (``--full`` lifts it, ``--limit`` sets it).
MODELS = {
    "lenet": {"dataset": "mnist", "input": (28, 28, 1), "batch_size": 64, "samples": 60000,
              "quick": 12800, "loss": "categorical_crossentropy",
              "about": "LeNet-5 (notebook), MNIST"},
    "fashion_cnn": {"dataset": "fashion_mnist", "input": (28, 28, 1), "batch_size": 128,
                    "samples": 54000, "quick": 12800, "loss": "categorical_crossentropy",
                    "about": "Keras convnet, Fashion-MNIST (first 54k: validation_split .1)"},
    "mlp": {"dataset": "fashion_mnist", "input": (28, 28), "batch_size": 64, "samples": 60000,
            "quick": 60000, "loss": "sparse_categorical_crossentropy",
            "about": "Flatten, Dense 128 sigmoid, Dense 10, Fashion-MNIST"},
    "alexnet": {"dataset": "random", "input": (32, 32, 3), "batch_size": 64, "samples": 20 * 64,
                "quick": 20 * 64, "test_samples": 640, "loss": "categorical_crossentropy",
                "about": "AlexNet-like CIFAR-10 net, 20 steps per 'epoch' on random data"},
}
DEFAULT_MODELS = "lenet,fashion_cnn,mlp,alexnet"
MEMORY_METHOD = ("peak_rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss of the child process "
                 "that trained this (framework, model) pair alone (spawned: nothing inherited), "
                 "so it includes the interpreter, the framework's libraries, the float32 data "
                 "set (the same for both) and training; rss_before_training_mb: VmRSS after "
                 "imports, data and model build, before the warm-up; training_growth_mb: the "
                 "difference")


# -- the models, in minicnn --------------------------------------------------------
def build_minicnn(name, seed=0, dtype="float32"):
    """The minicnn model ``name`` (a key of MODELS), built, not compiled."""
    from minicnn import Sequential
    from minicnn.layers import (AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
                                Flatten, MaxPooling2D)
    shape = MODELS[name]["input"]
    if name == "lenet":
        layers = [Conv2D(6, (5, 5), activation="tanh", input_shape=shape),
                  AveragePooling2D((2, 2)),
                  Conv2D(16, (5, 5), activation="tanh"),
                  AveragePooling2D((2, 2)),
                  Conv2D(120, (5, 5), activation="tanh", padding="same"),
                  Flatten(),
                  Dense(84, activation="tanh"),
                  Dense(10, activation="softmax")]
    elif name == "fashion_cnn":
        layers = [Conv2D(32, (3, 3), activation="relu", input_shape=shape),
                  MaxPooling2D((2, 2)),
                  Conv2D(64, (3, 3), activation="relu"),
                  MaxPooling2D((2, 2)),
                  Flatten(),
                  Dropout(0.5),
                  Dense(10, activation="softmax")]
    elif name == "mlp":
        layers = [Flatten(input_shape=shape),
                  Dense(128, activation="sigmoid"),
                  Dense(10, activation="softmax")]
    elif name == "alexnet":
        def conv(filters, size, **kw):
            return [Conv2D(filters, size, padding="same", activation="relu", **kw), BatchNormalization()]
        pool = lambda: MaxPooling2D((3, 3), strides=(2, 2), padding="same")   # noqa: E731
        layers = [*conv(96, (11, 11), strides=(4, 4), input_shape=shape), pool(),
                  *conv(256, (5, 5)), pool(),
                  *conv(384, (3, 3)), *conv(384, (3, 3)), *conv(256, (3, 3)), pool(),
                  Flatten(),
                  Dense(4096, activation="relu"), Dropout(0.5),
                  Dense(4096, activation="relu"), Dropout(0.5),
                  Dense(10, activation="softmax")]
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return Sequential(layers, name=name, seed=seed, dtype=dtype)


def compile_minicnn(model, loss):
    from minicnn.optimizers import Adam
    model.compile(optimizer=Adam(learning_rate=1e-3, epsilon=1e-7), loss=loss, metrics=["accuracy"])
    return model


# -- data ----------------------------------------------------------------------------
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def have_idx(dataset):
    """True when $MINICNN_DATA/<dataset>/ holds the four IDX files (gzipped or not).

    Checked here so that a missing data set means random data, never a download.
    """
    root = os.environ.get("MINICNN_DATA")
    folder = Path(root) / dataset.replace("_", "-") if root else None
    return bool(folder) and all((folder / f).exists() or (folder / f"{f}.gz").exists()
                                for f in IDX_FILES)


def load_arrays(name, train_samples, test_samples, seed=0):
    """(x_train, y_train, x_test, y_test, source) for model ``name``.

    x float32 in [0, 1) with the model's input shape; y one-hot float32 for
    categorical_crossentropy, integer class numbers otherwise.
    """
    cfg = MODELS[name]
    if cfg["dataset"] != "random" and have_idx(cfg["dataset"]):
        from minicnn import datasets   # noqa: F401 - the loaders live in submodules
        import importlib
        loader = importlib.import_module(f"minicnn.datasets.{cfg['dataset']}")
        (x_train, y_train), (x_test, y_test) = loader.load_data(os.environ["MINICNN_DATA"])
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
        scale = lambda x: (x.reshape(len(x), *cfg["input"]).astype(np.float32) / 255)  # noqa: E731
        x_train, x_test = scale(x_train), scale(x_test)
        source = f"{cfg['dataset']} (MINICNN_DATA)"
    else:
        rng = np.random.default_rng(seed + 1)
        x_train = rng.random((train_samples, *cfg["input"]), dtype=np.float32)
        x_test = rng.random((test_samples, *cfg["input"]), dtype=np.float32)
        y_train, y_test = rng.integers(0, 10, train_samples), rng.integers(0, 10, test_samples)
        source = "random" + ("" if cfg["dataset"] == "random" else f" (no {cfg['dataset']} in MINICNN_DATA)")
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    if cfg["loss"] == "categorical_crossentropy":
        y_train, y_test = (np.eye(10, dtype=np.float32)[y] for y in (y_train, y_test))
    return x_train, y_train, x_test, y_test, source


class BatchSource:
    """Epoch after epoch, the (x, y) batches in the order of ``orders[epoch]``.

    Both frameworks read their batches from one of these with the same orders, so they
    see the same batches in the same order. Only indices are permuted; each batch is
    gathered with ``x[index]``, as minicnn's own ``fit`` does. ``len()`` is the number
    of batches per epoch, so minicnn's ``fit`` takes it as a generator source.
    """

    def __init__(self, x, y, batch_size, orders):
        self.x, self.y, self.batch_size, self.orders = x, y, batch_size, orders
        self.epoch = 0

    def __len__(self):
        return -(-len(self.orders[0]) // self.batch_size)

    def __iter__(self):
        order = self.orders[self.epoch % len(self.orders)]
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x[index], self.y[index]


# -- one (framework, model) pair, in a child process ----------------------------------
def current_rss_mb():
    """Resident memory of this process now (VmRSS), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def epoch_stats(seconds, steps):
    return {"epoch_s": seconds, "best_epoch_s": min(seconds), "median_epoch_s": statistics.median(seconds),
            "ms_per_step_best": 1000 * min(seconds) / steps,
            "ms_per_step_median": 1000 * statistics.median(seconds) / steps}


def _load_job_data(job):
    arrays = np.load(job["data"])
    data = {key: arrays[key] for key in arrays.files}   # read fully: both frameworks hold it in RAM
    weights = np.load(job["weights"])
    initial = [weights[f"w{i}"] for i in range(len(weights.files))]
    return data, initial


def _minicnn_threads(minicnn):
    """Numba threads minicnn's fit uses (the helper's name changed once: accept both)."""
    threads = minicnn.threads
    return threads.num_threads() if hasattr(threads, "num_threads") else threads.get_num_threads()


def train_minicnn(job, data, initial):
    """Warm up, reset, time ``job['epochs']`` epochs of the minicnn model; returns figures."""
    import minicnn
    from minicnn import Callback
    minicnn.threads.set_num_threads(job["threads"])
    model = compile_minicnn(build_minicnn(job["model"], job["seed"]), job["loss"])
    model.set_weights(initial)
    rss_before = current_rss_mb()
    bs, warm = job["batch_size"], job["warmup_steps"] * job["batch_size"]

    start = time.perf_counter()                       # first batches: JIT compile or cache load
    model.fit(data["x_train"][:warm], data["y_train"][:warm], batch_size=bs, epochs=1,
              verbose=0, shuffle=False)
    warmup_s = time.perf_counter() - start
    model.set_weights(initial)                        # start the timed epochs from the same
    compile_minicnn(model, job["loss"])               # weights, with a fresh Adam, as the twin

    class EpochTimer(Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    timer = EpochTimer()
    source = BatchSource(data["x_train"], data["y_train"], bs, data["orders"])
    history = model.fit(source, epochs=job["epochs"], verbose=0, callbacks=[timer])
    test_loss, test_accuracy = model.evaluate(data["x_test"], data["y_test"], batch_size=256, verbose=0)
    result = {"warmup_s": warmup_s, **epoch_stats(timer.seconds, len(source)),
              "train_loss": history.history["loss"], "train_accuracy": history.history["accuracy"],
              "test_loss": test_loss, "test_accuracy": test_accuracy,
              "threads": {"numba": _minicnn_threads(minicnn), "blas_in_fit": 1},
              "rss_before_training_mb": rss_before}
    if job.get("trace"):       # per-layer forward/backward times of one batch, after timing
        result["trace"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                           for row in model.trace(data["x_train"][:bs], print_fn=None)]
    return result


def train_torch(job, data, initial):
    """The same as ``train_minicnn`` for the PyTorch twin."""
    import torch
    import _torch_models
    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    twin = _torch_models.build_twin(job["spec"], channels_last=job["torch_layout"] == "channels_last")
    _torch_models.load_keras_weights(twin, initial)
    initial_state = {k: v.clone() for k, v in twin.state_dict().items()}
    loss_fn = torch.nn.CrossEntropyLoss()
    as_labels = lambda y: torch.from_numpy(y.argmax(1) if y.ndim == 2 else y)   # noqa: E731
    rss_before = current_rss_mb()

    def run_epoch(batches, optimizer):
        """One pass; per step, the loss and accuracy a Keras-style log line needs."""
        twin.train()
        for xb, yb in batches:
            labels = as_labels(yb)
            optimizer.zero_grad(set_to_none=True)
            logits = twin(torch.from_numpy(xb))
            loss = loss_fn(logits, labels)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss_value, accuracy

    new_optimizer = lambda: torch.optim.Adam(twin.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)  # noqa: E731
    bs, warm = job["batch_size"], job["warmup_steps"] * job["batch_size"]
    warm_orders = [np.arange(warm)]
    start = time.perf_counter()
    run_epoch(BatchSource(data["x_train"], data["y_train"], bs, warm_orders), new_optimizer())
    warmup_s = time.perf_counter() - start
    twin.load_state_dict(initial_state)
    optimizer = new_optimizer()
    source = BatchSource(data["x_train"], data["y_train"], bs, data["orders"])
    seconds, losses, accuracies = [], [], []
    for _ in range(job["epochs"]):
        start = time.perf_counter()
        loss_value, accuracy = run_epoch(source, optimizer)
        seconds.append(time.perf_counter() - start)
        losses.append(loss_value)
        accuracies.append(accuracy)
    twin.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(data["x_test"]), 256):
            xb = torch.from_numpy(data["x_test"][start:start + 256])
            labels = as_labels(data["y_test"][start:start + 256])
            logits = twin(xb)
            total_loss += loss_fn(logits, labels).item() * len(xb)
            correct += int((logits.argmax(1) == labels).sum())
    n_test = len(data["x_test"])
    return {"warmup_s": warmup_s, **epoch_stats(seconds, len(source)),
            "last_batch_loss": losses, "last_batch_accuracy": accuracies,
            "test_loss": total_loss / n_test, "test_accuracy": correct / n_test,
            "threads": {"torch": torch.get_num_threads()}, "layout": job["torch_layout"],
            "rss_before_training_mb": rss_before}


def run_job(job):
    """Train one (framework, model) pair; the entry point of each child process."""
    data, initial = _load_job_data(job)
    train = train_minicnn if job["framework"] == "minicnn" else train_torch
    result = train(job, data, initial)
    result["peak_rss_mb"] = peak_rss_mb()
    if result.get("rss_before_training_mb") is not None:
        result["training_growth_mb"] = result["peak_rss_mb"] - result["rss_before_training_mb"]
    return result


def run_in_child(job):
    """``run_job(job)`` in a fresh spawned process (its own memory peak); errors come back as text."""
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(run_job, job).result()
        except Exception as exc:  # noqa: BLE001 - report and go on with the next pair
            return {"error": f"{type(exc).__name__}: {exc}"}


# -- startup --------------------------------------------------------------------------
FIRST_STEP = """
import json, time
start = time.perf_counter()
import numpy as np
import minicnn
from minicnn.layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
imported = time.perf_counter()
# every kernel the benchmarked models use: conv valid/same, max and average pooling
model = minicnn.Sequential([Conv2D(4, 3, activation="relu", input_shape=(28, 28, 1)),
    MaxPooling2D(2), Conv2D(8, 5, activation="tanh", padding="same"), AveragePooling2D(2),
    Flatten(), Dropout(0.5), Dense(10, activation="softmax")], seed=0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
model.fit(x, np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
model.predict(x[:8])
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "first_fit_s": done - imported, "total_s": done - start}))
"""


def _child_env(threads):
    env = dict(os.environ, MINICNN_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def time_startup(threads, repeats=5):
    """Wall seconds of ``python -c "import minicnn"`` (and of a bare interpreter), and
    of import + first training step in a fresh process, twice: the first run may compile
    (cold Numba cache), the second loads the cache (the issue-8 target: < 3 s)."""
    env = _child_env(threads)

    def wall(code):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    bare = [wall("pass") for _ in range(repeats)]
    imports = [wall("import minicnn") for _ in range(repeats)]
    first_steps = []
    for _ in range(2):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FIRST_STEP], check=True, env=env, cwd=ROOT,
                             capture_output=True, text=True).stdout
        first_steps.append({**json.loads(out.strip().splitlines()[-1]),
                            "process_wall_s": time.perf_counter() - start})
    return {"python_bare_s": {"min": min(bare), "median": statistics.median(bare)},
            "import_minicnn_s": {"min": min(imports), "median": statistics.median(imports)},
            "first_step_first_run": first_steps[0], "first_step_warm_cache": first_steps[1],
            "first_step_what": "fresh process: import minicnn, build a small conv/maxpool/avgpool/"
                               "dense net, fit 2 batches of 32 and predict (Numba threads = --threads)",
            "target_s": 3.0}


# -- the report --------------------------------------------------------------------------
def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def _fmt(value, spec=".2f", missing="–"):
    return missing if value is None else format(value, spec)


def markdown_table(report):
    """Ratio table (minicnn / PyTorch) and the absolute figures behind it."""
    s = report["settings"]
    lines = [f"Training speed, minicnn vs PyTorch CPU: {s['epochs']} timed epochs, {s['threads']} "
             f"thread(s), float32, adam; best / median epoch (ratios < 1: minicnn faster).", "",
             "| model | data | samples/epoch, batch | minicnn epoch s best / med | torch epoch s best / med "
             "| epoch ratio best / med | ms/step minicnn / torch | test acc minicnn / torch "
             "| peak RSS MB minicnn / torch | memory ratio | warm-up s minicnn / torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["models"].items():
        m, t = r.get("minicnn", {}), r.get("torch") or {}
        if "error" in m:
            lines.append(f"| {name} | {r['data']} | | minicnn failed: {m['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['data']} | {r['samples_per_epoch']}, {r['batch_size']} "
            f"| {_fmt(m.get('best_epoch_s'))} / {_fmt(m.get('median_epoch_s'))} "
            f"| {_fmt(t.get('best_epoch_s'))} / {_fmt(t.get('median_epoch_s'))} "
            f"| **{_fmt(r['ratios'].get('epoch_best'))}** / {_fmt(r['ratios'].get('epoch_median'))} "
            f"| {_fmt(m.get('ms_per_step_best'), '.1f')} / {_fmt(t.get('ms_per_step_best'), '.1f')} "
            f"| {_fmt(100 * m['test_accuracy'] if 'test_accuracy' in m else None, '.1f')} / "
            f"{_fmt(100 * t['test_accuracy'] if 'test_accuracy' in t else None, '.1f')} "
            f"| {_fmt(m.get('peak_rss_mb'), '.0f')} / {_fmt(t.get('peak_rss_mb'), '.0f')} "
            f"| **{_fmt(r['ratios'].get('peak_memory'))}** (growth {_fmt(r['ratios'].get('training_growth'))}) "
            f"| {_fmt(m.get('warmup_s'))} / {_fmt(t.get('warmup_s'))} |")
        if "error" in t:
            lines.append(f"| | torch failed: {t['error']} | | | | | | | | | |")
    st = report.get("startup")
    if st:
        warm = st["first_step_warm_cache"]
        lines += ["", f"Startup: `python -c \"import minicnn\"` {st['import_minicnn_s']['min']:.2f} s "
                      f"(bare interpreter {st['python_bare_s']['min']:.2f} s); fresh process import + "
                      f"first fit step with a warm Numba cache {warm['total_s']:.2f} s "
                      f"(import {warm['import_s']:.2f} + first fit {warm['first_fit_s']:.2f}; target "
                      f"< {st['target_s']:.0f} s); first run of this session "
                      f"{st['first_step_first_run']['total_s']:.2f} s."]
    lines += ["", "Peak RSS: whole child process (interpreter, libraries, float32 data set, training); "
                  "growth: peak minus RSS before training. Accuracy: test set after the timed epochs "
                  "(random data: chance level).",
              f"Command: `{report['command']}`"]
    return "\n".join(lines)


def compare(result):
    """Ratios minicnn / PyTorch and an accuracy check (reported, never asserted)."""
    m, t = result.get("minicnn", {}), result.get("torch") or {}
    ratios = {"epoch_best": _ratio(m.get("best_epoch_s"), t.get("best_epoch_s")),
              "epoch_median": _ratio(m.get("median_epoch_s"), t.get("median_epoch_s")),
              "peak_memory": _ratio(m.get("peak_rss_mb"), t.get("peak_rss_mb")),
              "training_growth": _ratio(m.get("training_growth_mb"), t.get("training_growth_mb"))}
    result["ratios"] = ratios
    if "test_accuracy" in m and "test_accuracy" in t:
        gap = 100 * (m["test_accuracy"] - t["test_accuracy"])
        result["accuracy_gap_points"] = gap
        result["accuracy_comparable"] = abs(gap) <= 3.0
    return result


# -- main ------------------------------------------------------------------------------
def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default: 2)")
    parser.add_argument("--limit", type=int, metavar="N", help="training samples per epoch (default: "
                        + ", ".join(f"{k} {v['quick']}" for k, v in MODELS.items()) + ")")
    parser.add_argument("--full", action="store_true", help="the notebooks' full epochs (60k/54k/60k samples)")
    parser.add_argument("--test-limit", type=int, default=10000, help="test samples for the accuracy check")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed batches before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-layout", choices=("channels_last", "nchw"), default="channels_last",
                        help="PyTorch memory format (default channels_last: the NHWC input needs no copy)")
    parser.add_argument("--no-torch", action="store_true", help="time minicnn only")
    parser.add_argument("--no-startup", action="store_true", help="skip the startup timings")
    parser.add_argument("--trace", action="store_true", help="store model.trace per-layer times in the JSON")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_speed.json")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    return args


def samples_per_epoch(name, args):
    cfg = MODELS[name]
    cap = cfg["samples"] if args.full else cfg["quick"]
    if args.limit:
        cap = args.limit if name != "alexnet" else min(args.limit, cfg["samples"])
    return max(min(cap, cfg["samples"]), cfg["batch_size"])


def prepare_model(name, args, workdir):
    """Data, initial weights, batch orders and the twin's spec for ``name``, saved to ``workdir``."""
    cfg = MODELS[name]
    n = samples_per_epoch(name, args)
    x_train, y_train, x_test, y_test, source = load_arrays(
        name, n, min(args.test_limit, cfg.get("test_samples", args.test_limit)), args.seed)
    n = len(x_train)
    rng = np.random.default_rng(args.seed)
    orders = np.stack([rng.permutation(n) for _ in range(args.epochs)])
    data_path, weights_path = workdir / f"{name}_data.npz", workdir / f"{name}_weights.npz"
    np.savez(data_path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, orders=orders)
    model = build_minicnn(name, args.seed)
    np.savez(weights_path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    spec = None
    if args.use_torch:
        import _torch_models
        spec = _torch_models.twin_spec(model)
    job = {"model": name, "data": str(data_path), "weights": str(weights_path), "spec": spec,
           "epochs": args.epochs, "batch_size": cfg["batch_size"], "loss": cfg["loss"],
           "threads": args.threads, "warmup_steps": args.warmup_steps, "seed": args.seed,
           "torch_layout": args.torch_layout, "trace": args.trace}
    info = {"about": cfg["about"], "data": source, "samples_per_epoch": n, "test_samples": len(x_test),
            "batch_size": cfg["batch_size"], "steps_per_epoch": -(-n // cfg["batch_size"]),
            "loss": cfg["loss"], "params": model.count_params()}
    return job, info


def main(argv=None):
    args = parse_args(argv)
    args.use_torch = not args.no_torch and torch_available()
    command = shlex.join(["python", "benchmarks/train_speed.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "machine": machine_info(),
              "settings": {"models": args.models, "epochs": args.epochs, "threads": args.threads,
                           "limit": args.limit, "full": args.full, "warmup_steps": args.warmup_steps,
                           "seed": args.seed, "torch": args.use_torch, "torch_layout": args.torch_layout,
                           "optimizer": "adam lr 1e-3 beta 0.9/0.999 eps 1e-7 (both)", "dtype": "float32",
                           "MINICNN_DATA": os.environ.get("MINICNN_DATA"),
                           "memory_method": MEMORY_METHOD,
                           "timing": "wall time per epoch (perf_counter), training steps only; "
                                     "warm-up batches excluded and reported as warmup_s"},
              "models": {}}
    if not args.no_startup:
        print("startup timings ...", flush=True)
        report["startup"] = time_startup(args.threads)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        for name in args.models:
            job, info = prepare_model(name, args, Path(tmp))
            result = dict(info)
            for framework in ("minicnn", "torch") if args.use_torch else ("minicnn",):
                print(f"{name}: {framework} ({info['samples_per_epoch']} samples x {args.epochs} epochs, "
                      f"{info['data']}) ...", flush=True)
                result[framework] = run_in_child({**job, "framework": framework})
                r = result[framework]
                print("   " + (r["error"] if "error" in r else
                               f"best {r['best_epoch_s']:.2f} s, median {r['median_epoch_s']:.2f} s per "
                               f"epoch, {r['ms_per_step_best']:.1f} ms/step, test acc "
                               f"{100 * r['test_accuracy']:.1f}%, peak {r['peak_rss_mb']:.0f} MB"), flush=True)
            report["models"][name] = compare(result)
    table = markdown_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(table + "\n")
    print()
    print(table)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
