"""ResNet (HF) as arithmetic: 7x7 stem, stages of basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 at out/4) blocks,
each conv followed by BatchNorm, a 1x1 shortcut conv where a block changes width or stride; classifier.1 -> K.
"""

from peftlab.params.families import Family
from peftlab.params.layers import HEAD, Arch, Layer, cnn_last_stage, conv, linear, norm


def backbone(c, prefix: str) -> list[Layer]:
    layers: list[Layer] = []

    def conv_bn(name: str, comp: str, c_in: int, c_out: int, k: int, block=None, stride=1):
        layers.append(conv(f"{name}.convolution", comp, c_in, c_out, k, block=block, stride=stride))
        layers.append(norm(f"{name}.normalization", comp, c_out, block=block))

    conv_bn(
        f"{prefix}.embedder.embedder", "stem", c.num_channels, c.embedding_size, 7, stride=2
    )  # + 3x3/2 max pool
    widths = [c.embedding_size, *c.hidden_sizes]
    for s, depth in enumerate(c.depths):
        stride = 1 if s == 0 and not c.downsample_in_first_stage else 2
        comp = f"stage {s + 1}"
        for j in range(depth):
            c_in, c_out = (widths[s], widths[s + 1]) if j == 0 else (widths[s + 1], widths[s + 1])
            st = stride if j == 0 else 1  # the first block of a stage strides
            b = f"{prefix}.encoder.stages.{s}.layers.{j}"
            if j == 0 and (c_in != c_out or stride != 1):
                conv_bn(f"{b}.shortcut", comp, c_in, c_out, 1, block=j, stride=st)
            if c.layer_type == "bottleneck":
                mid = c_out // 4  # reduction 4
                first = getattr(c, "downsample_in_bottleneck", False)  # stride on the 1x1, else on the 3x3
                conv_bn(f"{b}.layer.0", comp, c_in, mid, 1, block=j, stride=st if first else 1)
                conv_bn(f"{b}.layer.1", comp, mid, mid, 3, block=j, stride=1 if first else st)
                conv_bn(f"{b}.layer.2", comp, mid, c_out, 1, block=j)
            else:
                conv_bn(f"{b}.layer.0", comp, c_in, c_out, 3, block=j, stride=st)
                conv_bn(f"{b}.layer.1", comp, c_out, c_out, 3, block=j)
    return layers


def classifier(c, num_labels: int) -> Arch:
    layers = backbone(c, "resnet")
    # classifier = Sequential(Flatten, Linear): the Linear is classifier.1
    layers.append(linear("classifier.1", HEAD, c.hidden_sizes[-1], num_labels))
    blocks = [f"resnet.encoder.stages.{s}" for s in range(len(c.depths))]  # anatomy's blocks: stages
    last = cnn_last_stage(layers, blocks)
    note = f"ResNet {c.layer_type} blocks, depths {list(c.depths)}, widths {list(c.hidden_sizes)}"
    arch = Arch("resnet", "ResNetForImageClassification", layers, "cnn", blocks, last, ["classifier"], [note])
    arch.info = {"image": (224, 224), "channels": c.num_channels}  # ResNet configs carry no image size
    return arch


FAMILY = Family(("resnet",), classifier)
