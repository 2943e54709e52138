"""A saved VQA run answering new (image, question) pairs: its frozen encoders embed them, its saved head scores answers.

`Answerer.load(record, folder)` reads RUN/vqa-head; `answerer.logits(images, questions)` -> (B, K) over `.answers`.
`peftlab predict` uses it; embeddings are made as the run made them (same towers, --image-size, --max-length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from peftlab.errors import BadInput
from peftlab.tasks.vqa.encoders import Encoders, image_batch, resolve_encoders, text_batch
from peftlab.tasks.vqa.vqamodel import DualProjection, FusionHead, contrastive_scale


@dataclass
class Answerer:
    head: FusionHead  # eval mode
    encoders: Encoders
    projection: DualProjection | None  # --encoder dual: the shared space the head was trained in
    answers: list[str]  # (K,) the training answers, in the head's output order
    image_size: int | None
    max_length: int

    @classmethod
    def load(cls, record, folder: Path) -> Answerer:
        from safetensors.torch import load_file

        from peftlab.config import FIELDS, RunConfig

        try:
            how = json.loads((folder / "peftlab.json").read_text())
            state = load_file(str(folder / "head.safetensors"))
        except (OSError, ValueError) as e:
            raise BadInput(f"{folder}: the saved VQA head cannot be read ({e}); run it again") from None
        # the run's own settings, as recorded (read-only: nothing is validated or resolved again)
        cfg = RunConfig(**{k: v for k, v in (record.config or {}).items() if k in FIELDS})
        encoders = resolve_encoders(cfg)
        head = FusionHead(how["image"], how["text"], len(how["answers"]), how["fusion"], how["hidden"],
                          how["dropout"])  # fmt: skip
        head.load_state_dict(state)
        projection = None
        if encoders.dual:
            path = folder / "projection.safetensors"
            if not path.is_file():
                raise BadInput(f"{folder}: this --encoder dual run predates saved projections; run it again")
            proj = load_file(str(path))
            d_img, d_txt = proj["visual_projection.weight"].shape[1], proj["text_projection.weight"].shape[1]
            projection = DualProjection(d_img, d_txt, proj["visual_projection.weight"].shape[0])
            projection.load_state_dict(proj)
            projection.eval()
        return cls(head.eval(), encoders, projection, list(how["answers"]), cfg.image_size, cfg.max_length)

    def logits(self, images: list, questions: list[str]) -> torch.Tensor:
        """B RGB PIL images and B questions -> (B, K) answer logits."""
        img = image_batch(self.encoders.image, images, self.image_size)  # (B, Di)
        txt = text_batch(self.encoders.text, questions, self.max_length)  # (B, Dt)
        with torch.inference_mode():
            if self.projection is not None:  # as tasks/vqa/run.py hands the dual space to the head
                img = contrastive_scale(self.projection.image(img))
                txt = contrastive_scale(self.projection.text(txt))
            return self.head(img, txt)
