"""Every registered method x every architecture family on tiny models (tests/tiny.py), driven by the registries only:
a new method or family is tested here the day it registers, with no per-method branch.

For each pair: the method's own parameter arithmetic (its `plan`) predicts exactly what `prepare` makes trainable,
component by component; one optimiser step moves trainable weights and leaves every frozen one bit-identical.
"""

import dataclasses

import pytest
import torch

from peftlab.errors import BadInput
from peftlab.methods import REGISTRY, Context, check_applies
from peftlab.models.anatomy import anatomy
from peftlab.params import measure, measure_breakdown, predict_from_config
from tiny import FAMILIES, TEXT_FAMILIES, TINY_KNOBS, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method_name", list(REGISTRY))
def test_method_on_family(method_name, family):
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    assert anat.blocks and anat.head, f"{family}: anatomy found no blocks/head"
    method = REGISTRY[method_name]
    if task not in method.tasks or anat.kind not in method.kinds:
        with pytest.raises(BadInput, match=f"--method {method_name}"):
            check_applies(method, anat, task)
        return
    knobs = dataclasses.replace(method.knobs(), **TINY_KNOBS.get(method_name, {}))
    pooling = "cls" if family in TEXT_FAMILIES else "image"
    try:
        predicted = predict_from_config(model.config, task, 5, method, knobs, pooling=pooling)
    except BadInput as refusal:  # the arithmetic refuses this family: so must prepare, before anything trains
        with pytest.raises(BadInput):
            method.prepare(model, anat, knobs, Context(task, total_steps=10))
        assert "\n" not in str(refusal)
        return
    prepared = method.prepare(model, anat, knobs, Context(task, total_steps=10))
    counts = measure(prepared)

    assert predicted.trainable is not None, predicted.note
    assert (counts["trainable"], counts["total"]) == (predicted.trainable, predicted.total)
    measured = {r["component"]: (r["params"], r["trainable"]) for r in measure_breakdown(prepared, predicted)}
    expected = {r["component"]: (r["params"], r["trainable"]) for r in predicted.breakdown}
    assert measured == expected
    if not method.needs_training:
        assert counts["trainable"] == 0
        return
    assert counts["trainable"] > 0

    # one optimiser step: the loss is finite, something trainable moves, nothing frozen does
    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    prepared.train()
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    loss = prepared(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    prepared.eval()
    with torch.no_grad():
        logits = prepared(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.shape == (4, 5)
    after = dict(prepared.named_parameters())
    frozen_moved = [n for n, p in after.items() if not p.requires_grad and not torch.equal(p, before[n])]
    assert not frozen_moved, f"{method_name} on {family}: frozen weights moved: {frozen_moved[:3]}"
    assert any(p.requires_grad and not torch.equal(p, before[n]) for n, p in after.items())
