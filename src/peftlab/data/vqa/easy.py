"""easy-VQA (packaged, MIT): 64x64 synthetic shapes, template questions about colour and shape, 13 one-word answers.

`load_easy()` -> Found with the official train/test split and question types from the templates.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

from peftlab.data.vqa.types import Found, VQASplit, file_images, index_images
from peftlab.errors import BadInput

EASY_DIST = "easy-vqa"


def easy_dir() -> Path | None:
    try:
        path = Path(str(importlib.metadata.distribution(EASY_DIST).locate_file("easy_vqa/data")))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if (path / "train" / "questions.json").is_file() else None


def easy_type(question: str) -> str:
    # easy-VQA's templates: "what color is ..." / "what is the color of ..." ask colours, other "what ..." shapes
    if not question.startswith("what"):
        return "yes/no"
    return "color" if "color" in question else "shape"


def _easy_split(folder: Path) -> VQASplit:
    # questions.json: a list of [question, answer, image id]; image id n is images/n.png
    rows = json.loads((folder / "questions.json").read_text())
    names, index = index_images([str(r[2]) for r in rows])
    paths = [folder / "images" / f"{n}.png" for n in names]
    return VQASplit(
        questions=[r[0].strip() for r in rows],
        answers=[r[1].strip() for r in rows],
        image_index=index,
        images=file_images(paths),
        types=[easy_type(r[0]) for r in rows],
    )


def load_easy() -> Found:
    folder = easy_dir()
    if folder is None:
        raise BadInput("easy-vqa is not installed: pip install --no-deps easy-vqa==1.0")
    version = importlib.metadata.version(EASY_DIST)
    return Found(
        train=_easy_split(folder / "train"),
        eval=_easy_split(folder / "test"),
        source=f"packaged easy-vqa {version} ({folder})",
        notes=["official split train/test; question types from the templates: yes/no, color, shape"],
        identity=f"easy-vqa=={version}",
    )
