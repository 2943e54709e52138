"""`adalora`: HF PEFT AdaLoRA: SVD-shaped LoRA (P·Λ·Q) whose rank budget moves between modules during training.

`--method adalora`; the loop calls `after_step` after every optimiser step (PEFT's update_and_allocate) and the record
keeps `summary` (the final rank of every adapted module) as "method_state". Flags --adalora-*; defaults are PEFT's.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import flag, knob, names_list, non_negative, positive, probability
from peftlab.methods.space import choice
from peftlab.params.layers import Layer
from peftlab.params.plan import Plan

PREFIX = "adalora"
ADALORA, RANKNUM = "adalora A,E,B", "adalora ranknum (frozen)"

# PEFT's default targets per model type: peft/utils/constants.py TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING
# (the encoder entries; tests/methods/test_adalora.py checks they still equal PEFT's). Entries are PEFT's suffix
# names: RoBERTa's "dense" is attention.output.dense, intermediate.dense and output.dense of every block (the
# classifier's dense sits in modules_to_save, where PEFT never adapts). Other families: query+value, 1x1 convs on CNNs.
PEFT_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "key", "value", "dense"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
    "deberta": ["in_proj"],
}


def _open_unit(v) -> str | None:
    return None if isinstance(v, (int, float)) and 0 < v < 1 else "must be in (0, 1)"


@dataclass(frozen=True)
class Knobs:
    init_r: int = knob(12, "initial rank of every adapted module (AdaLoRA's init_r)", check=positive)
    target_r: int = knob(
        8, "average rank the budget is pruned to: target_r × modules triplets remain", check=positive
    )
    tinit: int = knob(0, "warm-up optimiser steps before any rank is pruned", check=non_negative)
    tfinal: int = knob(0, "last optimiser steps, trained with the final ranks fixed", check=non_negative)
    delta_t: int = knob(1, "optimiser steps between two budget allocations (PEFT's deltaT)", check=positive)
    beta1: float = knob(
        0.85, "EMA coefficient of the sensitivity (importance) scores, in (0, 1)", check=_open_unit
    )
    beta2: float = knob(0.85, "EMA coefficient of the uncertainty of the scores, in (0, 1)", check=_open_unit)
    orth_reg_weight: float = knob(
        0.5, "weight of the orthogonality regulariser on A and B added to the loss", check=non_negative
    )
    alpha: float = knob(8.0, "LoRA alpha (scaling = alpha / current rank)", check=positive)
    dropout: float = knob(0.0, "dropout on the adapter branch input, in [0, 1)", check=probability)
    target: list[str] | None = knob(
        None,
        "target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out, pointwise,spatial or "
        "module names (default: PEFT's for bert/roberta, else query,value; 1x1 convs on CNNs)",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside AdaLoRA, comma-separated (default: the classification head)",
    )


def _entries(anat, knobs: Knobs) -> list[str]:
    """The target entries: the user's, else PEFT's for this model type, else query+value / 1x1 convs (lora's)."""
    from peftlab.models.anatomy import default_targets

    return list(knobs.target or PEFT_TARGETS.get(anat.family) or default_targets(anat))


def _check_ranks(knobs: Knobs) -> None:
    # The budget only shrinks: PEFT's RankAllocator masks init_bgt - budget triplets (torch.kthvalue(k=that)), which
    # fails at k <= 0, i.e. whenever target_r >= init_r.
    if knobs.target_r >= knobs.init_r:
        raise BadInput(
            f"{flag(PREFIX, 'target_r')} {knobs.target_r}: must be below {flag(PREFIX, 'init_r')} {knobs.init_r} "
            "(AdaLoRA prunes ranks from init_r down to target_r on average)"
        )


def _grouped(layers: list[tuple[str, int]]) -> None:
    """PEFT's SVDConv2d builds a dense (out, in·kh·kw) update and reshapes it to the conv's weight (out, in/g, kh, kw):
    a grouped or depthwise conv (g > 1) fails at the first forward, so it is refused before training."""
    bad = [(n, g) for n, g in layers if g > 1]
    if bad:
        name, g = bad[0]
        raise BadInput(
            f"{flag(PREFIX, 'target')}: AdaLoRA cannot adapt grouped/depthwise convs ({name} has groups={g}); "
            "target pointwise or spatial convs instead"
        )


def _steps_needed(knobs: Knobs) -> int:
    """The fewest optimiser steps the schedule fits in. after_step passes PEFT the steps done so far (1..N): steps
    1..tinit warm up; the importance scores are updated on steps < N - tfinal and ranks are pruned on the way (every
    delta_t steps); at step N - tfinal the final allocation is forced; the last tfinal steps train the final ranks.
    PEFT requires tinit < N - tfinal, and the forced allocation needs one scored step before it: N - tfinal >= 2."""
    return max(knobs.tinit, 1) + knobs.tfinal + 1


def _check_schedule(knobs: Knobs, total_steps: int) -> None:
    need = _steps_needed(knobs)
    if total_steps < need:
        raise BadInput(
            f"{flag(PREFIX, 'tinit')} {knobs.tinit} and {flag(PREFIX, 'tfinal')} {knobs.tfinal} leave no rank "
            f"budgeting phase in this run's {total_steps} optimiser step(s): AdaLoRA needs at least {need}; lower "
            "them or train longer (--epochs, a smaller --batch-size)"
        )


def adalora_config(anat, knobs: Knobs, task: str, total_steps: int):
    """The peft.AdaLoraConfig of this run. total_step is the run's optimiser step count; when unknown (0: `peftlab
    params` only counts) the smallest schedule that fits stands in: shapes do not depend on it (masking changes
    ranks, never shapes)."""
    from peft import AdaLoraConfig

    return AdaLoraConfig(
        init_r=knobs.init_r,
        target_r=knobs.target_r,
        tinit=knobs.tinit,
        tfinal=knobs.tfinal,
        deltaT=knobs.delta_t,
        beta1=knobs.beta1,
        beta2=knobs.beta2,
        orth_reg_weight=knobs.orth_reg_weight,
        total_step=total_steps or _steps_needed(knobs),
        lora_alpha=knobs.alpha,
        lora_dropout=knobs.dropout,
        target_modules=adapters.targets(anat, _entries(anat, knobs), flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def _forward_through_tuner(self, *args, **kwargs):
    """PeftModel.forward as PeftModelForSequenceClassification runs it: through the tuner (AdaLoraModel.forward)."""
    with self._enable_peft_forward_hooks(*args, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in self.special_peft_forward_args}
        return self.base_model(*args, **kwargs)


def prepare(model, anatomy, knobs: Knobs, ctx):
    from peft.tuners.adalora import SVDConv2d

    _check_ranks(knobs)
    if ctx.total_steps:  # 0: the step count is unknown (`peftlab params`); a training run always knows it
        _check_schedule(knobs, ctx.total_steps)
    config = adalora_config(anatomy, knobs, ctx.task, ctx.total_steps)
    peft_model = adapters.wrap(model, config, flag(PREFIX, "target"))
    adapted = peft_model.base_model.model.named_modules()
    _grouped([(n, m.get_base_layer().groups) for n, m in adapted if isinstance(m, SVDConv2d)])
    # ranknum (the layer's rank as a float, the divisor of the scaling) is created frozen on the CPU in float32;
    # PEFT then moves it to the base layer's device/dtype and ParameterDict re-wraps the moved copy in a new
    # nn.Parameter, trainable by default: on the meta device (`peftlab params`), a GPU or a non-fp32 model AdamW
    # would train the divisor. Frozen again here, as PEFT means it to be.
    for name, p in peft_model.named_parameters():
        if ".ranknum." in name:
            p.requires_grad_(False)
    # The orthogonality regulariser: AdaLoraModel.forward adds orth_reg_weight × mean ‖AAᵀ - I‖_F, ‖BᵀB - I‖_F to
    # outputs.loss whenever the model returns a loss (labels given). Text (PeftModelForSequenceClassification) calls
    # the tuner, so our loop's model(**batch).loss includes it; images have no PEFT task type and the plain
    # PeftModel.forward calls the transformers model directly, skipping it. This instance goes through the tuner
    # as text does (a bound method: a deepcopy rebinds it); saved adapters and reloads are unaffected.
    if adapters.task_type(ctx.task) is None:
        peft_model.forward = types.MethodType(_forward_through_tuner, peft_model)
    return peft_model


def after_step(model, step: int) -> None:
    """After optimiser step `step` (0-based, gradients still set): PEFT's update_and_allocate with the steps done,
    1..N, so that with tfinal 0 the last step forces the final allocation to exactly target_r × modules."""
    model.base_model.update_and_allocate(step + 1)


def summary(model) -> dict:
    """What the budget decided: each adapted module's final rank, as PEFT counts it (the kept triplets of its rank
    pattern: lora_E entries not masked at the last allocation), and the budget settings used."""
    tuner = model.base_model
    name = getattr(tuner, "trainable_adapter_name", "default")
    config = tuner.peft_config[name]
    ranks = {}
    for param_name, p in tuner.model.named_parameters():
        if f".lora_E.{name}" in param_name:
            ranks[param_name.removesuffix(f".lora_E.{name}")] = int(p.shape[0])
    pattern = config.rank_pattern or {}
    for key, kept in pattern.items():  # keys lose ".<adapter>" once save_pretrained has run
        module = key.removesuffix(f".lora_E.{name}").removesuffix(".lora_E")
        ranks[module] = int(sum(bool(k) for k in kept))
    return {
        "allocated": bool(pattern),  # False: no allocation ran yet, ranks are init_r
        "final_ranks": ranks,
        "budget": {
            "initial": config.init_r * len(ranks),
            "target": config.target_r * len(ranks),
            "final": sum(ranks.values()),
        },  # fmt: skip
        "init_r": config.init_r,
        "target_r": config.target_r,
        "tinit": config.tinit,
        "tfinal": config.tfinal,
        "delta_t": config.deltaT,
        "total_step": config.total_step,
        "beta1": config.beta1,
        "beta2": config.beta2,
        "orth_reg_weight": config.orth_reg_weight,
    }


def adalora_expr(x: Layer, r: int) -> tuple[str, int]:
    """One adapted layer: A (r × in [× kh × kw]) + E (r × 1) + B (out × r) = r × (in·kh·kw + out + 1)."""
    if x.kind == "conv":
        kh, kw = x.shape[2], x.shape[3]
        a_in = f"{x.in_features}×{kh}×{kw}" if kh * kw > 1 else str(x.in_features)
        return f"{r} × ({a_in} + {x.out_features} + 1)", r * (x.in_features * kh * kw + x.out_features + 1)
    return f"{r} × ({x.in_features} + {x.out_features} + 1)", r * (x.in_features + x.out_features + 1)


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """AdaLoRA as arithmetic: A, E, B at init_r per target (trainable) + one frozen ranknum each, the saved copies.
    The shapes stay at init_r all through training: pruning masks E, it never resizes (PEFT's resize is only on
    reload of a saved adapter)."""
    _check_ranks(knobs)
    entries = _entries(anat, knobs)
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    _grouped([(x.name, x.groups) for x in layers if x.kind == "conv"])
    if layers:
        label = f"{ADALORA} init_r={knobs.init_r} on {','.join(entries)}"
        plan.added.append(
            adapters.per_layer(
                label, layers, lambda x: adalora_expr(x, knobs.init_r), (".lora_A.", ".lora_E.", ".lora_B.")
            )  # fmt: skip
        )
        # ranknum: an nn.Parameter (1,) per layer holding the current rank, requires_grad False: in the total only
        ranknum = adapters.per_layer(RANKNUM, layers, lambda x: ("1", 1), (".ranknum.",))
        ranknum.trainable = False
        plan.added.append(ranknum)
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """AdaLoRA's products (peft/tuners/adalora/layer.py, model.py): on a Linear, x @ (A⊙E)ᵀ @ Bᵀ as two trained
    products (in -> r, r -> out); on a Conv2d, ΔW = B @ (A⊙E) each forward (out×r×in·k², both trained), then ΔW as a
    conv of the layer's shape. Each training step adds the orthogonality regulariser: A·Aᵀ (r×in×r) and Bᵀ·B
    (r×out×r) per layer, both operands trained. Ranks pruned during training mask E: the shapes, and so the FLOPs,
    stay those of init_r."""
    from peftlab.flops import Effect
    from peftlab.flops.graph import Dim

    added = adapters.added_entry(plan, ADALORA)
    if added is None:
        return Effect()
    r, by_name = knobs.init_r, {x.name: x for x in arch.layers}

    def hook(g, site, x):
        y = site.base(g, x)
        name = site.layer.name
        with g.at(added.component, site.layer.block):
            xd = g.ew(x, what="dropout", keep_new=1) if knobs.dropout > 0 and g.training else x
            if site.conv:
                delta = g.matmul(g.param(True), g.param(True), batch=1, m=site.fan_out, k=r,
                                 n=site.fan_in * site.kernel**2, per_step=True, name=f"{name} ΔW = B·(A⊙E)")  # fmt: skip
                v = site.same(g, xd, name=f"{name} ΔW conv", trains=delta.rg)
            else:
                v = site.up(g, site.down(g, xd, r, name=f"{name} x·(A⊙E)ᵀ", trains=True), r,
                            name=f"{name} ·Bᵀ", trains=True)  # fmt: skip
        return g.ew(y, v, what="adalora add")

    def regulariser(g) -> None:
        with g.at(f"{added.component}: orthogonality regulariser"):
            for name in added.layers:
                x = by_name[name]
                width = x.in_features * (x.shape[2] * x.shape[3] if x.kind == "conv" else 1)
                for what, k in (("A·Aᵀ", width), ("Bᵀ·B", x.out_features)):
                    p = g.param(True)
                    g.matmul(p, p, batch=1, m=Dim.of(r), k=Dim.of(k), n=Dim.of(r), per_step=True,
                             name=f"{name} {what}")  # fmt: skip

    return Effect(adapters=dict.fromkeys(added.layers, hook), per_step=regulariser)


METHOD = Method(
    name="adalora",
    trains="AdaLoRA P (r x in), Λ (r), Q (out x r) on the target modules, rank budget pruned while training + the head",
    default_lr=8e-4,  # the AdaLoRA authors' GLUE SST-2 script (QingruZhang/AdaLoRA NLU/scripts/run_debertav3_sst2.sh)
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    after_step=after_step,
    summary=summary,
    paper="Zhang et al. 2023, AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning, "
    "arXiv:2303.10512",
    limits="grouped or depthwise conv targets; --adalora-target-r not below --adalora-init-r; a run with too few optimiser steps for --adalora-tinit + --adalora-tfinal (the message gives the run's step count).",
    space={"target_r": choice(4, 8)},
)
