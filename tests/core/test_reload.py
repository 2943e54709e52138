"""Every trained method's artifact reloads outside peftlab's run: one registry-driven test per method.

PEFT methods save an adapter folder that `PeftModel.from_pretrained` puts onto a fresh base (a base with another random
head: the adapter must restore the trained head), with identical logits whatever the base's seed, and the accuracy
the record holds; methods that are not adapters save a folder `AutoModelFor...from_pretrained` reloads.
"""

import json

import pytest
import torch

from peftlab.cli import main
from peftlab.methods import REGISTRY

TEXT = ["--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "32", "--max-eval-samples", "24",
        "--epochs", "1", "--batch-size", "8", "--max-length", "24"]  # fmt: skip
IMAGE = ["--model", "mobilenet-v2", "--dataset", "fashion-mnist", "--max-train-samples", "24",
         "--max-eval-samples", "16", "--epochs", "1", "--batch-size", "8", "--image-size", "32"]  # fmt: skip
# every trained method on the packaged MiniLM (text) and, where it runs on CNNs, the packaged MobileNetV2 (images)
CASES = [(m.name, "text") for m in REGISTRY.values() if m.needs_training and "text-classification" in m.tasks]
CASES += [(m.name, "image") for m in REGISTRY.values()
          if m.needs_training and "image-classification" in m.tasks and "cnn" in m.kinds]  # fmt: skip


# knob settings where a default does not fit the packaged model (OFT's block size 32 divides none of MobileNetV2's
# 1x1 input widths 16, 24, 144, ...: the refusal lists 2, 4, 8)
FITS = {("oft", "image"): ["--oft-block-size", "8"]}


def _run(method: str, kind: str, tmp_path, capsys) -> tuple[dict, list[str]]:
    args = TEXT if kind == "text" else IMAGE
    extra = FITS.get((method, kind), [])
    assert main(["run", *args, "--method", method, *extra, "--out", str(tmp_path), "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out), args


def _data(args):
    from peftlab.data import load_data

    n_train, n_eval = (
        int(args[args.index("--max-train-samples") + 1]),
        int(args[args.index("--max-eval-samples") + 1]),
    )
    return load_data(args[3], max_train_samples=n_train, max_eval_samples=n_eval)


def _encoded(data, folder, args):
    from transformers import AutoImageProcessor, AutoTokenizer

    from peftlab.train import encode

    if data.task == "text-classification":
        return encode(data.eval, AutoTokenizer.from_pretrained(folder), data.task, max_length=24)
    return encode(data.eval, AutoImageProcessor.from_pretrained(folder), data.task, image_size=32)


def _logits(model, enc) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        batch = enc.collate(list(range(len(enc))))
        batch.pop("labels", None)
        return model(**batch).logits


@pytest.mark.slow
@pytest.mark.parametrize("method, kind", CASES)
def test_trained_artifact_reloads_outside_peftlab(method, kind, tmp_path, capsys):
    from peft import PeftModel

    from peftlab.models import load_model
    from peftlab.train import evaluate

    # (CNNs: frozen batch norms keep the checkpoint's statistics while adapters train, train/loop.py, so the adapter
    # alone restores the trained model)
    rec, args = _run(method, kind, tmp_path, capsys)
    folder = rec["artifacts"]["saved"]
    data = _data(args)
    enc = _encoded(data, folder, args)
    if folder.endswith("adapter"):
        outs = []
        for base_seed in (
            11,
            12,
        ):  # two bases whose random heads differ: the adapter restores the trained head
            torch.manual_seed(base_seed)
            base = load_model(args[1], data.task, data.label_names).model
            outs.append(_logits(PeftModel.from_pretrained(base, folder), enc))
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
        model = PeftModel.from_pretrained(load_model(args[1], data.task, data.label_names).model, folder)
    else:
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

        import peftlab.models  # noqa: F401  (registers the mean-pooling classifier with the Auto classes)

        auto = (
            AutoModelForSequenceClassification
            if data.task == "text-classification"
            else AutoModelForImageClassification
        )
        model = auto.from_pretrained(folder)
        assert model.config.id2label[0] == data.label_names[0]
    accuracy = evaluate(model.eval(), enc, 64, data.label_names)["accuracy"]
    assert accuracy == pytest.approx(rec["metrics"]["accuracy"])
