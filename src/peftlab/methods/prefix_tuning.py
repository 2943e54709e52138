"""`prefix-tuning`: HF PEFT prefix tuning: n trained key and value vectors in front of every block's attention (past
key/values), the backbone frozen, the head trained in full through `modules_to_save`. Text classifiers only.

Defaults n=20, no projection (PEFT's). PEFT hands the prefix to the classifier's forward as `past_key_values`: where
that forward or the encoder has no such input (DistilBERT; BERT/RoBERTa classifiers under transformers 5) it refuses.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import TEXT, Method, virtual_tokens
from peftlab.methods.knobs import flag, knob
from peftlab.methods.space import int_range
from peftlab.params.plan import Added, Plan

NAME, PREFIX = "prefix-tuning", "prefix_tuning"
MEANPOOL_CLASS = virtual_tokens.MEANPOOL_CLASS


@dataclass(frozen=True)
class Knobs:
    num_virtual_tokens: int = virtual_tokens.virtual_tokens_knob()
    projection: bool = knob(
        False,
        "reparameterise the prefix: n embeddings of width A through an MLP A -> h -> L×2×A (PEFT's prefix_projection)",
    )
    encoder_hidden_size: int | None = knob(
        None,
        "hidden width h of the projection MLP (default: the attention width A); needs --prefix-tuning-projection",
        check=virtual_tokens.optional_size,
    )
    modules_to_save: list[str] | None = virtual_tokens.modules_to_save_knob("prefix")


def _forward_args(cls) -> set[str]:
    return set(inspect.signature(cls.forward).parameters) if cls is not None else set()


def _meanpool_takes_prefix() -> bool:
    from peftlab.models.meanpool import MeanPoolForSequenceClassification

    return "past_key_values" in _forward_args(MeanPoolForSequenceClassification)


def refusal(classifier_cls, encoder_cls, family: str) -> str | None:
    """Why PEFT's prefix tuning cannot run on this classifier, or None. PEFT (peft_model.py, _prefix_tuning_forward)
    calls the classifier with `past_key_values=` when its forward names that argument; the encoder must then put the
    prefix in front of each block's keys and values (transformers 5 names that input `cache`). PEFT's other route
    (the encoder names `past_key_values`) pools the encoder's second output, not a mean: never taken here."""
    import peft
    import transformers

    method = f"--method {NAME}"
    if not {"cache", "past_key_values"} & _forward_args(encoder_cls):
        name = encoder_cls.__name__ if encoder_cls is not None else family
        return (
            f"{method}: does not apply to {family}: {name} keeps no key/value cache to put the prefix in; "
            "use --method prompt-tuning or p-tuning"
        )
    if "past_key_values" not in _forward_args(classifier_cls):
        name = classifier_cls.__name__ if classifier_cls is not None else "its classifier"
        other = "--pooling mean, or " if name != MEANPOOL_CLASS and _meanpool_takes_prefix() else ""
        return (
            f"{method}: does not apply to {family} as {name}: PEFT {peft.__version__} hands the prefix over as "
            f"`past_key_values`, which {name}.forward does not take under transformers {transformers.__version__}; "
            f"use {other}--method prompt-tuning or p-tuning"
        )
    return None


