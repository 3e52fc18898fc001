"""Thread policy: defaults from CPU affinity, overrides, clear errors, an untouched environment."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn import threads

ROOT = Path(__file__).resolve().parents[1]


def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MINICNN_NUM_THREADS")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_default_is_every_core_this_process_may_use(monkeypatch):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    numba = pytest.importorskip("numba")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads.num_threads() == min(cores, numba.config.NUMBA_NUM_THREADS)


def test_environment_and_call_override(monkeypatch):
    monkeypatch.setenv("MINICNN_NUM_THREADS", "1")
    assert threads.num_threads() == 1
    threads.set_num_threads(1)
    monkeypatch.setenv("MINICNN_NUM_THREADS", "not used while set_num_threads holds")
    assert threads.num_threads() == 1
    monkeypatch.delenv("MINICNN_NUM_THREADS")
    threads.set_num_threads(None)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_bad_thread_counts_are_refused_clearly(monkeypatch, value):
    threads.set_num_threads(None)
    if value == "":
        monkeypatch.setenv("MINICNN_NUM_THREADS", value)   # empty means "not set"
        assert threads.num_threads() >= 1
        return
    monkeypatch.setenv("MINICNN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=r"MINICNN_NUM_THREADS must be a whole number of threads >= 1"):
        threads.num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads must be a whole number"):
        threads.set_num_threads(value)


def test_set_num_threads_makes_openmp_wait_passively_first():
    """set_num_threads starts Numba's pool: the wait policy must be settled before, or the
    idle OpenMP threads spin (AlexNet's step at 2 threads: 198 against 135 ms)."""
    pytest.importorskip("numba")
    code = ("import os, minicnn; minicnn.threads.set_num_threads(1); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _python(code) == "PASSIVE"


def test_set_num_threads_applies_to_layers_called_directly(monkeypatch):
    numba = pytest.importorskip("numba")
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(1)
    try:
        assert numba.get_num_threads() == 1         # what kernels and _gemm's splits read
    finally:
        threads.set_num_threads(None)
    assert numba.get_num_threads() == threads.num_threads()


def test_numpy_integers_are_thread_counts():
    np = pytest.importorskip("numpy")
    threads.set_num_threads(np.int64(1))
    assert threads.num_threads() == 1
    threads.set_num_threads(None)


def test_importing_leaves_the_environment_alone():
    code = ("import os; before = dict(os.environ); import minicnn, kernels, kernels.numba_kernels; "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    assert _python(code) == "[]"


def test_first_kernel_call_makes_openmp_wait_passively_unless_the_user_chose():
    pytest.importorskip("numba")
    code = ("import os, numpy as np, kernels; "
            "kernels.maxpool2d_forward(np.ones((1, 4, 4, 1)), (2, 2), (2, 2), 'valid'); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _python(code, MINICNN_KERNELS="numba") == "PASSIVE"
    assert _python(code, MINICNN_KERNELS="numba", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


class FakeClockChooser(threads.ThreadChooser):
    """A ThreadChooser whose batches take ``seconds[count]``, by a clock it advances itself."""

    def __init__(self, most, seconds):
        super().__init__(most)
        self.seconds, self.now, self.used, self.trial_starts = seconds, 0.0, [], []
        self.others_busy = False        # what the look at the machine's load finds

    def _use(self, count):
        self._current = count

    def _cores_taken(self):
        return self.others_busy

    def run(self, batches):
        for _ in range(batches):
            if self._step == 0:
                self.trial_starts.append(len(self.used))
            with self.step():
                self.used.append(self._current)
                self.now += self.seconds[self._current]


@pytest.fixture
def fake_clock(monkeypatch):
    def install(chooser):
        monkeypatch.setattr(threads.time, "perf_counter", lambda: chooser.now)
        return chooser
    return install


@pytest.mark.parametrize("seconds, best", [({2: 0.05, 1: 0.08}, 2), ({2: 0.30, 1: 0.06}, 1),
                                           ({2: 0.057, 1: 0.06}, 1)])   # 5% faster is not enough
def test_chooser_keeps_the_faster_count_after_its_trial(monkeypatch, fake_clock, seconds, best):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    chooser = fake_clock(FakeClockChooser(2, seconds))
    chooser.run(50)
    chooser.end_epoch()
    trial = 1 + 2 * chooser.TRIALS
    assert sorted(set(chooser.used[:trial])) == [1, 2]           # both were tried
    assert set(chooser.used[trial:]) == {best} and chooser.history == [best]


@pytest.mark.parametrize("seconds, trial_batches", [({2: 0.30, 1: 0.06}, 3),     # a clear loss: ends early
                                                    ({2: 0.07, 1: 0.06}, 7)])    # a close call: all of it
def test_a_clear_loss_ends_the_trial_early(monkeypatch, fake_clock, seconds, trial_batches):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    chooser = fake_clock(FakeClockChooser(2, seconds))
    chooser.run(50)
    assert chooser.used[:3] == [2, 2, 1]                 # warm-up, then one timed batch each
    assert 2 not in chooser.used[trial_batches:] and chooser.used[trial_batches - 2] == 2


def test_chooser_tries_again_when_the_load_changes(monkeypatch, fake_clock):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    chooser = fake_clock(FakeClockChooser(2, {2: 0.05, 1: 0.08}))
    chooser.run(chooser.PERIOD)
    chooser.seconds = {2: 0.30, 1: 0.08}       # another program starts using a core
    chooser.run(chooser.PERIOD)
    assert chooser.used[chooser.PERIOD - 1] == 2 and chooser.used[-1] == 1


def test_trials_grow_rarer_while_their_verdict_stays_and_frequent_when_it_changes(monkeypatch, fake_clock):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    chooser = fake_clock(FakeClockChooser(2, {2: 0.30, 1: 0.06}))     # a busy machine: one wins
    chooser.run(3100)
    assert chooser.trial_starts == [0, 100, 300, 700, 1500]      # waits of 100, 200, 400, 800
    first, later = chooser.trial_starts[0], chooser.trial_starts[1]
    assert chooser.used[first:first + 3] == [2, 2, 1]               # warm-up on all cores at first,
    assert chooser.used[later:later + 3] == [1, 2, 1]               # then on the last verdict's count
    trial = 1 + 2 * chooser.TRIALS
    between_trials = [count for i, count in enumerate(chooser.used)
                      if not any(start <= i < start + trial for start in chooser.trial_starts)]
    assert set(between_trials) == {1}
    chooser.seconds = {2: 0.03, 1: 0.06}                  # the other program ends
    chooser.run(1600)
    # the trial due at 3100 finds two threads faster: a new verdict, so every 100 again
    assert chooser.trial_starts[5:] == [3100, 3200, 3400, 3800, 4600] and chooser.used[-1] == 2


def test_a_count_the_user_chose_is_never_second_guessed(monkeypatch, fake_clock):
    monkeypatch.setenv("MINICNN_NUM_THREADS", "2")
    chooser = fake_clock(FakeClockChooser(2, {2: 0.30, 1: 0.06}))
    chooser.run(20)
    assert set(chooser.used) == {2}


def test_a_new_fit_carries_the_schedule_and_verdict_over(monkeypatch, fake_clock):
    """fit(..., epochs=1) in a loop: the next call goes on with the last one's chooser
    (no trial at its start), with a fresh history and the thread count set again."""
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    first = fake_clock(FakeClockChooser(2, {2: 0.30, 1: 0.06}))
    first.run(150)
    first.end_epoch()
    again = threads.ThreadChooser.carried_over(first, 2)
    assert again is first and again.history == [] and again._current is None
    again.run(200)
    assert again.trial_starts == [0, 100, 300]           # the schedule went on: 100, then 200
    assert set(again.used[150:300]) == {1}                 # no trial where the new fit began
    assert threads.ThreadChooser.carried_over(first, 3) is not first       # other counts: new
    monkeypatch.setenv("MINICNN_NUM_THREADS", "2")                          # the user chose: new
    assert threads.ThreadChooser.carried_over(first, 2).options == (2,)


def test_fit_keeps_the_models_chooser_between_calls(monkeypatch):
    import numpy as np
    from minicnn import zoo
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    model = zoo.mlp(input_shape=(4,), hidden=(3,), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.ones((8, 4), np.float32), np.zeros(8, int)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    chooser = model.thread_chooser
    assert len(chooser.history) == 2
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert model.thread_chooser is chooser and len(chooser.history) == 1


def test_no_trial_while_other_programs_keep_the_cores_busy(monkeypatch, fake_clock):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    chooser = fake_clock(FakeClockChooser(2, {2: 0.03, 1: 0.06}))      # quiet: two win
    chooser.run(chooser.PERIOD)
    assert chooser.used[-1] == 2
    chooser.others_busy = True
    chooser.run(3 * chooser.PERIOD)
    assert set(chooser.used[chooser.PERIOD:]) == {1}                   # not one slow batch
    assert chooser.trial_starts == [0, 100, 200, 300]                  # looks stay as frequent
    chooser.others_busy, chooser.seconds = False, {2: 0.03, 1: 0.06}
    chooser.run(chooser.PERIOD)
    assert chooser.used[-1] == 2                                       # tried again, and two win


def _reading(busy, own, wall, reading_class=threads.LoadReading):
    reading = reading_class.__new__(reading_class)
    reading.busy, reading.own, reading.wall = busy, own, wall
    return reading


def test_load_reading_counts_the_cores_others_used():
    # 3 CPU seconds worked on our cores in 2 s, 1 of them ours: others used 1 core on average
    assert _reading(13.0, 6.0, 102.0).others_since(_reading(10.0, 5.0, 100.0)) == pytest.approx(1.0)
    assert _reading(10.5, 5.5, 101.0).others_since(_reading(10.0, 5.0, 100.0)) == 0.0
    assert _reading(None, 6.0, 102.0).others_since(_reading(10.0, 5.0, 100.0)) is None   # not Linux

@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load is read from Linux's /proc/stat")
def test_load_reading_reads_this_machine():
    first = threads.LoadReading()
    sum(range(6_000_000))                 # ~0.2 s of our own work between the two readings
    others = threads.LoadReading().others_since(first)
    assert first.busy > 0 and first.own > 0
    # whatever else runs here, others used between none and all of our cores (a tick of slack)
    assert 0.0 <= others <= threads.available_cores() + 0.2


@pytest.mark.parametrize("others, taken", [(0.2, False), (0.6, True)])
def test_the_look_needs_a_free_core_and_a_long_enough_reading(monkeypatch, others, taken):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    chooser = threads.ThreadChooser(2)
    chooser._since = _reading(10.0, 5.0, 100.0)
    later = _reading(10.0 + 2 * (others + 0.9), 5.0 + 2 * 0.9, 102.0)   # we used 0.9 of a core
    monkeypatch.setattr(threads, "LoadReading", lambda: later)
    assert chooser._cores_taken() is taken
    chooser._since = _reading(10.0, 5.0, 101.9)                          # 0.1 s: too short to say
    assert chooser._cores_taken() is False
