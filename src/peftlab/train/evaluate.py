"""Evaluation under torch.inference_mode and the metrics of a run: accuracy, macro-F1, macro-recall, per class.

`evaluate(model, enc, batch_size, label_names)` -> metrics dict; `metrics_from_predictions` for any (y_true, y_pred).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

from peftlab import distributed
from peftlab.train.encode import Encoded, eval_batches


def metrics_from_predictions(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict:
    labels = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # macro over every label of the task (a class never predicted counts as 0), as TweetEval scores it
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(label_names)
        },
    }


def predict(
    model, enc: Encoded, batch_size: int, device: torch.device | str | None = None, forward=None
) -> np.ndarray:
    """(N,) predicted class ids, in the order of enc. `forward(model, batch) -> logits` may replace
    model(**batch).logits (the frozen-prefix cache). Batches go to `device`, by default where the model's weights are
    (the GPU after training there). Under accelerate launch every process gets all N."""
    if distributed.world() > 1:  # accelerate launch: each process predicts its share, gathered exactly once
        return distributed.predict(model, enc, batch_size, forward)
    forward = forward or (lambda m, b: m(**b).logits)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    preds = np.empty(len(enc), dtype=np.int64)
    with torch.inference_mode():
        for idx in eval_batches(enc, batch_size):
            batch = {k: v.to(device) for k, v in enc.collate(idx, with_labels=False).items()}
            logits = forward(model, batch)  # (B, K)
            preds[idx] = logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    return preds


def evaluate(model, enc: Encoded, batch_size: int, label_names: list[str], device=None, forward=None) -> dict:
    preds = predict(model, enc, batch_size, device, forward)
    return metrics_from_predictions(enc.labels.numpy(), preds, label_names)
