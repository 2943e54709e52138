"""`ia3` on every tiny family: predicted == measured line by line (defaults and uneven knobs), PEFT's own defaults
reproduced exactly, one optimiser step, bad input as one line naming the flag, and a saved adapter reloading onto a
fresh base with identical logits.
"""

import pytest

from checks import (
    case_id,
    check,
    config_folder,
    folders,
    planned_step,
    prepare_tiny,
    refused,
    reloads_the_same,
)
from params.params_configs import BASE
from peftlab.methods import Context, ia3
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import FAMILIES, TINY, tiny_model


@pytest.fixture
def folder(tmp_path):
    return folders(tmp_path)


def knob_cases(family: str) -> list[ia3.Knobs]:
    """Defaults, then uneven target / feed-forward splits: every Linear of a block with PEFT's (or peftlab's)
    feed-forward default, none feed-forward, an input-scaled ffn_in; on CNNs kxk / depthwise convs scaled on their
    input channels; on ViT/CLIP the patch-embedding conv; a saved module beside the head."""
    K = ia3.Knobs
    cases = [K()]
    if family.startswith("resnet"):
        cases += [K(target=["pointwise", "spatial"], feedforward=["spatial"]), K(target=["spatial"])]
    elif family.startswith("mobilenet"):
        cases += [
            K(target=["depthwise", "pointwise"], feedforward=["depthwise"]),
            K(feedforward=["pointwise"]),
        ]
    else:
        every = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
        cases += [
            K(target=every),
            K(target=every, feedforward=[]),
            K(target=["key", "ffn_in"], feedforward=["ffn_in"]),
        ]
        if family.startswith(("vit", "clip")):
            patch = "projection" if family.startswith("vit") else "patch_embedding"
            cases += [K(target=[patch, "value", "ffn_out"], feedforward=[patch])]
        if family in ("bert", "roberta"):  # PEFT's "output.dense" feed-forward entry, typed by the user
            saved = (
                ["pooler"] if family == "bert" else ["classifier"]
            )  # RoBERTa has no pooler in its classifier
            cases += [
                K(target=["query", "output.dense"], feedforward=["output.dense"], modules_to_save=saved)
            ]
    return cases


CASES = [(f, k) for f in TINY for k in knob_cases(f)]


@pytest.mark.parametrize(("family", "knobs"), CASES, ids=[case_id(*c) for c in CASES])
def test_predicted_equals_measured(family, knobs, folder):
    result = count(folder(family), "ia3", knobs, num_labels=5)
    check(result)
    added = [r for r in result["breakdown"] if r["component"].startswith("ia3")]
    assert added and all(r["params"] > 0 and r["trainable"] == r["params"] for r in added)


def test_shapes_by_hand(folder):
    """bert tiny (H 48, F 100, 2 blocks), PEFT's default: key and value scale their 48 outputs; attention.output.dense
    (48 -> 48) and output.dense (100 -> 48) both end with "output.dense", so both scale their inputs: 48 and 100."""
    rows = {r["component"]: r for r in count(folder("bert"), "ia3", num_labels=5)["breakdown"]}
    assert rows["ia3 output scales on key,value"]["formula"] == "2 blocks × 2 × 48 = 192"
    assert rows["ia3 input scales (feed-forward) on output.dense"]["formula"] == "2 blocks × [48 + 100] = 296"
    # resnet: a 1x1 conv scaled on its input channels: (1, in, 1, 1)
    k = ia3.Knobs(target=["resnet.encoder.stages.0.layers.0.layer.2.convolution"], feedforward=["pointwise"])
    rows = count(folder("resnet"), "ia3", k, num_labels=5)["breakdown"]
    assert [r["formula"] for r in rows if r["component"].startswith("ia3")] == [
        "1 block × 4 = 4"
    ]  # 16 / 4 wide


