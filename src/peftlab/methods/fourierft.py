"""`fourierft`: HF PEFT FourierFT, n trained spectral coefficients per target Linear at fixed random frequencies, the
weight change their inverse 2-D DFT (× scaling); the head trained in full through `modules_to_save`.

Used as `--method fourierft` on transformers (PEFT's FourierFT adapts Linear layers only); defaults n_frequency=1000,
scaling=150, targets query+value (PEFT's mapping for BERT/RoBERTa, and peftlab's default elsewhere), head saved.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import Method, adapters
from peftlab.methods.knobs import check, flag, knob, names_list, positive
from peftlab.methods.space import choice
from peftlab.params.plan import Plan

PREFIX = "fourierft"
SPECTRUM = "fourierft spectrum"


@dataclass(frozen=True)
class Knobs:
    n_frequency: int = knob(
        1000,
        "spectral coefficients trained per target layer (at most in × out of the smallest target)",
        check=positive,
    )
    scaling: float = knob(
        150.0, "scale of the weight change (PEFT: 100-150 for RoBERTa, 300 for ViT)", check=positive
    )
    random_loc_seed: int = knob(777, "seed of the random frequency locations")
    init_weights: bool = knob(
        False, "start the spectrum at zero (the model starts unchanged); default: standard normal, as PEFT"
    )
    target: list[str] | None = knob(
        None,
        "FourierFT target Linear modules, comma-separated: aliases query,key,value,attn_out,ffn_in,ffn_out or "
        "module names (default: query,value)",
        check=names_list,
    )
    bias: str = knob(
        "none", "FourierFT bias: none | all | fourier_only", choices=("none", "all", "fourier_only")
    )
    modules_to_save: list[str] | None = knob(
        None,
        "modules trained and saved in full beside FourierFT, comma-separated (default: the classification head)",
    )


def fits(n: int, sizes: list[tuple[str, int, int]]) -> None:
    """PEFT picks n_frequency of a layer's in × out weight entries: n above the smallest target's size is refused."""
    if not sizes:
        return
    name, fan_in, fan_out = min(sizes, key=lambda s: s[1] * s[2])
    if n > fan_in * fan_out:
        raise BadInput(
            f"{flag(PREFIX, 'n_frequency')} {n}: more than the {fan_in}×{fan_out} = {fan_in * fan_out} weight entries "
            f"of {name}; use {flag(PREFIX, 'n_frequency')} {fan_in * fan_out} or less, or target larger layers"
        )


def fan_in_out(module) -> tuple[int, int]:
    """(in, out) of a Linear, or of a GPT-2 Conv1D (weight stored (in, out)), as PEFT's FourierFTLayer reads them."""
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    return int(module.weight.shape[0]), int(module.weight.shape[1])


def fourierft_config(model, anat, knobs: Knobs, task: str):
    """The peft.FourierFTConfig of this run, with targets resolved to full module names of this model."""
    from peft import FourierFTConfig
    from torch import nn

    target_flag = flag(PREFIX, "target")
    names = adapters.targets(anat, knobs.target, target_flag)
    modules = {n: model.get_submodule(n) for n in names}
    adapters.linear_only(names, lambda n: isinstance(modules[n], nn.Conv2d), target_flag, "FourierFT")
    fits(knobs.n_frequency, [(n, *fan_in_out(m)) for n, m in modules.items()])
    return FourierFTConfig(
        n_frequency=knobs.n_frequency,
        scaling=knobs.scaling,
        random_loc_seed=knobs.random_loc_seed,
        init_weights=knobs.init_weights,
        target_modules=names,
        bias=knobs.bias,
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(PREFIX, "modules_to_save")
        ),
        task_type=adapters.task_type(task),
    )


def prepare(model, anatomy, knobs: Knobs, ctx):
    check(PREFIX, knobs)  # knobs built in code skip parse_knobs: the same one-line refusals
    return adapters.wrap(model, fourierft_config(model, anatomy, knobs, ctx.task), flag(PREFIX, "target"))


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """FourierFT as arithmetic: n_frequency coefficients per adapted Linear (fourierft_spectrum (n,)), whatever its
    shape; the frequency locations are recomputed from the seed, not stored as parameters."""
    from peftlab.models.anatomy import default_targets

    check(PREFIX, knobs)
    entries = list(knobs.target or default_targets(anat))
    target_flag = flag(PREFIX, "target")
    by_name = {x.name: x for x in arch.layers}
    names = adapters.targets(anat, entries, target_flag)
    adapters.linear_only(names, lambda n: by_name[n].kind == "conv", target_flag, "FourierFT")
    fits(knobs.n_frequency, [(n, by_name[n].in_features, by_name[n].out_features) for n in names])
    plan, layers = adapters.targeted_plan(arch, anat, entries, knobs.modules_to_save, task, target_flag)
    if layers:
        n = knobs.n_frequency
        label = f"{SPECTRUM} n={n} on {','.join(entries)}"
        plan.added.append(adapters.per_layer(label, layers, lambda x: (str(n), n), (".fourierft_spectrum.",)))
    plan.train_bias = adapters.trained_biases(arch, plan, layers, knobs.bias)
    return plan


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """FourierFT's products (peft/tuners/fourierft/layer.py): ΔW = Re(IFFT2(spectrum placed at its frequencies)) ·
    scaling, built every forward, then x·ΔWᵀ, a product of the layer's own shape whose weight trains. The inverse FFT
    is not a matmul and counts 0 here, as in FlopCounterMode (≈ 5·out·in·log2(out·in) real operations)."""
    from peftlab.flops import Effect

    added = adapters.added_entry(plan, SPECTRUM)
    if added is None:
        return Effect()

    def hook(g, site, x):
        y = site.base(g, x)
        with g.at(added.component, site.layer.block):
            v = site.same(g, x, name=f"{site.layer.name} x·ΔWᵀ", trains=True)
        return g.ew(y, v, what="fourierft add")

    note = "FourierFT: the inverse 2-D FFT that builds each ΔW is not a matmul and is not counted"
    return Effect(adapters=dict.fromkeys(added.layers, hook), notes=[note])


METHOD = Method(
    name="fourierft",
    trains="FourierFT spectral coefficients (n_frequency per target Linear) + the head (modules_to_save)",
    # PEFT's examples/sequence_classification/FourierFT.ipynb (RoBERTa-base, MRPC): head_lr 6e-3, fft_lr 6e-2; one
    # rate here, the head's (the paper's ViT runs: head 8e-4 .. 1e-3, spectrum 2e-1 .. 3e-1)
    default_lr=6e-3,
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    kinds=("transformer",),  # PEFT's FourierFT has no Conv2d layer: no CNN can take it
    paper="Gao et al. 2024, Parameter-Efficient Fine-Tuning with Discrete Fourier Transform, arXiv:2405.03003",
    limits="convolutions (Linear layers only); --fourierft-n-frequency above a target's in × out weight entries.",
    space={"n_frequency": choice(500, 1000, 2000)},
)
