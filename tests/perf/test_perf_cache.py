"""The frozen-prefix cache (train/cache.py): same results as the uncached path, safe keys, the RAM budget, reuse.

Tiny models of every family with dropout 0, then the packaged minilm-l6 on a few tweets; nothing here is timed.
"""

import pytest
import torch
from torch import nn

from peftlab import config
from peftlab.methods import REGISTRY, Context
from peftlab.models import anatomy
from peftlab.train import evaluate, train
from peftlab.train.cache import cache_store, plan_prefix, prefix_inputs, skip_prefix
from peftlab.train.encode import Encoded
from tiny import FAMILIES, image_side, tiny_model

TRANSFORMERS = [f for f in FAMILIES if f not in ("mobilenet_v2", "resnet")]


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def _data(task: str, n: int, seed: int = 0, side: int = 32) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (n,), generator=g)
    if task == "text-classification":
        lengths = torch.randint(2, 12, (n,), generator=g)
        ids = [torch.randint(3, 97, (int(t),), generator=g) for t in lengths]
        return Encoded(task, labels, input_ids=ids)
    return Encoded(task, labels, pixel_values=torch.randn(n, 3, side, side, generator=g))


def _prepared(family: str, method: str, seed: int = 0):
    model, task, _ = tiny_model(family, seed=seed)
    anat = anatomy(model)
    m = REGISTRY[method]
    return _no_dropout(m.prepare(model, anat, m.knobs(), Context(task))), anat, task


def _train_and_eval(model, train_in, eval_in, fwd=None, epochs=2.0):
    stats = train(model, train_in, lr=1e-2, epochs=epochs, batch_size=4, seed=3, progress=False,
                  forward=fwd.loss if fwd else None)  # fmt: skip
    metrics = evaluate(model, eval_in, 8, [f"c{i}" for i in range(5)], forward=fwd.logits if fwd else None)
    return stats, metrics


@pytest.mark.parametrize("method", ["head", "last-layer"])
@pytest.mark.parametrize("family", TRANSFORMERS)
def test_cached_training_matches_uncached(family, method):
    """Same seed, dropout 0: the same losses, weights and metrics with and without the cache (float tolerance)."""
    runs = []
    for cached in (False, True):
        model, anat, task = _prepared(family, method)
        tr, ev = _data(task, 14, 1, image_side(family)), _data(task, 10, 2, image_side(family))
        if cached:
            plan = plan_prefix(model, anat, ev)
            assert plan is not None and plan.block == (
                len(anat.blocks) if method == "head" else len(anat.blocks) - 1
            )
            memo = {}
            train_in, _ = prefix_inputs(memo, plan, tr, budget_mb=64, batch_size=5)
            eval_in, _ = prefix_inputs(memo, plan, ev, budget_mb=64, batch_size=5)
            with skip_prefix(plan) as fwd:
                stats, metrics = _train_and_eval(model, train_in, eval_in, fwd)
        else:
            stats, metrics = _train_and_eval(model, tr, ev)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        runs.append((stats, metrics, weights))
    (s0, m0, w0), (s1, m1, w1) = runs
    assert s1.final_loss == pytest.approx(s0.final_loss, rel=1e-4, abs=1e-5)
    assert m1["accuracy"] == m0["accuracy"] and m1["macro_f1"] == pytest.approx(m0["macro_f1"])
    # Adam steps by lr * m / sqrt(v): for a weight whose gradient is rounding noise (~1e-9), the noise's sign decides
    # the step, so float reordering in the cached path can move such a weight by a few % of one step (lr 1e-2 here:
    # 2.3e-4 seen on CLIP). The bound is 10% of one step; the metrics above check the function itself.
    for name in w0:
        torch.testing.assert_close(w1[name], w0[name], rtol=1e-3, atol=0.1 * 1e-2)


