"""`baseline`: nothing trains; the pretrained backbone with a freshly initialised head, evaluated as-is.

The "accuracy before fine-tuning" reference point (near chance for a new head, by construction).
"""

from peftlab.methods import Method, train_only
from peftlab.params.plan import whole_modules


def prepare(model, anatomy, knobs, ctx):
    return train_only(model, [])


def plan(arch, anat, knobs, task):
    return whole_modules(arch, [])


METHOD = Method(
    name="baseline",
    trains="nothing: pretrained backbone + new random head, evaluated before any training",
    default_lr=0.0,
    prepare=prepare,
    plan=plan,
    needs_training=False,
)
