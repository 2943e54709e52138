"""`head` on cached classification features (train/cache.py head cut + train/fast.py): where the cut holds, that it
reproduces the model's train-mode tail, and that training on it equals the accelerate loop over the prefix cache."""

import pytest
import torch

from peftlab.methods import REGISTRY, Context
from peftlab.models import anatomy
from peftlab.train import evaluate, train
from peftlab.train.cache import (
    DropThenHead,
    head_features,
    plan_head_cut,
    plan_prefix,
    prefix_inputs,
    skip_prefix,
)
from peftlab.train.encode import train_batches
from peftlab.train.fast import fit_heads, hf_schedule
from tiny import image_side, tiny_model

from .test_perf_cache import _data, _prepared

CUT = ["bert", "vit", "mobilenet_v2", "resnet", "clip"]  # one head module on one vector (or map) per sample
NOT_CUT = [
    "roberta",
    "distilbert",
]  # per-token head input; two head modules with a ReLU between them in forward()


def _cut(family: str, n_train: int = 14, dropout: bool = False):
    if dropout:  # the model as loaded, its dropout on
        model, task, _ = tiny_model(family)
        anat = anatomy(model)
        model = REGISTRY["head"].prepare(model, anat, REGISTRY["head"].knobs(), Context(task))
    else:
        model, anat, task = _prepared(family, "head")
    side = image_side(family)
    tr, ev = _data(task, n_train, 1, side), _data(task, 10, 2, side)
    plan = plan_prefix(model, anat, ev)
    memo = {}
    train_in, _ = prefix_inputs(memo, plan, tr, budget_mb=64, batch_size=5)
    eval_in, _ = prefix_inputs(memo, plan, ev, budget_mb=64, batch_size=5)
    return model, anat, plan, train_in, eval_in


@pytest.mark.parametrize("family", CUT)
def test_head_cut_is_found_with_the_models_own_dropout(family):
    model, anat, plan, train_in, eval_in = _cut(family, dropout=True)
    # BERT and MobileNetV2 apply `self.dropout` to the pooled vector before `classifier`; the others apply none
    before_head = getattr(model, "dropout", None)
    expected = before_head.p if before_head is not None else 0.0
    assert family not in ("bert", "mobilenet_v2") or expected > 0
    with skip_prefix(plan) as fwd:
        cut = plan_head_cut(model, anat, plan, fwd, eval_in)
        assert cut is not None and cut.module is model.get_submodule(anat.head[0])
        assert cut.dropout == pytest.approx(expected)
        feats = head_features(model, fwd, cut, eval_in, batch_size=3)
        model.eval()
        with torch.inference_mode():
            logits = fwd.logits(model, eval_in.collate(list(range(len(eval_in))), with_labels=False))
            torch.testing.assert_close(cut.module(feats), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", NOT_CUT)
def test_no_head_cut_where_it_would_not_be_the_model(family):
    model, anat, plan, _, eval_in = _cut(family)
    with skip_prefix(plan) as fwd:
        assert plan_head_cut(model, anat, plan, fwd, eval_in) is None


def test_no_head_cut_for_last_layer():
    model, anat, task = _prepared("bert", "last-layer")
    ev = _data(task, 6)
    plan = plan_prefix(model, anat, ev)
    cached, _ = prefix_inputs({}, plan, ev, budget_mb=64)
    with skip_prefix(plan) as fwd:
        assert plan_head_cut(model, anat, plan, fwd, cached) is None  # the last block trains too


@pytest.mark.parametrize("family", ["bert", "vit", "mobilenet_v2", "resnet"])
def test_training_on_head_features_equals_the_loop_over_the_prefix_cache(family):
    """Dropout 0, the same seed: the same batches (text grouped by length, as the loop draws them), schedule, clipping
    and fused AdamW, so the same head weights and metrics within float tolerance."""
    knobs = dict(
        lr=1e-2, epochs=2.0, batch_size=4, seed=3, weight_decay=0.01, warmup_ratio=0.1, max_grad_norm=1.0
    )
    labels = [f"c{i}" for i in range(5)]
    runs = []
    for fast in (False, True):
        model, anat, plan, train_in, eval_in = _cut(family, n_train=18)
        with skip_prefix(plan) as fwd:
            if fast:
                cut = plan_head_cut(model, anat, plan, fwd, eval_in)
                feats, tr = head_features(model, fwd, cut, train_in, batch_size=5), train_in
                fit_heads([DropThenHead(cut)], lambda idx, f=feats: (f[idx],), tr.labels, progress=False, threads=1,
                          lr_factor=hf_schedule, batches=lambda g, tr=tr: train_batches(tr, 4, g, True),
                          **knobs)  # fmt: skip
            else:
                train(model, train_in, progress=False, forward=fwd.loss, **knobs)
            metrics = evaluate(model, eval_in, 8, labels, forward=fwd.logits)
        head = model.get_submodule(anat.head[0])
        runs.append((metrics, {n: p.detach().clone() for n, p in head.named_parameters()}))
    (m0, w0), (m1, w1) = runs
    assert m1["accuracy"] == m0["accuracy"] and m1["macro_f1"] == pytest.approx(m0["macro_f1"])
    for (
        name
    ) in w0:  # Adam's sign-of-noise steps on near-zero gradients: 10% of one step, as test_perf_cache says
        torch.testing.assert_close(w1[name], w0[name], rtol=1e-3, atol=0.1 * 1e-2)


@pytest.mark.slow
def test_packaged_mobilenet_in_place_dropout_is_the_cut(tmp_path, monkeypatch):
    """MobileNetV2's classifier Dropout works in place (it overwrites its input): the probe must compare the input as
    it was before the Dropout ran. Real weights, so the pooled features are not all zero."""
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    from peftlab.models import load_model

    loaded = load_model("mobilenet-v2", "image-classification", ["a", "b", "c", "d", "e"])  # _data: 5 labels
    model, anat = loaded.model, loaded.anatomy
    assert model.dropout.inplace and model.dropout.p > 0
    model = REGISTRY["head"].prepare(model, anat, REGISTRY["head"].knobs(), Context("image-classification"))
    ev = _data("image-classification", 6, 2, side=64)
    plan = plan_prefix(model, anat, ev)
    cached, _ = prefix_inputs({}, plan, ev, budget_mb=64, batch_size=3)
    with skip_prefix(plan) as fwd:
        cut = plan_head_cut(model, anat, plan, fwd, cached)
    assert cut is not None and cut.dropout == pytest.approx(model.dropout.p)
