"""RunConfig: coercion, YAML, validation messages that name the flag and the value."""

import pytest

from peftlab.config import RunConfig, coerce, from_dict, validate
from peftlab.errors import BadInput


def ok(**kw):
    return RunConfig(model="minilm-l6", dataset="vader-tweets", **kw)


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
        ({"task": "speech"}, "--task"),
        ({"batch_size": 0}, "--batch-size"),
    ],
)
def test_validation_names_the_flag(kw, flag):
    with pytest.raises(BadInput) as e:
        validate(ok(**kw))
    assert flag in str(e.value) and "\n" not in str(e.value)


def test_coerce_types_and_messages():
    assert coerce("lora_target", "query, value") == ["query", "value"]
    assert coerce("epochs", "2") == 2.0
    assert coerce("save_model", "false") is False
    with pytest.raises(BadInput, match="--lora-r 'eight'"):
        coerce("lora_r", "eight")
    with pytest.raises(BadInput, match="unknown setting"):
        from_dict({"lora_rank": 8})


def test_identity_hash_ignores_where_results_go():
    a, b = ok(out="x"), ok(out="y", store="z.db")
    assert a.identity_hash() == b.identity_hash()
    assert a.identity_hash() != ok(seed=1).identity_hash()
