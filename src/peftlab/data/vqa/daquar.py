"""DAQUAR in its original release format: qa.*.train.txt / qa.*.test.txt (question and answer lines alternating)
and images/imageN.png. `load_daquar_folder(folder)` -> Found.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from peftlab.data.vqa.types import Found, VQASplit, check_files, file_images, first_answers, index_images
from peftlab.errors import BadInput

DAQUAR_IMAGE = re.compile(r"\bimage(\d+)\b")


def read_daquar_qa(path: Path) -> list[tuple[str, str, str]]:
    """qa.*.txt: question lines ("what is on the table in the image1 ?") alternating with answer lines ->
    (question without the image number, raw answer, image name)."""
    lines = [
        (n, s.strip()) for n, s in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if s.strip()
    ]
    rows = []
    for i in range(0, len(lines), 2):
        n, q = lines[i]
        found = DAQUAR_IMAGE.search(q)
        if found is None:
            raise BadInput(
                f"{path} line {n}: expected a DAQUAR question naming its image (imageN), got {q!r}"
            )
        if i + 1 >= len(lines) or lines[i + 1][1].endswith("?") or DAQUAR_IMAGE.search(lines[i + 1][1]):
            raise BadInput(
                f"{path} line {n}: question without an answer; DAQUAR files alternate question and answer lines: "
                "give the file with answers (qa.*.train.txt / qa.*.test.txt)"
            )
        question = re.sub(
            r"\s+\?$", "?", DAQUAR_IMAGE.sub("image", q)
        )  # the image number is an id, not content
        rows.append((question, lines[i + 1][1], f"image{found.group(1)}"))
    return rows


def daquar_files(folder: Path) -> tuple[Path, Path] | None:
    # prefer the full set (qa.894.*) over the reduced one (qa.37.*) when both are there
    trains = sorted(folder.glob("qa.*train*.txt"), key=lambda p: ("894" not in p.name, p.name))
    for train in trains:
        test = train.with_name(train.name.replace("train", "test"))
        if test.is_file():
            return train, test
    return None


def _daquar_image_dir(folder: Path) -> Path:
    for d in (folder / "images", folder / "nyu_depth_images", folder):
        if d.is_dir() and any(d.glob("image*.png")):
            return d
    return folder / "images"


def _daquar_split(path: Path, image_dir: Path, notes: list[str]) -> VQASplit:
    rows = read_daquar_qa(path)
    names, index = index_images([r[2] for r in rows])
    paths = [image_dir / f"{n}.png" for n in names]
    first_q = {int(j): i for i, j in reversed(list(enumerate(index)))}
    check_files(
        paths, [f"asked about by question {first_q[m] + 1} of {path.name}" for m in range(len(paths))]
    )
    return VQASplit(
        [r[0] for r in rows], first_answers([r[1] for r in rows], notes), index, file_images(paths)
    )


def load_daquar_folder(folder: Path, train_file: Path | None = None) -> Found:
    """DAQUAR's own release: qa.*.train.txt + qa.*.test.txt (the given train file, else the full 894-class set)."""
    if train_file is not None:
        test_file = train_file.with_name(train_file.name.replace("train", "test"))
        if not test_file.is_file():
            raise BadInput(f"--dataset {train_file}: its eval file {test_file.name} is not beside it")
    else:
        train_file, test_file = daquar_files(folder)
    image_dir = _daquar_image_dir(folder)
    notes = [f"DAQUAR files {train_file.name} / {test_file.name}; 'imageN' in questions replaced by 'image'"]
    train = _daquar_split(train_file, image_dir, notes)
    return Found(
        train,
        _daquar_split(test_file, image_dir, notes),
        f"local DAQUAR {folder}",
        notes,
        file_identity(train_file, test_file),
    )


def file_identity(*paths: Path) -> str:
    # where + what: the question files' paths and a hash of their bytes
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return f"{[str(p.resolve()) for p in paths]} sha256 {h.hexdigest()[:16]}"
