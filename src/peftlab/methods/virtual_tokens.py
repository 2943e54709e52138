"""What the virtual-token methods share (prompt-tuning, prefix-tuning, p-tuning): PEFT's prompt-learning sizes read from
the model or from the arithmetic, the frozen backbone with the head saved, the checks, and wrapping. Text only.

prompt_tuning.py, prefix_tuning.py and p_tuning.py build their PEFT config with `wrap` and their plan on `base_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import adapters
from peftlab.methods.knobs import flag

MEANPOOL_CLASS = "MeanPoolForSequenceClassification"  # peftlab's mean-pooling classifier (models/meanpool.py)
# get_peft_model's adapter name: the prompt encoder's parameters are named prompt_encoder.default.*
ADAPTER = "default"
MARK = f"prompt_encoder.{ADAPTER}."


@dataclass(frozen=True)
class Sizes:
    """What PEFT's prompt learning reads from a text encoder."""

    d: int  # width of the word embeddings: the virtual tokens are d-vectors put in front of the input's embeddings
    kv: int  # attention width A = heads × head size: one key and one value vector per prefix token and block
    layers: int  # L: the encoder's blocks
    positions: int  # rows of the position table: virtual tokens take positions from the input's length


def arch_sizes(arch) -> Sizes:
    """The sizes from the parameter arithmetic (params.layers.Arch): word/position tables, first query, blocks."""
    words = next(x for x in arch.layers if x.kind == "embedding" and x.what == "words")  # (V, d)
    positions = next(x for x in arch.layers if x.kind == "embedding" and x.what == "positions")  # (P, d)
    query = next((x for x in arch.layers if x.role == "query"), None)  # (A, d)
    return Sizes(
        d=words.shape[1],
        kv=query.out_features if query else words.shape[1],
        layers=len(arch.blocks),
        positions=positions.shape[0],
    )


def text_config(model):
    """The encoder's transformers config (a mean-pooling classifier keeps it as `encoder_config`)."""
    config = model.config
    return getattr(config, "encoder_config", None) or config


def model_sizes(model, anat) -> Sizes:
    """The same sizes from the model itself (prepare), so PEFT never has to guess them from config keys."""
    query = anat.aliases.get("query", [])
    d = model.get_input_embeddings().embedding_dim
    return Sizes(
        d=d,
        kv=model.get_submodule(query[0]).out_features if query else d,
        layers=len(anat.blocks),
        positions=text_config(model).max_position_embeddings,
    )


def heads(model) -> int:
    # PEFT views the prefix as (batch, n, 2L, heads, A / heads); DistilBERT's config maps n_heads to this name
    return text_config(model).num_attention_heads


def check_tokens(prefix: str, n: int, sizes: Sizes) -> None:
    """The virtual tokens shift the input's positions by n: at least one real token must still fit the table."""
    if n >= sizes.positions:
        raise BadInput(
            f"{flag(prefix, 'num_virtual_tokens')} {n}: this model has {sizes.positions} positions and the "
            f"virtual tokens take {n} of them; use fewer than {sizes.positions} (PEFT's examples use 10-20)"
        )


def embeddings_refusal(method: str, family: str, classifier: str, findable: bool) -> str | None:
    """PEFT (peft_model.py, _setup_prompt_encoder) takes the model's `embeddings.word_embeddings`, else the parameter
    whose first dimension is the config's vocab_size: a classifier offering neither cannot be prompt-tuned."""
    if findable:
        return None
    import peft

    return (
        f"--method {method}: does not apply to {family} as {classifier}: PEFT {peft.__version__} finds the word "
        f"embeddings through the config's vocab_size, which {classifier}'s config does not give; use --pooling cls"
    )


def check_model(method: str, model, anat) -> None:
    """prepare's side of `embeddings_refusal`: look where PEFT will look."""
    try:
        model.get_submodule("embeddings.word_embeddings")
        return
    except AttributeError:
        pass
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    findable = getattr(text, "vocab_size", None) is not None
    why = embeddings_refusal(method, anat.family, type(model).__name__, findable)
    if why:
        raise BadInput(why)


def check_arch(method: str, arch) -> None:
    """plan's side of `embeddings_refusal`: the family classifiers' configs have vocab_size; the mean-pooling
    classifier's config answers it only where models/meanpool.py gives MeanPoolConfig a `vocab_size`."""
    findable = True
    if arch.model_class == MEANPOOL_CLASS:
        from peftlab.models.meanpool import MeanPoolConfig

        findable = getattr(MeanPoolConfig, "vocab_size", None) is not None
    why = embeddings_refusal(method, arch.family, arch.model_class, findable)
    if why:
        raise BadInput(why)


def base_plan(arch, anat, modules_to_save: list[str] | None, task: str, prefix: str):
    """Prompt learning freezes every parameter of the base model; the head trains through PEFT's saved copies."""
    from peftlab.params.plan import Plan, peft_saved

    # unknown module names: bad input, as prepare says it
    adapters.modules_to_save(anat, modules_to_save, flag(prefix, "modules_to_save"))
    _, copied, unsupported = peft_saved(arch, anat, modules_to_save, task)
    return Plan(copied=copied, unsupported=unsupported)


def wrap(model, anat, config_cls, knobs, ctx, prefix: str, *, token_dim: int, **fields):
    """get_peft_model with the sizes given explicitly: PEFT reads them from config keys that a mean-pooling classifier
    (encoder_config) and DistilBERT (dim, n_layers) do not have; the head is saved (modules_to_save)."""
    config = config_cls(
        task_type=adapters.task_type(ctx.task),
        num_virtual_tokens=knobs.num_virtual_tokens,
        token_dim=token_dim,
        num_layers=len(anat.blocks),
        num_attention_heads=heads(model),
        modules_to_save=adapters.modules_to_save(
            anat, knobs.modules_to_save, flag(prefix, "modules_to_save")
        ),
        **fields,
    )
    return adapters.wrap(model, config, flag(prefix, "num_virtual_tokens"))


def optional_size(v) -> str | None:
    """Knob check: None (the default width) or a positive whole number."""
    ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
    return None if ok else "must be a positive whole number"


def virtual_tokens_knob():
    """The shared knob: how many virtual tokens (20: PEFT's prefix-tuning and p-tuning examples)."""
    from peftlab.methods.knobs import knob, positive

    return knob(20, "number of virtual tokens n", check=positive)


def modules_to_save_knob(what: str):
    from peftlab.methods.knobs import knob

    return knob(
        None,
        f"modules trained and saved in full beside the {what}, comma-separated (default: the classification head)",
    )
