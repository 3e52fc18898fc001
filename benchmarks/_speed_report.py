"""The report half of ``train_speed.py``: ratio tables, per-layer profiles and their plots.

Everything here reads the JSON report the runner builds and writes text or PNGs; nothing
trains or times. FLOP accounting follows ``minicnn.trace``: 2 per multiply-add, matrix
products only (Conv2D and Dense). A training step costs the forward FLOPs plus, for the
backward pass, the same again for the weight gradient and once more for the input
gradient where the layer computes one (every weighted layer but the first).
"""
from pathlib import Path


def step_flops(trace_rows):
    """(forward, backward) FLOPs of one training step, from ``model.trace`` rows."""
    weighted = [r for r in trace_rows if r["flops"]]
    forward = sum(r["flops"] for r in weighted)
    backward = sum(r["flops"] * (1 if i == 0 else 2) for i, r in enumerate(weighted))
    return forward, backward


def layer_profile(result):
    """Per-layer rows of the minicnn run: ms, FLOPs, GFLOP/s and % of the sgemm peak."""
    m = result.get("minicnn", {})
    rows, peak = m.get("trace"), m.get("sgemm_peak_gflops")
    if not rows:
        return []
    first_weighted = next((i for i, r in enumerate(rows) if r["flops"]), None)
    out = []
    for i, r in enumerate(rows):
        backward_flops = r["flops"] * (1 if i == first_weighted else 2)
        total_ms = r["forward_ms"] + r["backward_ms"]
        flops = r["flops"] + backward_flops
        gflops = flops / total_ms / 1e6 if flops and total_ms else None
        out.append({"name": r["name"], "type": r["type"], "forward_ms": r["forward_ms"],
                    "backward_ms": r["backward_ms"], "flops": flops,
                    "forward_gflops": r["flops"] / r["forward_ms"] / 1e6 if r["flops"] and r["forward_ms"] else None,
                    "gflops": gflops, "percent_of_peak": 100 * gflops / peak if gflops and peak else None})
    return out


def flop_floor(result):
    """Seconds an epoch would take at the measured sgemm peak, and the epoch time over it."""
    m = result.get("minicnn", {})
    if not m.get("trace") or not m.get("sgemm_peak_gflops"):
        return None, None
    forward, backward = step_flops(m["trace"])
    per_sample = (forward + backward) / result["batch_size"]
    floor_s = per_sample * result["samples_per_epoch"] / (m["sgemm_peak_gflops"] * 1e9)
    best = m.get("best_epoch_s")
    return floor_s, (best / floor_s if best and floor_s else None)


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def _fmt(value, spec=".2f", missing="–"):
    return missing if value is None else format(value, spec)


def markdown_table(report):
    """Ratio table (minicnn / PyTorch) and the absolute figures behind it."""
    s = report["settings"]
    where = ("on the GPU: minicnn on CuPy vs PyTorch on CUDA" if s.get("device") == "gpu"
             else "minicnn vs PyTorch CPU")
    lines = [f"Training speed, {where}: {s['epochs']} timed epochs, {s['threads']} "
             f"thread(s), OMP_WAIT_POLICY {s.get('omp_wait_policy', 'default')}, PyTorch's glibc "
             f"thresholds for freed memory: {s.get('torch_allocator', 'default')}, float32, adam; best / median "
             f"epoch (ratios < 1: minicnn faster).", "",
             "| model | data | samples/epoch, batch | minicnn epoch s best / med | torch epoch s best / med "
             "| epoch ratio best / med | ms/step minicnn / torch | test acc minicnn / torch "
             "| peak RSS MB minicnn / torch | memory ratio | warm-up s minicnn / torch "
             "| minicnn epoch / FLOP floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["models"].items():
        m, t = r.get("minicnn", {}), r.get("torch") or {}
        if "error" in m:
            lines.append(f"| {name} | {r['data']} | | minicnn failed: {m['error']} | | | | | | | | |")
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
            f"| {_fmt(m.get('warmup_s'))} / {_fmt(t.get('warmup_s'))} "
            f"| {_fmt(flop_floor(r)[1], '.1f')} |")
        if "error" in t:
            lines.append(f"| | torch failed: {t['error']} | | | | | | | | | | |")
    for name, r in report["models"].items():
        n = r.get("numpy") or {}
        if "error" in n:
            lines += ["", f"{name}, hand-written NumPy loop: failed: {n['error']}"]
        elif n:
            lines += ["", f"{name}, the same training as a hand-written NumPy loop "
                          f"(benchmarks/_numpy_mlp.py, same batches, same run): best epoch "
                          f"{n['best_epoch_s']:.2f} s, median {n['median_epoch_s']:.2f} s; "
                          f"{_fmt(r['ratios'].get('numpy_loop_vs_torch'))} of PyTorch's best epoch; "
                          f"minicnn takes {_fmt(r['ratios'].get('minicnn_vs_numpy_loop'))}x its time; "
                          f"test accuracy {100 * n['test_accuracy']:.1f}%."]
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
                  "(random data: chance level). FLOP floor: the epoch's matrix-product FLOPs "
                  "(forward + backward) at the sgemm peak measured in the same process (cuBLAS's on a GPU run).",
              f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n" + profile_tables(report)


