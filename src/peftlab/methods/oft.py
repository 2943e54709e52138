"""`oft`: HF PEFT orthogonal fine-tuning: each target's input is rotated by a trained block-diagonal orthogonal matrix.

`--method oft [--oft-block-size 32 | --oft-r N --oft-block-size 0]`; the block size must divide every adapted layer's
input width (checked here, before PEFT silently picks another one); the head trains whole (modules_to_save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import flag, knob, names_list, non_negative, positive
from peftlab.params.plan import Plan, under

PREFIX = "oft"
OFT = "oft R"

# PEFT 0.21 (tuners/oft/layer.py), per adapted layer of input width n (in_features; in_channels × k² for a Conv2d):
#   block size b and r blocks with r × b = n (one of OFTConfig's r / oft_block_size given, the other 0);
#   oft_R.weight (r, b(b-1)/2): the strict upper triangle of each skew-symmetric block Q, R = Cayley(Q) (Neumann
#   series by default); block_share: one block for all, (1, b(b-1)/2). Nothing else is a parameter (the triangle
#   indices are buffers). Where b does not divide n PEFT *replaces* b by a nearby divisor with only a warning, so the
#   run would not be the one asked for: peftlab refuses instead (BadInput naming the values that fit).
#   OFTConfig.module_dropout is built but never applied by PEFT 0.21's forward, so it is not offered as a knob.


@dataclass(frozen=True)
class Knobs:
    block_size: int = knob(
        32,
        "OFT block size b: each adapted layer's input is rotated in blocks of b (b must divide its input width); "
        "0 when --oft-r is given",
        check=non_negative,
    )
    r: int = knob(
        0,
        "number of OFT blocks per layer (r × block size = input width); 0 = from --oft-block-size",
        check=non_negative,
    )
    coft: bool = knob(False, "constrained OFT: keep each rotation within --oft-eps of the identity")
    eps: float = knob(6e-5, "COFT radius (only with --oft-coft)", check=positive)
    block_share: bool = knob(False, "one rotation block shared by all blocks of a layer")
    use_cayley_neumann: bool = knob(
        True, "Cayley transform by a Neumann series (PEFT's default) instead of a solve"
    )
    num_cayley_neumann_terms: int = knob(5, "terms of the Neumann series", check=positive)
    bias: str = knob("none", "OFT bias: none | all | oft_only", choices=("none", "all", "oft_only"))
    target: list[str] | None = knob(
        None,
        "OFT target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out (pointwise on CNNs) "
        "or module names",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside OFT, comma-separated (default: the classification head)",
    )


# --- where OFT goes, and whether its blocks fit -------------------------------------------------------------------


def default_entries(anat) -> list[str]:
    """PEFT's OFT targets are LoRA's (utils/constants.py: TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING =
    LoRA's copy): query+value; on CNNs the 1x1 convs only (PEFT's OFT is wrong on k×k convs, see `check_sites`)."""
    from peftlab.models.anatomy import default_targets

    if anat.kind == "cnn" and "pointwise" in anat.aliases:
        return ["pointwise"]
    return default_targets(anat)


def adapted_names(anat, entries: list[str], modules_to_save, task: str, flag_: str) -> list[str]:
    """The qualified names PEFT adapts: the entries resolved, outside the modules it saves whole (as targeted_plan)."""
    from peftlab.params.plan import outside_saved

    saved = list(anat.head) if modules_to_save is None else list(modules_to_save)
    if task == "text-classification":  # PEFT's SEQ_CLS adds these (params.plan.peft_saved)
        saved += ["classifier", "score"]
    return outside_saved(adapters.targets(anat, entries, flag_), saved)


def short(anat, name: str) -> str:
    """A block-relative name ("attention.self.query") where the layer sits in a block."""
    block = next((b for b in anat.blocks if under(name, [b])), None)
    return name[len(block) + 1 :] if block else name


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def widths_text(anat, sites) -> str:
    """ "48 (attention.self.query, attention.self.value)" for each distinct width, a few names each."""
    by_width: dict[int, list[str]] = {}
    for name, n, _k, _g in sites:
        names = by_width.setdefault(n, [])
        if short(anat, name) not in names:
            names.append(short(anat, name))
    parts = [f"{n} ({', '.join(v[:2])}{', ...' if len(v) > 2 else ''})" for n, v in by_width.items()]
    return "; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else "")


def sites_of_layers(layers) -> list[tuple[str, int, int, int]]:
    """(name, rotated width n, kernel k, groups) from the arithmetic: Linear n = in; Conv2d n = in × k² (PEFT takes
    kernel_size[0] for both sides)."""
    out = []
    for x in layers:
        k = x.shape[2] if x.kind == "conv" else 1
        out.append((x.name, x.in_features * k * k, k, x.groups))
    return out


def sites_of_model(model, names) -> list[tuple[str, int, int, int]]:
    """The same from the real modules (before wrapping)."""
    from torch import nn

    out = []
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0]
            out.append((name, m.in_channels * k * k, k, m.groups))
        else:
            out.append((name, m.in_features, 1, 1))
    return out


def check_sites(anat, sites, knobs: Knobs) -> None:
    """PEFT's rules as one line each, with values that fit every adapted layer (narrowest layers named first)."""
    sites = sorted(sites, key=lambda s: (s[1], s[0]))
    b, r = knobs.block_size, knobs.r
    fb, fr = flag(PREFIX, "block_size"), flag(PREFIX, "r")
    if (b == 0) == (r == 0):
        if b == 0:
            raise BadInput(
                f"{fb} 0 {fr} 0: set one of them (r × block size = the layer's input width), e.g. {fb} 32"
            )
        raise BadInput(
            f"{fr} {r} {fb} {b}: give only one of them and set the other to 0, e.g. {fr} {r} {fb} 0"
        )
    wide = [s for s in sites if s[2] > 1]
    if (
        wide
    ):  # unfold / rotate / fold: overlapping patches are summed back, so R = I does not give the base conv
        name, _n, k, _g = wide[0]
        raise BadInput(
            f"{flag(PREFIX, 'target')}: PEFT's OFT is not the identity at initialisation on k×k convolutions "
            f"({short(anat, name)} is {k}×{k}; its unfold/fold sums overlapping patches): target 1x1 convs "
            "(pointwise) or use boft / lora for these"
        )
    if not sites:
        return
    widths = sorted({n for _name, n, _k, _g in sites})
    common = math.gcd(*widths)
    if b:
        bad = [s for s in sites if s[1] % b]
        if bad:
            fit = [d for d in divisors(common) if d > 1]
            raise BadInput(
                f"{fb} {b}: must divide the input width of every adapted layer, and does not divide "
                f"{widths_text(anat, bad)}; block sizes that fit here: {', '.join(map(str, fit)) or 'none above 1'}"
            )
    else:
        bad = [s for s in sites if s[1] % r or s[1] == r]
        if bad:  # r = n would be blocks of 1: nothing to rotate
            fit = [d for d in divisors(common) if d < min(widths)]
            raise BadInput(
                f"{fr} {r}: must divide the input width of every adapted layer into blocks of 2 or more, and does "
                f"not for {widths_text(anat, bad)}; values that fit here: {', '.join(map(str, fit)) or 'none'}"
            )


