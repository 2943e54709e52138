"""Search spaces come from the method registry: every trained method is tunable the day it registers, and every
dimension names a setting `peftlab run` accepts; overrides are checked like flags."""

import pytest

from peftlab import config
from peftlab.errors import BadInput
from peftlab.methods import REGISTRY
from peftlab.methods.space import parse_override, space_of

BASE = {"model": "minilm-l6", "dataset": "vader-tweets"}


@pytest.mark.parametrize("name", [m.name for m in REGISTRY.values() if m.needs_training])
def test_every_trained_method_has_a_space_of_real_settings(name):
    method = REGISTRY[name]
    space = space_of(method)
    assert "lr" in space and space["lr"].low < method.default_lr < space["lr"].high
    for edge in (0, -1):  # the lowest and the highest value of every dimension load as a run's settings
        values = {
            k: (d.choices[edge] if d.kind == "choice" else (d.low, d.high)[edge]) for k, d in space.items()
        }
        if "text-classification" in method.tasks:
            cfg = config.load({**BASE, "method": name, **values})
            assert cfg.lr == pytest.approx(values["lr"])


def test_overrides_are_checked_like_flags():
    lora = REGISTRY["lora"]
    assert parse_override(lora, "lora-r=4,8")[1].choices == (4, 8)
    assert parse_override(lora, "r=2:16")[1].kind == "int"
    assert parse_override(lora, "lr=1e-5:1e-3")[1].kind == "log"
    with pytest.raises(BadInput, match="'rank' is not a setting of lora"):
        parse_override(lora, "rank=4,8")
    with pytest.raises(BadInput, match="LOW:HIGH"):
        parse_override(lora, "lr=1e-3:1e-5")
    with pytest.raises(BadInput, match="SETTING=LOW:HIGH"):
        parse_override(lora, "lr")
