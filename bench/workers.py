"""Workers benchmark: `make demo`'s grid run by `peftlab compare --workers 2` against `--workers 1`, in one run.

`python bench/workers.py --out bench-out` -> bench-out/workers.md + workers.json: the wall time of each, the ratio
(workers 1 / workers 2: above 1 means two single-thread workers beat one two-thread worker) and a check that both
produced the same runs. The two settings alternate within each repeat (1,2 then 2,1, ...) so drifting load from other
work falls on both; every grid is a fresh process tree with its own store. --scale shrinks the grid for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SRC = Path(__file__).resolve().parents[1] / "src"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out", help="folder for workers.md and workers.json")
    p.add_argument(
        "--workers", default="1,2", help="worker counts to compare, comma-separated [default: 1,2]"
    )
    p.add_argument("--repeats", type=int, default=2, help="grids per worker count (alternating order)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the demo's train/eval samples (quick check)"
    )
    p.add_argument("--seeds", type=int, help="seeds per method [default: the demo's]")
    p.add_argument("--epochs", type=float, help="epochs [default: the demo's]")
    p.add_argument("--methods", help="comma-separated methods to keep from the demo's [default: all]")
    return p.parse_args(argv)


def suite(a: argparse.Namespace) -> dict:
    """grid.DEMO_SUITE, optionally shrunk: sample counts x scale (at least 24), fewer seeds / epochs / methods."""
    sys.path.insert(0, str(SRC))
    from peftlab.grid import DEMO_SUITE

    s = json.loads(json.dumps(DEMO_SUITE))
    keep = set(a.methods.split(",")) if a.methods else None
    for exp in s["experiments"]:
        for key in ("max_train_samples", "max_eval_samples"):
            exp[key] = max(24, int(exp[key] * a.scale))
        if a.epochs is not None:
            exp["epochs"] = a.epochs
        if keep is not None:
            exp["methods"] = [m for m in exp.get("methods", s["methods"]) if m in keep]
    if keep is not None:
        s["methods"] = [m for m in s["methods"] if m in keep]
        s["experiments"] = [e for e in s["experiments"] if e["methods"]]
    if a.seeds is not None:
        s["seeds"] = a.seeds
    return s


def one_grid(config: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "peftlab", "compare", "--config", str(config), "--out", str(out),
           "--workers", str(workers), "--json", "--quiet"]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
    }
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"compare --workers {workers} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    accuracy = {f"{r['dataset']} {r['label']}": round(r["accuracy_mean"], 4) for r in summary["summary"]}
    return {"workers": workers, "wall_s": round(wall, 1), "runs": summary["runs_new"],
            "failed": summary["runs_failed"], "threads": summary["parallel"]["threads"], "accuracy": accuracy}  # fmt: skip


def main(argv=None) -> int:
    a = parse(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "workers-suite.yaml"
    grid = suite(a)
    config.write_text(yaml.safe_dump(grid, sort_keys=False))
    counts = [int(n) for n in a.workers.split(",")]
    results = []
    for r in range(a.repeats):
        for n in counts if r % 2 == 0 else counts[::-1]:
            res = one_grid(config, out / f"workers-{n}-r{r}", n)
            print(f"repeat {r}: --workers {n}: {res['wall_s']:.1f}s, {res['runs']} runs", file=sys.stderr)
            results.append(res)
    wall = {n: statistics.median(x["wall_s"] for x in results if x["workers"] == n) for n in counts}
    base = counts[0]
    same = all(x["accuracy"].keys() == results[0]["accuracy"].keys() for x in results)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "scale": a.scale,
        "grid_runs": results[0]["runs"],
        "median_wall_s": wall,
        "speedup": {n: round(wall[base] / wall[n], 3) for n in counts},
        "same_runs": same,
        "results": results,
    }
    (out / "workers.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# `make demo`'s grid over workers (scale {a.scale}, {report['grid_runs']} runs, {a.repeats} repeats)",
        "",
        "| workers | threads each | median wall s | speed-up vs --workers " + str(base) + " |",
        "|---:|---:|---:|---:|",
    ]
    for n in counts:
        threads = next(x["threads"] for x in results if x["workers"] == n)
        lines.append(f"| {n} | {threads} | {wall[n]:.1f} | {report['speedup'][n]:.2f}x |")
    lines += ["", f"same runs in every grid: {same}", ""]
    (out / "workers.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
