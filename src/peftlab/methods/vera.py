"""`vera`: HF PEFT VeRA, one frozen random pair of projections shared by every target + two trained scaling vectors per
target Linear (lambda_b over its outputs, lambda_d over the rank); the head trained in full through `modules_to_save`.

Used as `--method vera` on transformers (PEFT's VeRA adapts Linear layers only); defaults r=256, targets query+value
(PEFT's mapping for BERT/RoBERTa, and peftlab's default elsewhere), head saved.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list, positive, probability
from peftlab.methods.space import choice
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "vera"
LAMBDAS = "vera lambda_b,lambda_d"


@dataclass(frozen=True)
class Knobs:
    r: int = knob(
        256,
        "VeRA rank r: rows of the shared random projection A (r × in), length of each lambda_d",
        check=positive,
    )
    target: list[str] | None = knob(
        None,
        "VeRA target Linear modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out or module names "
        "(default: query,value)",
        check=names_list,
    )
    dropout: float = knob(0.0, "dropout on the VeRA branch input, in [0, 1)", check=probability)
    d_initial: float = knob(0.1, "initial value of every lambda_d entry (the paper recommends <= 0.1)")
    projection_prng_key: int = knob(0, "seed of the shared random projections vera_A, vera_B")
    save_projection: bool = knob(
        True, "store vera_A, vera_B in the saved adapter (else they are regenerated from the seed on load)"
    )
    bias: str = knob("none", "VeRA bias: none | all | vera_only", choices=("none", "all", "vera_only"))
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside VeRA, comma-separated (default: the classification head)",
    )


def vera_config(model, anat, knobs: Knobs, task: str):
    """The peft.VeraConfig of this run, with targets resolved to full module names of this model."""
    from peft import VeraConfig
    from torch import nn

    target_flag = flag(PREFIX, "target")
    names = adapters.targets(anat, knobs.target, target_flag)
    adapters.linear_only(names, lambda n: isinstance(model.get_submodule(n), nn.Conv2d), target_flag, "VeRA")
    return VeraConfig(
        r=knobs.r,
        target_modules=names,
        vera_dropout=knobs.dropout,
        d_initial=knobs.d_initial,
        projection_prng_key=knobs.projection_prng_key,
        save_projection=knobs.save_projection,
        bias=knobs.bias,
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)  # knobs built in code skip parse_knobs: the same one-line refusals
    return adapters.wrap(model, vera_config(model, anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def vera_expr(x: Layer, r: int) -> tuple[str, int]:
    """Trained per layer: lambda_b (out,) + lambda_d (r,): "48 + 256". The shared vera_A (r × max in) and vera_B
    (max out × r) are buffers, not parameters: they count nowhere."""
    return f"{x.out_features} + {r}", x.out_features + r


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """VeRA as arithmetic: out + r scales per adapted Linear, the saved copies, biases as the bias knob says."""
    from peftlab.models.anatomy import default_targets

    check(PREFIX, knobs)
    entries = list(knobs.target or default_targets(anat))
    target_flag = flag(PREFIX, "target")
    by_name = {x.name: x for x in arch.layers}
    names = adapters.targets(anat, entries, target_flag)
    adapters.linear_only(names, lambda n: by_name[n].kind == "conv", target_flag, "VeRA")
    plan, layers = adapters.targeted_plan(arch, anat, entries, knobs.modules_to_save, task, target_flag)
    if layers:
        label = f"{LAMBDAS} r={knobs.r} on {','.join(entries)}"
        markers = (".vera_lambda_b.", ".vera_lambda_d.")
        plan.added.append(adapters.per_layer(label, layers, lambda x: vera_expr(x, knobs.r), markers))
    plan.train_bias = adapters.trained_biases(arch, plan, layers, knobs.bias)
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """VeRA's products (peft/tuners/vera/layer.py): λ_b ⊙ (λ_d ⊙ (x A_sᵀ)) B_sᵀ with the shared frozen A (r × in)
    and B (out × r) sliced to the layer: x·Aᵀ (in -> r; the input's gradient only when x needs one), then ·Bᵀ
    (r -> out; its input always needs a gradient: λ_d trains)."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, LAMBDAS)
    if added is None:
        return Effect()
    r = knobs.r

    def hook(g, site, x):
        y = site.base(g, x)
        with g.at(added.component, site.layer.block):
            xd = g.ew(x, what="dropout", keep_new=1) if knobs.dropout > 0 and g.training else x
            u = g.ew(
                site.down(g, xd, r, name=f"{site.layer.name} x·Aᵀ", trains=False), trains=True, what="λ_d"
            )
            v = site.up(g, u, r, name=f"{site.layer.name} ·Bᵀ", trains=False)
        return g.ew(y, g.ew(v, trains=True, what="λ_b"), what="vera add")

    return Effect(adapters=dict.fromkeys(added.layers, hook))


METHOD = Method(
    name="vera",
    trains="VeRA scaling vectors lambda_b (out) and lambda_d (r) per target Linear (shared random A, B frozen buffers)"
    " + the head (modules_to_save)",
    # PEFT's examples/sequence_classification/VeRA.ipynb (RoBERTa, MRPC): head_lr 1e-2, vera_lr 2e-2; one rate here,
    # the head's (the VeRA paper's RoBERTa-base rates are 4e-3 .. 1e-2 too)
    default_lr=1e-2,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    kinds=("transformer",),  # PEFT's VeRA has no Conv2d layer: no CNN can take it
    paper="Kopiczko et al. 2024, VeRA: Vector-based Random Matrix Adaptation, arXiv:2310.11454",
    limits="convolutions (CNNs, and conv targets such as ViT's patch projection): PEFT's VeRA adapts Linear layers only.",
    space={"r": choice(64, 128, 256, 512)},
)
