"""`peftlab run --task vqa` on tiny random encoders: the record, the parameter check, the cache, CLIP and dual, compare."""

import json

import pytest

import peftlab.tasks.vqa.cache as vqa_encode
from peftlab.cli import main
from peftlab.grid import run_suite
from peftlab.store import Store

FAST = ["--epochs", "3", "--batch-size", "8", "--hidden", "16", "--no-save-model"]


def run_json(args, tmp_path, capsys) -> dict:
    code = main(["run", "--task", "vqa", *args, "--out", str(tmp_path / "runs"), "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_record_has_the_shape_of_every_run(
    tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys
):
    rec = run_json(["--dataset", shapes_csv, "--image-encoder", tiny_image_encoder,
                    "--text-encoder", tiny_text_encoder, *FAST], tmp_path, capsys)  # fmt: skip
    for key in ("run_id", "status", "task", "model", "dataset", "method", "seed", "metrics", "baseline_metrics",
                "params", "time", "memory", "artifacts", "data", "vqa_baselines"):  # fmt: skip
        assert key in rec
    assert rec["status"] == "ok" and rec["task"] == "vqa" and rec["method"] == "head"
    assert (
        rec["config"]["fusion"] == "concat"
    )  # VQA trains the registered `head` method; the fusion is a setting
    data = rec["data"]
    # 9 train images, 3 test images, 3 questions each; validation takes 1 of the 9 training images
    sizes = ("train_size", "validation_size", "test_size", "eval_size")
    assert tuple(data[k] for k in sizes) == (24, 3, 9, 9)
    assert data["full_sizes"] == {"train": 24, "validation": 3, "eval": 9}
    assert data["images"] == {"train": 8, "validation": 1, "eval": 3}
    assert rec["metrics_split"] == "test"  # metrics, baseline_metrics and vqa_baselines
    assert data["label_names"] == sorted(data["label_names"]) and "no" in data["label_names"]
    m = rec["metrics"]
    for k in ("accuracy", "macro_f1", "macro_recall", "per_class", "per_type", "unseen_answer_share"):
        assert k in m
    assert set(m["per_type"]) == {"color", "shape", "yes/no"}
    assert sum(t["count"] for t in m["per_type"].values()) == 9
    assert set(rec["vqa_baselines"]) == {"majority", "question_only", "image_only"}
    assert rec["vqa_baselines"]["majority"]["answer"] == "no"  # 8 of 24 training answers
    # concat of the tiny towers: 448 (MobileNetV2 x0.35: 1280 * 0.35) + 48 (BERT) -> 496 -> 16 -> K
    p, k = rec["params"], data["num_labels"]
    assert rec["vqa"]["dims"] == {"image": 448, "text": 48}
    assert p["trainable"] == p["predicted_trainable"] == (496 * 16 + 16) + (16 * k + k)
    assert p["match"] is True and p["total"] > p["trainable"]
    for k in ("train_s", "eval_s", "train_samples_per_s", "encode_s"):
        assert rec["time"][k] is not None
    stored = Store(tmp_path / "runs" / "peftlab.db").records()
    assert [r.run_id for r in stored] == [rec["run_id"]] and stored[0].method == "head"


def test_second_run_recomputes_no_embedding(tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys,
                                            monkeypatch, empty_cache):  # fmt: skip
    base = [
        "--dataset",
        shapes_csv,
        "--image-encoder",
        tiny_image_encoder,
        "--text-encoder",
        tiny_text_encoder,
    ]
    first = run_json([*base, *FAST], tmp_path, capsys)
    enc = first["vqa"]["encoded"]
    # 8 train + 3 test images: the validation image is not embedded by a plain run
    assert enc["images"]["computed"] == 11 and enc["images"]["cached"] == 0
    assert enc["texts"]["computed"] == enc["texts"]["distinct"] == 5  # 33 questions, 5 distinct strings
    assert len(list(empty_cache.glob("*.pt"))) == 2

    def refuse(*a, **k):
        raise AssertionError("an embedding was recomputed")

    monkeypatch.setattr(vqa_encode, "image_batch", refuse)
    monkeypatch.setattr(vqa_encode, "text_batch", refuse)
    again = run_json(
        [*base, *FAST, "--fusion", "concat-product", "--seed", "7", "--hidden", "24"], tmp_path, capsys
    )
    enc = again["vqa"]["encoded"]
    assert (enc["images"]["computed"], enc["texts"]["computed"]) == (0, 0)
    assert (enc["images"]["cached"], enc["texts"]["cached"]) == (11, 5)
    assert again["config"]["fusion"] == "concat-product" and again["params"]["match"] is True


def test_changed_preprocessing_is_a_new_cache_entry(
    tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys, monkeypatch, empty_cache
):
    base = [
        "--dataset",
        shapes_csv,
        "--image-encoder",
        tiny_image_encoder,
        "--text-encoder",
        tiny_text_encoder,
        *FAST,
    ]
    first = run_json(base, tmp_path, capsys)
    # the 24-px images go to the tiny encoder at its processor's 32 px; the record says both
    assert first["vqa"]["image_size"] == {"pixels": 32, "chosen": "encoder", "native": 24, "encoder": 32,
                                          "fixed_input": False}  # fmt: skip
    assert first["config"]["image_size"] is None  # the setting stays as given
    other = run_json([*base, "--image-size", "16"], tmp_path, capsys)
    assert (other["vqa"]["image_size"]["pixels"], other["vqa"]["image_size"]["chosen"]) == (
        16,
        "--image-size",
    )
    assert other["vqa"]["encoded"]["images"]["computed"] == 11  # new pixels, new embeddings
    assert other["vqa"]["encoded"]["texts"]["computed"] == 0  # the questions' recipe did not change
    # IMAGE_SIZE "native": images smaller than the encoder's input are encoded at their own size, a third entry
    import peftlab.tasks.vqa.run as vqa_run

    monkeypatch.setattr(vqa_run, "IMAGE_SIZE", "native")
    native = run_json(base, tmp_path, capsys)
    assert native["vqa"]["image_size"] == {"pixels": 24, "chosen": "native", "native": 24, "encoder": 32,
                                           "fixed_input": False}  # fmt: skip
    assert native["vqa"]["encoded"]["images"]["computed"] == 11
    metas = [json.loads(m)["preprocessing"] for m in _cache_meta(empty_cache)]
    # the key holds the size: one image file per size (None: the processor's own), one question file
    assert sorted(str(m["image_size"]) for m in metas if "image_size" in m) == ["16", "24", "None"]


def test_clip_style_encoder_and_product_fusion(tiny_clip, shapes_csv, tmp_path, capsys):
    rec = run_json(
        ["--dataset", shapes_csv, "--encoder", tiny_clip, "--fusion", "product", *FAST], tmp_path, capsys
    )
    k = rec["data"]["num_labels"]
    assert rec["vqa"]["dims"] == {"image": 24, "text": 24}  # both from CLIP's projections
    assert rec["params"]["trainable"] == (24 * 16 + 16) + (16 * k + k)  # equal widths: i * q, no projections
    assert rec["params"]["match"] is True and rec["model"] == tiny_clip
    assert [c["component"] for c in rec["params"]["breakdown"]][-1].startswith(
        "encoder "
    )  # CLIP counted once


def test_dual_encoder_trains_projections_once(
    tiny_image_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys
):
    args = ["--dataset", shapes_csv, "--encoder", "dual", "--image-encoder", tiny_image_encoder,
            "--text-encoder", tiny_text_encoder, *FAST]  # fmt: skip
    rec = run_json(args, tmp_path, capsys)
    dual = rec["vqa"]["dual"]
    assert dual["what"] == "(image, answer text) pairs" and dual["cached"] is False
    assert dual["pairs"] == 16  # 8 train images x (colour, shape); "no" names nothing
    assert rec["vqa"]["dims"] == {"image": 512, "text": 512}
    projections = [c for c in rec["params"]["breakdown"] if c["component"].startswith("dual projections")]
    assert projections[0]["params"] == 448 * 512 + 48 * 512 + 1 and projections[0]["trainable"] == 0
    again = run_json(
        [*args, "--seed", "3"], tmp_path, capsys
    )  # a new head seed: the same encoder, from the cache
    assert again["vqa"]["dual"]["cached"] is True and again["vqa"]["encoded"]["images"]["computed"] == 0


def test_model_flag_names_an_encoder_pair(
    tiny_resnet_encoder, tiny_text_encoder, shapes_csv, tmp_path, capsys
):
    rec = run_json(["--dataset", shapes_csv, "--model", f"{tiny_resnet_encoder}+{tiny_text_encoder}", *FAST],
                   tmp_path, capsys)  # fmt: skip
    assert rec["vqa"]["dims"] == {"image": 32, "text": 48}  # ResNet pooled (B, 32, 1, 1) -> (B, 32)
    assert rec["model"] == f"{tiny_resnet_encoder}+{tiny_text_encoder}"


def test_compare_grids_over_encoders_and_fusions(tiny_image_encoder, tiny_resnet_encoder, tiny_text_encoder,
                                                 shapes_csv, tmp_path, monkeypatch):  # fmt: skip
    calls = {"images": 0}
    real = vqa_encode.image_batch

    def counting(tower, images, size):
        calls["images"] += len(images)
        return real(tower, images, size)

    monkeypatch.setattr(vqa_encode, "image_batch", counting)
    suite = {
        "task": "vqa",
        "datasets": [shapes_csv],
        "models": [f"{tiny_image_encoder}+{tiny_text_encoder}", f"{tiny_resnet_encoder}+{tiny_text_encoder}"],
        "fusions": ["concat", "product"],
        "seeds": 2,
        "epochs": 2,
        "hidden": 16,
        "save_model": False,
    }
    out = run_suite(suite, tmp_path / "grid", resume=False, progress=False)
    assert (out["runs_total"], out["runs_failed"]) == (8, 0)
    records = Store(out["store"]).records()
    assert {(r.method, r.config["fusion"]) for r in records} == {("head", "concat"), ("head", "product")}
    assert len({r.model for r in records}) == 2
    assert calls["images"] == 22  # 11 images x 2 image encoders, whatever the fusions and seeds


@pytest.mark.slow
def test_packaged_encoders_on_easy_vqa(tmp_path, capsys):
    """The real offline towers on a handful of easy-VQA questions: MobileNetV2 1280 + MiniLM 384 -> 1664."""
    rec = run_json(["--dataset", "easy-vqa", "--image-encoder", "mobilenet-v2", "--text-encoder", "minilm-l6",
                    "--max-train-samples", "26", "--max-eval-samples", "13", "--image-size", "64", "--epochs", "1",
                    "--no-save-model"], tmp_path, capsys)  # fmt: skip
    k = rec["data"]["num_labels"]
    assert rec["vqa"]["dims"] == {"image": 1280, "text": 384}
    assert rec["params"]["trainable"] == (1664 * 512 + 512) + (512 * k + k) and rec["params"]["match"] is True
    assert set(rec["metrics"]["per_type"]) <= {"yes/no", "color", "shape"}


def test_unseen_eval_answers_count_as_wrong(tiny_image_encoder, tiny_text_encoder, tmp_path, capsys):
    from .test_vqa_data import _daquar

    folder = _daquar(tmp_path / "daquar")
    rec = run_json(["--dataset", str(folder), "--image-encoder", tiny_image_encoder,
                    "--text-encoder", tiny_text_encoder, *FAST], tmp_path, capsys)  # fmt: skip
    m = rec["metrics"]
    assert m["unseen_answer_share"] == 0.5  # "curtain" never answers a training question
    assert m["accuracy"] <= 0.5 and "curtain" not in rec["data"]["label_names"]
    assert rec["metrics"]["per_type"] is None  # DAQUAR has no question types


def _cache_meta(folder) -> list[str]:
    import torch

    return [torch.load(f, weights_only=True)["meta"] for f in sorted(folder.glob("*.pt"))]


def test_fixed_input_encoder_refuses_another_image_size(tiny_clip, shapes_csv, tmp_path, capsys):
    code = main(["run", "--task", "vqa", "--dataset", shapes_csv, "--encoder", tiny_clip, "--image-size", "16", *FAST,
                 "--out", str(tmp_path / "runs"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert (
        code == 2 and len(err.splitlines()) == 1 and "--image-size 16" in err and "32-px images only" in err
    )
