"""`head`: a linear probe; only the classification head trains, the whole backbone is frozen.

Cheapest real training; its frozen backbone output can be computed once and cached (train/cache.py).
"""

from peftlab.methods import Method, freeze_all, unfreeze


def trainable_modules(anatomy, cfg):
    return list(anatomy.head)


def prepare(model, anatomy, cfg):
    freeze_all(model)
    unfreeze(model, trainable_modules(anatomy, cfg))
    return model


METHOD = Method(
    name="head",
    trains="the classification head only (backbone frozen)",
    default_lr=2e-3,
    prepare=prepare,
    trainable_modules=trainable_modules,
)
