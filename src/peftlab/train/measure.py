"""Wall-clock timing and peak memory of a piece of work, for the run record: the process's peak, and the work's own.

`with PeakMemory() as mem, Timer() as t: ...` then `t.seconds`, `mem.peak_mb` (the process), `mem.own_peak_mb` (above
the level the process was at when the work began), `mem.peak_gpu_mb` (the torch allocator's peak, on a GPU);
`mem.section()` gives them as the record's `memory` fields.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time

import psutil


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim), so that RSS measures what is
    live: without it an earlier run's freed tensors stay in the process's RSS and hide the next run's own peak."""
    gc.collect()
    # not glibc (macOS, musl): no malloc_trim, and RSS then includes the allocator's free pages
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak RSS (MiB) of this process while the block runs, sampled every 20 ms by a daemon thread (ru_maxrss would
    report the whole process's lifetime peak, wrong for the second run in one process), the level it started from
    (after releasing freed memory) and, with CUDA, the torch allocator's peak above its level at the start."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self.peak_gpu_mb: float | None = None
        self._cuda_start = 0
        self._proc = psutil.Process()
        self._stop = threading.Event()

    @property
    def own_peak_mb(self) -> float:
        """The work's own peak: the process's peak above its level when the work began (MiB)."""
        return max(self.peak_mb - self.start_mb, 0.0)

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        self.start_mb = self._proc.memory_info().rss / 2**20
        self._cuda_begin()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._cuda_end()

    def _cuda_begin(self) -> None:
        import sys

        torch = sys.modules.get("torch")  # only when torch is loaded: measuring never imports it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()

    def _cuda_end(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
            self.peak_gpu_mb = (torch.cuda.max_memory_allocated() - self._cuda_start) / 2**20

    def section(self) -> dict:
        """The record's memory fields (MiB, one decimal)."""
        out = {
            "peak_rss_mb": round(self.peak_mb, 1),
            "run_peak_mb": round(self.own_peak_mb, 1),
            "start_rss_mb": round(self.start_mb, 1),
        }
        if self.peak_gpu_mb is not None:
            out["peak_gpu_mb"] = round(self.peak_gpu_mb, 1)
        return out
