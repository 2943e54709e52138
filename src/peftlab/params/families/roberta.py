"""RoBERTa as arithmetic: BERT's modules without the pooler, and RobertaClassificationHead (dense H -> H, tanh, H -> K).

The encoder is BERT's (params/families/bert.py); only the head differs.
"""

from peftlab.params.families import Family, bert
from peftlab.params.layers import HEAD, linear, transformer_arch


def classifier(c, num_labels: int):
    enc = bert.encoder(c, "roberta", pooler=False)  # RobertaForSequenceClassification drops the pooler
    H = enc.width
    head = [  # first token -> dense -> tanh -> out_proj
        linear("classifier.dense", HEAD, H, H, what="dense"),
        linear("classifier.out_proj", HEAD, H, num_labels, what="out_proj"),
    ]
    return transformer_arch(
        "roberta",
        "RobertaForSequenceClassification",
        enc.layers,
        head,
        enc.notes,
        "roberta.encoder.layer",
        enc.info,
    )


FAMILY = Family(("roberta",), classifier, bert.encoder)
