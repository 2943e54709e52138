"""`full`: every parameter trains; the reference point for accuracy and for cost.

Nothing is frozen, so nothing can be cached: each step runs the whole model forward and backward.
"""

from peftlab.methods import Method


def prepare(model, anatomy, cfg):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


METHOD = Method(
    name="full",
    trains="everything",
    default_lr=5e-5,
    prepare=prepare,
    trainable_modules=lambda anatomy, cfg: [""],
)
