"""`head`: a linear probe; only the classification head trains, the whole backbone is frozen.

Cheapest real training; its frozen backbone output is computed once and cached (train/cache.py). In VQA the frozen
backbones are the image and question encoders and the head is the fusion head (tasks/vqa/).
"""

from peftlab.methods import IMAGE, TEXT, VQA, Method, train_only
from peftlab.params.plan import whole_modules


def prepare(model, anatomy, knobs, ctx):
    return train_only(model, list(anatomy.head))


def plan(arch, anat, knobs, task):
    return whole_modules(arch, list(anat.head))


METHOD = Method(
    name="head",
    trains="the classification head only (backbone frozen)",
    default_lr=2e-3,
    prepare=prepare,
    plan=plan,
    tasks=(TEXT, IMAGE, VQA),
)
