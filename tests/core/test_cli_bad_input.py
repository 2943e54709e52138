"""Bad input through the CLI: one line on stderr, exit 2, no traceback, nothing written to the store."""

import struct
import zlib

import pytest

from peftlab.cli import main

BASE = ["run", "--model", "minilm-l6", "--dataset", "vader-tweets", "--method", "head", "--epochs", "1",
        "--max-train-samples", "12", "--max-eval-samples", "9"]  # fmt: skip


def _with(args, **flags):
    out = list(args)
    for k, v in flags.items():
        flag = "--" + k.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = v
        else:
            out += [flag, v]
    return out


def _csv(path, text):
    path.write_text(text)
    return str(path)


def _bad_png(folder):
    (folder / "cats").mkdir(parents=True)
    (folder / "dogs").mkdir()
    for cls in ("cats", "dogs"):
        for i in range(3):
            _tiny_png(folder / cls / f"{i}.png")
    (folder / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return str(folder)


def _tiny_png(path):
    """A valid 2x2 grey PNG written by hand (no PIL needed to make the fixture)."""
    raw = b"".join(b"\x00" + bytes([128, 128]) for _ in range(2))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


CASES = {
    "unknown model": lambda t: _with(BASE, model="no-such-model-xyz"),
    "unknown dataset": lambda t: _with(BASE, dataset="no-such-dataset-xyz"),
    "unknown method": lambda t: _with(BASE, method="lorax"),
    "rank": lambda t: _with(BASE, method="lora", lora_r="0"),
    "alpha": lambda t: _with(BASE, method="lora", lora_alpha="-4"),
    "dropout": lambda t: _with(BASE, method="lora", lora_dropout="1.5"),
    "epochs": lambda t: _with(BASE, epochs="0"),
    "lr": lambda t: _with(BASE, lr="fast"),
    "samples": lambda t: _with(BASE, max_train_samples="-5"),
    "lora target": lambda t: _with(BASE, method="lora", lora_target="qury"),
    "empty file": lambda t: _with(BASE, dataset=_csv(t / "empty.csv", "")),
    "label-less file": lambda t: _with(BASE, dataset=_csv(t / "nolabel.csv", "text\nhello\nworld\n")),
    "single class": lambda t: _with(BASE, dataset=_csv(t / "one.csv", "text,label\n" + "a b,pos\n" * 12)),
    "undecodable image": lambda t: _with(
        BASE, model="mobilenet-v2", dataset=_bad_png(t / "imgs"), max_train_samples="4", max_eval_samples="2"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    store = tmp_path / "runs" / "peftlab.db"
    args = CASES[case](tmp_path) + ["--out", str(tmp_path / "runs"), "--store", str(store), "--quiet"]
    code = main(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("[peftlab]")]
    assert code == 2, (case, captured.err[-2000:])
    assert len(lines) == 1, (case, captured.err[-2000:])
    assert "Traceback" not in captured.err
    assert captured.out == ""
    if store.exists():  # validation may have created the store; it must hold no run
        from peftlab.store import Store

        assert Store(store).records() == []


def test_unknown_target_lists_candidates(tmp_path, capsys):
    code = main(CASES["lora target"](tmp_path) + ["--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "qury" in err and "query" in err and "value" in err


def test_help_comes_from_the_config_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--lora-r" in out and "LoRA rank r" in out and "--max-train-samples" in out
