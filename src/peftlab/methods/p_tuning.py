"""`p-tuning`: HF PEFT P-tuning: n trained embeddings pass through a prompt encoder (an MLP, or a bidirectional LSTM and
an MLP) into virtual tokens in front of the input's word embeddings; backbone frozen, head trained (`modules_to_save`).

Defaults n=20, MLP encoder of hidden width h = d (PEFT's). Text classifiers only; the classifier reads position 0, the
first virtual token.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.methods import TEXT, Method, virtual_tokens
from peftlab.methods.knobs import flag, knob, positive, probability
from peftlab.methods.space import int_range
from peftlab.params.plan import Added, Plan

NAME, PREFIX = "p-tuning", "p_tuning"
MLP_LAYERS = 2  # PEFT's PromptEncoderConfig.encoder_num_layers default; the MLP ignores any other value


@dataclass(frozen=True)
class Knobs:
    num_virtual_tokens: int = virtual_tokens.virtual_tokens_knob()
    encoder_type: str = knob(
        "MLP",
        "prompt encoder: MLP (d -> h -> h -> d, PEFT's default) or LSTM (bidirectional LSTM, then 2h -> 2h -> d)",
        choices=("MLP", "LSTM"),
    )
    encoder_hidden_size: int | None = knob(
        None,
        "hidden width h of the prompt encoder (default: the word embeddings' width d)",
        check=virtual_tokens.optional_size,
    )
    encoder_num_layers: int = knob(MLP_LAYERS, "LSTM layers of the LSTM encoder", check=positive)
    encoder_dropout: float = knob(
        0.0, "dropout between the LSTM encoder's layers, in [0, 1)", check=probability
    )
    modules_to_save: list[str] | None = virtual_tokens.modules_to_save_knob("prompt encoder")


def check(knobs: Knobs) -> None:
    """PEFT's MLP has a fixed depth and no dropout: settings it would ignore are refused, not silently dropped."""
    if knobs.encoder_type != "MLP":
        return
    lstm_only = {"encoder_num_layers": MLP_LAYERS, "encoder_dropout": 0.0}
    for name, default in lstm_only.items():
        value = getattr(knobs, name)
        if value != default:
            raise BadInput(
                f"{flag(PREFIX, name)} {value}: only the LSTM encoder uses it (PEFT's MLP is always "
                f"Linear-ReLU-Linear-ReLU-Linear); add {flag(PREFIX, 'encoder_type')} LSTM or drop it"
            )


def prepare(model, anatomy, knobs: Knobs, ctx):
    from peft import PromptEncoderConfig

    check(knobs)
    virtual_tokens.check_model(NAME, model, anatomy)
    sizes = virtual_tokens.model_sizes(model, anatomy)
    virtual_tokens.check_tokens(PREFIX, knobs.num_virtual_tokens, sizes)
    return virtual_tokens.wrap(
        model,
        anatomy,
        PromptEncoderConfig,
        knobs,
        ctx,
        PREFIX,
        token_dim=sizes.d,
        encoder_reparameterization_type=knobs.encoder_type,
        encoder_hidden_size=knobs.encoder_hidden_size,
        encoder_num_layers=knobs.encoder_num_layers,
        encoder_dropout=knobs.encoder_dropout,
    )


def lstm_terms(d: int, h: int, layers: int) -> list[tuple[None, str, int]]:
    """nn.LSTM(d, h, layers, bidirectional): per direction and layer W_ih (4h × in) + W_hh (4h × h) + b_ih + b_hh
    (4h each); the first layer reads d, the others the 2h of both directions."""
    terms = []
    for i in range(layers):
        fan_in, fan_in_text = (d, str(d)) if i == 0 else (2 * h, f"2×{h}")
        value = 2 * (4 * h * fan_in + 4 * h * h + 2 * 4 * h)
        terms.append((None, f"2 × (4×{h}×{fan_in_text} + 4×{h}×{h} + 2×4×{h})", value))
    return terms


