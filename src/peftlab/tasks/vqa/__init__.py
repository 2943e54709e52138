"""VQA as classification over answers: frozen image and question embeddings, a small fusion head trained on top.

The task's entry point is `run` (run.py); `claims` says when the settings alone make a run VQA, `check` validates the
VQA settings. Layout: encoders.py (which frozen models embed), cache.py (embeddings on disk), heads.py (fusion head),
dual.py (two towers projected into one space), run.py (the run).
"""

from __future__ import annotations

from peftlab.errors import BadInput

# The heads' defaults: 64 examples a step, half the steps of 32 for the same epochs, at twice the learning rate
# (1e-3 was chosen at batch 32; without --lr it scales linearly with --batch-size). Measured on easy-VQA, 20 epochs
# (docs/vqa.md): batch 64 kept the fusion head within 0.001 of batch 32 (0.9983 against 0.9989 over three seeds);
# 128 and 256 lost 0.3-6 points.
BATCH = 64
LR, LR_BATCH = 1e-3, 32
# Images smaller than the encoder's input: "encoder" upsamples them as its processor does (today's default), "native"
# encodes them at their own size. easy-VQA (64 px) with MobileNetV2: 0.999 at 224 px, 0.940 at 64 (docs/vqa.md).
IMAGE_SIZE = "encoder"
FUSIONS = ("concat", "product", "concat-product")  # heads.py builds each


def claims(cfg) -> bool:
    """Encoder flags, or a packaged VQA dataset name, say the task is VQA without --task."""
    if cfg.image_encoder or cfg.text_encoder or cfg.encoder:
        return True
    from peftlab.data.vqa import VQA_DATASETS

    return cfg.dataset in VQA_DATASETS


def check(cfg) -> None:
    """The VQA settings, named by their flags."""
    if cfg.fusion not in FUSIONS:
        raise BadInput(f"--fusion {cfg.fusion!r}: expected one of {', '.join(FUSIONS)}")
    if cfg.hidden is None or cfg.hidden < 1:
        raise BadInput(f"--hidden {cfg.hidden!r}: must be a positive width (the reference head uses 512)")
    if not 0 <= cfg.dropout < 1:
        raise BadInput(f"--dropout {cfg.dropout!r}: must be in [0, 1)")


def run(cfg, record, *, memo: dict, progress: bool = True) -> None:
    from peftlab.tasks.vqa.run import run as run_vqa

    run_vqa(cfg, record, memo=memo, progress=progress)
