"""The on-disk embedding cache of the frozen VQA encoders: each image and each distinct question is embedded once
per (tower weights, preprocessing, data), and survives across runs and processes.

`embed_images(tower, images, keys, cfg, ...)` / `embed_texts(...)` -> Embedded rows in the order asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from peftlab import disk
from peftlab.tasks.vqa.encoders import Tower, image_batch, load_config, text_batch

CACHE_FORMAT = 1  # bump when what a cache file holds changes: it is part of every cache key
IMAGE_BATCH, TEXT_BATCH = 32, 128
SAVE_EVERY = 1024  # items between cache writes while encoding: an interrupted run keeps most of its work


# --- what an embedding is (the cache key) -----------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(tower: Tower) -> str:
    """Content hash of a local model folder (every file's name and bytes), or hub id + commit for a hub model."""
    if tower._fingerprint is not None:
        return tower._fingerprint
    path = Path(tower.location)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(str(f.relative_to(path)).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                    h.update(chunk)
        tower._fingerprint = "sha256:" + h.hexdigest()
    else:
        commit = getattr(load_config(tower), "_commit_hash", None)
        tower._fingerprint = f"hub:{tower.location}@{commit or 'unknown'}"
    return tower._fingerprint


def preprocessing(tower: Tower, cfg) -> dict:
    """Everything besides the weights that changes an embedding: the recipe, the processor, sizes."""
    if tower.kind in ("image", "clip-image"):
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(tower.location).to_dict()
        except (OSError, ValueError):
            proc = None
        recipe = (
            "pooler_output, flattened"
            if tower.kind == "image"
            else "get_image_features, L2-normalised x sqrt(D)"
        )
        return {"recipe": recipe, "processor": proc, "image_size": cfg.image_size}
    recipe = (
        "mean over unmasked tokens, L2-normalised"
        if tower.kind == "text"
        else "get_text_features, L2-normalised x sqrt(D)"
    )
    return {"recipe": recipe, "max_length": cfg.max_length}


# --- the cache --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$PEFTLAB_CACHE/embeddings, else platformdirs.user_cache_dir("peftlab")/embeddings."""
    root = os.environ.get("PEFTLAB_CACHE")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("peftlab")
    return Path(root).expanduser() / "embeddings"


@dataclass
class Embedded:
    vectors: torch.Tensor  # (n, D) float32, in the order of the keys asked for
    computed: int  # items encoded by this call
    cached: int  # distinct items found in the cache file
    file: str  # the cache file


def cached_embed(
    namespace: dict,
    keys: list[str],
    compute: Callable[[list[int]], torch.Tensor],
    *,
    desc: str,
    unit: str,
    progress: bool,
    batch: int,
) -> Embedded:
    """Rows for content keys (n,) from the cache file of `namespace`; the missing ones are computed in batches
    (compute(indices into keys) -> (b, D)), appended and written back."""
    root = cache_dir()
    disk.check_writable(root, "the embedding cache (PEFTLAB_CACHE)")
    path = root / f"{_sha(json.dumps(namespace, sort_keys=True, default=str).encode())[:32]}.pt"
    disk.sweep_stale(root, f"{path.name}.tmp")  # what a killed writer of this file left
    stored_keys: list[str] = []
    stored = None
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            stored_keys, stored = list(blob["keys"]), blob["vectors"]
            if blob.get("sha256") != _digest(stored_keys, stored):
                raise ValueError("checksum mismatch")
        except Exception as e:  # truncated, damaged or foreign: removed and computed again, said once
            print(f"[peftlab] embedding cache {path.name} is damaged ({type(e).__name__}: {str(e)[:80]}); "
                  "removed, computing it again", file=sys.stderr)  # fmt: skip
            path.unlink(missing_ok=True)
            stored_keys, stored = [], None
    row = {k: i for i, k in enumerate(stored_keys)}
    first: dict[str, int] = {}  # each new key -> the first index asking for it
    for i, k in enumerate(keys):
        if k not in row:
            first.setdefault(k, i)
    missing = sorted(first.values())
    new_vectors = []
    if missing:
        bar = tqdm(
            total=len(missing), desc=desc, unit=unit, file=sys.stderr, disable=not progress, leave=False
        )
        pending = 0
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            new_vectors.append(compute(chunk))
            stored_keys += [keys[i] for i in chunk]
            bar.update(len(chunk))
            pending += len(chunk)
            if pending >= SAVE_EVERY or start + batch >= len(missing):
                stored = torch.cat(([stored] if stored is not None else []) + new_vectors)
                new_vectors, pending = [], 0
                _save(path, stored_keys, stored, namespace)
        bar.close()
        row = {k: i for i, k in enumerate(stored_keys)}
    vectors = stored[torch.tensor([row[k] for k in keys], dtype=torch.long)] if keys else torch.zeros(0, 0)
    return Embedded(vectors, len(missing), len(set(keys)) - len(missing), str(path))


def _digest(keys: list[str], vectors: torch.Tensor) -> str:
    """SHA-256 over the keys and the float32 bytes of the vectors (n, D): what a reader checks before trusting them."""
    h = hashlib.sha256(json.dumps(keys).encode())
    h.update(vectors.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _save(path: Path, keys: list[str], vectors: torch.Tensor, namespace: dict) -> None:
    """Atomically (disk.atomic_write): a reader sees the old file or the new one; a full disk leaves the old one."""
    meta = json.dumps(namespace, sort_keys=True, default=str)
    vectors = vectors.contiguous()
    entry = {"keys": keys, "vectors": vectors, "meta": meta, "sha256": _digest(keys, vectors)}
    disk.atomic_write(path, lambda tmp: torch.save(entry, tmp))


def image_keys(images) -> list[str]:
    """(M,) content hashes of a split's distinct images (file bytes or raw pixels)."""
    return [_sha(images.read(i)) for i in range(len(images))]


def text_keys(texts: list[str]) -> list[str]:
    return [_sha(t.encode()) for t in texts]


def _namespace(tower: Tower, cfg, dataset_identity: str) -> dict:
    """What a tower's cache entries are keyed on besides the input itself: format, tower, weights, preprocessing, data."""
    return {
        "format": CACHE_FORMAT,
        "what": tower.kind,
        "model": fingerprint(tower),
        "preprocessing": preprocessing(tower, cfg),
        "dataset": dataset_identity,
    }


def embed_images(
    tower: Tower, images, keys: list[str], cfg, dataset_identity: str, progress: bool
) -> Embedded:
    namespace = _namespace(tower, cfg, dataset_identity)

    def compute(idx: list[int]) -> torch.Tensor:
        return image_batch(tower, [images.load(i) for i in idx], cfg.image_size)

    return cached_embed(
        namespace,
        keys,
        compute,
        desc=f"embed images ({tower.name})",
        unit="img",
        progress=progress,
        batch=IMAGE_BATCH,
    )


def embed_texts(tower: Tower, texts: list[str], cfg, dataset_identity: str, progress: bool) -> Embedded:
    """Texts are deduplicated by the cache: each distinct string is encoded once."""
    namespace = _namespace(tower, cfg, dataset_identity)

    def compute(idx: list[int]) -> torch.Tensor:
        return text_batch(tower, [texts[i] for i in idx], cfg.max_length)

    return cached_embed(
        namespace,
        text_keys(texts),
        compute,
        desc=f"embed text ({tower.name})",
        unit="text",
        progress=progress,
        batch=TEXT_BATCH,
    )