def plan(arch, anat, knobs: Knobs, task: str) -> Plan:
    """PromptEncoder: Embedding(n, d), then MLP Linear(d, h) ReLU Linear(h, h) ReLU Linear(h, d), or LSTM(d, h,
    bidirectional) and Linear(2h, 2h) ReLU Linear(2h, d)."""
    check(knobs)
    virtual_tokens.check_arch(NAME, arch)
    sizes = virtual_tokens.arch_sizes(arch)
    n, d = knobs.num_virtual_tokens, sizes.d
    h = knobs.encoder_hidden_size or d
    virtual_tokens.check_tokens(PREFIX, n, sizes)
    out = virtual_tokens.base_plan(arch, anat, knobs.modules_to_save, task, PREFIX)
    mark = virtual_tokens.MARK
    out.added.append(Added(f"p-tuning tokens n={n}", [(None, f"{n}×{d}", n * d)], (f"{mark}embedding.",)))
    if knobs.encoder_type == "MLP":
        mlp = [
            (None, f"{d}×{h} + {h}", d * h + h),  # mlp_head.0
            (None, f"{h}×{h} + {h}", h * h + h),  # mlp_head.2
            (None, f"{h}×{d} + {d}", h * d + d),  # mlp_head.4
        ]
        out.added.append(Added(f"p-tuning encoder MLP h={h}", mlp, (f"{mark}mlp_head.",)))
        return out
    lstm = lstm_terms(d, h, knobs.encoder_num_layers)
    out.added.append(
        Added(f"p-tuning encoder LSTM h={h} x{knobs.encoder_num_layers}", lstm, (f"{mark}lstm_head.",))
    )
    mlp = [
        (None, f"2×{h}×2×{h} + 2×{h}", 4 * h * h + 2 * h),  # mlp_head.0: Linear(2h, 2h)
        (None, f"2×{h}×{d} + {d}", 2 * h * d + d),  # mlp_head.2: Linear(2h, d)
    ]
    out.added.append(Added(f"p-tuning encoder MLP after the LSTM h={h}", mlp, (f"{mark}mlp_head.",)))
    return out


def flops(arch, anat, knobs: Knobs, task: str, plan: Plan):
    """n virtual tokens from the prompt encoder in front of the input's embeddings: every block runs on T + n tokens.
    PEFT runs the encoder once per step on one sample's n tokens and repeats the result over the batch
    (peft_model.py get_prompt): MLP d -> h -> h -> d on n rows; or a bidirectional LSTM (per layer and direction
    2·n·(in + h)·4h, its fused backward twice that) and MLP 2h -> 2h -> d."""
    from peftlab.flops import Effect
    from peftlab.flops.graph import Act, Dim

    n, d = knobs.num_virtual_tokens, virtual_tokens.arch_sizes(arch).d
    h = knobs.encoder_hidden_size or d
    rows = Dim.of(n)

    def linear(g, x, fan_in, fan_out, name):
        return g.linear(x, rows, fan_in, fan_out, name=f"prompt encoder {name}", trains=True, per_step=True)

    def encoder(g):
        with g.at(f"p-tuning encoder {knobs.encoder_type} h={h}"):
            x = Act(True, per_step=True)  # the n trained embeddings
            if knobs.encoder_type == "MLP":
                x = linear(
                    g, linear(g, linear(g, x, d, h, "mlp_head.0"), h, h, "mlp_head.2"), h, d, "mlp_head.4"
                )
                return x
            for layer in range(knobs.encoder_num_layers):
                fan_in = d if layer == 0 else 2 * h
                for direction in ("forward", "backward"):  # one fused kernel: every gradient in its backward
                    g.rnn(rows=n, fan_in=fan_in, hidden=h, gates=4, name=f"lstm layer {layer} {direction}")
                x = Act(True, per_step=True)
            return linear(g, linear(g, x, 2 * h, 2 * h, "mlp_head.0"), 2 * h, d, "mlp_head.2")

    return Effect(virtual_tokens=n, encoder=encoder)


METHOD = Method(
    name=NAME,
    trains="n embeddings through a prompt encoder (MLP or LSTM) into virtual tokens + the head (modules_to_save)",
    default_lr=1e-3,  # PEFT's examples/sequence_classification/P_Tuning.ipynb (roberta-large, MRPC): lr = 1e-3
    prepare=prepare,
    plan=plan,
    flops=flops,
    knobs=Knobs,
    tasks=(TEXT,),
    paper="Liu et al. 2021, GPT Understands, Too, arXiv:2103.10385",
    space={"num_virtual_tokens": int_range(5, 50)},
)
