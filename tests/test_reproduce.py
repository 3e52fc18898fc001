"""examples/reproduce.py: the experiment list, --status from metrics.json, parallel jobs, --table."""
import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import reproduce  # noqa: E402
from reproduce import EXPERIMENTS, Experiment  # noqa: E402

sys.path.remove(str(EXAMPLES))


def test_every_experiment_names_a_run_its_script_has():
    """Its key is in the script, or (names built with f-strings) in a run the script recorded."""
    assert len({e.name for e in EXPERIMENTS}) == len(EXPERIMENTS)
    for experiment in EXPERIMENTS:
        source = (EXAMPLES / f"{experiment.script}.py").read_text()
        recorded = experiment.folder(0, EXAMPLES.parent / "results") / "metrics.json"
        names = json.loads(recorded.read_text())["runs"] if recorded.exists() else {}
        assert f'"{experiment.run}"' in source or experiment.run in names, (experiment.name, experiment.run)
        assert experiment.title is None or experiment.title in names, (experiment.name, experiment.title)
        assert experiment.notebook is None or 0 < experiment.notebook < 1, experiment.name


def write_metrics(folder, key, epochs, accuracy=None, status="done", **config):
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"key": key, "status": status, "epochs": epochs, "test_accuracy": accuracy,
             "seconds_per_epoch": [2.0] * epochs}
    (folder / "metrics.json").write_text(json.dumps({"config": config, "runs": {f"{key} run": entry}}))


def test_status_reads_done_partial_shortened_and_missing_runs(tmp_path):
    three = Experiment("three", "lenet_mnist", "lenet", 10, 64, notebook=0.98, seeds=(0, 1, 2))
    for seed, accuracy in ((0, 0.97), (1, 0.99), (2, 0.98)):
        write_metrics(three.folder(seed, tmp_path), "lenet", 10, accuracy)
    row = reproduce.status(three, tmp_path)
    assert (row["status"], row["epochs_run"], row["seeds"]) == ("done", 10, [0, 1, 2])
    assert row["accuracy"] == pytest.approx(0.98) and row["accuracy_std"] == pytest.approx(0.01)
    assert reproduce.figures(row) == ("98.00% ± 1.00", "98.00%", "+0.00")

    partial = Experiment("partial", "lenet_mnist", "lenet", 10, 64)
    write_metrics(partial.folder(0, tmp_path), "lenet", 3, status="partial")
    assert reproduce.describe(reproduce.status(partial, tmp_path)) == "partial (3 of 10 epochs)"
    write_metrics(three.folder(2, tmp_path), "lenet", 4, status="partial")
    assert reproduce.describe(reproduce.status(three, tmp_path)) == "partial (seeds done: [0, 1] of [0, 1, 2])"

    shortened = Experiment("shortened", "lenet_mnist", "lenet", 10, 64)
    write_metrics(shortened.folder(0, tmp_path), "lenet", 10, 0.5, limit=500)
    assert reproduce.status(shortened, tmp_path)["status"] == "shortened"     # --limit is never "done"

    early = Experiment("early", "fashion_mlp_study", "final", 100, 64, may_stop_early=True)
    write_metrics(early.folder(0, tmp_path), "final", 36, 0.88)
    assert reproduce.status(early, tmp_path)["status"] == "done"

    assert reproduce.status(Experiment("none", "x", "y", 5, 1), tmp_path)["status"] == "not run"


def test_jobs_skip_seeds_already_done_and_keep_only_the_seeds_asked(tmp_path):
    three = Experiment("three", "lenet_mnist", "lenet", 10, 64, seeds=(0, 1, 2))
    write_metrics(three.folder(0, tmp_path), "lenet", 10, 0.97)              # seed 0 is done
    write_metrics(three.folder(1, tmp_path), "lenet", 4, status="partial")   # seed 1 half way
    seeds_of = lambda jobs: [job.command[job.command.index("--seed") + 1] for job in jobs]  # noqa: E731
    assert seeds_of(reproduce.jobs_for([three], tmp_path)) == ["1", "2"]
    assert seeds_of(reproduce.jobs_for([three], tmp_path, seeds=[1])) == ["1"]
    assert reproduce.jobs_for([three], tmp_path, seeds=[0]) == []


FAKE_SCRIPT = '''
import json, os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = args["--out"]
os.makedirs(out, exist_ok=True)
print("training", args.get("--runs"), "threads", os.environ["MINICNN_NUM_THREADS"])
time.sleep(0.5)
runs = {key: {"key": key, "status": "done", "epochs": 2, "test_accuracy": 0.5 + int(args["--seed"]) / 10,
              "seconds_per_epoch": [1.0, 1.0], "threads": os.environ["MINICNN_NUM_THREADS"],
              "pid": os.getpid()} for key in args["--runs"].split(",")}
json.dump({"config": {"seed": int(args["--seed"])}, "runs": runs}, open(os.path.join(out, "metrics.json"), "w"))
'''


def test_jobs_run_in_parallel_through_joblib_each_with_its_log(tmp_path, monkeypatch):
    pytest.importorskip("joblib")
    monkeypatch.syspath_prepend(str(EXAMPLES))       # the workers import reproduce.run_job by name
    (tmp_path / "fake.py").write_text(FAKE_SCRIPT)
    experiments = [Experiment("a", "fake", "a", 2, 8, out="shared", seeds=(0, 1)),
                   Experiment("b", "fake", "b", 2, 8, out="shared", seeds=(0, 1)),   # same folder: one job
                   Experiment("c", "fake", "c", 2, 8)]
    jobs = reproduce.jobs_for(experiments, tmp_path / "results", scripts_dir=tmp_path)
    assert sorted(job.name for job in jobs) == ["c", "shared", "shared_seed1"]
    assert [job.command[-1] for job in jobs if job.name == "shared"] == ["a,b"]
    outcomes = reproduce.run_jobs(jobs, n_jobs=2, backend="loky", cores=4)
    assert sorted(code for _, code, _ in outcomes) == [0, 0, 0]
    for job in jobs:
        assert "threads 2" in (job.folder / "train.log").read_text()             # cores // jobs
    rows = {e.name: reproduce.status(e, tmp_path / "results") for e in experiments}
    assert all(row["status"] == "done" for row in rows.values())
    assert rows["a"]["accuracy"] == pytest.approx(0.55) and rows["a"]["seeds"] == [0, 1]
    pids = {json.loads((job.folder / "metrics.json").read_text())["runs"][job.command[-1].split(",")[0]]["pid"]
            for job in jobs}
    assert len(pids) == 3                                                      # separate processes


def test_dask_local_cluster_runs_the_jobs(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    (tmp_path / "fake.py").write_text(FAKE_SCRIPT)
    jobs = reproduce.jobs_for([Experiment("d", "fake", "d", 2, 8)], tmp_path / "results", scripts_dir=tmp_path)
    assert [code for _, code, _ in reproduce.run_jobs(jobs, n_jobs=1, backend="dask")] == [0]


def test_table_is_written_between_the_markers_only(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"prose before\n{reproduce.TABLE_BEGIN}\nold table\n{reproduce.TABLE_END}\nprose after\n")
    rows = [reproduce.status(experiment, tmp_path) for experiment in EXPERIMENTS]
    reproduce.write_table(path, rows)
    text = path.read_text()
    assert text.startswith("prose before\n") and text.endswith("prose after\n") and "old table" not in text
    assert text.count("\n| ") == len(EXPERIMENTS) + 1 and "| lenet_mnist | not run |" in text
    path.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        reproduce.write_table(path, rows)
