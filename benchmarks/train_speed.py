"""Whole-model training speed: minicnn against PyTorch CPU, measured in one run.

    python benchmarks/train_speed.py                           # default: every model, quick sizes
    python benchmarks/train_speed.py --models lenet,mlp --epochs 3 --threads 2 --full
    python benchmarks/train_speed.py --device gpu --no-startup  # CuPy against PyTorch on CUDA
    MINICNN_DATA=../shared/data python benchmarks/train_speed.py --limit 6400

For each model the same network is built in minicnn and (when ``import torch`` works) in
PyTorch (benchmarks/_torch_models.py), with the same initial weights copied across, the
same batch order (one permutation per epoch, shared), float32, the same thread count,
Adam with Keras's defaults (lr 1e-3, epsilon 1e-7) and the same loss. Each framework
trains in its own child process (multiprocessing "spawn"), so its peak memory is its own
(VmHWM: the whole process, interpreter, libraries, data, model and training). The
children take turns, never computing at once: warm-up, then epoch 1 in each, epoch 2 in
the reverse order, and so on, so that a change in a shared machine's load hits all alike.
For the MLP a third child trains the same network by a hand-written NumPy loop
(benchmarks/_numpy_mlp.py): the least time any Python library can take for it.

Both children keep freed memory for reuse (glibc thresholds, kernels/_allocator.py: minicnn
sets them in fit, PyTorch gets the same unless ``--torch-allocator default``) and run with OMP_WAIT_POLICY=PASSIVE unless
``--omp-wait-policy default``:
PyTorch and Numba share GNU OpenMP, whose spinning idle threads make either 4-50x slower
on a busy 2-core machine (see ``_apply_omp_wait_policy``).

Per framework: a warm-up of a few batches (``warmup_s``: Numba compiling or loading its
cache for minicnn, one-time allocations for both), then the weights and optimiser are
reset and ``--epochs`` epochs are timed one by one; best and median epoch seconds,
ms/step, and test accuracy after the timed epochs (compared, not asserted). The machine
may be shared, so every comparison is a ratio from the same run. Startup
(``python -c "import minicnn"`` and the first training step in a fresh process with a
warm Numba cache) is timed separately.

With ``--device gpu`` both train on the GPU: minicnn through CuPy (``model.to("gpu")``),
the twin through CUDA; each batch is copied from the host as ``fit`` does, and every
epoch ends with a device synchronise, so its time is the GPU's work, not its queue.

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

from _machine import gpu_info, machine_info  # noqa: E402
from _speed_report import compare, markdown_table, write_plots  # noqa: E402
from kernels._allocator import keep_freed_memory  # noqa: E402
from kernels._threading import available_cores  # noqa: E402

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
    "model2": {"dataset": "fashion_mnist", "input": (28, 28, 1), "batch_size": 128,
               "samples": 60000, "quick": 12800, "loss": "categorical_crossentropy",
               "about": "Fashion 'model 2': three 3x3 convs, leaky relu, dropout"},
    "mlp": {"dataset": "fashion_mnist", "input": (28, 28), "batch_size": 64, "samples": 60000,
            "quick": 60000, "loss": "sparse_categorical_crossentropy", "numpy_loop": True,
            "about": "Flatten, Dense 128 sigmoid, Dense 10, Fashion-MNIST"},
    "alexnet": {"dataset": "random", "input": (32, 32, 3), "batch_size": 64, "samples": 50000,
                "quick": 12800, "test_samples": 640, "loss": "categorical_crossentropy",
                "about": "AlexNet-like CIFAR-10 net on random data of CIFAR-10's shape"},
}
DEFAULT_MODELS = "lenet,fashion_cnn,model2,mlp,alexnet"
MEMORY_METHOD = ("peak_rss_mb: VmHWM from /proc/self/status of the child process that trained "
                 "this (framework, model) pair (spawned, so a fresh interpreter; ru_maxrss is not "
                 "used because Linux carries the forked parent's RSS into it). It includes the "
                 "interpreter, the framework's libraries, the float32 data set (the same for both) "
                 "and training. rss_before_training_mb: VmRSS after imports, data and model build; "
                 "training_growth_mb: the difference")


# -- the models, in minicnn --------------------------------------------------------
def build_minicnn(name, seed=0, dtype="float32"):
    """The minicnn model ``name`` (a key of MODELS), from the shared zoo, not compiled."""
    from minicnn import zoo
    builders = {"lenet": zoo.lenet5, "fashion_cnn": zoo.keras_convnet, "mlp": zoo.mlp,
                "model2": zoo.fashion_model2, "alexnet": zoo.alexnet_like}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return builders[name](seed=seed, dtype=dtype)


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
def _proc_status_mb(field):
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb():
    """Resident memory of this process now, in MiB."""
    rss = _proc_status_mb("VmRSS")
    if rss is None:
        try:
            import psutil
            rss = psutil.Process().memory_info().rss / 2**20
        except ImportError:
            pass
    return rss


def peak_rss_mb():
    """Peak resident memory of this process's own address space, in MiB.

    VmHWM, not ``ru_maxrss``: a spawned child is forked from the benchmark process before
    it execs a fresh interpreter, and Linux carries the forked copy's RSS (the parent's
    data, torch, minicnn) into the child's ``ru_maxrss``. VmHWM starts again at exec.
    """
    peak = _proc_status_mb("VmHWM")
    if peak is None:   # not Linux: ru_maxrss (bytes on macOS, KiB elsewhere)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return peak


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


def _numba_layer():
    try:
        import numba
        return numba.threading_layer()
    except Exception:  # noqa: BLE001 - no numba, or no parallel kernel ran yet
        return None


def _threads_in_use(minicnn):
    """The thread counts fit really runs with: Numba's and BLAS's inside compute_threads."""
    from threadpoolctl import threadpool_info
    with minicnn.threads.compute_threads():
        import numba
        blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return {"numba": numba.get_num_threads(), "blas": blas,
                "numba_threading_layer": _numba_layer()}


def sgemm_peak_gflops(size=None, repeats=5, device="cpu"):
    """Best float32 GFLOP/s of a square matrix product: BLAS at the benchmark's threads, or
    cuBLAS through CuPy with ``device="gpu"``. ``size`` defaults to 2048, 8192 on a GPU
    (a larger product, to fill it)."""
    from kernels import backend
    size = size or (8192 if device == "gpu" else 2048)
    if device == "gpu":     # made on the GPU: a host copy would swell the peak memory reported
        a = backend.cupy.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    else:
        a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    best = float("inf")
    for _ in range(repeats + 1):            # the first product on a GPU also loads cuBLAS
        start = time.perf_counter()
        product = a @ a
        if device == "gpu":
            backend.cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
        del product
    return 2 * size ** 3 / best / 1e9


def _apply_omp_wait_policy(job, library):
    """Set OMP_WAIT_POLICY before ``library`` (and its OpenMP runtime) loads; returns what holds.

    Both PyTorch and Numba (threading layer "omp") run on GNU OpenMP, whose idle threads
    spin by default. On a 2-core machine shared with other programs, a parallel region then
    waits for a descheduled spinning thread: measured here, a LeNet step took 89 ms in
    minicnn and 35-450 ms in PyTorch with 2 threads, against 18-20 ms with PASSIVE. Both
    children get the same setting (``--omp-wait-policy``).
    """
    policy = job.get("omp_wait_policy", "default")
    if policy != "default" and not _openmp_started(library):   # read once, when OpenMP starts
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    return os.environ.get("OMP_WAIT_POLICY", "default (active spin)")


def _openmp_started(library):
    """Whether ``library``'s OpenMP pool may have read the environment already. Numba is
    imported early here (``_machine`` imports minicnn), but starts its pool only on its
    first parallel loop or ``set_num_threads``."""
    if library not in sys.modules:
        return False
    if library == "numba":
        from numba.np.ufunc import parallel
        return getattr(parallel, "_is_initialized", True)
    return True


class MinicnnTrainer:
    """One minicnn model on one job: ``warmup()``, then ``epoch()`` n times, then ``finish()``."""

    def __init__(self, job):
        self.omp_wait_policy = _apply_omp_wait_policy(job, "numba")
        import minicnn
        self.minicnn, self.job = minicnn, job
        self.data, self.initial = _load_job_data(job)
        if job["threads"] != "auto":          # auto: minicnn's own default policy
            minicnn.threads.set_num_threads(job["threads"])
        self.thread_choices = []
        self.model = compile_minicnn(build_minicnn(job["model"], job["seed"]), job["loss"])
        self.model.set_weights(self.initial)
        self.model.to(job["device"])
        self.source = BatchSource(self.data["x_train"], self.data["y_train"], job["batch_size"],
                                  self.data["orders"])
        self.rss_before = current_rss_mb()
        self.losses, self.accuracies = [], []

    def warmup(self):
        """A few batches (JIT compile or cache load), then back to the initial weights and a fresh Adam."""
        bs, warm = self.job["batch_size"], self.job["warmup_steps"] * self.job["batch_size"]
        start = time.perf_counter()
        self.model.fit(self.data["x_train"][:warm], self.data["y_train"][:warm], batch_size=bs,
                       epochs=1, verbose=0, shuffle=False)
        seconds = self._synchronized(start)
        self.model.set_weights(self.initial)
        compile_minicnn(self.model, self.job["loss"])
        return seconds

    def epoch(self):
        """One timed epoch through ``fit`` (the batches come from the shared orders)."""
        start = time.perf_counter()
        history = self.model.fit(self.source, epochs=1, verbose=0)
        seconds = self._synchronized(start)
        self.thread_choices += self.model.thread_chooser.history
        self.losses.append(history.history["loss"][-1])
        self.accuracies.append(history.history["accuracy"][-1])
        return seconds

    def _synchronized(self, start):
        """Seconds since ``start`` once the GPU (if in use) has finished its queue."""
        if self.job["device"] == "gpu":
            from kernels import backend
            backend.cupy.cuda.Device().synchronize()
        return time.perf_counter() - start

    def _sgemm_peak(self):
        """BLAS's own best on this run's thread count (minicnn's products use single-threaded
        BLAS on as many threads of its own, so this is the ceiling they aim at); cuBLAS's
        on a GPU run."""
        if self.job["device"] == "gpu":
            return sgemm_peak_gflops(device="gpu")
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=self.minicnn.threads.num_threads(), user_api="blas"):
            return sgemm_peak_gflops()

    def finish(self):
        test_loss, test_accuracy = self.model.evaluate(self.data["x_test"], self.data["y_test"],
                                                       batch_size=256, verbose=0)
        result = {"train_loss": self.losses, "train_accuracy": self.accuracies,
                  "test_loss": test_loss, "test_accuracy": test_accuracy,
                  "threads": _threads_in_use(self.minicnn)}
        if self.job.get("trace"):   # per-layer forward/backward ms of one batch, after timing
            rows = self.model.trace(self.data["x_train"][:self.job["batch_size"]])   # fit's threads
            result["trace"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                               for row in rows]
        # after the trace: BLAS's own threads, woken for the peak, kept spinning and slowed
        # every layer of a trace run after it (Fashion conv2 3.2 -> 5.5 ms forward, 2 threads)
        result["sgemm_peak_gflops"] = self._sgemm_peak()
        result["threads"]["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "(OpenMP default)")
        result["threads"]["chosen_per_epoch"] = self.thread_choices
        return result


class TorchTrainer:
    """The same for the PyTorch twin (benchmarks/_torch_models.py)."""

    def __init__(self, job):
        self.omp_wait_policy = _apply_omp_wait_policy(job, "torch")
        if job.get("torch_allocator", "minicnn") == "minicnn":
            keep_freed_memory()     # the process setting minicnn's fit makes, for PyTorch too
        import torch
        import _torch_models
        self.torch, self.job = torch, job
        self.data, initial = _load_job_data(job)
        if job["threads"] != "auto":          # auto: PyTorch's own default (every core)
            torch.set_num_threads(job["threads"])
        torch.manual_seed(job["seed"])
        self.twin = _torch_models.build_twin(job["spec"], channels_last=job["torch_layout"] == "channels_last")
        _torch_models.load_keras_weights(self.twin, initial)
        self.device = torch.device("cuda" if job["device"] == "gpu" else "cpu")
        self.twin.to(self.device)
        self.initial_state = {k: v.clone() for k, v in self.twin.state_dict().items()}
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.source = BatchSource(self.data["x_train"], self.data["y_train"], job["batch_size"],
                                  self.data["orders"])
        self.optimizer = self._new_optimizer()
        self.rss_before = current_rss_mb()
        self.losses, self.accuracies = [], []

    def _new_optimizer(self):
        return self.torch.optim.Adam(self.twin.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def _labels(self, y):
        """Class numbers: CrossEntropyLoss on one-hot rows is the same loss, so take argmax."""
        return self.torch.from_numpy(y.argmax(1) if y.ndim == 2 else y).to(self.device)

    def _inputs(self, x):
        return self.torch.from_numpy(x).to(self.device)

    def _synchronized(self, start):
        """Seconds since ``start`` once CUDA (if in use) has finished its queue."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        return time.perf_counter() - start

    def _run(self, batches, optimizer):
        """One pass; per step, the loss and accuracy a Keras-style log line needs, as minicnn's fit."""
        self.twin.train()
        for xb, yb in batches:
            labels = self._labels(yb)
            optimizer.zero_grad(set_to_none=True)
            logits = self.twin(self._inputs(xb))
            loss = self.loss_fn(logits, labels)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss_value, accuracy

    def warmup(self):
        bs, warm = self.job["batch_size"], self.job["warmup_steps"] * self.job["batch_size"]
        start = time.perf_counter()
        self._run(BatchSource(self.data["x_train"], self.data["y_train"], bs, [np.arange(warm)]),
                  self._new_optimizer())
        seconds = self._synchronized(start)
        self.twin.load_state_dict(self.initial_state)
        self.optimizer = self._new_optimizer()
        return seconds

    def epoch(self):
        start = time.perf_counter()
        loss_value, accuracy = self._run(self.source, self.optimizer)
        seconds = self._synchronized(start)
        self.losses.append(loss_value)
        self.accuracies.append(accuracy)
        return seconds

    def finish(self):
        torch, x_test, y_test = self.torch, self.data["x_test"], self.data["y_test"]
        self.twin.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(x_test), 256):
                xb = self._inputs(x_test[start:start + 256])
                labels = self._labels(y_test[start:start + 256])
                logits = self.twin(xb)
                total_loss += self.loss_fn(logits, labels).item() * len(xb)
                correct += int((logits.argmax(1) == labels).sum())
        return {"last_batch_loss": self.losses, "last_batch_accuracy": self.accuracies,
                "test_loss": total_loss / len(x_test), "test_accuracy": correct / len(x_test),
                "threads": {"torch": torch.get_num_threads(), "OMP_WAIT_POLICY": self.omp_wait_policy},
                "layout": self.job["torch_layout"]}


