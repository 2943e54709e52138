"""`prompt-tuning`, `prefix-tuning` and `p-tuning` on the tiny text families, as their own classifiers (cls) and under
peftlab's mean-pooling classifier (mean): predicted == measured line by line (defaults and uneven knobs), one optimiser
step, refusals as one line naming the method or flag, and a saved adapter reloading in plain PEFT with identical logits.

Run: pytest tests/methods/test_prompt_methods.py
"""

import inspect
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import transformers as T

import peftlab.models  # noqa: F401  (registers the mean-pooling classes with the Auto classes)
from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, TEXT, Context, p_tuning, prefix_tuning, prompt_tuning, register
from peftlab.models import MeanPoolConfig, MeanPoolForSequenceClassification
from peftlab.models.anatomy import anatomy
from peftlab.params import count, measure, measure_breakdown, predict_from_config
from tiny import TEXT_FAMILIES, TINY, tiny_config, tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "params"))
from params_configs import BASE  # noqa: E402  (the public base models' config.json)

MODULES = {"prompt-tuning": prompt_tuning, "prefix-tuning": prefix_tuning, "p-tuning": p_tuning}
for _module in MODULES.values():
    if _module.METHOD.name not in REGISTRY:
        register(_module.METHOD)

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


# --- helpers copied from tests/params/test_params_matrix.py ------------------------------------------------------


def check(result: dict) -> None:
    """The prediction exists and equals the measured count, in total and line by line; formulas add up."""
    assert result["predicted_total"] is not None, result["note"]
    rows = result["breakdown"]
    outside = [r["component"] for r in rows if r["params"] is None]
    assert outside == [], f"measured parameters outside every formula: {outside}"
    for r in rows:
        assert (r["measured_params"], r["measured_trainable"]) == (r["params"], r["trainable"]), r
        assert formula_value(r["formula"]) == r["params"], r
        if "trainable_formula" in r:
            assert formula_value(r["trainable_formula"]) == r["trainable"], r
    assert result["predicted_total"] == result["total"] == sum(r["params"] for r in rows)
    assert result["predicted_trainable"] == result["trainable"] == sum(r["trainable"] for r in rows)
    assert result["match"] is True


def formula_value(formula: str) -> int:
    """Evaluate a rendered formula ("2 blocks × 20 × 2×48 = 3,840") and check its own total."""
    text, _, total = formula.rpartition(" = ")
    if not text:
        return int(re.sub(r"[A-Za-z_ ,]", "", formula))
    arithmetic = re.sub(r"[A-Za-z_]+", " ", text).replace("×", "*").replace("[", "(").replace("]", ")")
    value = eval(arithmetic, {"__builtins__": {}})  # digits, + * / ( ) only: the words were removed
    assert value == int(total.replace(",", "")), formula
    return round(value)


@pytest.fixture
def folder(tmp_path):
    """folder(name, pooling) -> a folder with only config.json (and modules.json, the sentence-transformers marker
    that makes load_model build the mean-pooling classifier)."""

    def make(name: str, pooling: str = "cls") -> str:
        path = tmp_path / f"{name.replace('/', '_')}-{pooling}"
        path.mkdir(exist_ok=True)
        (path / "config.json").write_text(json.dumps(TINY.get(name) or BASE[name]))
        if pooling == "mean":
            (path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]))
        return str(path)

    return make


