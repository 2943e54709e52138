"""`baseline`: nothing trains; the pretrained backbone with a freshly initialised head, evaluated as-is.

The "accuracy before fine-tuning" reference point (near chance for a new head, by construction).
"""

from peftlab.methods import Method, freeze_all


def prepare(model, anatomy, cfg):
    freeze_all(model)
    return model


METHOD = Method(
    name="baseline",
    trains="nothing: pretrained backbone + new random head, evaluated before any training",
    default_lr=0.0,
    prepare=prepare,
    needs_training=False,
    trainable_modules=lambda anatomy, cfg: [],
)
