"""`lokr`: HF PEFT LoKr adapters (Kronecker product of a small and a low-rank factor) on the target Linear/Conv2d
layers, the head saved whole. `--method lokr`, knobs --lokr-*: PEFT's defaults r=8, alpha=8, decompose_both off,
decompose_factor -1; targets query+value (1x1 convs on CNNs) as lora, since PEFT's LoKr mapping covers LLMs only.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list, positive, probability
from peftlab.methods.space import choice
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "lokr"
LOKR = "lokr W1,W2"


def factor_check(v) -> str | None:
    return None if isinstance(v, int) and (v == -1 or v >= 1) else "must be -1 (near the square root) or >= 1"


@dataclass(frozen=True)
class Knobs:
    r: int = knob(8, "LoKr rank r of the low-rank factor(s)", check=positive)
    alpha: float = knob(8.0, "LoKr alpha (scaling = alpha / r)", check=positive)
    rank_dropout: float = knob(
        0.0, "dropout on the output rows of the LoKr update while training", check=probability
    )
    module_dropout: float = knob(
        0.0, "probability of skipping the whole LoKr update of a layer at a training step", check=probability
    )
    rank_dropout_scale: bool = knob(False, "rescale the kept rows by 1 / their mean under rank dropout")
    use_effective_conv2d: bool = knob(
        False, "kxk convs: a low-rank W2 as a CP decomposition with an r×r×k×k core; 1x1 convs are unchanged"
    )
    decompose_both: bool = knob(False, "also write W1 as a rank-r product (when r < max(W1's sides) / 2)")
    decompose_factor: int = knob(
        -1,
        "split each dimension as factor × rest (-1: the two divisors nearest its square root)",
        check=factor_check,
    )
    target: list[str] | None = knob(
        None,
        "LoKr target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out "
        "(CNNs: pointwise,spatial,depthwise) or module names",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside LoKr, comma-separated (default: the classification head)",
    )


def lokr_config(anat, knobs: Knobs, task: str):
    """The peft.LoKrConfig of this run, targets resolved to full module names of this model."""
    from peft import LoKrConfig

    return LoKrConfig(
        r=knobs.r,
        alpha=knobs.alpha,
        rank_dropout=knobs.rank_dropout,
        module_dropout=knobs.module_dropout,
        rank_dropout_scale=knobs.rank_dropout_scale,
        use_effective_conv2d=knobs.use_effective_conv2d,
        decompose_both=knobs.decompose_both,
        decompose_factor=knobs.decompose_factor,
        target_modules=adapters.targets(anat, knobs.target, flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)  # r 0 etc. as --lokr-r, not as PEFT's ValueError under --lokr-target
    return adapters.wrap(model, lokr_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """PEFT's split of a dimension into two factors (peft/tuners/lokr/layer.py `factorization`, from LyCORIS).

    factor > 0 dividing it: (factor, dimension // factor), in that order: 768, 64 -> (64, 12).
    Otherwise the divisor pair nearest the square root (m <= n), m no larger than factor when one is given:
    768 -> (24, 32); 3072 -> (48, 64); 48 -> (6, 8); 100 -> (10, 10); 3 -> (1, 3); 1 -> (1, 1); 768, 5 -> (4, 192).
    """
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    length = m + n  # never updated in PEFT: the walk stops on m >= n or m > factor, not on a growing sum
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def lokr_expr(x: Layer, knobs: Knobs) -> tuple[str, int]:
    """LoKr on one layer (peft/tuners/lokr/layer.py update_layer + create_adapter_parameters): ΔW = W1 ⊗ W2.

    out = a·b and in/groups = c·d (factorization of each); W1 is (a × c), W2 is (b × d [× kh × kw]).
    W1: full a×c, or r × (a + c) when decompose_both and r < max(a, c) / 2.
    W2: full b×d[×kh×kw] when r >= max(b, d) / 2; else r × (b + d[×kh×kw]); with use_effective_conv2d on a kxk
    conv: an r×r×kh×kw core + r × (b + d).
    roberta-base query (768 -> 768 = 24·32 each way), r 8: W1 24×24 + W2 8 × (32 + 32) = 576 + 512 = 1,088."""
    r = knobs.r
    if x.kind == "conv":
        c_in, kh, kw = x.shape[1], x.shape[2], x.shape[3]  # c_in = in/groups (1 for a depthwise conv)
    else:
        c_in, kh, kw = x.in_features, 1, 1
    a, b = factorization(x.out_features, knobs.decompose_factor)
    c, d = factorization(c_in, knobs.decompose_factor)
    if knobs.decompose_both and r < max(a, c) / 2:
        w1 = (f"{r} × ({a} + {c})", r * (a + c))
    else:
        w1 = (f"{a}×{c}", a * c)
    kernel = f"×{kh}×{kw}" if kh * kw > 1 else ""
    if r >= max(b, d) / 2:
        w2 = (f"{b}×{d}{kernel}", b * d * kh * kw)
    elif knobs.use_effective_conv2d and kh * kw > 1:  # PEFT sets it off for Linear and 1x1 convs
        w2 = (f"{r}×{r}×{kh}×{kw} + {r} × ({b} + {d})", r * r * kh * kw + r * (b + d))
    else:
        w2 = (f"{r} × ({b} + {d}{kernel})", r * (b + d * kh * kw))
    return f"{w1[0]} + {w2[0]}", w1[1] + w2[1]


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """LoKr as arithmetic: W1 and W2 (full or low-rank, by PEFT's rule) per target, the saved copies of the head."""
    from peftlab.models.anatomy import default_targets

    check(PREFIX, knobs)
    entries = list(knobs.target or default_targets(anat))
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    if layers:
        label = f"{LOKR} r={knobs.r} on {','.join(entries)}"
        plan.added.append(adapters.per_layer(label, layers, lambda x: lokr_expr(x, knobs), (".lokr_",)))
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """LoKr's products (peft/tuners/lokr/layer.py): ΔW = W1 ⊗ W2 every forward; a low-rank W1 = w1_a·w1_b (a×r×c) or
    W2 = w2_a·w2_b (b×r×d·k²) is a product (trained: both gradients in the backward); the Kronecker product is
    elementwise. Then ΔW as a product of the layer's own shape, its weight trained. module_dropout > 0: counted as if
    the update ran every step (an upper bound)."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, LOKR)
    if added is None:
        return Effect()
    r = knobs.r

    def hook(g, site, x):
        y = site.base(g, x)
        name, layer = site.layer.name, site.layer
        c_in, k2 = (layer.shape[1], layer.shape[2] * layer.shape[3]) if site.conv else (layer.in_features, 1)
        a, b = factorization(layer.out_features, knobs.decompose_factor)
        c, d = factorization(c_in, knobs.decompose_factor)
        with g.at(added.component, site.layer.block):
            if knobs.decompose_both and r < max(a, c) / 2:  # W1 = w1_a (a × r) · w1_b (r × c)
                g.matmul(g.param(True), g.param(True), batch=1, m=a, k=r, n=c, per_step=True,
                         name=f"{name} w1_a·w1_b")  # fmt: skip
            if r < max(b, d) / 2:  # W2 = w2_a (b × r) · w2_b (r × d·k²)
                if knobs.use_effective_conv2d and k2 > 1:
                    raise ValueError("CP")  # caught below: no formula
                g.matmul(g.param(True), g.param(True), batch=1, m=b, k=r, n=d * k2, per_step=True,
                         name=f"{name} w2_a·w2_b")  # fmt: skip
            v = site.same(g, x, name=f"{name} x·ΔWᵀ", trains=True)
        return g.ew(y, v, what="lokr add")

    by_name = {x.name: x for x in arch.layers}
    for name in added.layers:
        x = by_name[name]
        if knobs.use_effective_conv2d and x.kind == "conv" and x.shape[2] * x.shape[3] > 1:
            b, d = (
                factorization(x.out_features, knobs.decompose_factor)[1],
                factorization(x.shape[1], knobs.decompose_factor)[1],
            )
            if r < max(b, d) / 2:
                return Effect(
                    unsupported="no FLOP formula for LoKr's use_effective_conv2d (a CP core built by einsum)"
                )
    notes = (
        [] if knobs.module_dropout == 0 else ["LoKr module_dropout: counted as if the update ran every step"]
    )
    return Effect(adapters=dict.fromkeys(added.layers, hook), notes=notes)


METHOD = Method(
    name="lokr",
    trains="LoKr: per target a Kronecker product of a small W1 and a (low-rank) W2 + the head",
    # PEFT publishes no classification recipe for LoKr; peftlab's LoRA default keeps the comparison like for like
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Yeh et al. 2023, Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model Evaluation, "
    "arXiv:2309.14859",
    space={"r": choice(4, 8, 16), "alpha": choice(4.0, 8.0, 16.0)},
)