def build(family: str, pooling: str, seed: int = 0):
    """(classifier in eval mode, batch of 4 with labels): the family's own or the mean-pooling one on its encoder."""
    model, _, batch = tiny_model(family, seed=seed)
    if pooling == "mean":
        torch.manual_seed(seed)
        config = MeanPoolConfig(encoder_config=tiny_config(family), num_labels=5)
        model = MeanPoolForSequenceClassification(config).eval()
    return model, batch


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


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
        with pytest.raises(BadInput, match=f"--method {method}: does not apply to {family}"):
            count(folder(family, pooling), method, module.Knobs(**knobs), num_labels=5)
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
    (tmp_path / "config.json").write_text(json.dumps(ROBERTA_LARGE))
    result = count(str(tmp_path), "p-tuning", p_tuning.Knobs(encoder_hidden_size=128), num_labels=2)
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
    module = MODULES[method]
    model, batch = build(family, pooling)
    anat = anatomy(model)
    backbone = {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in anat.head}
    predicted = predict_from_config(model.config, TEXT, 5, module.METHOD, knobs, pooling=pooling)
    prepared = module.prepare(model, anat, knobs, Context(TEXT))
    assert (measure(prepared)["trainable"], measure(prepared)["total"]) == (
        predicted.trainable,
        predicted.total,
    )
    measured = {r["component"]: (r["params"], r["trainable"]) for r in measure_breakdown(prepared, predicted)}
    assert measured == {r["component"]: (r["params"], r["trainable"]) for r in predicted.breakdown}

    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    loss = prepared(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    encoder = {n: p for n, p in prepared.named_parameters() if n.startswith("prompt_encoder.")}
    assert encoder and all(p.requires_grad and p.grad.abs().sum() > 0 for p in encoder.values())
    opt.step()
    prepared.eval()
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, frozen_moved[:3]
    still = [n for n, p in after.items() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f"trainable weights that did not move: {still[:3]}"
    return prepared, batch, backbone


def reload_and_compare(method, family, pooling, knobs, tmp_path):
    from peft import PeftModel

    trained, batch, backbone = step_and_check(method, family, pooling, knobs)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trained.save_pretrained(tmp_path / "adapter")
    fresh, _ = build(family, pooling, seed=1)  # another random head: only the saved copy can bring it back
    missing = fresh.load_state_dict(
        backbone, strict=False
    ).missing_keys  # the "pretrained" backbone, as loaded
    assert missing and all(n.split(".")[0] in anatomy(fresh).head for n in missing)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
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
    with pytest.raises(BadInput, match=f"--method {method}: not available for image-classification") as err:
        count(folder(family), method, num_labels=5)
    one_line(err)


@pytest.mark.parametrize(("family", "pooling"), [b for b in BUILDS if not applies("prefix-tuning", *b)])
def test_prefix_tuning_refusals_from_count_and_prepare(family, pooling, folder):
    expected = f"--method prefix-tuning: does not apply to {family}"
    with pytest.raises(BadInput, match=expected) as err:
        count(folder(family, pooling), "prefix-tuning", num_labels=5)
    one_line(err)
    model, _ = build(family, pooling)
    with pytest.raises(BadInput, match=expected) as err:
        prefix_tuning.prepare(model, anatomy(model), prefix_tuning.Knobs(), Context(TEXT))
    one_line(err)
    with pytest.raises(BadInput, match=expected):  # plan, from the config alone
        predict_from_config(
            model.config, TEXT, 5, prefix_tuning.METHOD, prefix_tuning.Knobs(), pooling=pooling
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
    with pytest.raises(BadInput, match=expected) as err:
        count(folder("bert", "mean"), method, num_labels=5)
    one_line(err)


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
    with pytest.raises(BadInput, match=re.escape(flag)) as err:
        count(folder(family, pooling), method, module.Knobs(**knobs), num_labels=5)
    one_line(err)
    if knobs.get("num_virtual_tokens") == 0:
        return  # the knob's own check, before any model: count() covers it
    model, _ = build(family, pooling)
    with pytest.raises(BadInput, match=re.escape(flag)) as err:
        module.prepare(model, anatomy(model), module.Knobs(**knobs), Context(TEXT))
    one_line(err)


# --- public base sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(MODULES))
def test_base_sizes_on_the_meta_device(method, folder):
    """roberta-base (3 labels) as RoBERTa's own classifier and mean-pooled; ViT-B/16 refuses (text only)."""
    for pooling in ("cls", "mean"):
        if not applies(method, "roberta", pooling):
            with pytest.raises(BadInput, match=f"--method {method}: does not apply to roberta"):
                count(folder("roberta-base", pooling), method, num_labels=3)
            continue
        check(count(folder("roberta-base", pooling), method, num_labels=3))
    with pytest.raises(BadInput, match="not available for image-classification"):
        count(folder("google/vit-base-patch16-224-in21k"), method, num_labels=101)
