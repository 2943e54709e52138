"""`prompt-tuning`, `prefix-tuning` and `p-tuning` on the tiny text families, as their own classifiers (cls) and under
peftlab's mean-pooling classifier (mean): predicted == measured line by line (defaults and uneven knobs), one optimiser
step, refusals as one line naming the method or flag, and a saved adapter reloading in plain PEFT with identical logits.

Run: pytest tests/methods/test_prompt_methods.py
"""

import inspect
import re

import pytest
import torch
import transformers as T

import peftlab.models  # noqa: F401  (registers the mean-pooling classes with the Auto classes)
from checks import (
    check,
    config_folder,
    folders,
    inputs_of,
    planned_step,
    refused,
    reload_adapter,
)
from peftlab.methods import TEXT, Context, p_tuning, prefix_tuning, prompt_tuning
from peftlab.models import MeanPoolConfig, MeanPoolForSequenceClassification
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, predict_from_config
from tiny import TEXT_FAMILIES, tiny_config, tiny_model

MODULES = {"prompt-tuning": prompt_tuning, "prefix-tuning": prefix_tuning, "p-tuning": p_tuning}

BUILDS = [(f, pooling) for pooling in ("cls", "mean") for f in TEXT_FAMILIES]

# What this transformers / PEFT / models/meanpool.py can do, read where PEFT reads it:
# the mean-pooling config must answer vocab_size (PEFT finds the word embeddings by it) ...
MEANPOOL_PROMPTS = getattr(MeanPoolConfig, "vocab_size", None) is not None
# ... and a classifier must take `past_key_values` for PEFT to hand it the prefix (transformers 5 renamed it `cache`)
MEANPOOL_PREFIX = (
    MEANPOOL_PROMPTS
    and "past_key_values" in inspect.signature(MeanPoolForSequenceClassification.forward).parameters
)
CLS_PREFIX = {f: "past_key_values" in inspect.signature(c.forward).parameters for f, c in
              [("bert", T.BertForSequenceClassification), ("roberta", T.RobertaForSequenceClassification)]}  # fmt: skip


def applies(method: str, family: str, pooling: str) -> bool:
    if method != "prefix-tuning":
        return pooling == "cls" or MEANPOOL_PROMPTS
    if family == "distilbert":  # DistilBERT's attention keeps no key/value cache
        return False
    return MEANPOOL_PREFIX if pooling == "mean" else CLS_PREFIX[family]


@pytest.fixture
def folder(tmp_path):
    """folder(name, pooling) -> a folder with only config.json (and modules.json, the sentence-transformers marker
    that makes load_model build the mean-pooling classifier)."""
    return folders(tmp_path)


def build(family: str, pooling: str, seed: int = 0):
    """(classifier in eval mode, batch of 4 with labels): the family's own or the mean-pooling one on its encoder."""
    model, _, batch = tiny_model(family, seed=seed)
    if pooling == "mean":
        torch.manual_seed(seed)
        config = MeanPoolConfig(encoder_config=tiny_config(family), num_labels=5)
        model = MeanPoolForSequenceClassification(config).eval()
    return model, batch


# --- predicted == measured -----------------------------------------------------------------------------------------

KNOBS = {
    "prompt-tuning": [{}, {"num_virtual_tokens": 7}, {"num_virtual_tokens": 13, "init": "SAMPLE_VOCAB"},
                      {"modules_to_save": []}],
    "p-tuning": [{}, {"num_virtual_tokens": 5, "encoder_hidden_size": 11},
                 {"encoder_type": "LSTM", "encoder_hidden_size": 13, "encoder_num_layers": 3, "encoder_dropout": 0.1},
                 {"encoder_type": "LSTM", "num_virtual_tokens": 3}],
    "prefix-tuning": [{}, {"num_virtual_tokens": 7}, {"projection": True},
                      {"projection": True, "encoder_hidden_size": 17, "num_virtual_tokens": 9}],
}  # fmt: skip
COUNT_CASES = [(m, f, p, k) for m, ks in KNOBS.items() for f, p in BUILDS for k in ks]


def case_id(method, family, pooling, knobs) -> str:
    return f"{method}-{family}-{pooling}-" + (",".join(f"{a}={b}" for a, b in knobs.items()) or "defaults")


