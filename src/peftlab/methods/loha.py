"""`loha`: HF PEFT LoHa adapters (low-rank Hadamard product) on the target Linear/Conv2d layers, the head saved whole.

`--method loha`, knobs --loha-*: PEFT's defaults r=8, alpha=8, no rank/module dropout, use_effective_conv2d off;
targets query+value (1x1 convs on CNNs) as lora, since PEFT's LoHa mapping only covers decoder LLMs.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list, positive, probability
from peftlab.methods.space import choice
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "loha"
LOHA = "loha W1,W2"


@dataclass(frozen=True)
class Knobs:
    r: int = knob(8, "LoHa rank r of each of the two low-rank pairs", check=positive)
    alpha: float = knob(8.0, "LoHa alpha (scaling = alpha / r)", check=positive)
    rank_dropout: float = knob(
        0.0, "dropout on the output rows of the LoHa update while training", check=probability
    )
    module_dropout: float = knob(
        0.0, "probability of skipping the whole LoHa update of a layer at a training step", check=probability
    )
    use_effective_conv2d: bool = knob(
        False,
        "kxk convs: CP decomposition with r×r×k×k cores (FedPara's Proposition 3); 1x1 convs are unchanged",
    )
    target: list[str] | None = knob(
        None,
        "LoHa target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out "
        "(CNNs: pointwise,spatial,depthwise) or module names",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside LoHa, comma-separated (default: the classification head)",
    )


def loha_config(anat, knobs: Knobs, task: str):
    """The peft.LoHaConfig of this run, targets resolved to full module names of this model."""
    from peft import LoHaConfig

    return LoHaConfig(
        r=knobs.r,
        alpha=knobs.alpha,
        rank_dropout=knobs.rank_dropout,
        module_dropout=knobs.module_dropout,
        use_effective_conv2d=knobs.use_effective_conv2d,
        target_modules=adapters.targets(anat, knobs.target, flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)  # r 0 etc. as --loha-r, not as PEFT's ValueError under --loha-target
    return adapters.wrap(model, loha_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def loha_expr(x: Layer, r: int, effective_conv2d: bool) -> tuple[str, int]:
    """LoHa on one layer (peft/tuners/loha/layer.py create_adapter_parameters): ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b).

    Linear (out, in): w1_a, w2_a (out × r) and w1_b, w2_b (r × in): 2 × r × (out + in), e.g. "2 × 8 × (48 + 48)".
    Conv2d (out, in/g, kh, kw) is flattened to (out, in/g·kh·kw): 2 × r × (out + in/g×kh×kw) (1x1: in/g); with
    use_effective_conv2d on a kxk conv: t1, t2 (r × r × kh × kw), w1_a, w2_a (r × out), w1_b, w2_b (r × in/g)."""
    out = x.out_features
    if x.kind != "conv":
        return f"2 × {r} × ({out} + {x.in_features})", 2 * r * (out + x.in_features)
    c, kh, kw = x.shape[1], x.shape[2], x.shape[3]  # c = in/groups (1 for a depthwise conv)
    if effective_conv2d and kh * kw > 1:
        return f"2 × ({r}×{r}×{kh}×{kw} + {r} × ({out} + {c}))", 2 * (r * r * kh * kw + r * (out + c))
    flat = f"{c}×{kh}×{kw}" if kh * kw > 1 else str(c)
    return f"2 × {r} × ({out} + {flat})", 2 * r * (out + c * kh * kw)


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """LoHa as arithmetic: two low-rank pairs (and CP cores) per target, the saved copies of the head."""
    from peftlab.models.anatomy import default_targets

    check(PREFIX, knobs)
    entries = list(knobs.target or default_targets(anat))
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    if layers:
        label = f"{LOHA} r={knobs.r} on {','.join(entries)}"

        def term(x: Layer) -> tuple[str, int]:
            return loha_expr(x, knobs.r, knobs.use_effective_conv2d)

        plan.added.append(adapters.per_layer(label, layers, term, (".hada_",)))
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """LoHa's products (peft/tuners/loha/layer.py): ΔW = (w1_a·w1_b) ⊙ (w2_a·w2_b) every forward, two out×r×in'
    products (in' = in/g·k² on a conv); its hand-written backward recomputes both and forms the four factor gradients:
    six more. Then ΔW as a product of the layer's own shape, its weight trained. module_dropout > 0 skips the update
    on that share of training steps: the counts are then an upper bound."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, LOHA)
    if added is None:
        return Effect()
    if knobs.use_effective_conv2d and any(
        x.kind == "conv" and x.shape[2] * x.shape[3] > 1 for x in arch.layers if x.name in added.layers
    ):
        return Effect(
            unsupported="no FLOP formula for LoHa's use_effective_conv2d (CP cores built by einsum)"
        )
    r = knobs.r

    def hook(g, site, x):
        y = site.base(g, x)
        name = site.layer.name
        with g.at(added.component, site.layer.block):
            width = site.fan_in // site.groups * site.kernel**2
            for pair in (
                "w1_a·w1_b",
                "w2_a·w2_b",
            ):  # inside HadaWeight.forward: no autograd backward of their own
                g.matmul(g.param(True), g.param(True), batch=1, m=site.fan_out, k=r, n=width, per_step=True,
                         grad=False, name=f"{name} {pair}")  # fmt: skip
            # HadaWeight.backward: both products again, then the four factor gradients
            g.backward_only(batch=1, m=site.fan_out, k=r, n=width, products=6, name=f"{name} ΔW backward")
            v = site.same(g, x, name=f"{name} x·ΔWᵀ", trains=True)
        return g.ew(y, v, what="loha add")

    notes = (
        [] if knobs.module_dropout == 0 else ["LoHa module_dropout: counted as if the update ran every step"]
    )
    return Effect(adapters=dict.fromkeys(added.layers, hook), notes=notes)


METHOD = Method(
    name="loha",
    trains="LoHa: two low-rank pairs per target, their products multiplied elementwise (Hadamard) + the head",
    # PEFT publishes no classification recipe for LoHa; peftlab's LoRA default keeps the comparison like for like
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Hyeon-Woo et al. 2021, FedPara: Low-Rank Hadamard Product for Communication-Efficient Federated "
    "Learning, arXiv:2108.06098",
    space={"r": choice(4, 8, 16), "alpha": choice(4.0, 8.0, 16.0)},
)
