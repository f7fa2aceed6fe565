"""Peak resident memory of process trees: a service and every process it started (worker
processes), plus any other roots (a Dask cluster's process and its workers)."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class TreeRss:
    """Samples, every `every` seconds, the summed RSS of each root and all its descendants;
    `peak_mb` is the largest sum seen since start or `reset`.

    >>> rss = TreeRss([service_pid, cluster_pid])  # doctest: +SKIP
    >>> rss.peak_mb  # doctest: +SKIP
    612.5
    """

    def __init__(self, roots: list[int], every: float = 0.05) -> None:
        self._roots = [psutil.Process(pid) for pid in roots]
        self._every = every
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def current(self) -> int:
        total = 0
        for root in self._roots:
            with contextlib.suppress(psutil.Error):
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # it may end while we look
                        total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.current())
            time.sleep(self._every)

    def reset(self) -> None:
        self._peak = self.current()

    @property
    def peak_mb(self) -> float:
        return self._peak / 2**20

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
