"""VQA speed benchmark: one easy-VQA run (mobilenet-v2 + minilm-l6, 20 epochs, its three baselines) with a cold and a
warm embedding cache, today's code against an older source tree, in one invocation; plus `head` on cached image
features (the frozen-prefix cache) on both trees.

`python bench/vqa.py --out bench-out/vqa` compares this checkout's src/ with `git archive BASE src` (BASE defaults to
the last commit before the fast path); `--old DIR --new DIR` take any two source trees (folders holding `peftlab/`).
Every run is `peftlab run ... --json` in a fresh process with PYTHONPATH=<tree>; the two trees alternate within each
repeat so that load from other work falls on both. Writes OUT/bench.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from speed import machine  # bench/ is this script's folder, first on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BASE = "124246e"  # the last commit before the fast VQA path: batch 32, heads one after another, 224-px images
VQA = ["--task", "vqa", "--dataset", "easy-vqa", "--image-encoder", "mobilenet-v2", "--text-encoder", "minilm-l6"]  # fmt: skip
HEAD = ["--model", "mobilenet-v2", "--dataset", "fashion-mnist", "--method", "head", "--image-size", "64"]
TARGET = 3.0  # the target: >= 3x faster, warm and cold


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out/vqa", help="folder for bench.md and results.json")
    p.add_argument(
        "--old", help="the old source tree (a folder holding peftlab/); default: git archive of --base"
    )
    p.add_argument(
        "--new", default=str(ROOT / "src"), help="the new source tree (default: this checkout's src)"
    )
    p.add_argument("--base", default=BASE, help="commit whose src/ is the old tree when --old is not given")
    p.add_argument("--epochs", type=float, default=20.0, help="VQA epochs (the issue's run: 20)")
    p.add_argument("--max-train-samples", type=int, help="VQA training questions (default: all 34,598)")
    p.add_argument("--max-eval-samples", type=int, help="VQA test questions (default: all 9,673)")
    p.add_argument("--repeats", type=int, default=1, help="cold + warm runs per tree (seeds 0..R-1)")
    p.add_argument("--variant", action="append", default=[], metavar="ARGS",
                   help="also run the new tree with these extra flags, e.g. --variant='--image-size 64' (repeatable)")  # fmt: skip
    p.add_argument(
        "--head-epochs", type=float, default=20.0, help="`head` on fashion-mnist: epochs (0: skip)"
    )
    p.add_argument(
        "--head-train-samples", type=int, default=5000, help="`head` on fashion-mnist: training images"
    )
    return p.parse_args(argv)


# --- source trees ------------------------------------------------------------------------------------------------


def archive_tree(base: str, into: Path) -> Path:
    """src/ of commit `base` as a folder (git archive), so the old code runs beside this checkout's."""
    into.mkdir(parents=True, exist_ok=True)
    tar = into / "src.tar"
    with tar.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", base, "src"], stdout=fh, check=True)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "src"


