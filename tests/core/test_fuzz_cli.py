"""Property: every command line of `run`, `compare`, `params` and `report` ends with exit 0, 1 or 2 and one clear
message, never a traceback. Hypothesis draws flags from the real parser (so a new flag is fuzzed the day it lands) and
values from a pool of good, odd and hostile ones; runs stop where the expensive part starts (encoding the data, the
VQA embeddings), so each example costs at most a data and model load.

The examples are derandomized (the same ones on every CI run); PEFTLAB_FUZZ_EXAMPLES=500 explores more and new seeds.
"""

import argparse
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftlab.cli import build_parser, main
from peftlab.methods import REGISTRY

EXPLORE = int(os.environ.get("PEFTLAB_FUZZ_EXAMPLES", "0"))
FIXTURE = Path(__file__).parent.parent / "fixtures" / "store-v0.1.0-e97fbb2.db"


class ReachedTheWork(BaseException):
    """Raised where encoding would start: everything before it (every check) has passed. Not an Exception, so no
    handler of peftlab's catches it."""


def _reached(*a, **k):
    raise ReachedTheWork


MODELS = ["minilm-l6", "mobilenet-v2", "google/vit-base-patch16-224-in21k", "no/such-model", "./nope", "", "{file}",
          "{dir}"]  # fmt: skip
DATASETS = ["vader-tweets", "sklearn-digits", "easy-vqa", "fashion-vqa", "tweet_eval:sentiment", "nope", "",
            "{file}", "{dir}", "{csv}"]  # fmt: skip
METHODS = [*REGISTRY, "lora-r8", "nope", "", "LoRA"]
ODD = ["", "0", "-1", "1", "2", "3", "0.5", "1e-3", "nan", "inf", "-inf", "1e309", "abc", "a,b", ",", "1,,2",
       "99999999999", "3.7", "true", "none", "query,value", "all", "🙂", "-5e-1", "{file}", "{dir}"]  # fmt: skip
VALUES = {
    "--model": MODELS,
    "--models": [*MODELS, "minilm-l6,mobilenet-v2", "minilm-l6,", ","],
    "--dataset": DATASETS,
    "--datasets": [*DATASETS, "vader-tweets,sklearn-digits", ",vader-tweets"],
    "--method": METHODS,
    "--methods": [*METHODS, "head,lora", "head,,lora", "lora,lora"],
    "--task": ["text-classification", "image-classification", "vqa", "nope", ""],
    "--seeds": ["0", "0,1", "0-2", "a", "", "-1", "1,1"],
    "--sweep": ["lora.r=2,4", "lr=1e-3,1e-4", "lora.r=", "nope=1", "lr", "=", "head.x=1"],
    "--tune": ["2", "0", "-1", "x", "2:lr", "3,lr"],
    "--fusions": ["concat", "mul", "nope", ""],
    "--store": ["{store}", "{file}", "{dir}", "{fixture}", "{new}"],
    "--out": ["{new}", "{file}", "{dir}"],
    "--config": ["{file}", "{dir}", "{yaml}", "{new}"],
}


def _value_pool(flag: str) -> list[str]:
    return VALUES.get(flag, ODD)


def _flags(command: str) -> list[argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if a.option_strings and "-h" not in a.option_strings]


@st.composite
def command_lines(draw, command: str) -> list[str]:
    args: list[str] = []
    for action in draw(st.lists(st.sampled_from(_flags(command)), max_size=6)):
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            args.append(flag)
        else:
            value = draw(st.one_of(st.sampled_from(_value_pool(flag)), st.text(max_size=6)))
            args += [flag, value]
    return args


# cheap defaults a drawn flag can override (argparse keeps the last value)
BASE = {
    "run": ["--model", "minilm-l6", "--dataset", "vader-tweets", "--max-train-samples", "8", "--max-eval-samples",
            "6", "--max-validation-samples", "6", "--epochs", "1", "--quiet"],
    "compare": ["--models", "minilm-l6", "--datasets", "vader-tweets", "--methods", "head", "--max-train-samples",
                "8", "--max-eval-samples", "6", "--max-validation-samples", "6", "--epochs", "1", "--quiet"],
    "params": ["--model", "minilm-l6"],
    "report": ["--store", "{fixture}"],
}  # fmt: skip


def _places(root: Path) -> dict:
    (root / "afile").write_text("not a folder, not a store\n")
    (root / "adir").mkdir(exist_ok=True)
    (root / "a.csv").write_text("text,label\nhello,a\nbye,b\n")
    (root / "c.yaml").write_text("model: minilm-l6\nmethod: head\nepochs: [1\n")
    shutil.copy(
        FIXTURE, root / "old.db"
    )  # a store of the previous release; a copy, since runs may write to it
    return {"{file}": root / "afile", "{dir}": root / "adir", "{csv}": root / "a.csv", "{yaml}": root / "c.yaml",
            "{fixture}": root / "old.db", "{store}": root / "s.db", "{new}": root / "new" / "x"}  # fmt: skip


def _fill(argv: list[str], places: dict) -> list[str]:
    out = []
    for a in argv:
        for k, v in places.items():
            a = a.replace(k, str(v))
        out.append(a)
    return out


def _check(command: str, drawn: list[str], monkeypatch):
    import peftlab.tasks.classification as classification
    import peftlab.tasks.vqa.run as vqa_run

    monkeypatch.setattr(classification, "_encode", _reached)
    monkeypatch.setattr(vqa_run, "_embed", _reached)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        places = _places(root)
        argv = _fill([command, *BASE[command], "--out", str(root / "out"), *drawn], places)
        if command in ("params", "report"):
            argv = [a for a in argv if a not in ("--quiet",)]
            if command == "params" and "--out" in argv:
                i = argv.index("--out")
                argv = argv[:i] + argv[i + 2 :]
        err, outs = io.StringIO(), io.StringIO()
        code, threads = None, torch.get_num_threads()
        # relative paths drawn as values land in the temporary folder
        with contextlib.chdir(root), contextlib.redirect_stderr(err), contextlib.redirect_stdout(outs):
            try:
                code = main(argv)
            except ReachedTheWork:
                code = "reached"
            except SystemExit as e:  # argparse: exit 2 on a malformed command line, 0 on --help
                code = e.code
            finally:
                torch.set_num_threads(threads)  # --threads is process-wide
    text = err.getvalue() + outs.getvalue()
    assert "Traceback" not in text, f"{argv}\n{text[-2000:]}"
    assert code in (0, 1, 2, "reached"), f"{argv} -> {code!r}\n{text[-2000:]}"
    if code == 2:
        last = [line for line in err.getvalue().split("\n") if line.strip()][-1]
        assert "error" in last, f"{argv}: exit 2 without an error line:\n{err.getvalue()[-1000:]}"
    return code


def _settings(examples: int):
    return settings(
        max_examples=EXPLORE or examples,
        derandomize=not EXPLORE,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


@pytest.mark.parametrize("command,examples", [("run", 40), ("compare", 30), ("params", 40), ("report", 15)])
def test_every_command_line_ends_with_0_1_or_2_and_no_traceback(command, examples, monkeypatch):
    @_settings(examples)
    @given(drawn=command_lines(command))
    def prop(drawn):
        _check(command, drawn, monkeypatch)

    prop()


def test_what_the_examples_reach(monkeypatch, capsys):
    """The property above is only as good as where its examples get to: some must pass every check, some fail."""
    seen = []

    @_settings(25)
    @given(drawn=command_lines("run"))
    def prop(drawn):
        seen.append(_check("run", drawn, monkeypatch))

    prop()
    assert {"reached", 2} <= set(seen), seen
