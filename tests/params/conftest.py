"""Fixture `folder(name)`: a folder holding only config.json, for a tiny family or a base model (params_configs.py).

That folder is exactly what `peftlab params` must work from: no weights, no tokenizer, no hub.
"""

import json

import pytest
from params_configs import BASE, TINY


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """folder(name) -> a folder with only config.json, for a TINY family or a BASE hub id."""
    made: dict[str, str] = {}

    def make(name: str, sentence_transformers: bool = False) -> str:
        key = f"{name}|st" if sentence_transformers else name
        if key not in made:
            path = tmp_path_factory.mktemp(key.replace("/", "_").replace("|", "_"))
            (path / "config.json").write_text(json.dumps(TINY.get(name) or BASE[name]))
            if (
                sentence_transformers
            ):  # modules.json marks a sentence-transformers folder: pooling auto -> mean
                (path / "modules.json").write_text(
                    json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}])
                )
            made[key] = str(path)
        return made[key]

    return make
