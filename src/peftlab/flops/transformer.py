"""A transformer classifier's step as ops, written once: embeddings, L blocks (post-norm BERT family, pre-norm ViT and
CLIP), the head of each classifier class. Every layer is a `Site`; a method's adapter hook runs where it adapts one.

`walk(g, arch, ctx)` records the forward (and, in training, backward) ops of blocks ctx.start .. ctx.stop-1, with the
embeddings when start is 0 and the head when stop is the end. Per sample: T tokens (text, padded) or N+1 (images).
"""

from __future__ import annotations

from peftlab.flops.graph import Act, Dim, Graph, Poly
from peftlab.params.layers import EMB, HEAD, POOLER, Layer

# How each classifier class reads its encoder (first token, mean over tokens, mean over patches) and what its head is.
HEADS = {
    "BertForSequenceClassification": "pooler",  # token 0 -> pooler dense + tanh -> dropout -> classifier
    "RobertaForSequenceClassification": "first",  # token 0 -> dropout -> dense -> tanh -> dropout -> out_proj
    "DistilBertForSequenceClassification": "first",  # token 0 -> pre_classifier -> ReLU -> dropout -> classifier
    "MeanPoolForSequenceClassification": "mean",  # masked mean -> dropout -> classifier
    "ViTForImageClassification": "first",  # final layernorm (every token) -> token 0 -> classifier
    "CLIPForImageClassification": "mean",  # mean over the patch tokens -> classifier (post_layernorm unused)
}


def _block_layers(arch, i: int) -> dict[str, Layer]:
    """Block i's layers by role (query, key, value, attn_out, ffn_in, ffn_out) and norms (norm1, norm2)."""
    mine = [x for x in arch.layers if x.block == i and x.name.startswith(arch.blocks[i] + ".")]
    out = {x.role: x for x in mine if x.role}
    norms = [x for x in mine if x.kind == "norm"]
    out["norm1"], out["norm2"] = norms[0], norms[1]
    return out