def block(n: int, knobs: Knobs) -> tuple[int, int]:
    """(r, b) on a layer of input width n."""
    return (n // knobs.block_size, knobs.block_size) if knobs.block_size else (knobs.r, n // knobs.r)


# --- PEFT --------------------------------------------------------------------------------------------------------


def oft_config(anat, knobs: Knobs, task: str):
    from peft import OFTConfig

    return OFTConfig(
        oft_block_size=knobs.block_size,
        r=knobs.r,
        coft=knobs.coft,
        eps=knobs.eps,
        block_share=knobs.block_share,
        use_cayley_neumann=knobs.use_cayley_neumann,
        num_cayley_neumann_terms=knobs.num_cayley_neumann_terms,
        bias=knobs.bias,
        target_modules=adapters.targets(anat, knobs.target or default_entries(anat), flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    entries = knobs.target or default_entries(anatomy)
    names = adapted_names(anatomy, entries, knobs.modules_to_save, ctx.task, flag(PREFIX, "target"))
    check_sites(anatomy, sites_of_model(model, names), knobs)
    return adapters.wrap(model, oft_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


# --- arithmetic --------------------------------------------------------------------------------------------------


def oft_expr(n: int, knobs: Knobs) -> tuple[str, int]:
    """One layer: r blocks × b(b-1)/2 upper-triangle entries ("2 × 24×23/2"); shared: one block."""
    r, b = block(n, knobs)
    tri = f"{b}×{b - 1}/2"
    if knobs.block_share:
        return tri, b * (b - 1) // 2
    return f"{r} × {tri}", r * b * (b - 1) // 2


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    entries = list(knobs.target or default_entries(anat))
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    sites = sites_of_layers(layers)
    check_sites(anat, sites, knobs)
    width = {name: n for name, n, _k, _g in sites}
    if layers:
        size = f"b={knobs.block_size}" if knobs.block_size else f"r={knobs.r}"
        label = f"{OFT} {size}{' shared' if knobs.block_share else ''} on {','.join(entries)}"
        term = lambda x: oft_expr(width[x.name], knobs)  # noqa: E731
        plan.added.append(adapters.per_layer(label, layers, term, (".oft_R.",)))
    plan.train_bias = adapters.trained_biases(arch, plan, layers, knobs.bias)  # "all" or "oft_only"
    return plan


def neumann_products(terms: int) -> int:
    """Batched b×b products in PEFT's Cayley-Neumann series (oft/layer.py _cayley_batch): Q², then one per further
    power up to Q^(terms-1); none below three terms."""
    return 0 if terms < 3 else 2 + max(0, terms - 4)


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """OFT's products (peft/tuners/oft/layer.py OFTRotationModule): every forward the rotation blocks R (R blocks of
    b×b, R = 1 when shared) from their skew-symmetric Q by the Neumann series (`neumann_products` batched b×b·b×b
    products, both operands trained); the layer's input rotated blockwise (einsum over r blocks: rows × b × b each,
    2·rows·in·b), whose gradient then always flows into the layer's own product. With the exact Cayley transform
    (--oft-use-cayley-neumann false) the solve is not a matmul: its forward counts 0, as in FlopCounterMode, and its
    backward one batched b×b product."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, OFT)
    if added is None:
        return Effect()
    by_name = {x.name: x for x in arch.layers}
    width = {name: n for name, n, _k, _g in sites_of_layers([by_name[n] for n in added.layers])}

    def hook(g, site, x):
        name = site.layer.name
        r, b = block(width[name], knobs)
        with g.at(added.component, site.layer.block):
            blocks = 1 if knobs.block_share else r
            rot = g.param(True)
            if knobs.use_cayley_neumann:
                for i in range(neumann_products(knobs.num_cayley_neumann_terms)):
                    rot = g.matmul(rot, g.param(True), batch=blocks, m=b, k=b, n=b, per_step=True,
                                   name=f"{name} Q^{i + 2}")  # fmt: skip
            else:  # torch.linalg.solve: no product forward; its backward forms one batched b×b product
                g.backward_only(batch=blocks, m=b, k=b, n=b, products=1, name=f"{name} Cayley solve backward")
            rot = g.param(True)  # R = I + 2Q + 2Q² + ... : trained
            rows = site.in_rows  # a 1×1 conv rotates every position
            xr = g.matmul(x, rot, batch=r, m=rows, k=b, n=b, name=f"{name} x·R (blockwise)")
        return site.base(g, xr)

    notes = [] if knobs.use_cayley_neumann else ["OFT's exact Cayley solve (an LU solve) is not counted"]
    return Effect(adapters=dict.fromkeys(added.layers, hook), notes=notes)


METHOD = Method(
    name="oft",
    trains="block-diagonal orthogonal rotations (Cayley, r blocks of b x b) of each target's input + the head",
    # No classification recipe for OFT in PEFT's docs or the OFT paper (diffusion models); LoRA's 5e-4 here, so the
    # two compare at one learning rate (PEFT's MetaMathQA benchmark trains OFT at 1e-4 on a 3B LLM).
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Qiu et al. 2023, Controlling Text-to-Image Diffusion by Orthogonal Finetuning, arXiv:2306.07280",
    limits="k×k convolutions with k > 1 (PEFT's OFT is not the base model there); a --oft-block-size that does not divide every target's input width (the message lists the sizes that fit).",
)
