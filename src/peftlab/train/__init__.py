"""Training, evaluation and measurement: the explicit loop on accelerate, metrics, timing and memory.

`encode(...)` turns data into tensors once, `train(...)` runs the optimiser, `evaluate(...)` returns metrics.
"""

from peftlab.train.encode import Encoded, encode
from peftlab.train.evaluate import evaluate, metrics_from_predictions
from peftlab.train.loop import TrainStats, train
from peftlab.train.measure import PeakMemory, Timer

__all__ = [
    "Encoded",
    "encode",
    "evaluate",
    "metrics_from_predictions",
    "train",
    "TrainStats",
    "PeakMemory",
    "Timer",
]
