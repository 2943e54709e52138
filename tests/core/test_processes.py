"""One run as 2 data-parallel processes (accelerate launch, gloo on CPU) against the same run in one process: one
record, every evaluation example counted once, the same metrics and loss, an adapter that reloads to the same logits."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peftlab.cli import main
from peftlab.distributed import shard
from peftlab.store import Store

SRC = str(Path(__file__).resolve().parents[2] / "src")
# 33 training examples in global batches of 8: the last batch of each epoch has 1 example, so one process trains on
# it (weighted 2) while the other runs a weight-0 example; 13 evaluation examples in batches of 2 per process (global
# 4) leave a last round that accelerate pads by repeating examples, which gather_for_metrics must drop
RUN = ["--dataset", "vader-tweets", "--method", "lora", "--lora-dropout", "0", "--max-train-samples", "33",
       "--max-eval-samples", "13", "--max-validation-samples", "6", "--eval-batch-size", "4", "--epochs", "2",
       "--lr", "5e-3", "--max-length", "24", "--batch-size", "8", "--threads", "1", "--seed", "0", "--json",
       "--quiet"]  # fmt: skip
# one process vs two: float32 sums taken in another order (two half batches, each padded to its own longest text,
# then an all-reduce), so equal up to rounding: 10 AdamW steps move the final loss by ~1e-7 here
LOSS_TOL = 1e-5
LOGITS_TOL = 1e-4


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_dropout_minilm(tmp: Path) -> Path:
    """The packaged MiniLM with its dropout set to 0 (weights linked, not copied): each process draws its own masks,
    so only without dropout do the two runs compute the same function."""
    from peftlab.models.packaged import PACKAGED_MODELS

    src, dst = Path(PACKAGED_MODELS["minilm-l6"].path()), tmp / "minilm-no-dropout"
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            (dst / f.name).symlink_to(f)
    config = json.loads((src / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _run(cmd: list[str], out: Path) -> tuple[dict, str]:
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(
        done.stdout
    ), done.stderr  # exactly one JSON object on stdout, from the main process only


def _logits(model_dir: Path, adapter: str) -> torch.Tensor:
    from peft import PeftModel

    from peftlab.data import load_data
    from peftlab.models import load_model
    from peftlab.train import encode

    data = load_data("vader-tweets", max_train_samples=33, max_eval_samples=13, max_validation_samples=6)
    loaded = load_model(str(model_dir), data.task, data.label_names)
    model = PeftModel.from_pretrained(loaded.model, adapter).eval()
    enc = encode(data.eval, loaded.processor, data.task, max_length=24)
    batch = enc.collate(list(range(len(enc))), with_labels=False)
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
def test_two_processes_train_the_single_process_run(tmp_path):
    model = str(_no_dropout_minilm(tmp_path))
    one, _ = _run([sys.executable, "-m", "peftlab", "run", "--model", model, *RUN], tmp_path / "one")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "peftlab", "run", "--model", model, *RUN]  # fmt: skip
    two, err = _run(launch, tmp_path / "two")

    # one record, one run folder, written by the main process; the other printed nothing (not even warnings)
    records = Store(tmp_path / "two" / "peftlab.db", read_only=True).records()
    assert len(records) == 1 and records[0].run_id == two["run_id"] and records[0].status == "ok"
    assert [p.name for p in (tmp_path / "two").iterdir() if p.is_dir()] == [two["run_id"]]
    assert two["parallel"]["processes"] == 2 and one["parallel"]["processes"] == 1
    assert "rank1" not in err
    # every evaluation example counted exactly once, before and after training
    for section in ("metrics", "baseline_metrics"):
        assert sum(c["support"] for c in two[section]["per_class"].values()) == 13
    assert two["data"]["eval_size"] == 13
    # the same run: same steps over the same global batches, metrics equal, loss equal up to float rounding
    assert two["time"]["train_steps"] == one["time"]["train_steps"] == 10  # ceil(33 / 8) x 2 epochs
    for section in ("metrics", "baseline_metrics"):
        for k in ("accuracy", "macro_f1", "macro_recall"):
            assert two[section][k] == pytest.approx(one[section][k], abs=1e-9), (section, k)
    assert two["metrics"]["accuracy"] != two["baseline_metrics"]["accuracy"]  # training moved the model
    assert two["time"]["final_loss"] == pytest.approx(one["time"]["final_loss"], abs=LOSS_TOL)
    # throughput counts the global batch: 66 samples over the main process's training seconds
    assert two["time"]["train_samples_per_s"] * two["time"]["train_s"] == pytest.approx(66, rel=1e-6)
    # the saved adapter reloads onto the base and gives the single-process adapter's logits
    a, b = _logits(Path(model), one["artifacts"]["saved"]), _logits(Path(model), two["artifacts"]["saved"])
    torch.testing.assert_close(b, a, rtol=0, atol=LOGITS_TOL)
    assert (b.argmax(-1) == a.argmax(-1)).all()


def test_shards_concatenate_to_the_global_batch():
    for size in (8, 7, 1, 0):
        for n in (1, 2, 3):
            parts = [shard(list(range(size)), n, k) for k in range(n)]
            assert [i for p in parts for i in p] == list(range(size))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert [shard(list(range(8)), 2, k) for k in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_several_processes_bad_input_is_one_line(monkeypatch, tmp_path, capsys):
    """A global batch that does not divide, a grid command under the launcher, --num-processes 0: one line, exit 2,
    nothing started or stored."""
    args = ["run", "--model", "minilm-l6", *RUN[:-4], "--out", str(tmp_path)]
    assert main([*args, "--batch-size", "7", "--num-processes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size 7" in err and "2 processes" in err and len(err.splitlines()) == 1
    assert main([*args, "--num-processes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--num-processes 0" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch --num_processes 2 starts each process
    assert main([*args, "--batch-size", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size 7" in err and len(err.splitlines()) == 1
    assert (
        main(["compare", "--models", "minilm-l6", "--datasets", "vader-tweets", "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "only `peftlab run`" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "peftlab.db").exists()


@pytest.mark.slow
def test_num_processes_relaunches_and_bad_input_found_by_the_processes_is_one_line(tmp_path):
    """run --num-processes 2 goes through accelerate launch; a bad setting only the loaded model reveals is refused by
    both processes, said once (by the main one), exit 2, and torchrun's failure report is not shown."""
    cmd = [sys.executable, "-m", "peftlab", "run", "--model", "minilm-l6", *RUN, "--lora-target", "nonexistent",
           "--num-processes", "2", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--lora-target nonexistent" in lines[0], done.stderr[-2000:]
    assert Store(tmp_path / "peftlab.db").records() == []
