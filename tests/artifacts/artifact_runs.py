"""The artifact tests' cases and tools: which (method, model kind) runs exist, tiny model folders, a fake offline hub
cache, and a subprocess in which `import peftlab` fails. conftest.py turns them into session fixtures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as T

from peftlab.methods import REGISTRY
from tiny import TINY

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the fake hub's one snapshot
HUB_TEXT, HUB_IMAGE = "peftlab-test/tiny-bert", "peftlab-test/tiny-vit"
MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"
# model kind -> its task; conftest.models makes the folders and the fake hub entries
KINDS = {
    "local-mean": "text",  # a sentence-transformers folder: peftlab's mean pooling, the class ships as code
    "local-cls": "text",  # a plain BERT folder: BertForSequenceClassification
    "hub-cls": "text",  # the same, by hub id
    "packaged-text": "text",  # minilm-l6 (its adapters name the hub id sentence-transformers/all-MiniLM-L6-v2)
    "hub-vit": "image",  # ViTForImageClassification by hub id
    "local-cnn": "image",  # MobileNetV2ForImageClassification from a folder
    "packaged-image": "image",  # mobilenet-v2 (converted torchvision weights, a folder in peftlab's cache)
    "local-clip": "image",  # a bare CLIP vision tower: peftlab wraps it in CLIPForImageClassification
}
ROTATION = ("local-mean", "hub-vit", "hub-cls", "local-cnn", "local-cls")  # text and image kinds, interleaved
TEXTS = ["what a lovely day, I love it",
         "awful",
         " ".join(["this sentence is much longer than the sixteen tokens the runs keep"] * 3)]  # fmt: skip


def _fits(method, kind: str) -> bool:
    task = f"{KINDS[kind]}-classification"
    if task not in method.tasks or (kind == "local-cnn" and "cnn" not in method.kinds):
        return False
    # prefix tuning needs the mean-pooling wrapper: BERT's own class takes no key/value cache
    return kind == "local-mean" if method.name == "prefix-tuning" else True


def _cases() -> list[tuple[str, str]]:
    """(method, kind): every method once, on the next model kind of ROTATION it applies to, so that each kind holds
    several methods and both tasks hold adapters and whole-model folders; then LoRA on the two packaged models. What
    a method saves does not depend on the task, and what a kind loads does not depend on the method."""
    cases, turn = [], 0
    for method in REGISTRY.values():
        for step in range(len(ROTATION)):
            kind = ROTATION[(turn + step) % len(ROTATION)]
            if _fits(method, kind):
                cases.append((method.name, kind))
                turn += step + 1
                break
    # + a trained whole-model folder of the mean-pooling class (baseline's is untrained)
    # + LoRA on a bare CLIP vision tower (its base is built from the tower's weights and base/config.json)
    return cases + [("lora", "packaged-text"), ("lora", "packaged-image"), ("head", "local-mean"),
                    ("lora", "local-clip")]  # fmt: skip


CASES = _cases()


@dataclass
class Run:
    method: str
    kind: str
    record: dict  # the record as --json prints it
    run_dir: Path
    saved: Path  # the model / adapter folder

    @property
    def id(self) -> str:
        return f"{self.method}-{self.kind}"

    @property
    def task(self) -> str:
        return self.record["task"]


# --- models: tiny folders and a fake hub cache ---------------------------------------------------------------


def bert_folder(folder: Path, sentence_transformers: bool) -> Path:
    from peftlab.models import PACKAGED_MODELS

    torch.manual_seed(0)
    cfg = T.BertConfig(**{k: v for k, v in TINY["bert"].items() if k != "model_type"} | {"vocab_size": 30522})
    T.BertModel(cfg).save_pretrained(folder)
    src = PACKAGED_MODELS["minilm-l6"].path()  # a real WordPiece tokenizer (30522 words)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)
    if sentence_transformers:
        (folder / "modules.json").write_text(
            json.dumps(
                [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
            )
        )
    return folder


def vit_folder(folder: Path) -> Path:
    torch.manual_seed(1)
    vit = {k: v for k, v in TINY["vit"].items() if k != "model_type"} | {"image_size": 16}  # 2x2 patches of 8
    T.ViTModel(T.ViTConfig(**vit), add_pooling_layer=False).save_pretrained(folder)
    T.ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def _tower_folder(folder: Path, family: str, model_cls, processor_cls, side: int, seed: int) -> Path:
    """A random TINY[family] base model saved with an image processor that resizes and crops to side px."""
    torch.manual_seed(seed)
    fields = dict(TINY[family])
    model_cls(T.AutoConfig.for_model(fields.pop("model_type"), **fields)).save_pretrained(folder)
    crop = {"height": side, "width": side}
    processor_cls(size={"shortest_edge": side}, crop_size=crop).save_pretrained(folder)
    return folder


def cnn_folder(folder: Path) -> Path:
    return _tower_folder(
        folder, "mobilenet_v2", T.MobileNetV2Model, T.MobileNetV2ImageProcessorPil, 32, seed=2
    )


def clip_tower_folder(folder: Path) -> Path:
    """A bare CLIPVisionModel (24 px, patches of 6), as a vision tower is shared on its own."""
    return _tower_folder(folder, "clip_vision_model", T.CLIPVisionModel, T.CLIPImageProcessorPil, 24, seed=3)


def hub_entry(cache: Path, repo_id: str, files: Path) -> None:
    """repo_id in a Hugging Face cache laid out as the hub client leaves it (refs/main -> one snapshot), so that
    from_pretrained(repo_id) finds it offline; files are symlinked from `files`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for f in files.iterdir():
        if f.is_file() and not (snapshot / f.name).exists():
            (snapshot / f.name).symlink_to(f.resolve())


@dataclass
class Models:
    root: Path
    hub_cache: Path
    local: dict  # kind -> --model value

    @contextmanager
    def hub(self):
        """The fake hub cache as the one this process reads (huggingface_hub's constant, read at each call)."""
        import huggingface_hub.constants as constants

        old = constants.HF_HUB_CACHE
        constants.HF_HUB_CACHE = str(self.hub_cache)
        try:
            yield
        finally:
            constants.HF_HUB_CACHE = old


BLOCKER = '''import sys


class _NoPeftlab:
    """A meta-path finder that refuses peftlab: this interpreter has only what a user without it has."""

    def find_spec(self, name, path=None, target=None):
        if name == "peftlab" or name.startswith("peftlab."):
            raise ModuleNotFoundError("peftlab is blocked in this process", name=name)
        return None


sys.meta_path.insert(0, _NoPeftlab())
'''


def without_peftlab(
    code: str, workdir: Path, hub_cache: Path, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose sitecustomize blocks `import peftlab` (the src folder is not on the path
    either), offline, with `hub_cache` as its Hugging Face cache. The code itself asserts what it needs."""
    block = workdir / "no-peftlab"
    block.mkdir(parents=True, exist_ok=True)
    (block / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": str(block), "HF_HOME": str(workdir / "hf-home"), "HF_HUB_CACHE": str(hub_cache),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    prelude = "try:\n    import peftlab\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('peftlab imported')\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                          cwd=workdir, timeout=timeout)  # fmt: skip


def card_lines(run_dir: Path) -> list[str]:
    """The Python block of the card's "Use it" section: what a user copies."""
    text = (run_dir / "README.md").read_text()
    block = re.search(r"## Use it\n.*?```python\n(.*?)```", text, re.S)
    assert block, "the card has no loading snippet"
    return block.group(1).strip().splitlines()
