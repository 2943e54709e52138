"""Classification data in one shape: text or RGB images, int labels, a fixed train/eval split, described sources.

`load_data("vader-tweets", max_train_samples=600)` -> ClassificationData; `PACKAGED_DATASETS` lists the offline sets.
"""

from peftlab.data.load import infer_task, load_data
from peftlab.data.packaged import PACKAGED_DATASETS, PackagedDataset
from peftlab.data.types import IMAGE, TASKS, TEXT, ClassificationData, Split

__all__ = [
    "IMAGE",
    "PACKAGED_DATASETS",
    "TASKS",
    "TEXT",
    "ClassificationData",
    "PackagedDataset",
    "Split",
    "infer_task",
    "load_data",
]
