"""Wall-clock timing and peak resident memory of a piece of work, for the run record.

`with PeakMemory() as mem, Timer() as t: ...` then `t.seconds`, `mem.peak_mb`.
"""

from __future__ import annotations

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


class PeakMemory:
    """Peak RSS (MiB) of this process while the block runs, sampled every 20 ms by a daemon thread
    (ru_maxrss would report the whole process's lifetime peak, wrong for the second run in one process)."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._proc = psutil.Process()
        self._stop = threading.Event()

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
