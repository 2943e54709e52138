"""docs/plan.md is produced by the command: every `$ peftlab ...` block on it is re-run (CPU times from the stored
calibration docs/plan-calibration.json, GPU times from the datasheet table) and compared line by line, and the page
holds the reference experiments' plans on this machine and on a named GPU."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plan.md"
BLOCK = re.compile(r"```text\n\$ peftlab ((?:plan|compare)[^\n]*)\n(.*?)```", re.S)


def _tool():
    spec = importlib.util.spec_from_file_location("plan_doc", ROOT / "tools" / "plan_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def folder(tool):
    return tool._folders()


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text())


def test_the_page_plans_the_reference_experiments_here_and_on_a_gpu():
    commands = [c for c, _ in blocks()]
    vit = [c for c in commands if "vit-base-patch16-224-in21k" in c and "food101" in c]
    text = [c for c in commands if "roberta-base" in c and "TinyBERT" in c and "tweet_eval:sentiment" in c]
    assert any(
        "baseline,lora,last-layer" in c and "--lora-r 8" in c and "--lora-target query,value" in c
        for c in vit
    )
    assert any("full,lora" in c for c in text)
    for group in (vit, text):
        assert any("--calibration docs/plan-calibration.json" in c for c in group)  # this machine
        assert any("--accelerator h100-sxm" in c for c in group)  # a named GPU, estimated
    assert all("--epochs 3" in c for c in vit + text)


@pytest.mark.parametrize("index", range(5))
def test_each_block_is_the_commands_output(index, tool, folder):
    command, shown = blocks()[index]
    assert tool.run(command, folder).splitlines() == shown.rstrip("\n").splitlines()


def test_the_accelerator_table_is_the_code_s(tool):
    assert tool.accelerator_table() in DOC.read_text()
