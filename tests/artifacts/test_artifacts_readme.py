"""README's "Where results go", run as written: its three loading lines, its predict and export commands and the
pipeline() it names, on a real LoRA run of the packaged MiniLM (RUN_ID replaced by that run's folder)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch
from artifact_runs import TEXTS

from peftlab.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text.split("## Where results go", 1)[1].split("\n## ", 1)[0]


def test_readme_loading_lines_give_peftlabs_logits(trained):
    from peftlab.predict import predict

    run = trained["lora-packaged-text"]
    lines = re.search(r"```python\n(.*?)```", _section(), re.S).group(1).strip().splitlines()
    assert len(lines) == 3
    ns: dict = {}
    exec("\n".join(lines).replace("peftlab-runs/RUN_ID", str(run.run_dir)), ns)
    batch = ns["tokenizer"](TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(ns["model"](**batch).logits, -1)
    ours = torch.tensor([list(p.probs.values()) for p in predict(run.run_dir, texts=TEXTS)])
    torch.testing.assert_close(probs, ours, atol=1e-5, rtol=1e-4)


def test_readme_commands_run(trained, tmp_path, capsys):
    from transformers import pipeline

    run = trained["lora-packaged-text"]
    block = re.search(r"```bash\n(.*?)```", _section(), re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["peftlab", "predict"]] * 2 + [["peftlab", "export"]]
    (tmp_path / "tweets.csv").write_text("text\nwhat a lovely day\nmeh\n")
    swap = {"peftlab-runs/RUN_ID": str(run.run_dir), "tweets.csv": str(tmp_path / "tweets.csv"),
            "minilm-sentiment": str(tmp_path / "minilm-sentiment")}  # fmt: skip
    outputs = []
    for command in commands:
        argv = [swap.get(a, a) for a in command[1:] if a != ">" and not a.endswith(".jsonl")]
        assert main([*argv, *(["--quiet"] if argv[0] == "predict" else [])]) == 0
        outputs.append(capsys.readouterr().out)
    first, from_file = ([json.loads(x) for x in out.splitlines()] for out in outputs[:2])
    assert [r["label"] for r in first] == [r["label"] for r in from_file]
    classify = pipeline("text-classification", model=swap["minilm-sentiment"], trust_remote_code=True)
    results = classify(["what a lovely day", "meh"], truncation=True, top_k=None)
    for ours, theirs in zip(first, results):
        best = max(theirs, key=lambda r: r["score"])  # bf16 export: the same label, probabilities to ~1e-2
        assert best["label"] == ours["label"] and abs(best["score"] - ours["probs"][ours["label"]]) < 2e-2
