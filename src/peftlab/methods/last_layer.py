"""`last-layer`: the last backbone block (the last stage for a CNN) and the head train; everything before is frozen.

"Fine-tune the last layer with all previous layers fixed"; what enters the last block can be cached once.
"""

from peftlab.methods import Method, freeze_all, unfreeze


def trainable_modules(anatomy, cfg):
    return list(anatomy.last_block) + list(anatomy.head)


def prepare(model, anatomy, cfg):
    freeze_all(model)
    unfreeze(model, trainable_modules(anatomy, cfg))
    return model


METHOD = Method(
    name="last-layer",
    trains="the last backbone block (last stage for a CNN) + the head",
    default_lr=2e-4,
    prepare=prepare,
    trainable_modules=trainable_modules,
)
