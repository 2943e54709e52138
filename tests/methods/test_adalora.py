"""`adalora` on tiny models: predicted == measured at several knob settings, one optimiser step, the rank budget really
reallocated by the training loop (after_step) and summarised, the refusals, and a reload in plain PEFT.

Builds every model from tests/tiny.py configs (no network); parameter counts go through `peftlab.params.count` on a
folder holding config.json alone, exactly as `peftlab params` does.
"""

import json

import pytest
import torch

from checks import (
    backbone_of,
    check,
    config_folder,
    inputs_of,
    load_backbone,
    one_step,
    prepare_tiny,
    refused,
)
from params.params_configs import BASE
from peftlab.methods import REGISTRY, Context, adalora
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TEXT_FAMILIES, TINY, tiny_model

# a second target set per family: uneven, with a k×k conv where there is one (A is r × in·kh·kw)
OTHER_TARGETS = {
    "vit": ["projection", "key"],
    "vit-no-qkv-bias": ["projection", "ffn_out"],
    "clip": ["patch_embedding", "attn_out"],
    "clip_vision_model": ["k_proj", "fc1"],
    "mobilenet_v2": ["conv_stem.first_conv.convolution", "conv_1x1.convolution"],
    "mobilenet_v2-variant": ["reduce_1x1.convolution"],
    "resnet": ["spatial"],
    "resnet-basic": ["spatial", "pointwise"],
}
SETTINGS = {
    "defaults": lambda f: adalora.Knobs(),
    "ranks": lambda f: adalora.Knobs(init_r=5, target_r=2, alpha=3.0, dropout=0.1, tinit=7, tfinal=11),
    "targets": lambda f: adalora.Knobs(
        init_r=7, target_r=3, target=OTHER_TARGETS.get(f, ["key", "ffn_in", "attn_out"])
    ),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("family", list(TINY))
def test_predicted_equals_measured(family, setting, tmp_path):
    result = count(config_folder(tmp_path, TINY[family]), "adalora", SETTINGS[setting](family), num_labels=5)
    check(result)
    rows = {r["component"]: r for r in result["breakdown"]}
    ranknum = rows[adalora.RANKNUM]
    assert ranknum["trainable"] == 0 and ranknum["params"] > 0  # one frozen float per adapted layer
    [added] = [r for c, r in rows.items() if c.startswith(adalora.ADALORA)]
    assert added["params"] == added["trainable"] > 0
    assert added["params"] % SETTINGS[setting](family).init_r == 0  # r × (in + out + 1) per layer


def test_roberta_defaults_are_peft_s_dense_targets(tmp_path):
    """PEFT's RoBERTa entry query,key,value,dense: per block q, k, v, attention.output.dense (H -> H),
    intermediate.dense (H -> F) and output.dense (F -> H), 6 modules; never the saved classifier.dense."""
    result = count(config_folder(tmp_path, TINY["roberta"]), "adalora", num_labels=5)
    row = next(r for r in result["breakdown"] if r["component"].startswith(adalora.ADALORA))
    assert row["component"].endswith("on query,key,value,dense")
    H, F, r = 48, 100, 12
    per_block = 4 * r * (H + H + 1) + r * (H + F + 1) + r * (F + H + 1)
    assert row["params"] == 3 * per_block
    ranknum = next(r for r in result["breakdown"] if r["component"] == adalora.RANKNUM)
    assert ranknum["params"] == 3 * 6


def test_peft_targets_mirror_peft_s_table():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as PEFT

    for model_type, entries in adalora.PEFT_TARGETS.items():
        assert PEFT[model_type] == entries


@pytest.mark.parametrize(
    ("name", "labels", "trainable", "total"),
    [
        ("roberta-base", 3, 2_584_419, 127_232_430),  # 12 × 6 modules at r 12 + the classifier copy
        ("google/vit-base-patch16-224-in21k", 101, 520_325, 86_396_674),  # 12 × query,value + the head copy
    ],
)
def test_base_sizes(name, labels, trainable, total, tmp_path):
    result = count(config_folder(tmp_path, BASE[name]), "adalora", num_labels=labels)
    check(result)
    assert (result["trainable"], result["total"]) == (trainable, total)


# --- training -----------------------------------------------------------------------------------------------


def prepared(family: str, knobs=None, steps: int = 3, seed: int = 0):
    model, task, batch = tiny_model(family, seed=seed)
    anat = anatomy(model)
    knobs = knobs or adalora.Knobs()
    return adalora.prepare(model, anat, knobs, Context(task, total_steps=steps)), task, batch


def train_steps(model, batch: dict, steps: int) -> None:
    """The training loop's order, on one batch, in the model's current mode: backward, AdamW step (lr 1e-2),
    after_step with the gradients still set, zero_grad."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):
        model(**batch).loss.backward()
        opt.step()
        adalora.after_step(model, step)
        opt.zero_grad()


def orth_reg(model) -> torch.Tensor:
    """AdaLoRA's regulariser as the paper writes it: mean over A and B of ‖AAᵀ - I‖_F and ‖BᵀB - I‖_F."""
    terms = []
    for n, p in model.named_parameters():
        if ".lora_A." in n:
            terms.append(torch.linalg.matrix_norm(p @ p.T - torch.eye(p.shape[0])))
        elif ".lora_B." in n:
            terms.append(torch.linalg.matrix_norm(p.T @ p - torch.eye(p.shape[1])))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("family", FAMILIES)
def test_one_optimiser_step(family):
    model, task, batch = prepared(family)
    model.eval()
    with (
        torch.no_grad()
    ):  # model(**batch).loss, as the loop computes it, includes the regulariser (images too)
        plain = model.get_base_model()(**batch).loss
        loss = model(**batch).loss
        assert torch.allclose(loss, plain + 0.5 * orth_reg(model), rtol=1e-5, atol=1e-6)
    before, after = one_step(model, batch)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(not torch.equal(after[n], before[n]) for n in trained if ".lora_" in n)  # E starts at 0: the
    assert not any(".ranknum." in n for n in trained)  # regulariser alone moves A and B on the first step

    # the loop's call, gradients still set: scores updated, and (3 steps in all) the budget already shrinks: some
    # E entries are masked to 0, nothing else changes
    REGISTRY["adalora"].after_step(model, 0)
    model.zero_grad()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, after[n])]
    assert changed and all(".lora_E." in n for n in changed)
    for n in changed:
        p = dict(model.named_parameters())[n]
        assert torch.all((p == 0) | (p == after[n]))
    state = json.loads(json.dumps(REGISTRY["adalora"].summary(model)))
    assert state["allocated"] and state["budget"]["final"] < state["budget"]["initial"]


