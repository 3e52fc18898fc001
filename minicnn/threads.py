"""How many threads minicnn computes with, decided in one place.

Two kinds of parallel work run in a minicnn process, taking turns: Numba's loops (im2col,
pooling) on Numba's thread pool, and the large matrix products, which ``kernels/_gemm.py``
cuts into row blocks for as many Python threads, each calling single-threaded BLAS (why
not BLAS's own threads is measured there). Both follow one count, Numba's.

By default that count is every core this process may run on (``os.sched_getaffinity``),
as Keras and PyTorch do. ``MINICNN_NUM_THREADS=n`` or ``set_num_threads(n)`` chooses
another. While minicnn trains, evaluates or predicts (``compute_threads``), Numba is set
to that count and BLAS to one thread, and both are restored afterwards. Layers and
kernels called directly use Numba's pool as it is: by default the same count, and the
count of ``set_num_threads`` once it is called (``MINICNN_NUM_THREADS`` is read by those
three calls and ``trace`` only).

Two threads only pay when idle threads do not spin: ``kernels._threading`` makes
Numba's OpenMP threads wait passively (measured there), and ``ThreadChooser`` checks
during training that the cores really help.
"""
import contextlib
import os
import platform
import statistics
import time

from kernels._allocator import keep_freed_memory
from kernels._gemm import single_threaded_blas
from kernels._threading import available_cores, settle_wait_policy

try:
    import numba
except ImportError:   # the NumPy kernels need no thread pool of their own
    numba = None


_chosen = None   # set by set_num_threads; otherwise the environment decides


def set_num_threads(n):
    """Use ``n`` threads in minicnn's calls from now on (None: back to the default).

    Numba's pool follows at once, for this thread, so layers and kernels called directly
    use ``n`` too (``fit``, ``evaluate`` and ``predict`` set it on every call anyway)."""
    global _chosen
    _chosen = None if n is None else _positive_count(n, "set_num_threads")
    if numba is not None:
        settle_wait_policy()     # before Numba's pool starts, or its threads spin (42% slower)
        numba.set_num_threads(num_threads())


def _positive_count(value, where):
    """``value`` as an int >= 1 (an int, a NumPy integer or a string of digits), or an error."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{where} must be a whole number of threads >= 1, got {value!r}; "
                         f"this process may use {available_cores()} core(s)")
    return int(text)


def cpu_model():
    """The CPU's name as Linux reports it (/proc/cpuinfo), else ``platform.processor()``;
    benchmarks and the examples' metrics.json record it beside the thread counts."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def num_threads():
    """Threads for both pools: set_num_threads(n), else ``MINICNN_NUM_THREADS``, else
    every available core; at most the size of Numba's pool."""
    if _chosen is not None:
        wanted = _chosen
    elif os.environ.get("MINICNN_NUM_THREADS", "").strip():
        wanted = _positive_count(os.environ["MINICNN_NUM_THREADS"].strip(), "MINICNN_NUM_THREADS")
    else:
        wanted = available_cores()
    if numba is None:
        return wanted
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def compute_threads():
    """Inside this block: Numba on ``num_threads()`` threads, and the large matrix products
    split across as many (``kernels/_gemm.py``); BLAS itself on one thread; freed arrays
    kept for the next batch (``kernels/_allocator.py``)."""
    count = num_threads()
    settle_wait_policy()
    keep_freed_memory()
    with single_threaded_blas(rescan=True):
        if numba is None:
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(count)
        try:
            yield
        finally:
            numba.set_num_threads(before)


def user_chose_threads():
    """Whether the thread count was set on purpose (set_num_threads or MINICNN_NUM_THREADS)."""
    return _chosen is not None or bool(os.environ.get("MINICNN_NUM_THREADS", "").strip())


class LoadReading:
    """How busy other programs kept this process's cores: take one reading, then another
    later; ``others_since(earlier)`` is the average number of those cores other programs
    used in between (Linux's /proc/stat, less this process's own CPU time).

    ``busy`` and ``own`` are CPU seconds, ``wall`` a monotonic time; ``busy`` is None where
    /proc/stat cannot be read (not Linux), and then nothing can be said.
    """

    def __init__(self):
        self.busy, self.own, self.wall = _cores_busy_seconds(), time.process_time(), time.monotonic()

    def others_since(self, earlier):
        """Cores other programs kept busy between ``earlier`` and this reading (None: unknown)."""
        if self.busy is None or earlier.busy is None or self.wall <= earlier.wall:
            return None
        others = (self.busy - earlier.busy) - (self.own - earlier.own)
        return max(0.0, others) / (self.wall - earlier.wall)


def _cores_busy_seconds():
    """CPU seconds the cores this process may run on have worked since boot (all but idle
    and I/O wait: user, nice, system, irq, softirq and steal), or None off Linux."""
    try:
        cores = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        ticks = 0
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name in cores:
                    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
                    ticks += user + nice + system + irq + softirq + steal
        return ticks / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return None


