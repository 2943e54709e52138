"""CLIP's vision tower as arithmetic: patch conv without bias, class embedding, positions, pre-norm, L blocks,
post-norm; CLIPForImageClassification puts `classifier` H -> K on it (the text tower is not built).
"""

from peftlab.params.families import Family
from peftlab.params.layers import (
    EMB,
    FINAL,
    HEAD,
    BlockNames,
    attention_info,
    attention_note,
    attention_width,
    conv,
    embedding,
    linear,
    norm,
    param,
    transformer_arch,
    transformer_block,
)

NAMES = BlockNames(
    query="self_attn.q_proj",
    key="self_attn.k_proj",
    value="self_attn.v_proj",
    attn_out="self_attn.out_proj",
    norm1="layer_norm1",
    ffn_in="mlp.fc1",
    ffn_out="mlp.fc2",
    norm2="layer_norm2",
)


def classifier(config, num_labels: int):
    c = config.vision_config if config.model_type == "clip" else config
    H, F, A = c.hidden_size, c.intermediate_size, attention_width(c.num_attention_heads, c.hidden_size)
    n, p = c.image_size, c.patch_size
    patches = (n // p) ** 2
    prefix = "vision_model"
    e = f"{prefix}.embeddings"
    layers = [
        param(f"{e}.class_embedding", EMB, (H,), "class token"),
        conv(f"{e}.patch_embedding", EMB, c.num_channels, H, p, what="patches", stride=p),
        embedding(f"{e}.position_embedding", EMB, patches + 1, H, "positions"),
        norm(f"{prefix}.pre_layrnorm", EMB, H, what="pre norm"),  # sic: CLIP's own spelling
    ]
    for i in range(c.num_hidden_layers):
        layers += transformer_block(f"{prefix}.encoder.layers.{i}", i, NAMES, H, F, A)
    layers.append(norm(f"{prefix}.post_layernorm", FINAL, H))
    notes = [
        f"CLIP vision: ({n}/{p})² = {patches} patches of {p}×{p} pixels, + 1 class token = {patches + 1} positions",
        attention_note(c.num_attention_heads, H),
    ]
    head = [linear("classifier", HEAD, H, num_labels)]
    info = attention_info(c.num_attention_heads, c.attention_dropout, pre_norm=True, image=(n, n), patch=(p, p),
                          channels=c.num_channels, cache_entry="pre_norm")  # fmt: skip
    return transformer_arch(
        c.model_type, "CLIPForImageClassification", layers, head, notes, f"{prefix}.encoder.layers", info
    )


FAMILY = Family(("clip", "clip_vision_model"), classifier)
