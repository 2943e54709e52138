"""BERT (and MiniLM, TinyBERT: BertModel checkpoints) as arithmetic: embeddings, L post-norm blocks, pooler, classifier.

BertForSequenceClassification keeps BertModel's pooler (tanh(W h_cls + b)) and puts `classifier` H -> K on it.
"""

from peftlab.params.families import Encoder, Family
from peftlab.params.layers import (
    EMB,
    HEAD,
    POOLER,
    BlockNames,
    attention_info,
    attention_note,
    attention_width,
    embedding,
    linear,
    norm,
    transformer_arch,
    transformer_block,
)

NAMES = BlockNames(
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    norm1="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    norm2="output.LayerNorm",
)


def encoder(c, prefix: str, pooler: bool = False) -> Encoder:
    """BertModel / RobertaModel (same module names) under `prefix`; widths hidden H, feed-forward F, attention A."""
    H, F, A = c.hidden_size, c.intermediate_size, attention_width(c.num_attention_heads, c.hidden_size)
    e = f"{prefix}.embeddings"
    layers = [
        embedding(f"{e}.word_embeddings", EMB, c.vocab_size, H, "words"),  # (V, H)
        embedding(f"{e}.position_embeddings", EMB, c.max_position_embeddings, H, "positions"),  # (P, H)
        embedding(f"{e}.token_type_embeddings", EMB, c.type_vocab_size, H, "token types"),  # (T, H)
        norm(f"{e}.LayerNorm", EMB, H, what="norm"),
    ]
    for i in range(c.num_hidden_layers):
        layers += transformer_block(f"{prefix}.encoder.layer.{i}", i, NAMES, H, F, A)
    if pooler:
        layers.append(linear(f"{prefix}.pooler.dense", POOLER, H, H))
    info = attention_info(c.num_attention_heads, c.attention_probs_dropout_prob, pre_norm=False,
                          hidden_dropout=c.hidden_dropout_prob)  # fmt: skip
    return Encoder(layers, "encoder.layer", H, [attention_note(c.num_attention_heads, H)], info)


def classifier(c, num_labels: int):
    enc = encoder(c, "bert", pooler=True)
    head = [linear("classifier", HEAD, enc.width, num_labels)]
    return transformer_arch(
        "bert", "BertForSequenceClassification", enc.layers, head, enc.notes, "bert.encoder.layer", enc.info
    )


FAMILY = Family(("bert",), classifier, encoder)
