"""docs/methods.md is what tools/methods_doc.py writes from the registry and `peftlab params`: every registered method
has its section, and every number on the page is re-computed here (predicted = measured on the meta device)."""

import importlib.util
from pathlib import Path

from peftlab.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("methods_doc", ROOT / "tools" / "methods_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_method_has_its_section():
    text = (ROOT / "docs" / "methods.md").read_text()
    for name in REGISTRY:
        assert f"## `{name}`" in text, f"docs/methods.md has no section for {name}: run tools/methods_doc.py"


def test_the_page_is_what_the_tool_writes(folder):
    written = (ROOT / "docs" / "methods.md").read_text()
    assert _tool().render(folder) == written, (
        "docs/methods.md is out of date: run .venv/bin/python tools/methods_doc.py"
    )
    assert "MISMATCH" not in written
