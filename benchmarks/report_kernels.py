"""Turn a bench_kernels.py JSON into a markdown table and a bar chart.

    python benchmarks/report_kernels.py results/bench_*.json [--out results/bench_kernels]

Several JSON files (one per implementation, see bench_kernels.py) are merged. Writes
``<out>.md`` and ``<out>.png`` (default: next to the first JSON). Times are the minimum
over rounds (the least disturbed run, as pytest-benchmark sorts by default); the median
is shown too because shared 2-core machines are noisy.
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path


def load(paths):
    """{(shape, mode): {impl: (min_s, median_s, gflop)}} plus the machine info (richest file's)."""
    rows, machine = defaultdict(dict), {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for b in data["benchmarks"]:
            e = b["extra_info"]
            rows[(e["shape"], e["mode"])][e["impl"]] = (b["stats"]["min"], b["stats"]["median"], e["gflop"])
        info = data.get("machine_info", {})
        if "torch" in info.get("minicnn", {}) or not machine:
            machine = info
    return rows, machine


def table(rows, machine):
    mi = machine.get("minicnn", {})
    lines = [f"CPU: {mi.get('cpu', machine.get('cpu', {}).get('brand_raw', '?'))}, "
             f"threads: {mi.get('bench_threads', '?')}, numpy {mi.get('numpy', '?')}, "
             f"numba {mi.get('numba', '?')}, torch {mi.get('torch', 'not run')}", "",
             "| layer | pass | impl | min ms | median ms | GFLOP/s | × PyTorch time | speed-up over NumPy |",
             "|---|---|---|---|---|---|---|---|"]
    for (shape, mode), impls in rows.items():
        torch_t = impls.get("torch", (None,))[0]
        numpy_t = impls.get("numpy", (None,))[0]
        for impl, (t_min, t_med, gflop) in sorted(impls.items()):
            rate = f"{gflop / t_min:.1f}" if gflop else "-"
            vs_torch = f"{t_min / torch_t:.2f}" if torch_t else "-"
            vs_numpy = f"{numpy_t / t_min:.2f}" if numpy_t else "-"
            lines.append(f"| {shape} | {mode} | {impl} | {t_min * 1e3:.3f} | {t_med * 1e3:.3f} | "
                         f"{rate} | {vs_torch} | {vs_numpy} |")
    return "\n".join(lines) + "\n"


def chart(rows, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = list(rows)
    impls = sorted({i for v in rows.values() for i in v})
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), 4.5))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        xs = [n + k * width for n, key in enumerate(keys) if impl in rows[key]]
        ts = [rows[key][impl][0] * 1e3 for key in keys if impl in rows[key]]
        ax.bar(xs, ts, width, label=impl)
    ax.set_xticks([n + 0.4 - width / 2 for n in range(len(keys))])
    ax.set_xticklabels([f"{s}\n{m}" for s, m in keys], rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms (min, log scale)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+")
    parser.add_argument("--out", help="output path without extension")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(args.json[0]).with_suffix("")
    rows, machine = load(args.json)
    md = table(rows, machine)
    out.with_suffix(".md").write_text(md)
    chart(rows, out.with_suffix(".png"))
    print(md)


if __name__ == "__main__":
    main()
