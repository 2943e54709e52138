"""MobileNetV2 as arithmetic: stem, 16 inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 reduce; each conv
followed by BatchNorm), a final 1x1 conv to the feature width, `classifier` features -> K.
"""

from peftlab.params.families import Family
from peftlab.params.layers import HEAD, Arch, Layer, cnn_last_stage, conv, linear, norm


def _make_divisible(value: float, divisor: int, min_value: int) -> int:
    # transformers' MobileNetV2 rounding: nearest multiple of `divisor`, at least `min_value`, never 10% below value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


# MobileNetV2 (Sandler et al. table 2): stem to 32 then 16 channels, then 16 inverted residual blocks in 6 stages.
CHANNELS = (16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)
STAGES = ((0, 1), (2, 4), (5, 8), (9, 11), (12, 14), (15, 15))  # blocks per stage (first, last)
STRIDES = (2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)  # of each block's depthwise 3x3 conv


def block_strides(output_stride: int) -> list[int]:
    """transformers' rule: the stem halves the image; a block keeps its stride until the running product reaches
    output_stride (32 by default: never), after which blocks dilate instead of striding."""
    out, current = [], 2
    for s in STRIDES:
        if current == output_stride:
            out.append(1)
        else:
            out.append(s)
            current *= s
    return out


def backbone(c, prefix: str) -> tuple[list[Layer], int, str]:
    """(layers, feature width, note) of MobileNetV2Model under `prefix`."""

    def width(ch: int) -> int:  # a channel count scaled by the depth multiplier
        return _make_divisible(int(round(ch * c.depth_multiplier)), c.depth_divisible_by, c.min_depth)

    ch = [width(x) for x in CHANNELS]
    stem = width(32)
    layers: list[Layer] = []

    def conv_bn(name: str, comp: str, c_in: int, c_out: int, k: int, groups: int = 1, block=None, stride=1):
        layers.append(conv(f"{name}.convolution", comp, c_in, c_out, k, groups, block=block, stride=stride))
        layers.append(norm(f"{name}.normalization", comp, c_out, block=block))

    s = f"{prefix}.conv_stem"
    conv_bn(f"{s}.first_conv", "stem", c.num_channels, stem, 3, stride=2)  # 3x3 stride 2
    if not c.first_layer_is_expansion:
        conv_bn(f"{s}.expand_1x1", "stem", stem, stem, 1)
    conv_bn(f"{s}.conv_3x3", "stem", stem, stem, 3, groups=stem)  # depthwise
    conv_bn(f"{s}.reduce_1x1", "stem", stem, ch[0], 1)
    strides = block_strides(getattr(c, "output_stride", 32))
    for first, last in STAGES:
        comp = f"inverted residuals {first}-{last}" if first != last else f"inverted residual {first}"
        for i in range(first, last + 1):
            expanded = _make_divisible(int(round(ch[i] * c.expand_ratio)), c.depth_divisible_by, c.min_depth)
            b = f"{prefix}.layer.{i}"
            conv_bn(f"{b}.expand_1x1", comp, ch[i], expanded, 1, block=i)  # in -> t·in
            conv_bn(f"{b}.conv_3x3", comp, expanded, expanded, 3, groups=expanded, block=i, stride=strides[i])
            conv_bn(f"{b}.reduce_1x1", comp, expanded, ch[i + 1], 1, block=i)  # t·in -> out
    out = 1280 if c.finegrained_output and c.depth_multiplier < 1.0 else width(1280)
    conv_bn(f"{prefix}.conv_1x1", "final 1x1 conv", ch[-1], out, 1)
    note = (
        f"MobileNetV2 widths at depth multiplier {c.depth_multiplier}: stem {stem}, blocks "
        f"{' '.join(str(x) for x in ch)}, features {out}; expansion ×{c.expand_ratio:g}"
    )
    return layers, out, note


def classifier(c, num_labels: int) -> Arch:
    layers, width, note = backbone(c, "mobilenet_v2")
    layers.append(linear("classifier", HEAD, width, num_labels))
    blocks = [f"mobilenet_v2.layer.{i}" for i in range(16)]
    # anatomy's last stage, + the 1x1 conv (320 -> 1280) that follows the blocks
    last = cnn_last_stage(layers, blocks) + ["mobilenet_v2.conv_1x1"]
    cls = "MobileNetV2ForImageClassification"
    arch = Arch("mobilenet_v2", cls, layers, "cnn", blocks, last, ["classifier"], [note])
    arch.info = {"image": (c.image_size, c.image_size), "channels": c.num_channels}
    return arch


FAMILY = Family(("mobilenet_v2",), classifier)