@pytest.mark.parametrize(
    ("method", "family", "pooling", "knobs"), COUNT_CASES, ids=[case_id(*c) for c in COUNT_CASES]
)
def test_predicted_equals_measured(method, family, pooling, knobs, folder):
    module = MODULES[method]
    if not applies(method, family, pooling):
        expected = f"--method {method}: does not apply to {family}"
        refused(expected, count, folder(family, pooling), method, module.Knobs(**knobs), num_labels=5)
        return
    result = count(folder(family, pooling), method, module.Knobs(**knobs), num_labels=5)
    check(result)
    assert (result["pooling"], result["model_class"] == MeanPoolForSequenceClassification.__name__) == (
        pooling,
        pooling == "mean",
    )
    added = [r for r in result["breakdown"] if r["component"].startswith(("prompt", "prefix", "p-tuning"))]
    assert added and all(r["trainable"] == r["params"] > 0 for r in added)
    head = next(r for r in result["breakdown"] if r["component"] == "head")
    assert head["trainable"] == 0  # the original head is frozen; its modules_to_save copy trains
    copies = [r for r in result["breakdown"] if r["component"].startswith("modules_to_save")]
    assert copies and copies[0]["trainable"] == copies[0]["params"]
    assert result["trainable"] == sum(r["params"] for r in added) + copies[0]["params"]  # nothing else trains


def test_prompt_and_p_tuning_arithmetic_by_hand(folder):
    """The tiny BERT (d = 48, 2 blocks, head 48 -> 5): the numbers the formulas must give, written out."""
    d, head = 48, 48 * 5 + 5
    r = count(folder("bert"), "prompt-tuning", prompt_tuning.Knobs(), num_labels=5)
    assert r["trainable"] == 20 * d + head
    r = count(folder("bert"), "p-tuning", p_tuning.Knobs(), num_labels=5)
    assert r["trainable"] == 20 * d + 3 * (d * d + d) + head  # MLP d -> d -> d -> d
    h = 13
    r = count(
        folder("bert"), "p-tuning", p_tuning.Knobs(encoder_type="LSTM", encoder_hidden_size=h), num_labels=5
    )
    lstm = 2 * (4 * h * d + 4 * h * h + 8 * h) + 2 * (
        4 * h * 2 * h + 4 * h * h + 8 * h
    )  # 2 layers, 2 directions
    assert r["trainable"] == 20 * d + lstm + (2 * h * 2 * h + 2 * h) + (2 * h * d + d) + head


@pytest.mark.skipif(not MEANPOOL_PREFIX, reason="models/meanpool.py does not take past_key_values")
def test_prefix_arithmetic_by_hand(folder):
    """Prefix tuning on the mean-pooled tiny RoBERTa (A = 48, 3 blocks): n × L × 2 × A, projection A -> h -> 2LA."""
    A, L, head = 48, 3, 48 * 5 + 5
    r = count(folder("roberta", "mean"), "prefix-tuning", prefix_tuning.Knobs(), num_labels=5)
    assert r["trainable"] == 20 * L * 2 * A + head
    r = count(folder("roberta", "mean"), "prefix-tuning", prefix_tuning.Knobs(projection=True, encoder_hidden_size=17),
              num_labels=5)  # fmt: skip
    assert r["trainable"] == 20 * A + (A * 17 + 17) + (17 * L * 2 * A + L * 2 * A) + head


ROBERTA_LARGE = {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 1024, "num_hidden_layers": 24,
                 "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514,
                 "type_vocab_size": 1, "pad_token_id": 1}  # fmt: skip


def test_the_count_peft_prints_in_its_p_tuning_example(tmp_path):
    """PEFT's examples/sequence_classification/P_Tuning.ipynb (roberta-large, 2 labels, n=20, encoder_hidden_size=128)
    prints "trainable params: 1351938": 20×1024 + MLP 1024 -> 128 -> 128 -> 1024 + the classifier head's copy."""
    result = count(
        config_folder(tmp_path, ROBERTA_LARGE),
        "p-tuning",
        p_tuning.Knobs(encoder_hidden_size=128),
        num_labels=2,
    )
    check(result)
    assert result["trainable"] == 1_351_938


def test_word_embeddings_are_counted_once():
    """PEFT keeps `word_embeddings` on the PeftModel too: the same tensor, which parameters() yields once (as PEFT's
    own get_nb_trainable_parameters counts it)."""
    model, _ = build("bert", "cls")
    base_total = sum(p.numel() for p in model.parameters())
    prepared = prompt_tuning.prepare(model, anatomy(model), prompt_tuning.Knobs(), Context(TEXT))
    assert prepared.word_embeddings is model.bert.embeddings.word_embeddings
    trainable, total = prepared.get_nb_trainable_parameters()
    assert (trainable, total) == (measure(prepared)["trainable"], measure(prepared)["total"])
    assert total == base_total + 20 * 48 + (48 * 5 + 5)  # base + prompt + the head's saved copy


# --- one optimiser step, reload in plain PEFT --------------------------------------------------------------------

