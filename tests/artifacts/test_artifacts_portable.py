"""Every method x model kind: the saved folder loads with transformers + peft alone, by the lines the run's model card
shows, and gives the logits peftlab computes; `peftlab export` folders load with pipeline() and predict what
`peftlab predict` does. One subprocess in which `import peftlab` fails checks every case (tests/artifacts/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from artifact_runs import MINILM_HUB, TEXTS, card_lines, without_peftlab

from peftlab.artifacts import portable
from peftlab.artifacts.runs import open_run
from peftlab.export import export
from peftlab.predict import gather, load_predictor

CHILD = r"""
import json, sys
import torch
from PIL import Image
from transformers import pipeline

job = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "job.json"))
out = {"snippets": {}, "exports": {}}
for case in job["snippets"]:
    ns = {}
    exec("\n".join(case["lines"]), ns)  # the model card's lines, as a user would paste them
    model = ns["model"]
    if case["task"] == "text-classification":
        batch = ns["tokenizer"](job["texts"], padding=True, truncation=True, return_tensors="pt")
    else:
        batch = ns["image_processor"](images=[Image.open(p).convert("RGB") for p in job["images"]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out["snippets"][case["id"]] = {"logits": logits.tolist(), "training": model.training,
                                   "class": type(base).__name__, "module": type(base).__module__}
for case in job["exports"]:
    classify = pipeline(case["task"], model=case["folder"], trust_remote_code=case["remote"])
    if case["task"] == "text-classification":
        results = classify(job["texts"], truncation=True, top_k=None)
    else:
        results = classify(job["images"], top_k=case["k"])  # top_k=None would mean 5 here
    out["exports"][case["id"]] = [{r["label"]: r["score"] for r in result} for result in results]
assert "peftlab" not in sys.modules
json.dump(out, open("result.json", "w"))
"""


def expected_logits(run, image_files) -> torch.Tensor:
    """peftlab's own logits for the shared inputs (its predict path: the run's preprocessing, its loader)."""
    record, folder = open_run(run.run_dir, "predict")
    items = gather(run.task, record.config, texts=TEXTS if run.task == "text-classification" else (),
                   images=image_files if run.task == "image-classification" else ())  # fmt: skip
    return load_predictor(record, folder).logits(items)


@pytest.mark.slow
def test_every_artifact_loads_without_peftlab(trained, models, image_files, tmp_path):
    snippets, exports, expected = [], [], {}
    for run in trained.values():
        lines = card_lines(run.run_dir)
        assert 1 <= len(lines) <= 3, lines
        p = portable.describe(run.saved)
        assert lines == portable.load_lines(p)
        snippets.append({"id": run.id, "lines": lines, "task": run.task})
        expected[run.id] = logits = expected_logits(run, image_files)
        # exports: every adapter that merges (each method's own merge), and two whole-model folders
        mergeable = p.kind == "adapter" and not p.prompt_learning
        if mergeable or run.id in ("head-local-mean", "full-local-cls"):
            folder = tmp_path / "exports" / run.id
            summary = export(run.run_dir, folder)
            assert summary["merged"] == (p.kind == "adapter")
            labels = p.label_names
            exports.append({"id": run.id, "task": run.task, "folder": str(folder), "remote": p.mean_pooled, "k": len(labels),
                            "probs": [dict(zip(labels, row)) for row in torch.softmax(logits, -1).tolist()]})  # fmt: skip
    job = {"snippets": snippets, "exports": [{k: v for k, v in e.items() if k != "probs"} for e in exports],
           "texts": TEXTS, "images": image_files}  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = without_peftlab(CHILD, tmp_path, models.hub_cache)
    assert result.returncode == 0, result.stderr[-5000:]
    got = json.loads((tmp_path / "result.json").read_text())

    for run in trained.values():
        out = got["snippets"][run.id]
        assert not out["training"], run.id
        torch.testing.assert_close(torch.tensor(out["logits"]), expected[run.id], atol=2e-5, rtol=1e-4,
                                   msg=lambda m, r=run: f"{r.id}: {m}")  # fmt: skip
        p = portable.describe(run.saved)
        if p.mean_pooled:  # peftlab's class, loaded from the folder's own code (transformers_modules.*)
            assert (
                out["class"] == "MeanPoolForSequenceClassification"
                and "transformers_modules" in out["module"]
            )
        else:  # a standard transformers class
            assert out["module"].startswith("transformers.models."), (run.id, out["module"])
    assert {e["id"] for e in exports} and len(got["exports"]) == len(exports)
    for e in exports:
        for ours, theirs in zip(e["probs"], got["exports"][e["id"]]):
            assert ours.keys() == theirs.keys()
            assert all(abs(ours[k] - theirs[k]) < 1e-4 for k in ours), (e["id"], ours, theirs)


def test_every_method_and_kind_is_covered(trained):
    from artifact_runs import KINDS

    from peftlab.methods import REGISTRY

    assert {r.method for r in trained.values()} == set(REGISTRY)
    assert {r.kind for r in trained.values()} == set(KINDS)
    folders = {(r.task, r.saved.name) for r in trained.values()}
    assert folders == {
        (t, f) for t in ("text-classification", "image-classification") for f in ("adapter", "model")
    }
    mean = {r.saved.name for r in trained.values() if portable.describe(r.saved).mean_pooled}
    assert mean == {"adapter", "model"}


def test_adapters_name_their_base_as_users_find_it(trained, models):
    """base_model_name_or_path: the hub id (packaged MiniLM: its hub twin), else the absolute local folder."""
    expect = {"packaged-text": MINILM_HUB, "hub-cls": "peftlab-test/tiny-bert", "hub-vit": "peftlab-test/tiny-vit",
              "local-mean": models.local["local-mean"], "local-cls": models.local["local-cls"],
              "local-cnn": models.local["local-cnn"], "local-clip": models.local["local-clip"]}  # fmt: skip
    adapters = [r for r in trained.values() if (r.saved / "adapter_config.json").is_file()]
    assert adapters
    for run in adapters:
        cfg = json.loads((run.saved / "adapter_config.json").read_text())
        base = cfg["base_model_name_or_path"]
        if run.kind == "packaged-image":  # not on the hub: the converted folder in peftlab's cache
            assert Path(base).is_dir() and (Path(base) / "config.json").is_file()
            assert "not on the Hugging Face hub" in (run.run_dir / "README.md").read_text()
        else:
            assert (
                base == str(Path(expect[run.kind]).resolve())
                if run.kind.startswith("local")
                else expect[run.kind]
            )
        if portable.describe(run.saved).mean_pooled:  # the base folder: config + code, no weights
            base_dir = run.saved / portable.BASE
            assert sorted(f.name for f in base_dir.iterdir()) == ["config.json", "meanpool.py"]
            config = json.loads((base_dir / "config.json").read_text())
            assert (
                config["encoder_name_or_path"] == base
                and "AutoModelForSequenceClassification" in config["auto_map"]
            )
        if run.kind == "local-clip":  # the CLIPForImageClassification config the snippet builds the base from
            base_dir = run.saved / portable.BASE
            assert sorted(f.name for f in base_dir.iterdir()) == ["config.json"]
            config = json.loads((base_dir / "config.json").read_text())
            assert config["model_type"] == "clip" and len(config["id2label"]) == 10
        # peft's own template is replaced by the run's model card
        assert "More Information Needed" not in (run.saved / "README.md").read_text()


def test_run_moved_elsewhere_still_predicts(trained, tmp_path):
    """predict finds the model beside record.json, so a copied run folder works; the card's paths are the old ones."""
    import shutil

    from peftlab.predict import predict

    run = trained["loha-local-cls"]
    moved = tmp_path / "moved"
    shutil.copytree(run.run_dir, moved)
    again = predict(moved, texts=TEXTS)
    here = predict(run.run_dir, texts=TEXTS)
    assert [p.probs for p in again] == [p.probs for p in here]
