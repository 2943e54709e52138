"""The model card (README.md of every successful run): a valid Hugging Face header and what was trained, on what data,
how well, at what cost, how to load it, and the command that gives the same run again."""

from __future__ import annotations

import shlex

import pytest
from artifact_runs import MINILM_HUB

from peftlab.artifacts import portable


def _card(run):
    from huggingface_hub import ModelCard

    text = (run.run_dir / "README.md").read_text()
    return text, ModelCard(text)


def test_card_in_the_run_folder_and_beside_the_model(trained):
    for run in trained.values():
        text, _ = _card(run)
        assert (run.saved / "README.md").read_text() == text, run.id


@pytest.mark.parametrize("case", ["lora-packaged-text", "ia3-local-cnn", "full-local-cls", "dora-hub-cls",
                                  "lora-packaged-image", "baseline-local-mean"])  # fmt: skip
def test_header_is_valid_model_card_metadata(trained, case):
    run = trained[case]
    _, card = _card(run)
    data = card.data.to_dict()
    p = portable.describe(run.saved)
    assert data["library_name"] == ("peft" if p.kind == "adapter" else "transformers")
    assert data["pipeline_tag"] == run.task
    assert {"peftlab", run.method, run.task} <= set(data["tags"])
    assert data["metrics"] == ["accuracy", "f1", "recall"]
    expect_base = {"lora-packaged-text": MINILM_HUB, "dora-hub-cls": "peftlab-test/tiny-bert"}.get(case)
    assert data.get("base_model") == expect_base  # the hub id where there is one; local folders have none
    if run.record["dataset"] == "fashion-mnist":
        assert data["datasets"] == ["zalando-datasets/fashion_mnist"]
    else:
        assert "datasets" not in data  # vader-tweets has no hub copy
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"accuracy", "f1", "recall"}
    assert results["accuracy"].metric_value == round(run.record["metrics"]["accuracy"], 4)
    assert results["accuracy"].dataset_split == "test" and results["accuracy"].task_type == run.task
    if p.mean_pooled:
        assert "custom_code" in data["tags"]


def test_body_says_what_was_trained(trained):
    run = trained["lora-packaged-text"]
    text, _ = _card(run)
    rec = run.record
    p, d, t, env = rec["params"], rec["data"], rec["time"], rec["env"]
    for needle in [
        "minilm-l6", MINILM_HUB, "`lora`", "r=8", "alpha=16.0",  # base, method, knobs
        f"{p['trainable']:,} of {p['total']:,}", f"{p['predicted_trainable']:,} of {p['predicted_total']:,}",
        "they agree",
        f"{d['train_size']} / {d['validation_size']} / {d['test_size']}", "negative, neutral, positive",
        f"| accuracy | {rec['metrics']['accuracy']:.4f} | {rec['baseline_metrics']['accuracy']:.4f} |",
        f"{t['train_s']:.1f} s", env["cpu"], f"peftlab {env['peftlab']}", f"peft {env['peft']}",
        "## Reproduce", "trust_remote_code=True", "peftlab predict", "peftlab export",
    ]:  # fmt: skip
        assert needle in text, needle
    assert "More Information Needed" not in text


def _reproduced(command: str):
    from peftlab import config
    from peftlab.cli import _settings, build_parser

    argv = shlex.split(command)
    assert argv[:2] == ["peftlab", "run"]
    args = build_parser().parse_args(argv[1:])
    return config.load(_settings(args))


@pytest.mark.parametrize(
    "case", ["lora-packaged-text", "oft-hub-vit", "prefix-tuning-local-mean", "full-local-cls"]
)
def test_reproduce_command_gives_the_same_experiment(trained, case):
    from peftlab.config import identity_hash

    run = trained[case]
    text, _ = _card(run)
    command = text.split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    cfg = _reproduced(command)
    rec = run.record
    assert identity_hash(cfg.to_dict()) == rec["config_hash"]  # same settings, knobs included
    assert cfg.seed == rec["seed"] and cfg.model == rec["model"] and cfg.method == rec["method"]
    assert "--out" not in command


def test_command_line_writes_changed_knobs_and_lists():
    from peftlab import config
    from peftlab.config import command_line, identity_hash

    cfg = config.load({"model": "minilm-l6", "dataset": "vader-tweets", "method": "lora", "lora_r": 4,
                       "lora_target": "query,key", "lora_use_rslora": True, "seed": 3, "text_column": "my text"})  # fmt: skip
    command = command_line(cfg.to_dict())
    assert "--lora-r 4" in command and "--lora-target query,key" in command and "--lora-use-rslora" in command
    assert "--text-column 'my text'" in command and "--seed 3" in command and "--lora-alpha" not in command
    again = _reproduced(command)
    assert identity_hash(again.to_dict()) == identity_hash(cfg.to_dict()) and again.seed == 3