def test_peft_mapping_copies_match_peft():
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
    )

    assert {k: TARGETS[k] for k in ia3.PEFT_TARGETS} == ia3.PEFT_TARGETS
    assert {k: FF[k] for k in ia3.PEFT_FEEDFORWARD} == ia3.PEFT_FEEDFORWARD


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_defaults_are_peft_own_defaults(family):
    """IA3Config(task_type=SEQ_CLS) alone (PEFT picks targets and feed-forward modules from its mappings) and
    peftlab's explicit full names build the same vectors on the same layers."""
    from peft import IA3Config, get_peft_model

    def vectors(model) -> dict:
        return {n: tuple(p.shape) for n, p in model.named_parameters() if ".ia3_l." in n}

    model, task, _ = tiny_model(family)
    theirs = vectors(get_peft_model(model, IA3Config(task_type="SEQ_CLS")))
    model, task, _ = tiny_model(family)
    ours = vectors(ia3.prepare(model, anatomy(model), ia3.Knobs(), Context(task)))
    assert ours == theirs
    assert (1, 100) in ours.values() and (1, 48) in ours.values() and (48, 1) in ours.values()


def step_and_check(family: str, knobs):
    """Prepare as planned, take one AdamW step -> (model in eval mode, batch, the base's backbone weights before
    training: what a pretrained checkpoint gives a fresh base)."""
    prepared, batch, backbone = planned_step(ia3.METHOD, tiny_model(family), knobs, graded=".ia3_l.")
    return prepared, batch, backbone


STEP_CASES = [(f, ia3.Knobs()) for f in FAMILIES]
STEP_CASES += [
    ("vit", ia3.Knobs(target=["projection", "key", "ffn_in"], feedforward=["projection", "ffn_in"]))
]
STEP_CASES += [("mobilenet_v2", ia3.Knobs(target=["depthwise", "pointwise"], feedforward=["depthwise"]))]


@pytest.mark.parametrize(("family", "knobs"), STEP_CASES, ids=[case_id(*c) for c in STEP_CASES])
def test_one_step_and_reload(family, knobs, tmp_path):
    trained, batch, backbone = step_and_check(family, knobs)
    fresh, _, _ = tiny_model(family, seed=1)  # another random head: only the saved copy can bring it back
    reloads_the_same(
        trained,
        batch,
        backbone,
        fresh,
        tmp_path / "adapter",
        stats_apart=family in ("mobilenet_v2", "resnet"),
    )


BAD = [
    (
        "bert",
        ia3.Knobs(target=["key", "value"], feedforward=["ffn_out"]),
        "--ia3-feedforward",
    ),  # not a target
    ("vit", ia3.Knobs(feedforward=["fc9"]), "--ia3-feedforward"),  # no such module
    ("resnet", ia3.Knobs(target=["depthwise"]), "--ia3-target"),  # no depthwise conv in a ResNet
    ("roberta", ia3.Knobs(target=["classifier.dense"]), "--ia3-target"),  # the head is saved whole
    ("distilbert", ia3.Knobs(modules_to_save=["nothing_here"]), "--ia3-modules-to-save"),
]


@pytest.mark.parametrize(("family", "knobs", "flag"), BAD, ids=[b[2] + "-" + b[0] for b in BAD])
def test_bad_input_names_the_flag(family, knobs, flag, folder):
    refused(flag, count, folder(family), "ia3", knobs, num_labels=5)
    refused(flag, prepare_tiny, ia3, family, knobs)


@pytest.mark.parametrize(
    ("name", "labels", "trainable"),
    [
        # 12 blocks × (768 key + 768 value + 768 attention-out inputs + 3072 feed-forward inputs) + the RoBERTa head
        # copy (768×768 + 768 + 768×3 + 3)
        ("roberta-base", 3, 12 * (768 + 768 + 768 + 3072) + 768 * 768 + 768 + 768 * 3 + 3),
        # 12 blocks × (768 query + 768 value outputs) + the head copy 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 12 * (768 + 768) + 768 * 101 + 101),
    ],
)
def test_base_sizes(name, labels, trainable, tmp_path):
    result = count(config_folder(tmp_path, BASE[name]), "ia3", num_labels=labels)
    check(result)
    assert result["trainable"] == trainable
