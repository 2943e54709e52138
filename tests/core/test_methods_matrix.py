"""Every registered method x every architecture family, on tiny models: what trains, what stays frozen, one step.

Driven by the registry, so a method is tested here the day it registers.
"""

import pytest
import torch

from core.tiny import FAMILIES, tiny_model
from peftlab.config import RunConfig
from peftlab.methods import REGISTRY
from peftlab.models.anatomy import anatomy
from peftlab.params import measure


def _params_under(model, names):
    mods = dict(model.named_modules())
    return sum(p.numel() for n in names for p in mods[n].parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method_name", list(REGISTRY))
def test_method_on_family(method_name, family):
    model, task, batch = tiny_model(family)
    anat = anatomy(model)
    assert anat.blocks and anat.head, f"{family}: anatomy found no blocks/head"
    method = REGISTRY[method_name]
    cfg = RunConfig(model="tiny", dataset="tiny", method=method_name, task=task)
    total_before = measure(model)["total"]
    head_params = _params_under(model, anat.head)
    last_params = _params_under(model, anat.last_block)
    first_block = anat.blocks[0]
    first_before = {
        n: p.detach().clone() for n, p in dict(model.named_modules())[first_block].named_parameters()
    }

    prepared = method.prepare(model, anat, cfg)
    counts = measure(prepared)
    if method_name == "baseline":
        assert counts["trainable"] == 0
        return
    if method_name == "head":
        assert counts["trainable"] == head_params
    elif method_name == "last-layer":
        assert counts["trainable"] == head_params + last_params
    elif method_name == "full":
        assert counts["trainable"] == total_before
    elif method_name == "lora":
        names = [n for n, p in prepared.named_parameters() if p.requires_grad]
        assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
        assert all("lora_" in n or "modules_to_save" in n for n in names), names
        # PEFT's totals count the original head and its trainable copy
        assert counts["total"] > total_before

    # one optimiser step: loss is finite, trainable weights move, the first block stays put unless it trains
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
    base = prepared.get_base_model() if hasattr(prepared, "get_base_model") else prepared
    first_after = dict(dict(base.named_modules())[first_block].named_parameters())
    moved = any(not torch.equal(first_before[n], first_after[n]) for n in first_before if n in first_after)
    assert moved == (method_name == "full"), f"{method_name} on {family}: first block moved={moved}"