STEP_CASES = [(m, f, p) for m in MODULES for f, p in BUILDS if applies(m, f, p)]
STEP_KNOBS = {"prompt-tuning": {"init": "SAMPLE_VOCAB"}, "p-tuning": {"encoder_type": "LSTM"},
              "prefix-tuning": {"projection": True}}  # fmt: skip


def step_and_check(method: str, family: str, pooling: str, knobs):
    """Prepare, compare with the arithmetic, take one AdamW step -> (model in eval mode, batch, the backbone weights
    before training: what a pretrained checkpoint gives a fresh base)."""
    model, batch = build(family, pooling)
    return planned_step(
        MODULES[method].METHOD, (model, TEXT, batch), knobs, pooling=pooling, graded="prompt_encoder."
    )


def reload_and_compare(method, family, pooling, knobs, tmp_path):
    trained, batch, backbone = step_and_check(method, family, pooling, knobs)
    inputs = inputs_of(batch)
    fresh, _ = build(family, pooling, seed=1)  # another random head: only the saved copy can bring it back
    reloaded = reload_adapter(trained, batch, backbone, fresh, tmp_path / "adapter")
    # PEFT saves the prompt encoder's output for one sequence ("prompt_embeddings"), never the MLP / LSTM behind it
    saved = reloaded.prompt_encoder["default"].embedding.weight
    assert torch.equal(saved, trained.get_prompt_embedding_to_save("default"))
    # with gradients on, as when PEFT computed the saved rows: the LSTM's no-grad kernel differs in the last bit
    want = trained(**inputs).logits.detach()
    with torch.no_grad():
        got = reloaded(**inputs).logits
    assert want.shape == (4, 5)
    # Prefix tuning's projection runs on the whole batch while training (PEFT expands the prefix ids to B rows; prompt
    # and p-tuning run one row and repeat it): its output differs from the saved single row in the last bit.
    atol = 1e-6 if getattr(knobs, "projection", False) else 0
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


@pytest.mark.parametrize(("method", "family", "pooling"), STEP_CASES, ids=["-".join(c) for c in STEP_CASES])
def test_one_step_and_reload(method, family, pooling, tmp_path):
    reload_and_compare(method, family, pooling, MODULES[method].Knobs(), tmp_path)


@pytest.mark.parametrize(("method", "family", "pooling"), [c for c in STEP_CASES if c[1] == "roberta"],
                         ids=["-".join(c) for c in STEP_CASES if c[1] == "roberta"])  # fmt: skip
def test_one_step_and_reload_uneven_knobs(method, family, pooling, tmp_path):
    knobs = MODULES[method].Knobs(num_virtual_tokens=6, **STEP_KNOBS[method])
    reload_and_compare(method, family, pooling, knobs, tmp_path)


@pytest.mark.parametrize(("method", "family", "pooling"), [c for c in STEP_CASES if c[2] == "mean"],
                         ids=["-".join(c) for c in STEP_CASES if c[2] == "mean"])  # fmt: skip
def test_mean_pooling_keeps_padding_out(method, family, pooling):
    """A padded row gives the logits of the same row cut to its real tokens: PEFT's mask marks the virtual tokens 1
    (prompt/p-tuning pool them with the real tokens) and prefix keys 1 (pooled positions: the real tokens only)."""
    model, batch = build(family, pooling)
    prepared = MODULES[method].prepare(model, anatomy(model), MODULES[method].Knobs(), Context(TEXT)).eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]  # row 0: 6 real tokens, 3 padding
    with torch.no_grad():
        padded = prepared(input_ids=ids, attention_mask=mask).logits[:1]
        cut = prepared(input_ids=ids[:1, :6], attention_mask=mask[:1, :6]).logits
        plain = model(input_ids=ids, attention_mask=mask).logits[:1]  # the base alone, without virtual tokens
    torch.testing.assert_close(padded, cut, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded, plain)


@pytest.mark.parametrize(("method", "family", "pooling"), STEP_CASES, ids=["-".join(c) for c in STEP_CASES])
def test_frozen_prefix_cache_stays_off(method, family, pooling):
    """The trained virtual tokens live outside the blocks: no block is trainable, yet the cache must not cut here."""
    from peftlab.train.cache import plan_prefix
    from peftlab.train.encode import Encoded

    model, _ = build(family, pooling)
    anat = anatomy(model)
    prepared = MODULES[method].prepare(model, anat, MODULES[method].Knobs(), Context(TEXT))
    g = torch.Generator().manual_seed(0)
    probe = Encoded(
        TEXT, torch.tensor([0, 1, 2, 3]), [torch.randint(3, 97, (k,), generator=g) for k in (5, 9, 7, 3)]
    )
    assert plan_prefix(prepared, anat, probe) is None


