"""A VQA run's vqa-head/ folder loads with transformers alone, by the three lines its model card shows, and answers as
`peftlab predict` does: an assembled pair (--encoder dual: projections), a CLIP-style --encoder, and the packaged
MobileNetV2 (its converted folder) + MiniLM (by hub id) at --image-size 32. One subprocess where `import peftlab` fails.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from artifacts.artifact_runs import MINILM_HUB, card_lines, hub_entry, without_peftlab
from peftlab.artifacts import portable
from peftlab.cli import main
from peftlab.predict import predict

CHILD = r"""
import json, sys
from PIL import Image

job = json.load(open("job.json"))
out = {}
for case in job["runs"]:
    ns = {}
    exec("\n".join(case["lines"]), ns)  # the card's lines as a user pastes them: the last answers photo.png
    model = ns["model"]
    answers = model.answer([Image.open(p) for p in case["images"]], case["questions"])
    out[case["id"]] = {"answers": answers, "module": type(model).__module__, "training": model.training}
assert "peftlab" not in sys.modules
json.dump(out, open("result.json", "w"))
"""


@pytest.mark.slow
def test_vqa_head_loads_without_peftlab(tiny_image_encoder, tiny_text_encoder, tiny_clip, shapes_csv, tmp_path,
                                        capsys):  # fmt: skip
    from peftlab.models import PACKAGED_MODELS

    hub = tmp_path / "hub"  # the packaged MiniLM's adapters and VQA heads name its hub id
    hub_entry(hub, MINILM_HUB, PACKAGED_MODELS["minilm-l6"].path())
    towers = ["--image-encoder", tiny_image_encoder, "--text-encoder", tiny_text_encoder]
    cases = {"dual": [*towers, "--encoder", "dual"], "clip": ["--encoder", tiny_clip],
             "packaged": ["--image-encoder", "mobilenet-v2", "--text-encoder", "minilm-l6", "--image-size", "32"]}  # fmt: skip
    folder = Path(shapes_csv).parent
    with open(shapes_csv) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    images, questions = [str(folder / r["image"]) for r in rows], [r["question"] for r in rows]
    shutil.copy(images[0], tmp_path / "photo.png")  # what the card's third line opens
    runs, expected = [], {}
    for name, args in cases.items():
        code = main(["run", "--task", "vqa", "--dataset", shapes_csv, *args, "--epochs", "3", "--batch-size", "8",
                     "--hidden", "16", "--out", str(tmp_path / "runs"), "--json", "--quiet"])  # fmt: skip
        captured = capsys.readouterr()
        assert code == 0, captured.err
        run_dir = Path(json.loads(captured.out)["artifacts"]["dir"])
        lines = card_lines(run_dir)
        assert lines == portable.vqa_load_lines(str(run_dir / "vqa-head")) and len(lines) == 3
        config = json.loads((run_dir / "vqa-head" / "config.json").read_text())
        if name == "packaged":  # MiniLM by its hub id; MobileNetV2 by the folder peftlab converted it into
            assert config["text_encoder"] == MINILM_HUB and Path(config["image_encoder"]).is_dir()
            assert config["image_processor_kwargs"]["crop_size"] == {"height": 32, "width": 32}
        assert bool(config["projection_dim"]) == (name == "dual")
        runs.append({"id": name, "lines": lines, "images": images, "questions": questions})
        expected[name] = predict(run_dir, images=images, questions=questions)
    (tmp_path / "job.json").write_text(json.dumps({"runs": runs}))
    result = without_peftlab(CHILD, tmp_path, hub)
    assert result.returncode == 0, result.stderr[-5000:]
    got = json.loads((tmp_path / "result.json").read_text())
    for name, ours in expected.items():
        out = got[name]
        assert "transformers_modules" in out["module"] and not out["training"], out
        assert [a["label"] for a in out["answers"]] == [p.label for p in ours], name
        for theirs, p in zip(out["answers"], ours):
            assert theirs["probs"].keys() == p.probs.keys()
            assert all(abs(theirs["probs"][k] - p.probs[k]) < 1e-5 for k in p.probs), (name, theirs, p.probs)