class NumpyTrainer:
    """The MLP as a hand-written NumPy loop (benchmarks/_numpy_mlp.py): what any Python
    library must spend on it. BLAS and Numba on the run's thread count."""

    def __init__(self, job):
        self.omp_wait_policy = _apply_omp_wait_policy(job, "numba")
        keep_freed_memory()                 # as minicnn's fit does
        from threadpoolctl import threadpool_limits
        import numba
        import _numpy_mlp
        self.job, self.make = job, _numpy_mlp.NumpyMlp
        self.data, self.initial = _load_job_data(job)
        threads = available_cores() if job["threads"] == "auto" else job["threads"]   # minicnn's default
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self.blas_limit = threadpool_limits(limits=threads, user_api="blas")   # kept for the process
        self.threads = {"numba": numba.get_num_threads(), "blas": threads}
        self.source = BatchSource(self.data["x_train"], self.data["y_train"], job["batch_size"],
                                  self.data["orders"])
        self.model = self.make(self.initial)
        self.rss_before = current_rss_mb()
        self.losses, self.accuracies = [], []

    def warmup(self):
        start = time.perf_counter()
        warm = self.job["warmup_steps"] * self.job["batch_size"]
        self.model.train_step(self.data["x_train"][:warm], self.data["y_train"][:warm])
        self.model = self.make(self.initial)
        return time.perf_counter() - start

    def epoch(self):
        start = time.perf_counter()
        for xb, yb in self.source:
            loss_value, accuracy = self.model.train_step(xb, yb)
        seconds = time.perf_counter() - start
        self.losses.append(loss_value)
        self.accuracies.append(accuracy)
        return seconds

    def finish(self):
        probabilities = self.model.probabilities(self.data["x_test"])[1]
        return {"last_batch_loss": self.losses, "last_batch_accuracy": self.accuracies,
                "test_accuracy": float(np.mean(probabilities.argmax(1) == self.data["y_test"])),
                "threads": {**self.threads, "OMP_WAIT_POLICY": self.omp_wait_policy}}


