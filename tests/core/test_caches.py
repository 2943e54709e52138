"""Caches that cannot lie: a damaged entry of the VQA embedding cache or of the converted MobileNetV2 weights is
detected on read (checksum), removed, recomputed, and the user is told once; results equal a clean run's."""

import json
from pathlib import Path

import pytest
import torch

from peftlab.tasks.vqa import cache


def _compute(idx: list[int]) -> torch.Tensor:
    return torch.tensor([[float(i), i * 0.5, -i] for i in idx])  # (b, 3): a stand-in encoder


def _embed(keys):
    return cache.cached_embed({"what": "test"}, keys, _compute, desc="t", unit="x", progress=False, batch=4)


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_a_damaged_embedding_file_is_recomputed(damage, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    keys = [f"k{i}" for i in range(10)]
    clean = _embed(keys)
    assert clean.computed == 10
    path = Path(clean.file)
    data = bytearray(path.read_bytes())
    if damage == "flip":  # one byte inside the stored vectors: still a loadable file, now with wrong numbers
        blob = torch.load(path, weights_only=True)
        raw = blob["vectors"].numpy().tobytes()
        at = bytes(data).find(raw)
        assert at > 0
        data[at + 5] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":  # a run killed while writing (without the atomic rename) or a full disk
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.write_text(json.dumps({"not": "a cache"}))
    capsys.readouterr()
    again = _embed(keys)
    err = capsys.readouterr().err
    assert err.count("is damaged") == 1 and again.computed == 10  # told once, recomputed
    torch.testing.assert_close(again.vectors, clean.vectors, rtol=0, atol=0)
    third = _embed(keys)  # and the rewritten file is trusted again
    assert third.computed == 0 and "damaged" not in capsys.readouterr().err


@pytest.mark.slow
def test_damaged_converted_mobilenet_weights_are_converted_again(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from peftlab.models import mobilenet

    if mobilenet.source_file() is None:
        pytest.skip("the packaged MobileNetV2 weights are not installed (make setup installs them)")
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    folder = mobilenet.converted_folder()
    clean = {
        k: v.clone() for k, v in load_file(str(folder / "model.safetensors")).items()
    }  # not the mapped file
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of a tensor
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    again = mobilenet.converted_folder()
    assert capsys.readouterr().err.count("are damaged") == 1
    reloaded = load_file(str(again / "model.safetensors"))
    assert set(reloaded) == set(clean)
    assert all(torch.equal(reloaded[k], clean[k]) for k in clean)
    mobilenet.converted_folder()
    assert "are damaged" not in capsys.readouterr().err  # intact now: no second conversion
