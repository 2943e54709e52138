"""The plan's arithmetic: its batches are the training loop's own, its totals add up, and its time and memory move the
way the runs do (more samples, bigger batches, a bigger GPU)."""

import numpy as np
import pytest
import torch

from peftlab import config
from peftlab.plan import Builds, Context, plan_run
from peftlab.plan.accelerators import accelerator
from peftlab.plan.data import Shapes, eval_steps, train_steps
from peftlab.train.encode import Encoded, eval_batches
from peftlab.train.loop import train


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_train_steps_are_the_loops_batches():
    """The same seeded shuffles and length grouping, the same fractional last epoch."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=203)
    enc = Encoded("text-classification", torch.zeros(203, dtype=torch.long),
                  input_ids=[torch.ones(int(n), dtype=torch.long) for n in lengths])  # fmt: skip
    seen = []

    def forward(model, batch):
        seen.append(tuple(batch["input_ids"].shape))
        return model.w.sum() * 0 + model.w.sum()

    cfg = config.load({"model": "minilm-l6", "dataset": "vader-tweets", "method": "lora", "epochs": 2.5,
                       "batch_size": 16, "seed": 7})  # fmt: skip
    train(_Tiny(), enc, lr=1e-3, epochs=cfg.epochs, batch_size=16, seed=7, progress=False, forward=forward)
    shapes = Shapes("text-classification", 203, None, train_lengths=lengths)
    assert train_steps(shapes, cfg) == seen
    assert len(seen) == int(np.ceil(np.ceil(203 / 16) * 2.5))


def test_eval_steps_are_the_evaluations_batches():
    lengths = np.array([5, 9, 2, 9, 7, 1, 4])
    enc = Encoded("text-classification", torch.zeros(7, dtype=torch.long),
                  input_ids=[torch.ones(int(n), dtype=torch.long) for n in lengths])  # fmt: skip
    want = [(len(b), int(lengths[b].max())) for b in eval_batches(enc, 3)]
    assert eval_steps(lengths, 7, 3, None) == want == [(3, 9), (3, 5), (1, 1)]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    from checks import config_folder
    from params.params_configs import BASE

    return config_folder(tmp_path_factory.mktemp("vit"), BASE["google/vit-base-patch16-224-in21k"])


def plan(model, method, n, gpu="a100-80gb", **settings):
    cfg = config.load({"model": model, "dataset": "food101", "method": method, "epochs": 1, **settings})
    return plan_run(
        cfg, train_size=n, eval_size=n // 4, num_labels=101, ctx=Context(accelerator=accelerator(gpu))
    )


def test_totals_add_up_and_grow_with_the_data(vit):
    small, big = plan(vit, "lora", 640), plan(vit, "lora", 1280)
    for p, n in ((small, 640), (big, 1280)):
        f = p["flops"]
        assert f["train"] == n * f["train_per_sample"] and f["eval"] == n // 4 * f["eval_per_sample"]
        assert f["total"] == f["train"] + f["eval"]
        by_component = sum(r["train_fwd"] + r["train_bwd"] for r in f["breakdown"])
        assert by_component == f["train_per_sample"]  # no per-step products for LoRA
    assert big["flops"]["train"] == 2 * small["flops"]["train"]
    assert big["time"]["train_s"] == pytest.approx(2 * small["time"]["train_s"], rel=1e-6)


def test_methods_cost_in_the_expected_order(vit):
    full, lora, head = plan(vit, "full", 640), plan(vit, "lora", 640), plan(vit, "head", 640)
    # full trains every weight: ~3× the forward; LoRA: every activation gradient but few weight gradients
    assert (
        full["flops"]["train_per_sample"]
        > lora["flops"]["train_per_sample"]
        > head["flops"]["train_per_sample"]
    )
    assert full["memory"]["peak_mb"] > lora["memory"]["peak_mb"] > head["memory"]["peak_mb"]
    # head: the frozen backbone runs once per split (the capture pass), the step only the head
    assert head["flops"]["prefix_capture"] > 100 * head["flops"]["train"]
    assert full["memory"]["parts"]["optimizer"] == pytest.approx(2 * full["memory"]["parts"]["gradients"])


def test_a_bigger_gpu_is_faster_and_memory_does_not_depend_on_it(vit):
    t4, h100 = plan(vit, "lora", 640, gpu="t4"), plan(vit, "lora", 640, gpu="h100-sxm")
    assert t4["time"]["train_s"] > 3 * h100["time"]["train_s"]
    assert t4["memory"] == h100["memory"] and t4["flops"] == h100["flops"]


def test_a_bigger_batch_keeps_more_activations(vit):
    small, big = plan(vit, "full", 640, batch_size=8), plan(vit, "full", 640, batch_size=32)
    ratio = big["memory"]["parts"]["activations"] / small["memory"]["parts"]["activations"]
    assert ratio == pytest.approx(4, rel=1e-3)  # parts are rounded to 0.1 MiB


def test_what_earlier_runs_built_is_not_counted_again(vit):
    cfg = config.load({"model": vit, "dataset": "food101", "method": "head", "epochs": 1})
    ctx = Context(accelerator=accelerator("l4"))
    first = plan_run(cfg, train_size=640, eval_size=160, ctx=ctx)
    later = plan_run(cfg, train_size=640, eval_size=160, ctx=ctx,
                     builds=Builds(train_cache=False, eval_cache=False, encodings=False))  # fmt: skip
    assert first["flops"]["prefix_capture"] > 0 and later["flops"]["prefix_capture"] == 0
    assert later["time"]["train_s"] < first["time"]["train_s"] / 10
    assert later["memory"]["parts"]["data"] == 0 and later["memory"]["parts"]["prefix_cache"] == 0
