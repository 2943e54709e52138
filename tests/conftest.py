"""Shared test set-up: no network, quiet tokenizers, tiny models built from configs for every architecture family.

Fixtures here are plain factories; each test module builds what it needs (on CPU or the meta device).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