def _embeddings(g: Graph, arch, ctx) -> tuple[Act, Dim]:
    """-> (the input of block 0, tokens per sample). Text: lookups, a norm, dropout (no products); with virtual tokens
    (prompt / p-tuning) n more positions whose vectors train. Images: the patch conv, then class token + positions."""
    emb = [x for x in arch.layers if x.component == EMB]
    trains = any(ctx.trains(x) for x in emb if x.kind != "conv")
    info = arch.info
    with g.at(EMB):
        if "image" not in info:  # text
            tokens = ctx.tokens + ctx.effect.virtual_tokens
            h = g.ew(g.data(), trains=trains, what="embeddings", numel=tokens.value * ctx.width,
                     keep_new=1 + ctx.dropout)  # fmt: skip
            effect = ctx.effect
            if effect.virtual_tokens or effect.prefix_tokens:  # trained vectors, through an encoder or not
                prompts = effect.encoder(g) if effect.encoder is not None else Act(True)
                ctx.prefix = prompts if effect.prefix_tokens else None
                if effect.virtual_tokens:  # in front of the input's embeddings
                    h = g.ew(h, prompts)
            return h, tokens
        (ih, iw), (ph, pw) = ctx.image, info["patch"]
        patches = (ih // ph) * (iw // pw)
        conv = next(x for x in emb if x.kind == "conv")
        site = ctx.site(conv, hw_in=(ih, iw), hw_out=(ih // ph, iw // pw))
        x = ctx.run(g, site, g.data())
        tokens = Dim.of(patches + 1)
        size = tokens.value * ctx.width
        return g.ew(x, trains=trains, what="embeddings", numel=size, keep_new=ctx.dropout), tokens


def _attention(g: Graph, arch, ctx, layers: dict, h: Act, tokens: Dim, i: int) -> Act:
    info = arch.info
    heads, A = info["heads"], layers["query"].out_features
    q = ctx.run(g, ctx.site(layers["query"], rows=tokens), h)
    k = ctx.run(g, ctx.site(layers["key"], rows=tokens), h)
    v = ctx.run(g, ctx.site(layers["value"], rows=tokens), h)
    tk = tokens
    if ctx.effect.prefix_tokens:  # prefix tuning: n trained keys and values in front of the block's own
        n = ctx.effect.prefix_tokens
        k, v = g.ew(k, ctx.prefix, what="concat"), g.ew(v, ctx.prefix, what="concat")
        tk = tokens + n
    with g.at("attention scores·values", i):
        dropout = g.training and info.get("attention_dropout", 0.0) > 0
        return g.attention(q, k, v, heads=heads, tq=tokens, tk=tk, d=A // heads, dropout=dropout,
                           name=f"{arch.blocks[i]} attention")  # fmt: skip


def _block(g: Graph, arch, ctx, i: int, h: Act, tokens: Dim) -> Act:
    layers = _block_layers(arch, i)
    t1, t2 = ctx.trains(layers["norm1"]), ctx.trains(layers["norm2"])
    if arch.info.get("pre_norm"):  # ViT, CLIP: x + attn(norm1(x)); then + mlp(norm2(.))
        a = _attention(g, arch, ctx, layers, g.ew(h, trains=t1, what="norm", keep_in=True), tokens, i)
        o = ctx.run(g, ctx.site(layers["attn_out"], rows=tokens), a)
        h1 = g.ew(o, h, what="dropout+residual", keep_new=ctx.dropout)
        n2 = g.ew(h1, trains=t2, what="norm", keep_in=True)
        f = g.ew(ctx.run(g, ctx.site(layers["ffn_in"], rows=tokens), n2), what="activation", keep_in=True)
        o2 = ctx.run(g, ctx.site(layers["ffn_out"], rows=tokens), f)
        return g.ew(o2, h1, what="dropout+residual", keep_new=ctx.dropout)
    # BERT family: norm1(x + attn(x)); norm2(. + ffn(.))
    a = _attention(g, arch, ctx, layers, h, tokens, i)
    o = ctx.run(g, ctx.site(layers["attn_out"], rows=tokens), a)
    h1 = g.ew(o, h, trains=t1, what="dropout+residual+norm", keep_new=1 + ctx.dropout)
    f = g.ew(ctx.run(g, ctx.site(layers["ffn_in"], rows=tokens), h1), what="activation", keep_in=True)
    o2 = ctx.run(g, ctx.site(layers["ffn_out"], rows=tokens), f)
    return g.ew(o2, h1, trains=t2, what="dropout+residual+norm", keep_new=1 + ctx.dropout)


def _head(g: Graph, arch, ctx, h: Act, tokens: Dim) -> Act:
    """From the last block's output to the logits: pooled rows (1 per sample) through the head's linears."""
    kind = HEADS[arch.model_class]
    final = [x for x in arch.layers if x.kind == "norm" and x.block is None and x.component != EMB]
    if arch.model_class == "ViTForImageClassification" and final:  # vit.layernorm on every token
        h = g.ew(h, trains=ctx.trains(final[0]), what="norm", keep_in=True)
    pooled = g.ew(h, what=f"pool ({kind})", numel=Poly.of(ctx.width))  # (B, T, H) -> (B, H)
    one = Dim.of(1)
    for x in [
        x for x in arch.layers if x.component in (POOLER, HEAD)
    ]:  # in forward order: pooler, dense, out
        pooled = g.ew(ctx.run(g, ctx.site(x, rows=one), pooled), what="activation", keep_in=True)
    return pooled


def walk(g: Graph, arch, ctx) -> None:
    """Record blocks ctx.start .. ctx.stop-1 (the embeddings first when start is 0, the head last unless a capture
    pass stops at a block)."""
    L = len(arch.blocks)
    stop = L if ctx.stop is None else ctx.stop
    if ctx.start == 0:
        h, tokens = _embeddings(g, arch, ctx)
    else:  # a cached block input: no gradient, the model's token count
        if arch.info.get("cache_entry") == "pre_norm":
            # CLIP: the cache stubs the pre-layernorm, the module whose output enters block 0; the patch embedding
            # before it still runs every step (forward only, its output unused)
            _embeddings(g, arch, ctx)
        tokens = ctx.tokens if "image" not in arch.info else _image_tokens(arch, ctx)
        h = g.data(tokens.value * ctx.width)
    for i in range(ctx.start, stop):
        h = _block(g, arch, ctx, i, h, tokens)
    if ctx.head:
        _head(g, arch, ctx, h, tokens)


def _image_tokens(arch, ctx) -> Dim:
    (ih, iw), (ph, pw) = ctx.image, arch.info["patch"]
    return Dim.of((ih // ph) * (iw // pw) + 1)
