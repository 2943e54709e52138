"""The hashed dropout used while training (train/dropout.py): right keep rate and scale, reproducible, the same mask in
the backward pass, SDPA-equivalent attention, and everything restored after the `with` block."""

import pytest
import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from peftlab.train.dropout import _attention, fast_dropout, hashed_dropout, keep_mask
from tiny import tiny_model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scale(p):
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), p)  # 10^6 draws: the kept share has a standard error below 0.0005
    kept = mask > 0
    q = 1 - round(p * 65536) / 65536
    assert abs(kept.float().mean().item() - q) < 0.003
    assert torch.equal(mask[kept], torch.full_like(mask[kept], 1 / q))  # kept values are scaled by 1 / q
    assert abs(mask.mean().item() - 1.0) < 0.006  # so the expectation of x * mask is x


def test_lanes_are_independent():
    """Neighbouring elements share a 64-bit hash (four 16-bit lanes): their keep decisions must not be correlated."""
    torch.manual_seed(1)
    kept = (keep_mask((250_000, 4), 0.5) > 0).float()
    corr = torch.corrcoef(kept.T)
    off_diagonal = corr[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max().item() < 0.01


def test_reproducible_under_seed_and_fresh_per_call():
    torch.manual_seed(7)
    a, b = keep_mask((64, 64), 0.1), keep_mask((64, 64), 0.1)
    torch.manual_seed(7)
    assert torch.equal(a, keep_mask((64, 64), 0.1))
    assert not torch.equal(a, b)  # each call draws a new seed


def test_backward_uses_the_forward_mask():
    torch.manual_seed(0)
    x = torch.ones(8, 5, 16, requires_grad=True)
    y = hashed_dropout(x, 0.3)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # dy/dx = mask, and y = 1 * mask
    assert 0 < (y == 0).float().mean().item() < 0.6


def test_p_next_to_one_drops_almost_everything_without_error():
    torch.manual_seed(0)
    y = hashed_dropout(torch.ones(1000), 1 - 1e-6)  # rounds to 65536 of 65536 lanes: left to F.dropout
    assert (y == 0).sum().item() >= 999


def test_attention_matches_sdpa_when_nothing_drops():
    """p = 1e-6 rounds to no dropped lane: the hand-written math path must then equal SDPA's own result."""
    model, _, batch = tiny_model("bert")
    module = model.bert.encoder.layer[0].attention.self
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 3, 9, 16, generator=g) for _ in range(3))
    mask = batch["attention_mask"].bool()[:, None, None, :].expand(4, 1, 9, 9)
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    want, _ = original(module, q, k, v, mask, dropout=0.0, scaling=0.25)
    got, _ = _attention(original)(module, q, k, v, mask, dropout=1e-6, scaling=0.25)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    dropped, _ = _attention(original)(module, q, k, v, mask, dropout=0.5, scaling=0.25)
    assert not torch.allclose(dropped, want)


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_fast_dropout_trains_with_dropout_and_restores(family):
    model, _, batch = tiny_model(family)
    assert model.config._attn_implementation == "sdpa"  # so the attention patch is exercised
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    model.train()
    with fast_dropout(model):
        torch.manual_seed(0)
        a = model(**batch).logits
        torch.manual_seed(0)
        b = model(**batch).logits
        torch.manual_seed(1)
        c = model(**batch).logits
        a.sum().backward()
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not original
    assert torch.equal(a, b) and not torch.allclose(a, c)  # seeded, and random
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, nn.Dropout))
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original
    model.eval()
    with torch.no_grad(), fast_dropout(model):
        assert torch.equal(model(**batch).logits, model(**batch).logits)  # eval mode: no dropout at all
