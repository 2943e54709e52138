"""DistilBERT as arithmetic: BERT without token types and pooler, with its own names (dim, hidden_dim, q_lin, ffn.lin1).

DistilBertForSequenceClassification: first token -> pre_classifier H -> H -> ReLU -> classifier H -> K.
"""

from peftlab.params.families import Encoder, Family
from peftlab.params.layers import (
    EMB,
    HEAD,
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
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attn_out="attention.out_lin",
    norm1="sa_layer_norm",
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    norm2="output_layer_norm",
)


def encoder(c, prefix: str) -> Encoder:
    H, F, A = c.dim, c.hidden_dim, attention_width(c.n_heads, c.dim)
    e = f"{prefix}.embeddings"
    layers = [
        embedding(f"{e}.word_embeddings", EMB, c.vocab_size, H, "words"),
        embedding(f"{e}.position_embeddings", EMB, c.max_position_embeddings, H, "positions"),
        norm(f"{e}.LayerNorm", EMB, H, what="norm"),
    ]
    for i in range(c.n_layers):
        layers += transformer_block(f"{prefix}.transformer.layer.{i}", i, NAMES, H, F, A)
    info = attention_info(c.n_heads, c.attention_dropout, pre_norm=False, hidden_dropout=c.dropout)
    return Encoder(layers, "transformer.layer", H, [attention_note(c.n_heads, H)], info)


def classifier(c, num_labels: int):
    enc = encoder(c, "distilbert")
    H = enc.width
    head = [
        linear("pre_classifier", HEAD, H, H, what="pre_classifier"),
        linear("classifier", HEAD, H, num_labels, what="classifier"),
    ]
    return transformer_arch(
        "distilbert",
        "DistilBertForSequenceClassification",
        enc.layers,
        head,
        enc.notes,
        "distilbert.transformer.layer",
        enc.info,
    )


FAMILY = Family(("distilbert",), classifier, encoder)
