"""`lora`: HF PEFT LoRA adapters on the target modules, the head trained in full through `modules_to_save`.

Targets accept portable aliases (query, value, ...) and this architecture's module names; defaults r=8, alpha=16,
dropout 0.1, targets query+value (1x1 convs on CNNs), head saved. `dora` (methods/dora.py) reuses these knobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.methods import Method, adapters
from peftlab.methods.knobs import flag, knob, names_list, positive, probability
from peftlab.methods.space import choice
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "lora"
LORA, DORA = "lora A,B", "dora magnitudes"


@dataclass(frozen=True)
class Knobs:
    r: int = knob(8, "LoRA rank r", check=positive)
    alpha: float = knob(
        16.0, "LoRA alpha (scaling = alpha / r, or alpha / sqrt(r) with --lora-use-rslora)", check=positive
    )
    dropout: float = knob(0.1, "dropout on the LoRA branch input, in [0, 1)", check=probability)
    bias: str = knob("none", "LoRA bias: none | all | lora_only", choices=("none", "all", "lora_only"))
    target: list[str] | None = knob(
        None,
        "LoRA target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out or module names",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside LoRA, comma-separated (default: the classification head)",
    )
    use_rslora: bool = knob(False, "rank-stabilised LoRA scaling alpha / sqrt(r)")
    use_dora: bool = knob(False, "weight-decomposed LoRA (DoRA)")


def lora_config(anat, knobs: Knobs, task: str, *, use_dora: bool | None = None):
    """The peft.LoraConfig this run uses, with targets resolved to full module names of this model."""
    from peft import LoraConfig

    return LoraConfig(
        r=knobs.r,
        lora_alpha=knobs.alpha,
        lora_dropout=knobs.dropout,
        bias=knobs.bias,
        target_modules=adapters.targets(anat, knobs.target, flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        use_rslora=knobs.use_rslora,
        use_dora=knobs.use_dora if use_dora is None else use_dora,
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    return adapters.wrap(model, lora_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def lora_expr(x: Layer, r: int) -> tuple[str, int]:
    """LoRA on one layer: A (r × in [× k × k]) + B (out × r / groups): "8 × (768 + 768)"."""
    if x.kind == "conv":
        kh, kw = x.shape[2], x.shape[3]
        a_in = f"{x.in_features}×{kh}×{kw}" if kh * kw > 1 else str(x.in_features)
        a, b = r * x.in_features * kh * kw, x.out_features * r // x.groups
        if x.groups == 1:
            return f"{r} × ({a_in} + {x.out_features})", a + b
        return f"{r}×{a_in} + {x.out_features}×{r}/{x.groups}", a + b
    return f"{r} × ({x.in_features} + {x.out_features})", r * (x.in_features + x.out_features)


def lora_plan(arch, anat, knobs: Knobs, task: str, *, dora: bool) -> Plan:
    """LoRA as arithmetic: A and B per target (+ one DoRA magnitude per output feature), the saved copies, biases."""
    from peftlab.models.anatomy import default_targets

    entries = list(knobs.target or default_targets(anat))
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    if layers:
        label = f"{LORA} r={knobs.r} on {','.join(entries)}"
        plan.added.append(
            adapters.per_layer(label, layers, lambda x: lora_expr(x, knobs.r), (".lora_A.", ".lora_B."))
        )
    if layers and dora:  # one magnitude per output feature of each adapted layer
        magnitudes = adapters.per_layer(DORA, layers, lambda x: (str(x.out_features), x.out_features),
                                        (".lora_magnitude_vector.",))  # fmt: skip
        plan.added.append(magnitudes)
    plan.train_bias = adapters.trained_biases(arch, plan, layers, knobs.bias)  # "all" or "lora_only"
    return plan


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    return lora_plan(arch, anat, knobs, task, dora=knobs.use_dora)


def lora_flops(arch, anat, knobs: Knobs, task: str, plan: Plan, *, dora: bool):
    """LoRA's products at each adapted layer (peft/tuners/lora/layer.py, dora.py), on top of the layer's own:
    A (in -> r, the layer's kernel and stride) and B (r -> out, 1×1) on the dropped-out input, both trained.
    DoRA adds, every forward, ΔW = B·A for the weight norm (used detached: no backward), and in training with dropout
    the layer's product again on the dropped-out input (PEFT's base_result=None path)."""
    from peftlab.flops import Effect
    from peftlab.flops.graph import Dim

    added = adapters.added_entry(plan, LORA)
    if added is None:
        return Effect()
    r, dropout = knobs.r, knobs.dropout > 0

    def hook(g, site, x):
        y = site.base(g, x)
        name = site.layer.name
        with g.at(added.component, site.layer.block):
            xd = g.ew(x, what="dropout", keep_new=1) if dropout and g.training else x
            if dora:  # ΔW for ||W + s·ΔW|| per output: its product, no gradient
                if site.conv:  # torch.mm(B.view(-1, r), A.view(r, -1)): (out, r) @ (r, in·k²)
                    a, w = g.param(True), g.param(True)
                    g.matmul(a, w, batch=1, m=site.fan_out, k=r, n=site.fan_in * site.kernel**2, per_step=True,
                             grad=False, name=f"{name} DoRA ΔW")  # fmt: skip
                else:  # B(A(I_in)): (in, in) -> (in, r) -> (in, out)
                    eye = Dim.of(site.fan_in)
                    g.linear(g.param(False), eye, site.fan_in, r, name=f"{name} DoRA ΔW·A", trains=True,
                             per_step=True, grad=False)  # fmt: skip
                    g.linear(g.param(False), eye, r, site.fan_out, name=f"{name} DoRA ΔW·B", trains=True,
                             per_step=True, grad=False)  # fmt: skip
            u = site.down(g, xd, r, name=f"{name}.lora_A", trains=True)
            v = site.up(g, u, r, name=f"{name}.lora_B", trains=True, groups=site.groups)
            if dora and dropout and g.training:
                site.same(g, xd, name=f"{name} DoRA base on the dropped-out input", trains=False)
        return g.ew(y, v, trains=dora, what="lora add")

    return Effect(adapters=dict.fromkeys(added.layers, hook))


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    return lora_flops(arch, anat, knobs, task, plan, dora=knobs.use_dora)


METHOD = Method(
    name="lora",
    trains="LoRA matrices A (r x in) and B (out x r) on the target modules + the head (modules_to_save)",
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models, arXiv:2106.09685",
    limits="a grouped conv whose groups do not divide --lora-r (PEFT's rule; the message says so).",
    space={"r": choice(4, 8, 16, 32), "alpha": choice(8.0, 16.0, 32.0, 64.0)},
)
