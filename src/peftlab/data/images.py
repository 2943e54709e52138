"""Turn whatever an image column holds (PIL image, file path, {bytes, path} dict, pixel array) into an RGB PIL image.

`to_rgb(value, base_dir, where)` is called once per selected example; `where` names the example in error messages.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from peftlab.errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def open_rgb(source: str | Path | bytes | io.BytesIO, shown: str) -> Image.Image:
    """A file path or encoded bytes -> RGB PIL image; `shown` names it in the one-line error."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as im:
            return im.convert("RGB")  # convert() loads the pixels, so the file can close
    except FileNotFoundError:
        raise BadInput(
            f"image file {shown} not found: fix the path (relative paths are read from the data file's folder)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadInput(
            f"image {shown} does not decode ({type(err).__name__}): replace or remove that file"
        ) from None


def from_array(pixels: np.ndarray) -> Image.Image:
    """(H, W) grey or (H, W, 3|4) uint8 pixels -> RGB PIL image."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        # floats in [0, 1] -> 0..255; anything else is clipped to 0..255
        scale = 255.0 if pixels.dtype.kind == "f" and pixels.max(initial=0) <= 1.0 else 1.0
        pixels = np.clip(pixels * scale, 0, 255).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3) and pixels.shape[-1] not in (1, 3, 4):
        pixels = pixels.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(pixels).convert("RGB")


def to_rgb(value: object, base_dir: Path | None, where: str) -> Image.Image:
    """One image-column value -> RGB PIL image; `where` says which example, for the error message."""
    if isinstance(value, Image.Image):
        return value if value.mode == "RGB" else value.convert("RGB")
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return open_rgb(path, f"{str(path)!r} ({where})")
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        if value.get("bytes"):
            return open_rgb(io.BytesIO(value["bytes"]), f"{value.get('path') or 'bytes'} ({where})")
        return to_rgb(value["path"], base_dir, where)
    if isinstance(value, (list, np.ndarray)):
        return from_array(np.asarray(value))
    raise BadInput(
        f"{where} holds {type(value).__name__}, not an image: point the image column at images or file paths"
    )