TRAINERS = {"minicnn": MinicnnTrainer, "torch": TorchTrainer, "numpy": NumpyTrainer}


def _summary(trainer, warmup_s, seconds, finished):
    result = {"warmup_s": warmup_s, **epoch_stats(seconds, len(trainer.source)), **finished,
              "rss_before_training_mb": trainer.rss_before, "peak_rss_mb": peak_rss_mb()}
    if result["rss_before_training_mb"] is not None:
        result["training_growth_mb"] = result["peak_rss_mb"] - result["rss_before_training_mb"]
    return result


def run_job(job):
    """Train one (framework, model) pair start to finish in this process; returns its figures."""
    trainer = TRAINERS[job["framework"]](job)
    warmup_s = trainer.warmup()
    seconds = [trainer.epoch() for _ in range(job["epochs"])]
    return _summary(trainer, warmup_s, seconds, trainer.finish())


def _worker(job, conn):
    """Child process: set up, then obey "warmup" / "epoch" / "finish" from the parent."""
    try:
        trainer = TRAINERS[job["framework"]](job)
        conn.send("ready")
        warmup_s, seconds = None, []
        while True:
            command = conn.recv()
            if command == "warmup":
                warmup_s = trainer.warmup()
                conn.send(warmup_s)
            elif command == "epoch":
                seconds.append(trainer.epoch())
                conn.send(seconds[-1])
            else:
                conn.send(_summary(trainer, warmup_s, seconds, trainer.finish()))
                return
    except Exception as exc:  # noqa: BLE001 - the parent reports it and goes on
        import traceback
        conn.send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def run_interleaved(jobs):
    """Run the jobs (one per framework) in their own spawned processes, epoch by epoch in turn.

    Each child sets up, then all warm up, then epoch e runs in each child one after the
    other (order reversed every other epoch), so a change in the shared machine's load hits
    both frameworks alike; a child never computes while another does. Returns
    {framework: figures or {"error": ...}}.
    """
    ctx = multiprocessing.get_context("spawn")
    children, results = {}, {}

    def ask(framework, command):
        conn = children[framework][1]
        conn.send(command)
        reply = conn.recv()
        if isinstance(reply, dict) and "error" in reply:
            results[framework] = reply
            children.pop(framework)[0].join()
        return reply

    for job in jobs:              # one at a time, so set-up (imports, data) never overlaps
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(job, child_end), daemon=True)
        process.start()
        try:
            reply = parent_end.recv()
        except EOFError:
            reply = {"error": f"child exited with code {process.join() or process.exitcode}"}
        if reply != "ready":
            results[job["framework"]] = reply
            process.join()
            continue
        children[job["framework"]] = (process, parent_end)
    for framework in list(children):
        ask(framework, "warmup")
    order = list(children)
    for epoch in range(jobs[0]["epochs"]):
        for framework in (order if epoch % 2 == 0 else order[::-1]):
            if framework in children:
                ask(framework, "epoch")
    for framework in list(children):
        reply = ask(framework, "finish")
        if framework in children:
            results[framework] = reply
            process, _ = children.pop(framework)
            process.join()
    return results


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
    env = dict(os.environ)
    if threads != "auto":
        env["MINICNN_NUM_THREADS"] = str(threads)
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


