"""The lean head loop (train/fast.py): every sample once per epoch, seeded, heads trained together equal heads trained
one after another, and the VQA heads on it (nothing here is timed)."""

import math

import pytest
import torch
from torch import nn

from peftlab.tasks.vqa.heads import FusionHead, Pairs, predict, train_head, train_heads
from peftlab.train.fast import epoch_batches, fit_heads, hf_schedule, schedule, total_steps

KNOBS = dict(lr=1e-2, weight_decay=0.01, warmup_ratio=0.2, max_grad_norm=0.5, progress=False)


@pytest.mark.parametrize("n, batch", [(10, 3), (12, 4), (1, 8), (257, 256)])
def test_an_epoch_covers_every_sample_exactly_once(n, batch):
    g = torch.Generator().manual_seed(0)
    first = epoch_batches(n, batch, g)
    second = epoch_batches(n, batch, g)
    for epoch in (first, second):
        assert [len(b) for b in epoch] == [min(batch, n - i) for i in range(0, n, batch)]
        assert sorted(torch.cat(epoch).tolist()) == list(range(n))  # each index once, none missing
    assert n < 3 or not torch.equal(torch.cat(first), torch.cat(second))  # a new order every epoch
    again = torch.Generator().manual_seed(0)
    assert torch.equal(torch.cat(epoch_batches(n, batch, again)), torch.cat(first))  # same seed, same order


def test_schedules_warm_up_then_decay_to_zero():
    total, warmup = 10, 4
    assert [schedule(s, total, warmup) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [hf_schedule(s, total, warmup) for s in range(4)] == [0.0, 0.25, 0.5, 0.75]
    for f in (schedule, hf_schedule):
        assert f(warmup, total, warmup) == 1.0 and f(total, total, warmup) == 0.0
    assert total_steps(10, 3, 2.5) == math.ceil(4 * 2.5)


def _data(n=40, m=9, t=5, di=12, dt=7, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    img, txt = torch.randn(m, di, generator=g), torch.randn(t, dt, generator=g)
    pairs = Pairs(torch.randint(0, m, (n,), generator=g), torch.randint(0, t, (n,), generator=g),
                  torch.randint(0, k, (n,), generator=g))  # fmt: skip
    return img, txt, pairs


def _heads(seed=0, dropout=0.0):
    out = []
    for inputs in ("both", "question", "image"):
        torch.manual_seed(seed)  # as the VQA run seeds each head
        out.append(FusionHead(12, 7, 4, "concat-product", hidden=16, dropout=dropout, inputs=inputs))
    return out


def test_heads_trained_together_equal_heads_trained_one_after_another():
    """Disjoint parameters, a summed loss, clipping per head, elementwise AdamW: with dropout 0 the joint loop is the
    same arithmetic as three separate ones over the same batches, to the bit."""
    img, txt, pairs = _data()
    together = _heads()
    joint = train_heads(together, img, txt, pairs, epochs=3, batch_size=8, seed=5, **KNOBS)
    alone = _heads()
    losses = [
        train_head(h, img, txt, pairs, epochs=3, batch_size=8, seed=5, **KNOBS).final_loss[0] for h in alone
    ]
    assert joint.final_loss == losses
    for a, b in zip(together, alone):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), name
        assert torch.equal(predict(a, img, txt, pairs), predict(b, img, txt, pairs))


def test_same_seed_same_numbers_with_dropout_too():
    """With dropout the heads draw their masks from one generator in turn, so the joint loop is not the separate
    loops' arithmetic any more, but a seed still fixes every number."""
    img, txt, pairs = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        heads = _heads(dropout=0.3)
        stats = train_heads(heads, img, txt, pairs, epochs=2, batch_size=8, seed=1, **KNOBS)
        runs.append((stats.final_loss, [predict(h, img, txt, pairs) for h in heads]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    other = train_heads(_heads(dropout=0.3), img, txt, pairs, epochs=2, batch_size=8, seed=2, **KNOBS)
    assert other.final_loss != runs[0][0]  # another seed, other batches


def test_clipping_is_per_head():
    """A head with huge gradients must not shrink the step of another: each is clipped by its own norm."""
    x = torch.randn(16, 3)
    y = torch.randint(0, 2, (16,))
    small = nn.Linear(3, 2)
    loud = nn.Linear(3, 2)
    with torch.no_grad():
        loud.weight.mul_(1e4)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(small.state_dict())
    knobs = dict(epochs=1, lr=0.1, batch_size=16, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=1.0, seed=0,
                 progress=False)  # fmt: skip
    fit_heads([small, loud], lambda idx: (x[idx],), y, **knobs)
    fit_heads([ref], lambda idx: (x[idx],), y, **knobs)
    assert torch.equal(small.weight, ref.weight)


def test_fractional_epochs_and_on_epoch():
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    seen = []
    stats = fit_heads([nn.Linear(3, 2)], lambda idx: (x[idx],), y, epochs=1.5, batch_size=4, lr=1e-2,
                      weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=0.0, seed=0, progress=False,
                      on_epoch=seen.append)  # fmt: skip
    assert stats.steps == 5 and stats.samples == 10 + 8  # 3 batches, then 2 of the second epoch's 3
    assert seen == [1, 2]  # after the full pass and after the part of the second one


def test_two_threads_give_the_one_thread_numbers(monkeypatch):
    """On two cores the heads split into two parts of about equal weight, each stepping (forward, backward, clipping,
    its own AdamW) on its own thread: the same numbers to the bit as one thread stepping all of them. Dropout keeps
    them in one thread (masks drawn from one generator by two threads would come in a racing order)."""
    import peftlab.distributed
    from peftlab.train import fast

    monkeypatch.setattr(peftlab.distributed, "physical_cores", lambda: 2)
    assert fast._groups(_heads(), 1) == [[0], [1, 2]]  # the fusion head against the two baselines
    assert fast._groups(_heads(dropout=0.1), 1) == [[0, 1, 2]]
    assert fast._groups(_heads(), None) == [[0, 1, 2]]  # OpenMP threads: left to them
    img, txt, pairs = _data()
    split = _heads()
    two = train_heads(split, img, txt, pairs, epochs=3, batch_size=8, seed=5, **KNOBS)
    monkeypatch.setattr(fast, "_groups", lambda heads, threads: [list(range(len(heads)))])
    whole = _heads()
    one = train_heads(whole, img, txt, pairs, epochs=3, batch_size=8, seed=5, **KNOBS)
    assert two.final_loss == one.final_loss and two.ema_loss == one.ema_loss
    for a, b in zip(split, whole):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), name