def test_default_schedule_ends_on_the_target_budget():
    """Defaults (tinit 0, tfinal 0): the last optimiser step forces the final allocation: target_r × modules."""
    steps = 4
    model, task, batch = prepared("bert", steps=steps)
    model.train()
    train_steps(model, batch, steps)
    state = adalora.summary(model)
    modules = len(state["final_ranks"])
    assert state["allocated"] and modules == 2 * 2  # 2 blocks × query,value
    assert state["budget"] == {"initial": 12 * modules, "target": 8 * modules, "final": 8 * modules}


@pytest.mark.slow
def test_training_reallocates_ranks():
    """30 real steps of the training loop on tiny BERT: after_step prunes from init_r 6 to an average of 2; the
    summary's ranks are what lora_E keeps non-zero, uneven across modules, and JSON-serialisable."""
    from peftlab.params import measure
    from peftlab.train import Encoded, train

    batch_size, steps = 4, 30
    model, task, _ = tiny_model("bert")
    knobs = adalora.Knobs(init_r=6, target_r=2, tinit=4, tfinal=6, target=["query", "key", "value", "ffn_in"])
    model = adalora.prepare(model, anatomy(model), knobs, Context(task, total_steps=steps))
    counts = measure(model)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, 12, (batch_size * steps,), generator=g)
    ids = [torch.randint(3, 97, (int(n),), generator=g) for n in lengths]
    labels = torch.tensor([int(x[0]) % 5 for x in ids])  # learnable: the first token decides the class
    enc = Encoded(task=task, labels=labels, input_ids=ids, pad_id=0)
    stats = train(model, enc, lr=5e-3, epochs=1, batch_size=batch_size, seed=0, progress=False,
                  after_step=REGISTRY["adalora"].after_step)  # fmt: skip
    assert stats.steps == steps

    state = json.loads(json.dumps(REGISTRY["adalora"].summary(model)))
    ranks = state["final_ranks"]
    assert len(ranks) == 2 * 4 and state["allocated"]
    assert state["budget"] == {"initial": 6 * 8, "target": 2 * 8, "final": 2 * 8}
    assert max(ranks.values()) <= 6 and len(set(ranks.values())) > 1  # reallocated: not 2 everywhere
    assert (state["tinit"], state["tfinal"], state["total_step"]) == (4, 6, steps)
    modules = dict(model.base_model.model.named_modules())
    for name, rank in ranks.items():  # PEFT's rank = the E entries left unmasked after the last allocation
        assert int(torch.count_nonzero(modules[name].lora_E["default"])) == rank
    assert measure(model) == counts  # masking changes ranks, never shapes


