"""Hub datasets through `datasets.load_dataset("name")` or `"name:config"`; needs internet, never used by tests.

`hub_splits(name)` -> {split: Dataset}; `hub_task(name)` guesses the task from a known-name table, else the features.
"""

from __future__ import annotations

import datasets

from peftlab.data.types import IMAGE, TEXT
from peftlab.errors import BadInput

LOCAL_KINDS = (
    "a local file or folder (CSV/TSV/JSON/JSONL/Parquet file, image folder with one subfolder per class)"
)

# Task of well-known hub ids, so infer_task needs no download for them.
HUB_TASKS = {
    "food101": IMAGE,
    "ethz/food101": IMAGE,
    "beans": IMAGE,
    "cifar10": IMAGE,
    "uoft-cs/cifar10": IMAGE,
    "mnist": IMAGE,
    "ylecun/mnist": IMAGE,
    "fashion_mnist": IMAGE,
    "zalando-datasets/fashion_mnist": IMAGE,
    "tweet_eval": TEXT,
    "cardiffnlp/tweet_eval": TEXT,
    "imdb": TEXT,
    "stanfordnlp/imdb": TEXT,
    "rotten_tomatoes": TEXT,
    "cornell-movie-review-data/rotten_tomatoes": TEXT,
    "ag_news": TEXT,
    "fancyzhx/ag_news": TEXT,
    "emotion": TEXT,
    "dair-ai/emotion": TEXT,
    "sst2": TEXT,
    "stanfordnlp/sst2": TEXT,
}


def parse_name(name: str) -> tuple[str, str | None]:
    """'tweet_eval:sentiment' -> ('tweet_eval', 'sentiment'); 'food101' -> ('food101', None)."""
    path, _, config = name.partition(":")
    return path, (config or None)


def _failure(name: str, err: Exception, offline_names: list[str]) -> BadInput:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    offline = f"a packaged dataset ({', '.join(offline_names)}) or {LOCAL_KINDS}"
    if isinstance(err, datasets.exceptions.DatasetNotFoundError):
        return BadInput(
            f"unknown dataset {name!r}: no packaged dataset, local path or hub id has that name ({reason}); use {offline}, or a hub id (name or name:config)"
        )
    if isinstance(err, (ConnectionError, TimeoutError, OSError)):
        return BadInput(
            f"cannot load {name!r}: it is not a packaged dataset or local path, and the hub is unreachable ({reason}); offline, use {offline}"
        )
    return BadInput(
        f"the hub could not load {name!r} ({type(err).__name__}: {reason}): check the id and config (name:config)"
    )


def hub_splits(name: str, offline_names: list[str]) -> dict[str, datasets.Dataset]:
    """Download (or reuse the cache of) a hub dataset; every failure becomes one BadInput line."""
    path, config = parse_name(name)
    try:
        loaded = datasets.load_dataset(path, config)
    except (
        Exception
    ) as err:  # the boundary with the network and the hub: each failure is the user's to act on
        raise _failure(name, err, offline_names) from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def hub_features(name: str, offline_names: list[str]) -> datasets.Features:
    """A hub dataset's features from its metadata, without downloading its data."""
    path, config = parse_name(name)
    try:
        features = datasets.load_dataset_builder(path, config).info.features
    except Exception as err:  # as in hub_splits
        raise _failure(name, err, offline_names) from None
    if features is None:
        raise BadInput(
            f"the hub does not say which columns {name!r} has: pass --task text-classification or image-classification"
        )
    return features