# --- where they cannot apply ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(MODULES))
@pytest.mark.parametrize("family", ["vit", "mobilenet_v2"])
def test_text_only(method, family, folder):
    refused(
        f"--method {method}: not available for image-classification",
        count,
        folder(family),
        method,
        num_labels=5,
    )


@pytest.mark.parametrize(("family", "pooling"), [b for b in BUILDS if not applies("prefix-tuning", *b)])
def test_prefix_tuning_refusals_from_count_and_prepare(family, pooling, folder):
    expected = f"--method prefix-tuning: does not apply to {family}"
    refused(expected, count, folder(family, pooling), "prefix-tuning", num_labels=5)
    model, _ = build(family, pooling)
    refused(expected, prefix_tuning.prepare, model, anatomy(model), prefix_tuning.Knobs(), Context(TEXT))
    knobs = prefix_tuning.Knobs()  # plan, from the config alone
    refused(
        expected, predict_from_config, model.config, TEXT, 5, prefix_tuning.METHOD, knobs, pooling=pooling
    )


@pytest.mark.parametrize("family", [f for f in ("bert", "roberta") if not CLS_PREFIX[f]])
def test_the_refusal_is_what_plain_peft_would_hit(family):
    """Without peftlab's refusal, PEFT wraps the family classifier and fails at the first forward."""
    from peft import PrefixTuningConfig, get_peft_model

    model, batch = build(family, "cls")
    wrapped = get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    with pytest.raises(ValueError, match="does not support past key values"):
        wrapped(**batch)


@pytest.mark.skipif(MEANPOOL_PROMPTS, reason="models/meanpool.py answers vocab_size")
@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning"])
def test_mean_pooling_without_vocab_size_is_refused(method, folder):
    expected = f"--method {method}: does not apply to bert as MeanPoolForSequenceClassification"
    refused(expected, count, folder("bert", "mean"), method, num_labels=5)


BAD = [
    (
        "prompt-tuning",
        "bert",
        {"num_virtual_tokens": 40},
        "--prompt-tuning-num-virtual-tokens 40",
    ),  # 40 positions
    (
        "prompt-tuning",
        "distilbert",
        {"modules_to_save": ["pooler"]},
        "--prompt-tuning-modules-to-save 'pooler'",
    ),
    (
        "p-tuning",
        "roberta",
        {"encoder_num_layers": 3},
        "--p-tuning-encoder-num-layers 3",
    ),  # the MLP has no depth
    ("p-tuning", "bert", {"encoder_dropout": 0.2}, "--p-tuning-encoder-dropout 0.2"),  # nor dropout
    ("p-tuning", "distilbert", {"num_virtual_tokens": 0}, "--p-tuning-num-virtual-tokens 0"),
    (
        "prefix-tuning",
        "bert",
        {"encoder_hidden_size": 32},
        "--prefix-tuning-encoder-hidden-size 32",
    ),  # no projection
]


@pytest.mark.parametrize(
    ("method", "family", "knobs", "flag"), BAD, ids=[f"{b[0]}-{b[3].split()[0]}" for b in BAD]
)
def test_bad_knobs_are_one_line_naming_the_flag(method, family, knobs, flag, folder):
    module = MODULES[method]
    pooling = "mean" if method == "prefix-tuning" else "cls"  # prefix-tuning needs a classifier it applies to
    if method == "prefix-tuning" and not MEANPOOL_PREFIX:
        pytest.skip("prefix-tuning applies to no tiny classifier here")
    refused(re.escape(flag), count, folder(family, pooling), method, module.Knobs(**knobs), num_labels=5)
    if knobs.get("num_virtual_tokens") == 0:
        return  # the knob's own check, before any model: count() covers it
    model, _ = build(family, pooling)
    refused(re.escape(flag), module.prepare, model, anatomy(model), module.Knobs(**knobs), Context(TEXT))


# --- public base sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(MODULES))
def test_base_sizes_on_the_meta_device(method, folder):
    """roberta-base (3 labels) as RoBERTa's own classifier and mean-pooled; ViT-B/16 refuses (text only)."""
    for pooling in ("cls", "mean"):
        if not applies(method, "roberta", pooling):
            expected = f"--method {method}: does not apply to roberta"
            refused(expected, count, folder("roberta-base", pooling), method, num_labels=3)
            continue
        check(count(folder("roberta-base", pooling), method, num_labels=3))
    vit = folder("google/vit-base-patch16-224-in21k")
    refused("not available for image-classification", count, vit, method, num_labels=101)