# --- where it cannot apply ----------------------------------------------------------------------------------


def test_depthwise_convs_are_refused(tmp_path):
    knobs = adalora.Knobs(target=["depthwise"])
    message = r"^--adalora-target: AdaLoRA cannot adapt grouped/depthwise convs"
    folder = config_folder(tmp_path, TINY["mobilenet_v2"])
    refused(message + " .*groups=", count, folder, "adalora", knobs, num_labels=5)
    refused(message, prepare_tiny, adalora, "mobilenet_v2", knobs, total_steps=10)


def test_target_r_must_be_below_init_r(tmp_path):
    knobs = adalora.Knobs(init_r=4, target_r=4)
    message = r"^--adalora-target-r 4: must be below --adalora-init-r 4"
    refused(message, count, config_folder(tmp_path, TINY["bert"]), "adalora", knobs, num_labels=5)
    refused(message, prepare_tiny, adalora, "bert", knobs, total_steps=10)


@pytest.mark.parametrize(("tinit", "tfinal", "steps"), [(3, 2, 5), (0, 4, 5), (0, 0, 1), (200, 1000, 90)])
def test_too_few_steps(tinit, tfinal, steps):
    knobs = adalora.Knobs(tinit=tinit, tfinal=tfinal)
    msg = refused(None, prepare_tiny, adalora, "bert", knobs, total_steps=steps)
    assert msg.startswith(
        f"--adalora-tinit {tinit} and --adalora-tfinal {tfinal} leave no rank budgeting phase"
    )
    assert f"this run's {steps} optimiser step" in msg


def test_just_enough_steps():
    model, task, _ = tiny_model("bert")
    adalora.prepare(model, anatomy(model), adalora.Knobs(tinit=3, tfinal=2), Context(task, total_steps=6))


# --- reload in plain PEFT -----------------------------------------------------------------------------------


def pretrained_base_with_new_head(family: str):
    """The base a user reloads onto: the same backbone weights (seed 0 stands for the pretrained ones), a head
    initialised afresh (seed 1): the adapter folder must restore the trained head."""
    fresh, _, _ = tiny_model(family, seed=1)
    return load_backbone(fresh, backbone_of(tiny_model(family, seed=0)[0]))


# PEFT's LoRA-level check reads AdaLoRA's rank_pattern (module -> kept triplets) as LoRA's (module -> rank) and warns
# that its keys match no module; AdaLoRA's own load path uses it as meant (the shapes are checked below). A module
# pruned to rank 0 saves (0, in) / (out, 0) tensors, which PEFT's save takes for unsharded ZeRO-3/FSDP ones.
@pytest.mark.filterwarnings("ignore:The following rank_pattern keys did not match:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Adapter 'default'.*invalid shape")
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f == "mobilenet_v2" else f for f in FAMILIES]
)
def test_reload_in_plain_peft(family, tmp_path):
    """Train until the final allocation, save, reload onto the base with a new random head: PEFT cuts the adapters
    to the kept ranks (rank_pattern) and restores the head; logits identical to the trained model cut the same way
    (and equal to the uncut one up to float summation order)."""
    from peft import PeftModel

    steps = 3
    model, task, batch = prepared(family, adalora.Knobs(init_r=5, target_r=2), steps=steps)
    # eval mode while training here: in train mode the CNNs' frozen BatchNorm layers update their running statistics,
    # buffers the adapter folder does not carry (true of every adapter method: a reload sees the base's statistics)
    model.eval()
    train_steps(model, batch, steps)
    model.eval()
    ranks = adalora.summary(model)["final_ranks"]
    inputs = inputs_of(batch)
    model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        trained = model(**inputs).logits
        # what PEFT does on reload, done to the trained model: cut each adapter to its kept triplets
        model.base_model.resize_modules_by_rank_pattern(model.peft_config["default"].rank_pattern, "default")
        expected = model(**inputs).logits

    fresh = pretrained_base_with_new_head(family)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    modules = dict(reloaded.base_model.model.named_modules())
    assert {n: modules[n].lora_E["default"].shape[0] for n in ranks} == ranks  # resized to the kept ranks
    with torch.no_grad():
        got = reloaded(**inputs).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the cut drops only zero terms (masked E), but a shorter inner dimension sums in another order: ~1 ulp
    torch.testing.assert_close(got, trained, rtol=0, atol=1e-6)
    if family in TEXT_FAMILIES:
        assert type(reloaded).__name__ == "PeftModelForSequenceClassification"
