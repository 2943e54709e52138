"""docs/methods.md is what tools/methods_doc.py writes from the registry and `peftlab params`: every registered method
has its section, and every number on the page is re-computed here (predicted = measured on the meta device)."""

import importlib.util
import re
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


def _versions_out(text: str) -> str:
    """The page quotes the library versions a refusal was found under ("PEFT 0.21.2 ... transformers 5.24.0"): a newer
    patch release installed by a fresh set-up must not make the page out of date."""
    return re.sub(r"\b(PEFT|peft|transformers|torch) \d+\.\d+(\.\d+)?\S*", r"\1 <version>", text)


def test_the_page_is_what_the_tool_writes(folder):
    written = (ROOT / "docs" / "methods.md").read_text()
    assert _versions_out(_tool().render(folder)) == _versions_out(written), (
        "docs/methods.md is out of date: run .venv/bin/python tools/methods_doc.py"
    )
    assert "MISMATCH" not in written
