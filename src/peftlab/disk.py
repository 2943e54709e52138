"""The disk, checked before work starts and written so that a full disk or a kill never leaves a half-written file.

- `check_writable(folder, flag)` and `check_free(folder, need_bytes, flag)` run before training (bad input, exit 2);
- `atomic_write(path, write)` writes to `<name>.tmp<pid>` beside the target and renames it into place, removing the
  temporary file when writing fails (a full disk leaves the old file or none, never a truncated one);
- `reserve(path, nbytes)` makes a file of its full size up front (posix_fallocate), so a memory-mapped cache cannot
  run out of disk halfway (on Linux that is a SIGBUS, not an exception);
- `temp_name(prefix)` / `sweep_stale(folder, prefix)`: temporary names carry the writer's pid, so what a killed process
  left behind is recognised (its pid is gone) and removed by the next process that looks there.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

from peftlab.errors import BadInput

MiB = 2**20
FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def check_writable(folder: Path, flag: str) -> None:
    """The folder exists or can be made, and a file can be written in it; else one line of bad input."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".peftlab-write-check-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        what = (
            "set PEFTLAB_CACHE to a writable folder"
            if "PEFTLAB_CACHE" in flag
            else "choose a writable folder"
        )
        raise BadInput(f"{flag} {folder}: cannot write there ({why_not(folder, e)}); {what}") from None


def why_not(folder: Path, e: OSError) -> str:
    """Why a folder could not be made: a file standing where a folder must be (named), else the OS's reason."""
    folder = Path(folder)
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    return f"{blocking} is a file, not a folder" if blocking is not None else e.strerror


def free_bytes(folder: Path) -> int:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:  # the nearest existing parent is on the same disk
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_free(folder: Path, need_bytes: int, flag: str, what: str) -> None:
    """At least `need_bytes` free where `folder` lives; else one line of bad input that names the sizes."""
    free = free_bytes(folder)
    if free < need_bytes:
        raise BadInput(
            f"{flag} {folder}: {free / MiB:,.1f} MiB free, {what} needs about {need_bytes / MiB:,.1f} MiB; "
            "free some space or choose another folder"
        )


def is_full(e: BaseException | None) -> bool:
    """A write failed because the disk (or the user's quota) is full: an OSError with ENOSPC / EDQUOT, anywhere in
    the exception's chain, or a library's own error that carries the OS message (safetensors raises
    `SafetensorError: ... IoError(Os { code: 28, ... })`)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in FULL:
            return True
        text = str(e)
        if (
            any(f"os error {n})" in text or f"code: {n}," in text for n in FULL)
            or os.strerror(errno.ENOSPC) in text
        ):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def temp_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}"


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename over `path`; on any failure the temporary file is removed and the error raised."""
    path = Path(path)
    tmp = path.with_name(temp_name(f"{path.name}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic on one filesystem: readers see the old file or the new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def reserve(path: str | Path, nbytes: int) -> None:
    """Create `path` with `nbytes` allocated on disk (ENOSPC now, as an OSError, instead of SIGBUS later)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if nbytes:
            os.posix_fallocate(fd, 0, nbytes)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove `folder/<prefix><pid>...` entries whose writer process is gone; returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        rest = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        if not digits or int(digits) == os.getpid() or _alive(int(digits)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