# -- main ------------------------------------------------------------------------------
def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _thread_count(text):
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a number of threads >= 1 or 'auto', not {text!r}")
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model (default: 3)")
    parser.add_argument("--threads", type=_thread_count, default=2,
                        help="threads for both frameworks, or 'auto': each library's own default "
                             "(minicnn: every core, checked by fit's ThreadChooser) (default: 2)")
    parser.add_argument("--limit", type=int, metavar="N", help="training samples per epoch (default: "
                        + ", ".join(f"{k} {v['quick']}" for k, v in MODELS.items()) + ")")
    parser.add_argument("--full", action="store_true", help="the notebooks' full epochs (60k/54k/60k samples)")
    parser.add_argument("--test-limit", type=int, default=10000, help="test samples for the accuracy check")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed batches before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-layout", choices=("channels_last", "nchw"), default="channels_last",
                        help="PyTorch memory format (default channels_last: the NHWC input needs no copy)")
    parser.add_argument("--omp-wait-policy", choices=("passive", "default"), default="passive",
                        help="OMP_WAIT_POLICY in both children (PyTorch's and Numba's OpenMP pools). "
                             "Default passive: on a shared 2-core machine spinning OpenMP threads made "
                             "both 4-50x slower with 2 threads; 'default' leaves OpenMP's own")
    parser.add_argument("--torch-allocator", choices=("minicnn", "default"), default="minicnn",
                        help="glibc's thresholds for freed memory in PyTorch's child: 'minicnn' (default) "
                             "the ones minicnn's fit sets (kernels/_allocator.py), so both reuse freed "
                             "arrays; 'default' leaves glibc's own, as a plain PyTorch script has them "
                             "(PyTorch's Fashion convnet epoch: 3.04 s against 2.11 s, 2 threads)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where both train: 'gpu' is minicnn on CuPy and PyTorch on CUDA (default: cpu)")
    parser.add_argument("--no-torch", action="store_true", help="time minicnn only")
    parser.add_argument("--no-startup", action="store_true", help="skip the startup timings")
    parser.add_argument("--no-trace", action="store_true",
                        help="skip the per-layer profile (model.trace of one batch after timing)")
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
        cap = args.limit
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
           "torch_layout": args.torch_layout, "omp_wait_policy": args.omp_wait_policy,
           "torch_allocator": args.torch_allocator, "trace": not args.no_trace, "device": args.device}
    info = {"about": cfg["about"], "data": source, "samples_per_epoch": n, "test_samples": len(x_test),
            "batch_size": cfg["batch_size"], "steps_per_epoch": -(-n // cfg["batch_size"]),
            "loss": cfg["loss"], "params": model.count_params()}
    return job, info


def git_revision():
    """The checkout's commit (with "+dirty" when tracked files differ), for the record."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
        return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain", "-uno") else "")
    except OSError:
        return None


def main(argv=None):
    args = parse_args(argv)
    args.use_torch = not args.no_torch and torch_available()
    command = shlex.join(["python", "benchmarks/train_speed.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "git": git_revision(), "machine": machine_info(),
              "settings": {"models": args.models, "epochs": args.epochs, "threads": args.threads,
                           "limit": args.limit, "full": args.full, "warmup_steps": args.warmup_steps,
                           "seed": args.seed, "torch": args.use_torch, "torch_layout": args.torch_layout,
                           "omp_wait_policy": args.omp_wait_policy, "torch_allocator": args.torch_allocator,
                           "device": args.device, "optimizer": "adam lr 1e-3 beta 0.9/0.999 eps 1e-7 (both)", "dtype": "float32",
                           "MINICNN_DATA": os.environ.get("MINICNN_DATA"),
                           "memory_method": MEMORY_METHOD,
                           "timing": "wall time per epoch (perf_counter), training steps only; "
                                     "warm-up batches excluded and reported as warmup_s"},
              "models": {}}
    if args.device == "gpu":
        report["machine"]["gpu"] = gpu_info()
        if report["machine"]["gpu"] is None:
            sys.exit("--device gpu needs CuPy and a CUDA device; this machine has none")
    if not args.no_startup:
        print("startup timings ...", flush=True)
        report["startup"] = time_startup(args.threads)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        for name in args.models:
            job, info = prepare_model(name, args, Path(tmp))
            frameworks = ("minicnn", "torch") if args.use_torch else ("minicnn",)
            if MODELS[name].get("numpy_loop") and args.device == "cpu":
                frameworks += ("numpy",)      # the hand-written floor (benchmarks/_numpy_mlp.py)
            print(f"{name}: {' and '.join(frameworks)}, {info['samples_per_epoch']} samples x "
                  f"{args.epochs} epochs, {info['data']} ...", flush=True)
            result = {**info, **run_interleaved([{**job, "framework": f} for f in frameworks])}
            for framework in frameworks:
                r = result[framework]
                print(f"   {framework:8s}" + (r["error"] if "error" in r else
                               f"best {r['best_epoch_s']:.2f} s, median {r['median_epoch_s']:.2f} s per "
                               f"epoch, {r['ms_per_step_best']:.1f} ms/step, test acc "
                               f"{100 * r['test_accuracy']:.1f}%, peak {r['peak_rss_mb']:.0f} MB"), flush=True)
            report["models"][name] = compare(result)
    table = markdown_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(table + "\n")
    for path in write_plots(report, args.out.parent / (args.out.stem + "_plots")):
        print(f"wrote {path}")
    print()
    print(table)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
