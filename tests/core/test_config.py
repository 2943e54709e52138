"""config.load: the one edge where settings are coerced, checked (messages name the flag and the value) and resolved;
identity: which settings make an experiment."""

import dataclasses

import pytest

from peftlab import config
from peftlab.config import coerce_setting, identity_hash, knob_label, load
from peftlab.errors import BadInput

BASE = {"model": "minilm-l6", "dataset": "vader-tweets"}


@pytest.mark.parametrize(
    "kw, flag",
    [
        ({"lora_r": 0}, "--lora-r"),
        ({"lora_alpha": -1.0}, "--lora-alpha"),
        ({"lora_dropout": 1.0}, "--lora-dropout"),
        ({"epochs": 0.0}, "--epochs"),
        ({"lr": -1e-3}, "--lr"),
        ({"lr": 5.0}, "--lr"),
        ({"max_train_samples": 0}, "--max-train-samples"),
        ({"max_eval_samples": -3}, "--max-eval-samples"),
        ({"method": "lorax"}, "--method"),
        ({"lora_bias": "some"}, "--lora-bias"),
        ({"lora_target": ""}, "--lora-target"),
        ({"task": "speech"}, "--task"),
        ({"batch_size": 0}, "--batch-size"),
        ({"pooling": "max"}, "--pooling"),
        ({"weight_decay": -0.1}, "--weight-decay"),
        ({"fusion": "sum", "task": "vqa"}, "--fusion"),
        ({"hidden": 0, "task": "vqa"}, "--hidden"),
    ],
)
def test_validation_names_the_flag(kw, flag):
    with pytest.raises(BadInput) as e:
        load({**BASE, **kw})
    assert flag in str(e.value) and "\n" not in str(e.value)


def test_load_resolves_once_and_the_result_is_frozen():
    cfg = load({**BASE, "lora_r": "4", "epochs": "2"})
    assert (cfg.task, cfg.method, cfg.lr, cfg.epochs) == ("text-classification", "lora", 5e-4, 2.0)
    assert cfg.knobs.r == 4 and cfg.knobs.alpha == 16.0  # the rest are the method's defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.task = "vqa"
    assert cfg.to_dict()["lora_r"] == 4 and "knobs" not in cfg.to_dict()
    head = load({**BASE, "method": "head", "lora_r": 4})  # another method's knobs are not this run's
    assert "lora_r" not in head.to_dict() and head.lr == 2e-3
    assert load(BASE).batch_size == 32
    vqa = load(
        {"dataset": "easy-vqa"}
    )  # the dataset names the task, which names its default method, batch and lr
    assert (vqa.task, vqa.method, vqa.batch_size, vqa.lr) == ("vqa", "head", 64, 2e-3)
    # without --lr the head's learning rate follows --batch-size (1e-3 per 32); a given --lr is kept as given
    assert load({"dataset": "easy-vqa", "batch_size": 32}).lr == 1e-3
    assert load({"dataset": "easy-vqa", "batch_size": 256}).lr == 8e-3
    assert (load({"dataset": "easy-vqa", "batch_size": 256, "lr": 1e-3}).lr, vqa.to_dict()["batch_size"]) == (
        1e-3,
        64,
    )


def test_coerce_types_and_messages():
    assert load({**BASE, "lora_target": "query, value"}).knobs.target == ["query", "value"]
    assert coerce_setting("epochs", "2") == 2.0
    assert coerce_setting("save_model", "false") is False
    with pytest.raises(BadInput, match="--lora-r 'eight'"):
        load({**BASE, "lora_r": "eight"})
    with pytest.raises(BadInput, match="unknown setting 'lora_rank'.*lora_r"):
        load({**BASE, "lora_rank": 8})
    with pytest.raises(BadInput, match="--model is required"):
        load({})


def test_identity_ignores_seed_and_where_results_go_and_nothing_else():
    a = load({**BASE, "out": "x"}).to_dict()
    b = load({**BASE, "out": "y", "store": "z.db", "seed": 3, "threads": 1, "label": "mine"}).to_dict()
    assert identity_hash(a) == identity_hash(b)
    for other in ({"lora_r": 4}, {"lr": 1e-4}, {"epochs": 2}, {"method": "full"}, {"max_train_samples": 10}):
        assert identity_hash(load({**BASE, **other}).to_dict()) != identity_hash(a), other
    assert set(config.identity(a)) & set(config.NOT_IDENTITY) == set()


def test_knob_label_names_what_differs_from_the_defaults():
    assert knob_label(load(BASE).to_dict()) == "lora"
    assert knob_label(load({**BASE, "lora_r": 4, "lora_alpha": 32}).to_dict()) == "lora r=4 alpha=32"
    assert knob_label(load({**BASE, "method": "head"}).to_dict()) == "head"
    assert knob_label(load({**BASE, "label": "my lora"}).to_dict()) == "my lora"