@pytest.mark.parametrize("family", ["mobilenet_v2", "resnet"])
def test_cnn_cached_prefix_is_the_eval_mode_model(family):
    """CNNs: the frozen prefix runs in eval mode (BatchNorm on running statistics), so the cut model must equal the
    whole model in eval mode; training on the cache runs and changes only the trainable tail."""
    model, anat, task = _prepared(family, "last-layer")
    tr, ev = _data(task, 12, seed=1), _data(task, 8, seed=2)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    plan = plan_prefix(model, anat, ev)
    assert plan is not None
    memo = {}
    eval_in, _ = prefix_inputs(memo, plan, ev, budget_mb=64, batch_size=3)
    model.eval()
    with torch.inference_mode():
        full = model(**ev.collate(list(range(8)), with_labels=False)).logits
        with skip_prefix(plan) as fwd:
            cut = fwd.logits(model, eval_in.collate(list(range(8)), with_labels=False))
    torch.testing.assert_close(cut, full, rtol=1e-4, atol=1e-5)
    train_in, _ = prefix_inputs(memo, plan, tr, budget_mb=64, batch_size=3)
    with skip_prefix(plan) as fwd:
        _train_and_eval(model, train_in, eval_in, fwd, epochs=1.0)
    for n, p in model.named_parameters():
        if n in frozen:
            torch.testing.assert_close(p.detach(), frozen[n])


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_and_full_are_not_cut(family):
    for method in ("lora", "full"):
        model, anat, task = _prepared(family, method)
        assert plan_prefix(model, anat, _data(task, 4, side=image_side(family))) is None


def test_model_is_restored_after_the_cut():
    model, anat, task = _prepared("bert", "head")
    ev = _data(task, 6)
    batch = ev.collate(list(range(6)), with_labels=False)
    with torch.inference_mode():
        before = model(**batch).logits
    plan = plan_prefix(model, anat, ev)
    cached, _ = prefix_inputs({}, plan, ev, budget_mb=64)
    with skip_prefix(plan):
        pass
    assert all("forward" not in vars(m) for m in model.modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, before)


def test_keys_never_mix_models_preprocessing_or_data():
    memo = {}
    model_a, anat, task = _prepared("bert", "head", seed=0)
    data = _data(task, 8)
    plan_a = plan_prefix(model_a, anat, data)
    _, info = prefix_inputs(memo, plan_a, data, budget_mb=64)
    assert not info["hit"]
    # the same weights again (another seed's run reloads them): reused
    model_a2, anat2, _ = _prepared("bert", "head", seed=0)
    _, info = prefix_inputs(memo, plan_prefix(model_a2, anat2, data), data, budget_mb=64)
    assert info["hit"]
    # other backbone weights, other token ids (another tokenizer / max_length), other samples: never reused
    model_b, anat_b, _ = _prepared("bert", "head", seed=1)
    _, info = prefix_inputs(memo, plan_prefix(model_b, anat_b, data), data, budget_mb=64)
    assert not info["hit"]
    truncated = Encoded(task, data.labels, input_ids=[t[:3] for t in data.input_ids])
    _, info = prefix_inputs(memo, plan_a, truncated, budget_mb=64)
    assert not info["hit"]
    _, info = prefix_inputs(memo, plan_a, _data(task, 8, seed=5), budget_mb=64)
    assert not info["hit"]
    # a different cut of the same model (last-layer) is its own entry, filled by the head's pass
    model_c, anat_c, _ = _prepared("bert", "last-layer", seed=0)
    _, info = prefix_inputs(memo, plan_prefix(model_c, anat_c, data), data, budget_mb=64)
    assert info["hit"] and info["block"] == len(anat_c.blocks) - 1
    assert cache_store(memo).builds == 4


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_budget_spills_to_disk_with_the_same_values(family):
    model, anat, task = _prepared(family, "last-layer")
    data = _data(task, 9, side=image_side(family))
    plan = plan_prefix(model, anat, data)
    in_ram, info_ram = prefix_inputs({}, plan, data, budget_mb=64, batch_size=4)
    on_disk, info_disk = prefix_inputs({}, plan, data, budget_mb=0, batch_size=4)
    assert not info_ram["on_disk"] and info_disk["on_disk"]
    idx = [4, 0, 7]
    a, b = in_ram.collate(idx), on_disk.collate(idx)
    torch.testing.assert_close(a["_prefix"], b["_prefix"])


