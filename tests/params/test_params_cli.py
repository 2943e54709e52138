"""`peftlab params` from a folder holding only config.json: the JSON shape, the human table, knobs, bad input.

Also the run path's API (`predict`, `compare_counts`), which every `peftlab run` record goes through.
"""

import json
import os

from peftlab.cli import main
from peftlab.config import method_knobs
from peftlab.methods import REGISTRY
from peftlab.params import Prediction, compare_counts, count, predict


def params(capsys, *args) -> tuple[int, str, str]:
    rc = main(["params", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_from_a_config_only_folder(capsys, folder):
    where = folder("roberta-base")
    assert os.listdir(where) == ["config.json"]  # no weights, no tokenizer: nothing else is read
    rc, out, _ = params(capsys, "--model", where, "--method", "lora", "--num-labels", "3", "--json")
    assert rc == 0
    result = json.loads(out)
    for key in (
        "trainable",
        "total",
        "predicted_trainable",
        "predicted_total",
        "breakdown",
        "match",
        "counting",
    ):
        assert key in result
    assert result["match"] is True and result["note"] is None
    assert (result["predicted_trainable"], result["predicted_total"]) == (
        result["trainable"],
        result["total"],
    )
    assert "modules_to_save copies" in result["counting"]
    for row in result["breakdown"]:
        assert {"component", "params", "trainable", "formula"} <= set(row)
    lora = next(r for r in result["breakdown"] if r["component"].startswith("lora"))
    assert lora["formula"] == "12 blocks × 2 × 8 × (768 + 768) = 294,912"


def test_human_table_shows_formulas_totals_and_the_check(capsys, folder):
    rc, out, _ = params(capsys, "--model", folder("roberta-base"), "--method", "lora", "--num-labels", "3")
    assert rc == 0
    assert "lora A,B r=8 on query,value" in out and "12 blocks × 2 × 8 × (768 + 768) = 294,912" in out
    assert "12 blocks × 3 × (768×768 + 768) = 21,261,312" in out
    assert "% trainable" in out and "the prediction equals PyTorch's count" in out
    assert "counting: PEFT's way" in out
    assert "DIFF" not in out and "MISMATCH" not in out


def test_knobs_reach_the_count(capsys, folder):
    args = ["--model", folder("bert"), "--method", "lora", "--num-labels", "5", "--lora-r", "3", "--json"]
    args += [
        "--lora-target",
        "query,key,value,attn_out,ffn_in,ffn_out",
        "--lora-bias",
        "all",
        "--lora-use-dora",
    ]
    args += ["--lora-modules-to-save", "pooler"]
    rc, out, _ = params(capsys, *args)
    result = json.loads(out)
    assert rc == 0 and result["match"] is True
    names = [r["component"] for r in result["breakdown"]]
    assert "dora magnitudes" in names
    assert "modules_to_save copies (bert.pooler, classifier)" in names
    lora = next(r for r in result["breakdown"] if r["component"].startswith("lora"))
    # per block: 4 × 3 × (48 + 48) + 3 × (48 + 100) + 3 × (100 + 48) = 2,040; two blocks
    assert lora["params"] == 2 * (4 * 3 * (48 + 48) + 3 * (48 + 100) + 3 * (100 + 48)) == 4080


def test_task_is_inferred_and_vision_works(capsys, folder):
    rc, out, _ = params(
        capsys, "--model", folder("vit"), "--method", "last-layer", "--num-labels", "5", "--json"
    )
    result = json.loads(out)
    assert rc == 0 and result["task"] == "image-classification" and result["match"] is True


def test_bad_input_is_one_line_and_exit_2(capsys, folder):
    rc, out, err = params(capsys, "--model", folder("bert"), "--method", "nope")
    assert rc == 2 and err.count("\n") == 1 and "--method 'nope'" in err
    rc, _, err = params(capsys, "--model", folder("bert"), "--method", "lora", "--lora-target", "nonexistent")
    assert rc == 2 and "--lora-target nonexistent: unknown target" in err
    rc, _, err = params(capsys, "--model", folder("bert"), "--method", "lora", "--num-labels", "1")
    assert rc == 2 and "--num-labels 1" in err


def test_run_path_predicts_from_the_config_alone(folder):
    """What a run calls: predict(name, task, K, method, knobs, pooling=...) agrees with the meta-device count."""
    lora = REGISTRY["lora"]
    knobs = method_knobs(lora, {"lora_r": 4, "lora_target": ["value", "ffn_out"]})
    predicted = predict(folder("distilbert"), "text-classification", 5, lora, knobs, pooling="cls")
    counted = count(folder("distilbert"), "lora", knobs, num_labels=5)
    assert (predicted.trainable, predicted.total) == (counted["trainable"], counted["total"])
    auto = predict(folder("distilbert"), "text-classification", 5, lora, knobs, pooling="auto")
    assert (auto.trainable, auto.total) == (predicted.trainable, predicted.total)


def test_a_mismatch_is_flagged_and_kept():
    measured = {"trainable": 10, "total": 100}
    record = compare_counts(measured, Prediction(trainable=11, total=100, breakdown=[{"component": "head"}]))
    assert record["match"] is False and record["predicted_trainable"] == 11 and record["trainable"] == 10
    record = compare_counts(
        measured, Prediction(None, None, note="no formula for x yet: measured counts only")
    )
    assert record["match"] is None and record["note"].startswith("no formula")


def test_console_entry_prints_everything_before_its_fast_exit(folder):
    """`entry()` ends `peftlab params` with os._exit: the whole table must still reach a pipe, with the exit code."""
    import subprocess
    import sys

    where = folder("roberta-base")
    args = ["params", "--model", where, "--method", "lora", "--num-labels", "3"]
    cmd = [sys.executable, "-m", "peftlab.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the prediction equals PyTorch's count" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("counting: PEFT's way")
    bad = subprocess.run([*cmd[:-2], "--num-labels", "1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "--num-labels 1" in bad.stderr
