"""ViT as arithmetic (transformers 5 names: vit.layers.N.attention.q_proj): patch conv, class token, positions,
L pre-norm blocks, a final norm; ViTForImageClassification reads the class token after it (no pooler).
"""

from peftlab.params.families import Family
from peftlab.params.layers import (
    EMB,
    FINAL,
    HEAD,
    BlockNames,
    Layer,
    attention_info,
    attention_note,
    attention_width,
    linear,
    norm,
    param,
    transformer_arch,
    transformer_block,
)

NAMES = BlockNames(
    query="attention.q_proj",
    key="attention.k_proj",
    value="attention.v_proj",
    attn_out="attention.o_proj",
    norm1="layernorm_before",
    ffn_in="mlp.fc1",
    ffn_out="mlp.fc2",
    norm2="layernorm_after",
)


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def classifier(c, num_labels: int):
    H, F, A = c.hidden_size, c.intermediate_size, attention_width(c.num_attention_heads, c.hidden_size)
    (ih, iw), (ph, pw) = _pair(c.image_size), _pair(c.patch_size)
    patches = (ih // ph) * (iw // pw)  # (224/16)² = 196
    e = "vit.embeddings"
    layers = [
        param(f"{e}.cls_token", EMB, (1, 1, H), "class token"),  # (1, 1, H)
        param(f"{e}.position_embeddings", EMB, (1, patches + 1, H), "positions"),  # (1, N+1, H)
        # Conv2d(C, H, kernel = stride = patch): (H, C, ph, pw) + bias H
        Layer(
            f"{e}.patch_embeddings.projection",
            EMB,
            "conv",
            (H, c.num_channels, ph, pw),
            H,
            what="patches",
            stride=ph,
        ),
    ]
    qkv_bias = bool(getattr(c, "qkv_bias", True))
    for i in range(c.num_hidden_layers):
        layers += transformer_block(f"vit.layers.{i}", i, NAMES, H, F, A, qkv_bias)
    layers.append(norm("vit.layernorm", FINAL, H))
    cut = f"({ih}/{ph})²" if (ih, ph) == (iw, pw) else f"({ih}/{ph})×({iw}/{pw})"
    notes = [
        f"ViT: {cut} = {patches} patches of {ph}×{pw} pixels, + 1 class token = {patches + 1} positions",
        attention_note(c.num_attention_heads, H),
    ]
    head = [linear("classifier", HEAD, H, num_labels)]
    info = attention_info(c.num_attention_heads, c.attention_probs_dropout_prob, pre_norm=True,
                          hidden_dropout=c.hidden_dropout_prob,
                          image=(ih, iw), patch=(ph, pw), channels=c.num_channels)  # fmt: skip
    return transformer_arch("vit", "ViTForImageClassification", layers, head, notes, "vit.layers", info)


FAMILY = Family(("vit",), classifier)