def test_budget_is_shared_by_the_entries_of_one_process():
    model, anat, task = _prepared("bert", "last-layer")
    first, second = _data(task, 40, seed=1), _data(task, 40, seed=2)
    plan = plan_prefix(model, anat, first)
    one_mb = int(first.lengths().sum()) * 48 * 4 / 2**20  # (tokens, hidden 48) float32 of one cut
    memo = {}
    # room for the last-layer cut of `first` and, beside it, the head cut that the same pass yields
    _, info = prefix_inputs(memo, plan, first, budget_mb=2.5 * one_mb, batch_size=8)
    assert not info["on_disk"] and cache_store(memo).ram_bytes == pytest.approx(2 * one_mb * 2**20)
    _, info = prefix_inputs(memo, plan, second, budget_mb=2.5 * one_mb, batch_size=8)
    assert info["on_disk"]  # the next one no longer fits: memory-mapped; its optional neighbour is dropped
    assert cache_store(memo).ram_bytes <= 2.5 * one_mb * 2**20


# --- the packaged MiniLM, end to end through run_experiment ------------------------------------------------------

TEXT = dict(model="minilm-l6", dataset="vader-tweets", max_train_samples=24, max_eval_samples=18, epochs=2,
            batch_size=8, max_length=24, save_model=False)  # fmt: skip


@pytest.fixture
def no_dropout_models(monkeypatch):
    import peftlab.tasks.classification as experiment

    real = experiment.load_model

    def load(*args, **kwargs):
        loaded = real(*args, **kwargs)
        _no_dropout(loaded.model)
        return loaded

    monkeypatch.setattr(experiment, "load_model", load)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["head", "last-layer"])
def test_minilm_cached_run_matches_uncached(method, tmp_path, monkeypatch, no_dropout_models):
    import peftlab.tasks.classification as experiment
    from peftlab.run import run_experiment
    from peftlab.store import Store

    store = Store(tmp_path / "db.sqlite")
    cached = run_experiment(
        config.load(dict(**TEXT, method=method, seed=4, out=str(tmp_path))), store, memo={}, progress=False
    ).to_dict()
    assert cached["time"]["prefix_cache"]["train"]["block"] == (6 if method == "head" else 5)
    monkeypatch.setattr(experiment, "plan_prefix", lambda *a, **k: None)
    plain = run_experiment(
        config.load(dict(**TEXT, method=method, seed=4, out=str(tmp_path))), store, memo={}, progress=False
    ).to_dict()
    assert plain["time"]["prefix_cache"] is None
    assert cached["time"]["final_loss"] == pytest.approx(plain["time"]["final_loss"], rel=1e-4)
    for key in ("accuracy", "macro_f1", "macro_recall"):
        assert cached["metrics"][key] == pytest.approx(plain["metrics"][key])
        assert cached["baseline_metrics"][key] == pytest.approx(plain["baseline_metrics"][key])


@pytest.mark.slow
def test_compare_runs_the_backbone_once_per_split(tmp_path):
    """baseline, head and last-layer on three seeds: one pass over the eval split, one over the train split."""
    from peftlab.run import run_experiment
    from peftlab.store import Store

    memo, store = {}, Store(tmp_path / "db.sqlite")
    records = []
    for method in ("baseline", "head", "last-layer"):
        for seed in range(3):
            cfg = config.load(dict(**TEXT, method=method, seed=seed, out=str(tmp_path)))
            records.append(run_experiment(cfg, store, memo=memo, progress=False).to_dict())
    assert cache_store(memo).builds == 2
    hits = [r["time"]["prefix_cache"]["eval"]["hit"] for r in records]
    assert hits == [False] + [True] * 8
    assert all(r["status"] == "ok" for r in records)