def _classes_of_arch(arch):
    """(classifier class, encoder class) that load_model builds for this Arch, by name: no model is built."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    if arch.model_class == MEANPOOL_CLASS:
        from peftlab.models.meanpool import MeanPoolForSequenceClassification as classifier
    else:
        classifier = getattr(transformers, arch.model_class, None)
    encoder = getattr(transformers, MODEL_MAPPING_NAMES.get(arch.family, ""), None)
    return classifier, encoder


def check(knobs: Knobs) -> None:
    if knobs.encoder_hidden_size is not None and not knobs.projection:
        raise BadInput(
            f"{flag(PREFIX, 'encoder_hidden_size')} {knobs.encoder_hidden_size}: sizes the projection MLP, which is "
            f"off; add {flag(PREFIX, 'projection')} or drop it"
        )


def prepare(model, anatomy, knobs: Knobs, ctx):
    from peft import PrefixTuningConfig

    check(knobs)
    encoder = model.get_submodule(anatomy.backbone) if anatomy.backbone else model
    why = refusal(type(model), type(encoder), anatomy.family)
    if why:
        raise BadInput(why)
    virtual_tokens.check_model(NAME, model, anatomy)
    sizes = virtual_tokens.model_sizes(model, anatomy)
    virtual_tokens.check_tokens(PREFIX, knobs.num_virtual_tokens, sizes)
    # token_dim: the width of one key (value) vector, heads × head size: PEFT views the prefix as (B, n, 2L, heads, A/heads)
    return virtual_tokens.wrap(
        model,
        anatomy,
        PrefixTuningConfig,
        knobs,
        ctx,
        PREFIX,
        token_dim=sizes.kv,
        prefix_projection=knobs.projection,
        encoder_hidden_size=knobs.encoder_hidden_size,
    )


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """PrefixEncoder: Embedding(n, L×2×A) holding each block's n keys and n values; with the projection instead
    Embedding(n, A) + Linear(A, h) + Tanh + Linear(h, L×2×A)."""
    check(knobs)
    why = refusal(*_classes_of_arch(arch), arch.family)
    if why:
        raise BadInput(why)
    virtual_tokens.check_arch(NAME, arch)
    sizes = virtual_tokens.arch_sizes(arch)
    n, L, A = knobs.num_virtual_tokens, sizes.layers, sizes.kv
    virtual_tokens.check_tokens(PREFIX, n, sizes)
    out = virtual_tokens.base_plan(arch, anat, knobs.modules_to_save, task, PREFIX)
    embedding = (f"{virtual_tokens.MARK}embedding.",)
    if not knobs.projection:  # embedding.weight (n, L×2×A): per block n keys + n values of width A
        per_block = [(i, f"{n} × 2×{A}", n * 2 * A) for i in range(L)]
        out.added.append(Added(f"prefix keys+values n={n} per block", per_block, embedding))
        return out
    h = knobs.encoder_hidden_size or A
    out.added.append(Added(f"prefix tokens n={n}", [(None, f"{n}×{A}", n * A)], embedding))
    mlp = [
        (None, f"{A}×{h} + {h}", A * h + h),  # transform.0: Linear(A, h)
        (None, f"{h}×{L}×2×{A} + {L}×2×{A}", h * L * 2 * A + L * 2 * A),  # transform.2: Linear(h, L×2×A)
    ]
    out.added.append(Added(f"prefix projection MLP h={h}", mlp, (f"{virtual_tokens.MARK}transform.",)))
    return out


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """n trained keys and values in front of every block's own (attention over T + n keys for T queries); the gradient
    reaches them through every block. With the projection, PEFT runs the MLP A -> h -> L·2·A on every sample's n
    prefix embeddings (peft_model.py get_prompt: no sharing across the batch)."""
    from peftlab.flops import Effect
    from peftlab.flops.graph import Act, Dim

    n = knobs.num_virtual_tokens
    if not knobs.projection:
        return Effect(prefix_tokens=n)
    sizes = virtual_tokens.arch_sizes(arch)
    A, L = sizes.kv, sizes.layers
    h = knobs.encoder_hidden_size or A

    def encoder(g):
        with g.at(f"prefix projection MLP h={h}"):
            x = g.linear(Act(True), Dim.of(n), A, h, name="prefix transform.0", trains=True)
            return g.linear(
                g.ew(x, what="tanh"), Dim.of(n), h, L * 2 * A, name="prefix transform.2", trains=True
            )

    return Effect(prefix_tokens=n, encoder=encoder)


METHOD = Method(
    name=NAME,
    trains="n key and value vectors per block in front of attention (n x L x 2 x A) + the head (modules_to_save)",
    default_lr=1e-2,  # PEFT's examples/sequence_classification/prefix_tuning.ipynb (roberta-large, MRPC): lr = 1e-2
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    tasks=(TEXT,),
    paper="Li and Liang 2021, Prefix-Tuning: Optimizing Continuous Prompts for Generation, arXiv:2101.00190",
    space={"num_virtual_tokens": int_range(5, 50)},
)