class ThreadChooser:
    """At the first batch of ``fit`` and every ``PERIOD`` batches or more after (epochs do
    not matter), times a few batches on ``most`` threads and on one, then keeps the faster
    until the next trial.

    Why measure: a parallel loop waits for its slowest thread. On a quiet machine two
    threads made a Fashion-MNIST training step 1.4x faster than one; with two other busy
    processes on the same 2 cores, the same two threads made it 1.5x slower (94 against
    62 ms), and no setting chosen in advance is right in both cases. The trial costs
    ``1 + 2 * TRIALS`` of every ``PERIOD`` batches, and the load of a shared machine
    changes while an epoch runs. A count the user chose (``user_chose_threads``) is used
    as it is, with no trial.

    A trial that reaches the same verdict as the one before doubles the wait before the
    next (up to ``MAX_PERIOD``): on a machine whose load stays put, trials soon cost a
    fraction of a percent (with a busy program beside it, the Fashion convnet's epoch took
    4.7% longer with trials every 100 batches than on one thread alone). And a trial
    whose first timed batch on more threads took ``CLEAR_LOSS`` times the first on one
    ends there, for one thread: on a busy machine the slow batches are the trial's cost.
    For the same reason a trial's untimed first batch (Numba compiles or loads its loops
    in the first one of all) runs on the last verdict's count, so a busy machine's trial
    costs one slow batch, not two.

    Cheaper still is not to try when the answer is plain: a trial due while other programs
    have kept the cores busy since the last one (``LoadReading``: more than ``cores - 1.5``
    of them on average, on 2 cores more than half of the other one) is skipped for one
    thread, and the next look comes ``PERIOD`` batches later (a look reads /proc/stat; it
    costs no slow batch, so it need not grow rarer). With one busy program beside it,
    trials had made LeNet's and the Fashion convnet's 200-batch epochs 5-10% slower than
    one thread alone in three of four runs.
    """

    TRIALS = 3          # batches timed with each setting, after one untimed warm-up batch
    PERIOD = 100        # batches between trials, after a change of verdict
    MAX_PERIOD = 1600   # ... and at most, after the same verdict again and again
    MARGIN = 0.9        # more threads must be at least 10% faster to be kept: on a busy
                        # machine their times scatter, and one lucky batch must not decide
    CLEAR_LOSS = 1.5    # ... but one batch this much slower is enough to keep one thread
    SPARE_CORE = 1.5    # a trial needs others to leave more than this many cores free of
                        # all this process's cores (one for its main thread, half to spare)
    MIN_READING_S = 0.25    # load over a shorter time says too little (/proc/stat counts
                            # in ticks of 10 ms): the trial runs

    def __init__(self, most):
        self.options = (most, 1) if most > 1 and not user_chose_threads() else (most,)
        self.history = []        # the count each epoch settled on
        self.chosen = self._current = None
        self._period, self._last_verdict = self.PERIOD, None
        self._step = 0           # batches since the last trial began (across epochs: a
                                 # trial at each epoch's start doubled the cost of a short one)
        # the machine's load from here to the next trial (read only where there are trials)
        self._since = LoadReading() if len(self.options) > 1 else None

    @classmethod
    def carried_over(cls, previous, most):
        """The chooser for a new ``fit``: the model's ``previous`` one when it would choose
        between the same counts, keeping its trial schedule and verdict (with a fresh
        per-epoch history), else a new one. A loop of ``fit(..., epochs=1)`` calls then
        pays trials as rarely as one long fit; with a new chooser per call, each call began
        with a trial (two in every 200-batch call on a busy machine)."""
        fresh = cls(most)
        if previous is None or previous.options != fresh.options:
            return fresh
        previous.history = []
        previous._current = None      # fit has just reset Numba's pool: set the count again
        return previous

    def end_epoch(self):
        """Note the count the epoch settled on (its last batches ran with it)."""
        self.history.append(self.chosen or self._current)

    @contextlib.contextmanager
    def step(self):
        """One training batch on the count this point of the epoch calls for, timed."""
        phase = self._step
        if phase == 0:                       # a new trial
            self.chosen = self.options[0] if len(self.options) == 1 else None
            self._times = {n: [] for n in self.options}
            if self.chosen is None and self._cores_taken():
                self.chosen = self._last_verdict = 1       # no trial: one thread, and
                self._period = self.PERIOD                 # another look as soon as usual
        count = self.chosen or ((self._last_verdict or self.options[0]) if phase == 0 else
                                self.options[(phase - 1) % len(self.options)])
        self._use(count)
        start = time.perf_counter()
        yield
        if self.chosen is None and phase > 0:
            self._times[count].append(time.perf_counter() - start)
            most, one = (self._times[n] for n in self.options)
            if len(most) == len(one) == 1 and most[0] > self.CLEAR_LOSS * one[0]:
                self._verdict(1)
            elif min(len(most), len(one)) >= self.TRIALS:
                faster = statistics.median(most) < self.MARGIN * statistics.median(one)
                self._verdict(self.options[0] if faster else 1)
        self._step = (self._step + 1) % self._period

    def _verdict(self, count):
        """End the trial with ``count``; the same verdict as last time doubles the wait."""
        same = count == self._last_verdict
        self._period = min(2 * self._period, self.MAX_PERIOD) if same else self.PERIOD
        self.chosen = self._last_verdict = count
        self._since = LoadReading()

    def _cores_taken(self):
        """Whether other programs have kept too many of the cores busy since the last trial
        (or since this chooser began) for more threads to pay; a new reading starts."""
        now = LoadReading()
        others = now.others_since(self._since) if now.wall - self._since.wall >= self.MIN_READING_S else None
        self._since = now
        return others is not None and others > available_cores() - self.SPARE_CORE

    def _use(self, count):
        if count != self._current and numba is not None:
            numba.set_num_threads(count)       # the matrix products follow it (kernels/_gemm.py)
        self._current = count
