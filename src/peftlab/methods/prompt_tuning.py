"""`prompt-tuning`: HF PEFT prompt tuning: n trained d-vectors put in front of the input's word embeddings, the backbone
frozen, the head trained in full through `modules_to_save`. Text classifiers only.

Defaults n=20 virtual tokens, random init (PEFT's); the classifier reads position 0, which is now the first virtual token.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.methods import TEXT, Method, virtual_tokens
from peftlab.methods.knobs import knob
from peftlab.methods.space import int_range
from peftlab.params.plan import Added, Plan

NAME, PREFIX = "prompt-tuning", "prompt_tuning"


@dataclass(frozen=True)
class Knobs:
    num_virtual_tokens: int = virtual_tokens.virtual_tokens_knob()
    init: str = knob(
        "RANDOM",
        "how the virtual tokens start: RANDOM (PEFT's default) or SAMPLE_VOCAB (embeddings of random vocabulary words)",
        choices=("RANDOM", "SAMPLE_VOCAB"),
    )
    modules_to_save: list[str] | None = virtual_tokens.modules_to_save_knob("prompt")


def prepare(model, anatomy, knobs: Knobs, ctx):
    from peft import PromptTuningConfig

    virtual_tokens.check_model(NAME, model, anatomy)
    sizes = virtual_tokens.model_sizes(model, anatomy)
    virtual_tokens.check_tokens(PREFIX, knobs.num_virtual_tokens, sizes)
    return virtual_tokens.wrap(
        model,
        anatomy,
        PromptTuningConfig,
        knobs,
        ctx,
        PREFIX,
        token_dim=sizes.d,
        prompt_tuning_init=knobs.init,
    )


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """PromptEmbedding: one Embedding(n, d), d the word embeddings' width: n × d trained parameters."""
    virtual_tokens.check_arch(NAME, arch)
    sizes = virtual_tokens.arch_sizes(arch)
    n = knobs.num_virtual_tokens
    virtual_tokens.check_tokens(PREFIX, n, sizes)
    out = virtual_tokens.base_plan(arch, anat, knobs.modules_to_save, task, PREFIX)
    tokens = [(None, f"{n}×{sizes.d}", n * sizes.d)]  # prompt_encoder.default.embedding.weight (n, d)
    out.added.append(Added(f"prompt tokens n={n}", tokens, (f"{virtual_tokens.MARK}embedding.",)))
    return out


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """n trained vectors in front of the input's embeddings: every block runs on T + n tokens (no products of its own)
    and the gradient flows back through every block to them."""
    from peftlab.flops import Effect

    return Effect(virtual_tokens=knobs.num_virtual_tokens)


METHOD = Method(
    name=NAME,
    trains="n virtual token embeddings (n x d) in front of the input + the head (modules_to_save)",
    default_lr=1e-3,  # PEFT's examples/sequence_classification/Prompt_Tuning.ipynb (roberta-large, MRPC): lr = 1e-3
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    tasks=(TEXT,),
    paper="Lester et al. 2021, The Power of Scale for Parameter-Efficient Prompt Tuning, arXiv:2104.08691",
    space={"num_virtual_tokens": int_range(5, 50)},
)
