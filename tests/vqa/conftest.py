"""VQA test fixtures: tiny random encoders saved as HF folders, a tiny local VQA set, an empty embedding cache each test.

Encoders are built from configs (hidden 16-48) so a whole run takes a second; folders are shared per session.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

WORDS = ["what", "color", "is", "the", "shape", "there", "a", "red", "blue", "green", "square", "circle", "in",
         "image", "how", "many", "shapes", "are", "yes", "no", "top", "left", "right", "bottom"]  # fmt: skip
COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", *sorted(set(WORDS))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    return tok


def _image_processor(size: int = 32):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


@pytest.fixture(scope="session")
def tiny_image_encoder(tmp_path_factory) -> str:
    """A random MobileNetV2 x0.35 (pooled width 448) saved with an image processor."""
    from transformers import MobileNetV2Config, MobileNetV2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-mobilenet")
    cfg = MobileNetV2Config(image_size=32, depth_multiplier=0.35, tf_padding=False, finegrained_output=False)
    MobileNetV2Model(cfg).save_pretrained(folder)
    _image_processor().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_resnet_encoder(tmp_path_factory) -> str:
    """A random 3-stage ResNet (pooled width 32)."""
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-resnet")
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], layer_type="basic")
    ResNetModel(cfg).save_pretrained(folder)
    _image_processor().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory) -> str:
    """A random 2-layer BERT (hidden 48) with a word-level vocabulary of the test questions."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(2)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = _tokenizer(folder)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=64, max_position_embeddings=40)  # fmt: skip
    BertModel(cfg).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """A random CLIP (projection 24) with an image processor and a word-level tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("tiny-clip")
    tok = _tokenizer(folder)
    cfg = CLIPConfig(
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64),
        text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=40, eos_token_id=tok.sep_token_id,
                         bos_token_id=tok.cls_token_id, pad_token_id=0),
        projection_dim=24,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(folder)
    _image_processor().save_pretrained(folder)
    return str(folder)


def make_shapes_set(folder: Path, n_images: int = 12, seed: int = 0) -> Path:
    """A tiny local VQA set as CSV: coloured squares / circles on black, 3 questions each, a split column."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["image,question,answer,question_type,split"]
    for i in range(n_images):
        color = list(COLORS)[i % 3]
        shape = ["square", "circle"][(i // 3) % 2]
        pixels = np.zeros((24, 24, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:24, :24]
        cy, cx = rng.integers(8, 16, size=2)
        mask = (
            (np.abs(yy - cy) < 6) & (np.abs(xx - cx) < 6)
            if shape == "square"
            else (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        )
        pixels[mask] = COLORS[color]
        Image.fromarray(pixels).save(folder / "images" / f"img{i}.png")
        split = "test" if i % 4 == 3 else "train"
        other = list(COLORS)[(i + 1) % 3]
        rows += [
            f"images/img{i}.png,what color is the shape?,{color},color,{split}",
            f"images/img{i}.png,what shape is in the image?,{shape},shape,{split}",
            f"images/img{i}.png,is there a {other} shape?,no,yes/no,{split}",
        ]
    (folder / "qa.csv").write_text("\n".join(rows) + "\n")
    return folder / "qa.csv"


@pytest.fixture
def shapes_csv(tmp_path) -> str:
    return str(make_shapes_set(tmp_path / "shapes"))


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch) -> Path:
    """Every test starts with its own empty embedding cache."""
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"