def _commit(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


# --- one run -----------------------------------------------------------------------------------------------------


def run_cli(tree: Path, cache: Path, args: list[str], out: Path) -> dict:
    """`peftlab run ARGS --json` with PYTHONPATH=tree and PEFTLAB_CACHE=cache in a fresh process: the record, the
    wall seconds of the whole process and its peak RSS (wait4's ru_maxrss)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PEFTLAB_CACHE=str(cache))
    cmd = [sys.executable, "-c", "from peftlab.cli import entry; entry()", "run", *args, "--json", "--quiet",
           "--out", str(out)]  # fmt: skip
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        text, err = stdout.read(), stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": err[-2000:], "wall_s": wall}
    return {"record": json.loads(text), "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def prepare(tree: Path, cache: Path) -> None:
    """Convert the packaged MobileNetV2 into this cache once, so a cold run measures embedding, not conversion."""
    env = dict(os.environ, PYTHONPATH=str(tree), PEFTLAB_CACHE=str(cache))
    code = "from peftlab.models import resolve_source; resolve_source('mobilenet-v2')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def _vqa_row(name: str, kind: str, seed: int, res: dict) -> dict:
    row = {"tree": name, "kind": kind, "seed": seed, "wall_s": round(res["wall_s"], 1)}
    if "error" in res:
        return {**row, "error": res["error"]}
    r = res["record"]
    t, b, vqa = r["time"], r["vqa_baselines"], r.get("vqa", {})
    return {
        **row,
        "peak_rss_mb": round(res["peak_rss_mb"]),
        "encode_s": t.get("encode_s"),
        "train_s": t[
            "train_s"
        ],  # old: the fusion head alone; new: the fusion head and both baselines together
        "baselines_s": t.get("baselines_s"),
        "steps": t.get("train_steps"),
        "batch_size": r["config"]["batch_size"],
        "lr": r["config"]["lr"],
        "image_size": (vqa.get("image_size") or {}).get("pixels", "processor default (224)"),
        "images_computed": vqa["encoded"]["images"]["computed"]
        if isinstance(vqa.get("encoded"), dict)
        else None,
        "accuracy": r["metrics"]["accuracy"],
        "question_only": b["question_only"]["accuracy"],
        "image_only": b["image_only"]["accuracy"],
        "majority": b["majority"]["accuracy"],
    }


def _head_row(name: str, seed: int, res: dict) -> dict:
    row = {"tree": name, "seed": seed, "wall_s": round(res["wall_s"], 1)}
    if "error" in res:
        return {**row, "error": res["error"]}
    r = res["record"]
    cut = r["time"].get("prefix_cache") or {}
    cache_s = (cut.get("train") or {}).get("build_s", 0.0)
    return {
        **row,
        "train_s": round(r["time"]["train_s"], 2),  # includes the pass that filled the prefix cache
        "prefix_pass_s": cache_s,
        "head_s": round(
            r["time"]["train_s"] - cache_s, 2
        ),  # the head's own training (+ the features pass, new)
        "steps": r["time"]["train_steps"],
        "ms_per_step": round(1000 * (r["time"]["train_s"] - cache_s) / max(1, r["time"]["train_steps"]), 2),
        "head_features": (cut.get("head") or {}).get("features"),
        "accuracy": r["metrics"]["accuracy"],
    }


# --- the whole bench ---------------------------------------------------------------------------------------------


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ratio(old, new):
    return round(old / new, 2) if old and new else None


def summarise(vqa: list[dict], head: list[dict]) -> dict:
    """Median wall seconds per (run, cache) and each new run's ratio to the old one: {kind: {name: {...}}}."""
    out = {}
    for kind in ("cold", "warm"):
        walls = {}
        for name in dict.fromkeys(r["tree"] for r in vqa):
            walls[name] = _median([r["wall_s"] for r in vqa if r["kind"] == kind and r["tree"] == name
                                   and "error" not in r])  # fmt: skip
        out[kind] = {name: {"wall_s": w, "ratio": _ratio(walls.get("old"), w) if name != "old" else None}
                     for name, w in walls.items()}  # fmt: skip
        for row in out[kind].values():
            row["target_met"] = row["ratio"] is not None and row["ratio"] >= TARGET
    steps = {
        t: _median([r["ms_per_step"] for r in head if r["tree"] == t and "error" not in r])
        for t in ("old", "new")
    }
    out["head_ms_per_step"] = {**steps, "ratio": _ratio(steps["old"], steps["new"])}
    return out


def _cell(x) -> str:
    return "—" if x is None else (f"{x:.4f}" if isinstance(x, float) and x < 1 else str(x))


def _rows(rows: list[dict], cols: list[str]) -> list[str]:
    """Markdown table rows; a failed run shows its error after the columns before `seed`."""
    out = []
    for r in rows:
        if "error" in r:
            first = cols[: cols.index("seed") + 1]
            out.append("| " + " | ".join(str(r[c]) for c in first) + f" | failed: {r['error'][-120:]!r} |")
        else:
            out.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    return out


def markdown(info: dict, vqa: list[dict], head: list[dict], summary: dict) -> str:
    lines = [
        f"Machine: {info['machine']['cpu']}, {info['machine']['logical_cores']} logical cores; torch "
        f"{info['machine']['torch']}, Python {info['machine']['python']}.",
        f"Load average (1 min) at start {info['load_start']:.2f}, at end {info['load_end']:.2f}; wall "
        f"{info['wall_min']:.1f} min.",
        f"Old tree: {info['old']}; new tree: {info['new']}.",
        f"Work: `peftlab run {' '.join(VQA)} --epochs {info['settings']['epochs']:g}`"
        + (
            f" --max-train-samples {info['settings']['max_train_samples']}"
            if info["settings"]["max_train_samples"]
            else ""
        )
        + (
            f" --max-eval-samples {info['settings']['max_eval_samples']}"
            if info["settings"]["max_eval_samples"]
            else ""
        )
        + f", seeds 0..{info['settings']['repeats'] - 1}; cold = empty embedding cache, warm = the same run again.",
        "",
        "| run | cache | median wall s | old / this | target 3x |",
        "|---|---|---:|---:|---|",
    ]
    for kind in ("warm", "cold"):
        for name, s in summary[kind].items():
            met = "" if name == "old" else ("yes" if s["target_met"] else "no")
            ratio = "" if name == "old" or s["ratio"] is None else f"{s['ratio']:.2f}x"
            lines.append(f"| {name} | {kind} | {_cell(s['wall_s'])} | {ratio} | {met} |")
    vqa_cols = ["tree", "kind", "seed", "wall_s", "encode_s", "train_s", "baselines_s", "steps", "batch_size", "lr",
                "image_size", "accuracy", "question_only", "image_only", "peak_rss_mb"]  # fmt: skip
    lines += ["", "| tree | cache | seed | wall s | encode s | train s | baselines s | steps | batch | lr | image px "
              "| accuracy | question only | image only | peak RSS MiB |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|", *_rows(vqa, vqa_cols)]  # fmt: skip
    if head:
        h = summary["head_ms_per_step"]
        head_cols = ["tree", "seed", "train_s", "prefix_pass_s", "head_s", "steps", "ms_per_step", "accuracy"]
        lines += ["", f"`head` on cached image features: `peftlab run {' '.join(HEAD)} --epochs "
                  f"{info['settings']['head_epochs']:g} --max-train-samples {info['settings']['head_train_samples']}`"
                  f"; per-step time of the head's training (train_s less the prefix-cache pass, over its steps): "
                  f"old {_cell(h['old'])} ms, new {_cell(h['new'])} ms, {h['ratio'] or 0:.2f}x.", "",
                  "| tree | seed | train s | prefix pass s | head s | steps | ms / step | accuracy |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|", *_rows(head, head_cols)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = parse(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="peftlab-bench-vqa-") as tmp:
        tmp = Path(tmp)
        old = Path(a.old) if a.old else archive_tree(a.base, tmp / "old")
        trees = {"old": old.resolve(), "new": Path(a.new).resolve()}
        caches = {name: tmp / f"cache-{name}" for name in trees}
        for name, tree in trees.items():
            prepare(tree, caches[name])
        vqa_args = [*VQA, "--epochs", str(a.epochs)]
        if a.max_train_samples:
            vqa_args += ["--max-train-samples", str(a.max_train_samples)]
        if a.max_eval_samples:
            vqa_args += ["--max-eval-samples", str(a.max_eval_samples)]
        vqa_rows, head_rows = [], []
        runs = {"old": ("old", []), "new": ("new", [])}  # name -> (tree, extra flags)
        runs.update({f"new {v}": ("new", v.split()) for v in a.variant})
        for seed in range(a.repeats):
            names = list(runs) if seed % 2 == 0 else list(reversed(runs))  # alternate who runs first
            for name in names:
                tree, extra = runs[name]
                shutil.rmtree(caches[tree] / "embeddings", ignore_errors=True)
                for kind in ("cold", "warm"):
                    print(f"[bench] vqa {name} {kind} seed {seed} ...", file=sys.stderr, flush=True)
                    args = [*vqa_args, *extra, "--seed", str(seed)]
                    res = run_cli(trees[tree], caches[tree], args, tmp / "runs")
                    vqa_rows.append(_vqa_row(name, kind, seed, res))
                    print(f"[bench]   {json.dumps(vqa_rows[-1])[:300]}", file=sys.stderr, flush=True)
            if a.head_epochs > 0:
                for name in [n for n in names if n in trees]:
                    print(f"[bench] head {name} seed {seed} ...", file=sys.stderr, flush=True)
                    args = [*HEAD, "--epochs", str(a.head_epochs), "--max-train-samples", str(a.head_train_samples),
                            "--max-eval-samples", "1000", "--seed", str(seed), "--no-save-model"]  # fmt: skip
                    head_rows.append(
                        _head_row(name, seed, run_cli(trees[name], caches[name], args, tmp / "runs"))
                    )
                    print(f"[bench]   {json.dumps(head_rows[-1])[:300]}", file=sys.stderr, flush=True)
        summary = summarise(vqa_rows, head_rows)
        info = {
            "machine": machine(),  # bench/speed.py's description of this machine
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
            "wall_min": (time.perf_counter() - start) / 60,
            "old": f"{trees['old']} ({'git archive ' + a.base if not a.old else _commit(trees['old'])})",
            "new": f"{trees['new']} ({_commit(trees['new'])})",
            "settings": {k: v for k, v in vars(a).items() if k not in ("out",)},
        }
    (out / "results.json").write_text(json.dumps({"info": info, "summary": summary, "vqa": vqa_rows,
                                                  "head": head_rows}, indent=2))  # fmt: skip
    md = markdown(info, vqa_rows, head_rows, summary)
    (out / "bench.md").write_text(md)
    print(md)
    return 0 if all("error" not in r for r in vqa_rows + head_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
