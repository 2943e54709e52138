"""docs/params.md is produced by the command: each `$ peftlab params ...` block is re-run and compared line by line,
the base-size table is recounted, and every count written anywhere on the page must come from one of those.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.models import PACKAGED_MODELS
from peftlab.params import count

DOC = Path(__file__).resolve().parents[2] / "docs" / "params.md"
BLOCK = re.compile(r"```text\n(\$ peftlab params [^\n]*)\n(.*?)```", re.S)
TABLE_ROW = re.compile(r"^\| `([^`]+)`(?: \(packaged\))? \| [^|]+ \| ([\d,]+) \|$", re.M)
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d+\.\d+%")


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text())


def run_block(command: str, folder) -> str:
    """The command's output on a folder holding the model's config.json, written back with the hub id."""
    args = shlex.split(command)[2:]  # drop "$ peftlab"
    hub = args[args.index("--model") + 1]
    where = folder(hub)
    args[args.index("--model") + 1] = where
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return out.getvalue().replace(f"source: local {where}", f"source: hub {hub}").replace(where, hub)


def test_the_doc_has_the_four_worked_examples():
    commands = [c for c, _ in blocks()]
    assert len(commands) == 4
    assert any(
        "vit-base-patch16-224-in21k" in c and "--method lora" in c and "--lora-r 8" in c for c in commands
    )
    assert any("vit-base-patch16-224-in21k" in c and "--method last-layer" in c for c in commands)
    assert any("roberta-base" in c and "--method full" in c for c in commands)
    assert any("roberta-base" in c and "--method lora" in c for c in commands)


@pytest.mark.parametrize("index", range(4))
def test_each_worked_example_is_the_commands_output(index, folder):
    command, shown = blocks()[index]
    assert run_block(command, folder).rstrip("\n").splitlines() == shown.rstrip("\n").splitlines()


def table() -> list[tuple[str, int]]:
    return [(name, int(n.replace(",", ""))) for name, n in TABLE_ROW.findall(DOC.read_text())]


@pytest.mark.parametrize("row", range(9))
def test_base_size_table(row, folder):
    name, backbone = table()[row]
    if name in PACKAGED_MODELS:
        if not PACKAGED_MODELS[name].available():
            pytest.skip(f"{name}: its package is not installed")
        where = name
    else:
        where = folder(name)
    result = count(where, "full", num_labels=3)
    head = next(r for r in result["breakdown"] if r["component"] == "head")
    assert result["match"] is True
    assert result["total"] - head["params"] == backbone


def test_every_count_on_the_page_comes_from_a_checked_output(folder):
    produced = set()
    for command, _ in blocks():
        produced |= set(NUMBER.findall(run_block(command, folder)))
    produced |= {f"{n:,}" for _, n in table()}
    written = set(NUMBER.findall(DOC.read_text()))
    assert written - produced == set()
