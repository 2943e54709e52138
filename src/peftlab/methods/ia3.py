"""`ia3`: HF PEFT (IA)³, one learned vector per target layer rescaling its output (or, on feed-forward layers, its
input); the head trained in full through `modules_to_save`.

Used as `--method ia3`; targets default to PEFT's own per-model defaults (BERT/RoBERTa: key, value and every
`...output.dense`), else query+value (1x1 convs on CNNs); `--ia3-feedforward` marks which targets scale their input.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "ia3"

# PEFT's defaults for the encoder families it maps (peft/utils/constants.py,
# TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING and ..._IA3_FEEDFORWARD_MODULES_MAPPING; tests/methods/test_ia3.py
# checks these copies against PEFT's). PEFT matches a target as the whole name or a ".<entry>" suffix, so
# "output.dense" reaches the attention output (attention.output.dense) as well as the feed-forward output; it matches a
# feed-forward entry as a *plain* suffix (IA3Model._check_target_module_feedforward: key.endswith(entry)), so both are
# feed-forward layers and scale their inputs.
PEFT_TARGETS = {
    "bert": ["key", "value", "output.dense"],
    "roberta": ["key", "value", "output.dense"],
    "deberta-v2": ["key_proj", "value_proj", "output.dense"],
    "deberta": ["in_proj", "output.dense"],
}
PEFT_FEEDFORWARD = {
    "bert": ["output.dense"],
    "roberta": ["output.dense"],
    "deberta-v2": ["output.dense"],
    "deberta": ["output.dense"],
}


@dataclass(frozen=True)
class Knobs:
    target: list[str] | None = knob(
        None,
        "(IA)³ target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out (CNNs: pointwise,"
        "spatial,depthwise) or module names (default: PEFT's for BERT/RoBERTa = key,value,output.dense; else "
        "query,value; 1x1 convs on CNNs)",
        check=names_list,
    )
    feedforward: list[str] | None = knob(
        None,
        "which targets are feed-forward layers, scaled on their input (a vector over in_features) instead of their "
        "output; comma-separated aliases or names among the targets, '' for none (default: PEFT's for BERT/RoBERTa ="
        " every target ending in output.dense, attention output included; else the ffn_out targets; none on CNNs)",
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside (IA)³, comma-separated (default: the classification head)",
    )


def entries(anat, knobs: Knobs) -> list[str]:
    """The target entries as given, else PEFT's default for this family, else query+value (1x1 convs on CNNs)."""
    from peftlab.models.anatomy import default_targets

    return list(knobs.target or PEFT_TARGETS.get(anat.family) or default_targets(anat))


def resolve(anat, knobs: Knobs) -> tuple[list[str], list[str]]:
    """-> (target module names, the feed-forward ones among them): the same on a model's anatomy and on the
    arithmetic's, so `plan` and `prepare` agree."""
    from peftlab.models.anatomy import resolve_targets

    names = adapters.targets(anat, entries(anat, knobs), flag(PREFIX, "target"))
    if knobs.feedforward is None:
        if anat.family in PEFT_FEEDFORWARD:
            # PEFT's plain-suffix match: "...attention.output.dense" is feed-forward too
            return names, [n for n in names if any(n.endswith(e) for e in PEFT_FEEDFORWARD[anat.family])]
        ffn_out = set(anat.aliases.get("ffn_out", []))
        return names, [n for n in names if n in ffn_out]
    feedforward: list[str] = []
    ff_flag = flag(PREFIX, "feedforward")
    for entry in knobs.feedforward:
        among = [n for n in resolve_targets(anat, [entry], ff_flag) if n in names]
        if not among:
            raise BadInput(
                f"{ff_flag} {entry}: none of the (IA)³ targets is {entry}; mark targets as feed-forward, or add "
                f"{entry} to {flag(PREFIX, 'target')}"
            )
        feedforward += [n for n in among if n not in feedforward]
    return names, feedforward


def ia3_config(anat, knobs: Knobs, task: str):
    """The peft.IA3Config of this run: targets and feed-forward modules as full module names of this model."""
    from peft import IA3Config

    names, feedforward = resolve(anat, knobs)
    return IA3Config(
        target_modules=names,
        feedforward_modules=feedforward,  # full names: PEFT's key.endswith(name) matches each exactly
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)  # knobs built in code skip parse_knobs: the same one-line refusals
    return adapters.wrap(model, ia3_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def scale_in(x: Layer) -> tuple[str, int]:
    # feed-forward: ia3_l (1, in) on a Linear, (1, in, 1, 1) on a Conv2d: one scale per input feature / channel
    return str(x.in_features), x.in_features


def scale_out(x: Layer) -> tuple[str, int]:
    # otherwise: ia3_l (out, 1) on a Linear, (1, out, 1, 1) on a Conv2d: one scale per output feature / channel
    return str(x.out_features), x.out_features


def named(anat, targets: list[str], layers: list[Layer]) -> str:
    """The target entries that reach these layers, for a breakdown label: "key,value" / "output.dense"."""
    from peftlab.models.anatomy import resolve_targets

    names = {x.name for x in layers}
    return ",".join(e for e in targets if names & set(resolve_targets(anat, [e], flag(PREFIX, "target"))))


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """(IA)³ as arithmetic: one vector per adapted layer, over its outputs, or over its inputs where feed-forward."""
    check(PREFIX, knobs)
    targets = entries(anat, knobs)
    _, feedforward = resolve(anat, knobs)
    plan, layers = adapters.targeted_plan(
        arch, anat, targets, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    ff = set(feedforward)
    ins, outs = [x for x in layers if x.name in ff], [x for x in layers if x.name not in ff]
    if ins:  # markers name each layer: both lines hold ".ia3_l." parameters
        label = f"ia3 input scales (feed-forward) on {named(anat, targets, ins)}"
        plan.added.append(adapters.per_layer(label, ins, scale_in, tuple(f"{x.name}.ia3_l." for x in ins)))
    if outs:
        label = f"ia3 output scales on {named(anat, targets, outs)}"
        plan.added.append(adapters.per_layer(label, outs, scale_out, tuple(f"{x.name}.ia3_l." for x in outs)))
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """(IA)³ adds no products: a trained vector scales the layer's input (feed-forward: the layer's product then always
    computes its input's gradient) or its output (peft/tuners/ia3/layer.py)."""
    from peftlab.flops import Effect

    _, feedforward = resolve(anat, knobs)
    ff = set(feedforward)
    layers = [n for a in plan.added for n in a.layers]

    def hook(g, site, x):
        if site.layer.name in ff:
            return site.base(g, g.ew(x, trains=True, what="ia3 scale", keep_in=True))
        return g.ew(site.base(g, x), trains=True, what="ia3 scale", keep_in=True)

    return Effect(adapters=dict.fromkeys(layers, hook))


METHOD = Method(
    name="ia3",
    trains="(IA)³ vectors rescaling each target's output (input on feed-forward layers) + the head (modules_to_save)",
    # T-Few (the (IA)³ paper, section 3.3 / appendix) trains the vectors at 3e-3 with Adafactor
    default_lr=3e-3,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Liu et al. 2022, Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning, "
    "arXiv:2205.05638",
)
