"""`boft`: HF PEFT butterfly orthogonal fine-tuning: each target's weight is rotated by a product of butterfly-permuted
block-diagonal orthogonal matrices and its outputs rescaled.

`--method boft [--boft-block-size 4 | --boft-block-num N --boft-block-size 0] [--boft-n-butterfly-factor F]`; PEFT's
divisibility rules are checked here as one line each, naming values that fit; the head trains whole (modules_to_save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import flag, knob, names_list, non_negative, positive, probability
from peftlab.methods.oft import adapted_names, divisors, short, sites_of_layers, sites_of_model
from peftlab.params.plan import Plan

PREFIX = "boft"
BOFT_R, BOFT_S = "boft R", "boft s"

# PEFT 0.21 (tuners/boft/layer.py), per adapted layer of input width n (in_features; in_channels × k² for a Conv2d,
# k = kernel_size[0]) and output width out, with F = n_butterfly_factor:
#   block size b and block count B with b × B = n (one of boft_block_size / boft_block_num given, the other 0);
#   boft_R (F, B, b, b): one full b×b matrix per block and factor (skew-symmetrised, then Cayley), F·n·b numbers;
#   boft_s (out, 1) for Linear, (1, out) for Conv2d: a scale per output. The butterfly permutations boft_P are buffers.
#   Rules (ValueError / NotImplementedError in PEFT): b | n; for F > 1 also (b·2^(F-1)) | n (B a multiple of
#   2^(F-1)) and b even; no grouped convs (groups > 1).
#   PEFT multiplies the F factors with a CUDA extension (fbd_cuda) it compiles at first use; where that fails it warns
#   once per layer and silently trains F = 1. peftlab gives PEFT the same block-diagonal operation in torch
#   (`torch_block_diag`): no compilation, any device, F as asked.


@dataclass(frozen=True)
class Knobs:
    block_size: int = knob(
        4,
        "BOFT block size b (must divide each adapted layer's input width); 0 when --boft-block-num is given",
        check=non_negative,
    )
    block_num: int = knob(
        0,
        "BOFT blocks per layer (block size × blocks = input width); 0 = from --boft-block-size",
        check=non_negative,
    )
    n_butterfly_factor: int = knob(1, "butterfly factors F (1 = OFT with full blocks); F > 1 needs even blocks",
                                   check=positive)  # fmt: skip
    dropout: float = knob(0.0, "multiplicative dropout: the share of blocks set to the identity, in [0, 1)",
                          check=probability)  # fmt: skip
    bias: str = knob("none", "BOFT bias: none | all | boft_only", choices=("none", "all", "boft_only"))
    target: list[str] | None = knob(
        None,
        "BOFT target modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out (pointwise, spatial "
        "on CNNs) or module names",
        check=names_list,
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside BOFT, comma-separated (default: the classification head)",
    )


# --- PEFT's rules ------------------------------------------------------------------------------------------------


def fits(n: int, b: int, num: int, factor: int, of: str = "") -> str | None:
    """None when PEFT accepts block size b (or block count num, b = 0) with `factor` on input width n (of a layer
    named in `of`: " of query"); else why not."""
    if n % (b or num):
        return f"does not divide the input width {n}{of}"
    b, num = (b, n // b) if b else (n // num, num)
    if factor > 1 and num % 2 ** (factor - 1):
        return f"leaves {num} blocks of {b} in the input width {n}{of} (F > 1 needs a multiple of {2 ** (factor - 1)} blocks)"
    if factor > 1 and b % 2:
        return f"leaves {num} blocks of {b} in the input width {n}{of} (F > 1 needs an even block size)"
    return None


def check_sites(anat, sites, knobs: Knobs) -> None:
    """PEFT's rules as one line each, with values that fit every adapted layer (found by trying the divisors); the
    narrowest failing layer is named."""
    sites = sorted(sites, key=lambda s: (s[1], s[0]))
    b, num, factor = knobs.block_size, knobs.block_num, knobs.n_butterfly_factor
    fb, fn, ff = flag(PREFIX, "block_size"), flag(PREFIX, "block_num"), flag(PREFIX, "n_butterfly_factor")
    if (b == 0) == (num == 0):
        if b == 0:
            raise BadInput(
                f"{fb} 0 {fn} 0: set one of them (block size × blocks = the input width), e.g. {fb} 4"
            )
        raise BadInput(
            f"{fn} {num} {fb} {b}: give only one of them and set the other to 0, e.g. {fn} {num} {fb} 0"
        )
    grouped = [s for s in sites if s[3] > 1]
    if grouped:
        raise BadInput(
            f"{flag(PREFIX, 'target')}: PEFT's BOFT does not support grouped convolutions "
            f"({short(anat, grouped[0][0])} has groups={grouped[0][3]}); target pointwise or spatial convs"
        )
    if not sites:
        return
    widths = sorted({s[1] for s in sites})
    knob_flag, value = (fb, b) if b else (fn, num)
    for name, n, _k, _g in sites:
        why = fits(n, b, num, factor, f" of {short(anat, name)}")
        if why is None:
            continue
        hint = f"{knob_flag} values that fit every adapted layer: {', '.join(map(str, fitting(widths, b, factor)))}"
        if not fitting(widths, b, factor):
            other = [(f, fitting(widths, b, f)) for f in range(factor - 1, 0, -1) if fitting(widths, b, f)]
            hint = f"no {knob_flag} fits every adapted layer with {ff} {factor}"
            hint += (
                f"; with {ff} {other[0][0]}: {', '.join(map(str, other[0][1]))}"
                if other
                else "; adapt fewer layers"
            )
        with_f = f" (with {ff} {factor})" if factor > 1 else ""
        widths_text = ", ".join(map(str, widths))
        raise BadInput(f"{knob_flag} {value}{with_f}: {why}; adapted input widths: {widths_text}; {hint}")


def fitting(widths: list[int], by_size: int, factor: int) -> list[int]:
    """The block sizes (by_size > 0) or block counts that PEFT accepts on every width, blocks of 2 or more."""
    common = math.gcd(*widths)
    if by_size:
        return [d for d in divisors(common) if d > 1 and all(fits(w, d, 0, factor) is None for w in widths)]
    return [
        d for d in divisors(common) if d < min(widths) and all(fits(w, 0, d, factor) is None for w in widths)
    ]


def block(n: int, knobs: Knobs) -> tuple[int, int]:
    """(block count B, block size b) on a layer of input width n."""
    if knobs.block_size:
        return n // knobs.block_size, knobs.block_size
    return knobs.block_num, n // knobs.block_num


# --- PEFT --------------------------------------------------------------------------------------------------------


class TorchBlockDiag:
    """PEFT's fbd_cuda interface in torch: forward((N, D, b, b)) -> [(N, D·b, D·b)] with the D blocks on the diagonal
    (the kernel's layout: out[z, i·b + x, i·b + y] = in[z, i, x, y]); backward -> [the gradient of the blocks]."""

    @staticmethod
    def forward(blocks):
        import torch

        n, d, b, _ = blocks.shape
        out = blocks.new_zeros(n, d, b, d, b)
        i = torch.arange(d, device=blocks.device)
        out[:, i, :, i, :] = blocks.transpose(0, 1)  # the two index tensors lead: (D, N, b, b)
        return [out.reshape(n, d * b, d * b)]

    @staticmethod
    def backward(grad_output, blocks):
        import torch

        n, d, b, _ = blocks.shape
        i = torch.arange(d, device=grad_output.device)
        return [grad_output.reshape(n, d, b, d, b)[:, i, :, i, :].transpose(0, 1).contiguous()]


def torch_block_diag() -> None:
    """Hand PEFT the torch block-diagonal before it tries to compile its CUDA one (peft.tuners.boft.layer caches the
    extension in _FBD_CUDA and only compiles while that is None); a real extension already loaded stays."""
    from peft.tuners.boft import layer

    if getattr(layer, "_FBD_CUDA", None) is None:
        layer._FBD_CUDA = TorchBlockDiag()


def boft_config(anat, knobs: Knobs, task: str):
    from peft import BOFTConfig

    return BOFTConfig(
        boft_block_size=knobs.block_size,
        boft_block_num=knobs.block_num,
        boft_n_butterfly_factor=knobs.n_butterfly_factor,
        boft_dropout=knobs.dropout,
        bias=knobs.bias,
        target_modules=adapters.targets(anat, knobs.target, flag(PREFIX, "target")),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    from peftlab.models.anatomy import default_targets

    entries = knobs.target or default_targets(anatomy)
    names = adapted_names(anatomy, entries, knobs.modules_to_save, ctx.task, flag(PREFIX, "target"))
    check_sites(anatomy, sites_of_model(model, names), knobs)
    torch_block_diag()
    return adapters.wrap(model, boft_config(anatomy, knobs, ctx.task), flag(PREFIX, "target"))


# --- arithmetic --------------------------------------------------------------------------------------------------


def r_expr(n: int, knobs: Knobs) -> tuple[str, int]:
    """boft_R on one layer: F × B × b × b ("12 × 4×4", "2 × 6 × 8×8")."""
    num, b = block(n, knobs)
    f = knobs.n_butterfly_factor
    text = f"{num} × {b}×{b}" if f == 1 else f"{f} × {num} × {b}×{b}"
    return text, f * num * b * b


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    from peftlab.models.anatomy import default_targets

    entries = list(knobs.target or default_targets(anat))
    plan, layers = adapters.targeted_plan(
        arch, anat, entries, knobs.modules_to_save, task, flag(PREFIX, "target")
    )
    sites = sites_of_layers(layers)
    check_sites(anat, sites, knobs)
    width = {name: n for name, n, _k, _g in sites}
    if layers:
        size = f"b={knobs.block_size}" if knobs.block_size else f"blocks={knobs.block_num}"
        label = f"{BOFT_R} {size} F={knobs.n_butterfly_factor} on {','.join(entries)}"
        r_term = lambda x: r_expr(width[x.name], knobs)  # noqa: E731
        plan.added.append(adapters.per_layer(label, layers, r_term, (".boft_R.",)))
        s_term = lambda x: (str(x.out_features), x.out_features)  # noqa: E731
        plan.added.append(
            adapters.per_layer(f"{BOFT_S} (one scale per output)", layers, s_term, (".boft_s.",))
        )
    plan.train_bias = adapters.trained_biases(arch, plan, layers, knobs.bias)  # "all" or "boft_only"
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """BOFT's products (peft/tuners/boft/layer.py), every forward, on a layer of input width n (in·k² for a conv):
    the F·B blocks' Cayley transform by a solve (not a matmul: 0 forward; its backward forms one batched b×b product);
    the block-diagonal matrices permuted, Pᵀ·(diag)·P as two batched n×n products over the F factors; the F factors
    chained (F-1 products n×n×n) and applied to the identity (n×n×n). A Linear then rotates its input (rows·n·n,
    trained) into its own product; a Conv2d rotates its weight (n×n×out) and convolves with it (its weight trains)."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, BOFT_R)
    if added is None:
        return Effect()
    by_name = {x.name: x for x in arch.layers}
    width = {name: n for name, n, _k, _g in sites_of_layers([by_name[n] for n in added.layers])}
    f = knobs.n_butterfly_factor

    def hook(g, site, x):
        name, n = site.layer.name, width[site.layer.name]
        num, b = block(n, knobs)
        with g.at(added.component, site.layer.block):
            g.backward_only(batch=f * num, m=b, k=b, n=b, products=1, name=f"{name} Cayley solve backward")
            diag, perm = g.param(True), g.param(False)
            m = g.matmul(diag, perm, batch=f, m=n, k=n, n=n, per_step=True, name=f"{name} diag·Pᵀ")
            m = g.matmul(perm, m, batch=f, m=n, k=n, n=n, per_step=True, name=f"{name} P·(diag·Pᵀ)")
            for i in range(1, f):
                m = g.matmul(m, m, batch=1, m=n, k=n, n=n, per_step=True, name=f"{name} factor {i + 1}")
            rot = g.matmul(m, g.param(False), batch=1, m=n, k=n, n=n, per_step=True, name=f"{name} R·I")
            if site.conv:  # the weight rotated: R (n × n) · Wᵀ (n × out), then the conv with it
                w = g.matmul(rot, g.param(False), batch=1, m=n, k=n, n=site.fan_out, per_step=True,
                             name=f"{name} R·Wᵀ")  # fmt: skip
                y = site.same(g, x, name=name, trains=w.rg, bias_trains=site.bias_trains)
            else:
                xr = g.matmul(x, rot, batch=1, m=site.rows, k=n, n=n, name=f"{name} x·R")
                y = site.base(g, xr)
        return g.ew(y, trains=True, what="boft scale", keep_in=True)

    return Effect(adapters=dict.fromkeys(added.layers, hook))


METHOD = Method(
    name="boft",
    trains="butterfly products of block-diagonal orthogonal rotations of each target's weight + output scales + head",
    # No classification recipe for BOFT in PEFT's docs; LoRA's 5e-4 here, so the methods compare at one learning rate
    # (PEFT's MetaMathQA benchmark trains BOFT at 1e-4 on a 3B LLM; its ControlNet example at 1e-5).
    default_lr=5e-4,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    paper="Liu et al. 2024, Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization, arXiv:2311.06243",
    limits="grouped or depthwise convs; --boft-block-size × --boft-block-num must equal each target's input width, and with --boft-n-butterfly-factor F > 1 the block count must be a multiple of 2^(F-1) (the message lists values that fit).",
)