def compare(result):
    """Ratios minicnn / PyTorch and an accuracy check (reported, never asserted)."""
    m, t = result.get("minicnn", {}), result.get("torch") or {}
    ratios = {"epoch_best": _ratio(m.get("best_epoch_s"), t.get("best_epoch_s")),
              "epoch_median": _ratio(m.get("median_epoch_s"), t.get("median_epoch_s")),
              "peak_memory": _ratio(m.get("peak_rss_mb"), t.get("peak_rss_mb")),
              "training_growth": _ratio(m.get("training_growth_mb"), t.get("training_growth_mb"))}
    n = result.get("numpy") or {}
    if n.get("best_epoch_s"):        # the hand-written NumPy loop (Dense-only models)
        ratios["numpy_loop_vs_torch"] = _ratio(n["best_epoch_s"], t.get("best_epoch_s"))
        ratios["minicnn_vs_numpy_loop"] = _ratio(m.get("best_epoch_s"), n["best_epoch_s"])
    result["ratios"] = ratios
    if "test_accuracy" in m and "test_accuracy" in t:
        gap = 100 * (m["test_accuracy"] - t["test_accuracy"])
        result["accuracy_gap_points"] = gap
        result["accuracy_comparable"] = abs(gap) <= 3.0
    return result




def profile_tables(report):
    """Markdown: one per-layer table per model (minicnn, one batch, fastest of 3 runs)."""
    lines = []
    for name, result in report["models"].items():
        rows = layer_profile(result)
        if not rows:
            continue
        m = result["minicnn"]
        floor_s, times_floor = flop_floor(result)
        lines += ["", f"### {name}: per layer, one batch of {result['batch_size']} "
                      f"(sgemm peak in the same process: {m['sgemm_peak_gflops']:.0f} GFLOP/s; "
                      f"FLOP floor {_fmt(floor_s)} s per epoch, epoch time {_fmt(times_floor, '.1f')}x it)", "",
                  "| layer | forward ms | backward ms | FLOPs fwd+bwd | forward GFLOP/s | fwd+bwd GFLOP/s | % of peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['name']} ({r['type']}) | {r['forward_ms']:.3f} | {r['backward_ms']:.3f} "
                         f"| {r['flops'] / 1e6:.1f} M | {_fmt(r['forward_gflops'], '.0f')} "
                         f"| {_fmt(r['gflops'], '.0f')} | {_fmt(r['percent_of_peak'], '.0f')} |")
    return "\n".join(lines)


def write_plots(report, folder):
    """A roofline-style PNG per model: each layer's achieved GFLOP/s (forward, and forward +
    backward) against the sgemm peak measured in the same run. Returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for name, result in report["models"].items():
        rows = [r for r in layer_profile(result) if r["gflops"]]
        if not rows:
            continue
        peak = result["minicnn"]["sgemm_peak_gflops"]
        fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 3, 4))
        positions = range(len(rows))
        ax.bar([p - 0.2 for p in positions], [r["forward_gflops"] or 0 for r in rows], 0.4, label="forward")
        ax.bar([p + 0.2 for p in positions], [r["gflops"] for r in rows], 0.4, label="forward + backward")
        ax.axhline(peak, color="black", linestyle="--", label=f"sgemm peak {peak:.0f}")
        ax.set_xticks(list(positions), [r["name"] for r in rows], rotation=30, ha="right")
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{name}: achieved GFLOP/s per layer ({report['settings']['threads']} thread(s))")
        ax.legend()
        fig.tight_layout()
        path = Path(folder) / f"{name}_layers.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
