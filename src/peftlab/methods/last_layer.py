"""`last-layer`: the last backbone block (the last stage for a CNN) and the head train; everything before is frozen.

"Fine-tune the last layer with all previous layers fixed"; what enters the last block can be cached once.
"""

from peftlab.methods import Method, train_only
from peftlab.params.plan import whole_modules


def _modules(anat) -> list[str]:
    return list(anat.last_block) + list(anat.head)


def prepare(model, anatomy, knobs, ctx):
    return train_only(model, _modules(anatomy))


def plan(arch, anat, knobs, task):
    return whole_modules(arch, _modules(anat))


METHOD = Method(
    name="last-layer",
    trains="the last backbone block (last stage for a CNN) + the head",
    default_lr=2e-4,
    prepare=prepare,
    plan=plan,
)
