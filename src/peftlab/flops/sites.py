"""Where a method meets a layer: the `Site` a family walker hands to a method's adapter hook, and the `Effect` a method
has on the step (which layers train, adapter hooks per layer, virtual tokens, a prompt encoder).

A method's `flops(arch, anat, knobs, task, plan) -> Effect` (methods/*.py) builds its adapters' ops with the Site's
helpers, so a LoRA A matrix on a Conv2d is a conv with the layer's kernel and stride and on a Linear a linear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from peftlab.flops.graph import Act, Dim, Graph
from peftlab.params.layers import Layer


@dataclass
class Site:
    """One Linear / Conv2d as the step runs it: its rows per sample (linear) or its geometry (conv), whether it trains."""

    layer: Layer
    rows: Dim | None = None  # linear: rows per sample (T tokens, or 1 for a pooled head)
    hw_in: tuple[int, int] = (1, 1)  # conv: input and output height, width
    hw_out: tuple[int, int] = (1, 1)
    trains: bool = False  # the weight trains (full, last-layer, modules_to_save copies)
    bias_trains: bool = False

    @property
    def conv(self) -> bool:
        return self.layer.kind == "conv"

    @property
    def fan_in(self) -> int:
        return self.layer.in_features

    @property
    def fan_out(self) -> int:
        return self.layer.out_features

    @property
    def kernel(self) -> int:
        return self.layer.shape[2] if self.conv else 1

    @property
    def groups(self) -> int:
        return self.layer.groups

    @property
    def out_rows(self) -> Dim:
        """Output positions per sample: the linear's rows, or Ho·Wo of the conv."""
        if self.conv:
            return Dim.of(self.hw_out[0] * self.hw_out[1])
        return self.rows

    @property
    def in_rows(self) -> Dim:
        """Input positions per sample: the linear's rows, or Hi·Wi of the conv."""
        if self.conv:
            return Dim.of(self.hw_in[0] * self.hw_in[1])
        return self.rows

    def base(self, g: Graph, x: Act, *, trains: bool | None = None, name: str | None = None) -> Act:
        """The layer's own product on x (its weight trains as planned unless `trains` says otherwise)."""
        t = self.trains if trains is None else trains
        return self.same(g, x, name=name or self.layer.name, trains=t, bias_trains=self.bias_trains)

    def same(self, g: Graph, x: Act, *, name: str, trains: bool, bias_trains: bool = False) -> Act:
        """A product of the layer's own shape (a ΔW applied with F.linear / F.conv2d)."""
        x_ = self.layer
        if self.conv:
            return g.conv(x, name=name, c_in=x_.in_features, c_out=x_.out_features, k=self.kernel,
                          groups=x_.groups, hw_in=self.hw_in, stride=x_.stride, hw_out=self.hw_out, trains=trains,
                          bias_trains=bias_trains)  # fmt: skip
        return g.linear(x, self.rows, x_.in_features, x_.out_features, name=name, trains=trains,
                        bias_trains=bias_trains)  # fmt: skip

    def down(self, g: Graph, x: Act, width: int, *, name: str, trains: bool) -> Act:
        """in -> width with the layer's kernel and stride (LoRA's A): a linear, or a conv k×k (groups 1)."""
        if self.conv:
            return g.conv(x, name=name, c_in=self.fan_in, c_out=width, k=self.kernel, groups=1, hw_in=self.hw_in,
                          stride=self.layer.stride, hw_out=self.hw_out, trains=trains)  # fmt: skip
        return g.linear(x, self.rows, self.fan_in, width, name=name, trains=trains)

    def up(self, g: Graph, u: Act, width: int, *, name: str, trains: bool, groups: int = 1) -> Act:
        """width -> out on the output positions (LoRA's B): a linear, or a 1×1 conv (grouped like the layer)."""
        if self.conv:
            hw = self.hw_out
            return g.conv(u, name=name, c_in=width, c_out=self.fan_out, k=1, groups=groups, hw_in=hw, stride=1,
                          hw_out=hw, trains=trains)  # fmt: skip
        return g.linear(u, self.rows, width, self.fan_out, name=name, trains=trains)


# (g, site, x) -> the layer's output with the method's adapter applied
AdapterHook = Callable[[Graph, Site, Act], Act]


@dataclass
class Effect:
    """What a method changes in the step besides which of the model's own parameters train."""

    adapters: dict[str, AdapterHook] = field(default_factory=dict)  # layer name -> hook
    trained: set[str] = field(default_factory=set)  # further layers whose own parameters train (norm copies)
    virtual_tokens: int = 0  # prompt / p-tuning: tokens put in front of the input's embeddings
    prefix_tokens: int = 0  # prefix tuning: keys and values put in front of every block's attention
    # prompt encoder: (g) -> the virtual tokens or the prefix keys/values (an Act that needs a gradient); its ops
    encoder: Callable[[Graph], Act] | None = None
    per_step: Callable[[Graph], None] | None = (
        None  # ops once per forward, whatever the batch (AdaLoRA's regulariser)
    )
    unsupported: str = (
        ""  # a setting without FLOP formulas: the FLOP prediction is withheld, with this reason
    )
    notes: list[str] = field(default_factory=list)  # what is counted and how ("the inverse FFT counts 0")
