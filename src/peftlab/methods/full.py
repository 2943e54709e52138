"""`full`: every parameter trains; the reference point for accuracy and for cost.

Nothing is frozen, so nothing can be cached: each step runs the whole model forward and backward.
"""

from peftlab.methods import Method, train_only
from peftlab.params.plan import whole_modules


def prepare(model, anatomy, knobs, ctx):
    return train_only(model, [""])


def plan(arch, anat, knobs, task):
    return whole_modules(arch, [""])


METHOD = Method(
    name="full",
    trains="everything",
    default_lr=5e-5,
    prepare=prepare,
    plan=plan,
)
