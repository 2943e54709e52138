"""`bitfit` on every tiny family: predicted == measured line by line, one step moves only biases and the head, the
saved full model reloads with identical logits; the standard base sizes from config.json on the meta device.
"""

import pytest
import torch

from checks import check, config_folder, one_step, same_logits
from params.params_configs import BASE
from peftlab.methods import Context, bitfit
from peftlab.models.anatomy import anatomy
from peftlab.params import count
from tiny import CLASSES, FAMILIES, TINY, tiny_model


@pytest.mark.parametrize("family", list(TINY))
def test_predicted_equals_measured(family, tmp_path):
    result = count(config_folder(tmp_path, TINY[family]), "bitfit", bitfit.METHOD.knobs(), num_labels=5)
    check(result)
    rows = {r["component"]: r for r in result["breakdown"]}
    assert rows["head"]["trainable"] == rows["head"]["params"]  # the head trains whole
    for r in rows.values():  # elsewhere only biases: a partial count labelled as such, or nothing
        if r["component"] != "head" and 0 < r["trainable"] < r["params"]:
            assert r["trainable_formula"].startswith("biases ")


def test_norm_biases_train_and_gains_do_not(tmp_path):
    """BitFit's b of LayerNorm / BatchNorm trains; the gain (norm weight) stays frozen."""
    for family in ("bert", "resnet"):
        result = count(config_folder(tmp_path, TINY[family]), "bitfit", num_labels=5)
        norms = next(r for r in result["breakdown"] if r["component"] in ("block layer norms", "stage 1"))
        assert 0 < norms["trainable"] < norms["params"], norms


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_moves_biases_and_head_only(family):
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    prepared = bitfit.prepare(model, anat, bitfit.METHOD.knobs(), Context(task))
    trainable = [n for n, p in prepared.named_parameters() if p.requires_grad]
    in_head = [n for n in trainable if any(n == h or n.startswith(h + ".") for h in anat.head)]
    assert in_head and all(n.endswith(".bias") for n in trainable if n not in in_head)
    norms = [
        n for n, m in prepared.named_modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))
    ]
    assert norms and all(f"{n}.bias" in trainable and f"{n}.weight" not in trainable for n in norms)

    before, after = one_step(prepared, batch, all_move=False)  # a zero bias with a zero gradient stays
    assert all(not torch.equal(after[n], before[n]) for n in in_head)
    assert any(not torch.equal(after[n], before[n]) for n in trainable if n not in in_head)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_reloads_with_identical_logits(family, tmp_path):
    """Not an adapter: the full model folder, reloaded by its class, gives the trained model's logits exactly."""
    model, task, batch = tiny_model(family)
    prepared = bitfit.prepare(model, anatomy(model), bitfit.METHOD.knobs(), Context(task))
    one_step(prepared, batch, all_move=False)
    prepared.save_pretrained(tmp_path / "model")
    torch.manual_seed(123)
    reloaded = CLASSES[family].from_pretrained(tmp_path / "model").eval()
    same_logits(prepared, reloaded, batch)


@pytest.mark.parametrize(
    ("name", "labels", "trainable", "total"),
    [
        # biases 768 (embeddings norm) + 12 × (3×768 + 768 + 2×768 + 3072 + 768) = 102,144; + head 592,899
        ("roberta-base", 3, 695_043, 124_647_939),
        # biases 768 (patch projection) + 12 × 8,448 + 768 (final norm) = 102,912; + head 768×101 + 101
        ("google/vit-base-patch16-224-in21k", 101, 180_581, 85_876_325),
    ],
)
def test_base_sizes(name, labels, trainable, total, tmp_path):
    result = count(config_folder(tmp_path, BASE[name]), "bitfit", num_labels=labels)
    check(result)
    assert (result["trainable"], result["total"]) == (trainable, total)
