"""How many threads label_tools' own parallel parts use (forest prediction blocks, OpenCV's filters).

In a process of its own (the command line) that is every core. Inside a Dask worker it is the
worker's thread count: a local cluster of N single-threaded workers on N cores, or workers started
with ``dask worker --nthreads T``, then run N x T tasks at once, each on its share, instead of every
task spreading over all cores and the processes crowding each other out.
"""
from __future__ import annotations

import os

_budget: int | None = None


def budget() -> int:
    """Threads a parallel step may use (>= 1)."""
    return _budget or os.cpu_count() or 1


def set_budget(n: int | None):
    """Use ``n`` threads from now on in this process (None: every core); OpenCV's pool follows."""
    global _budget
    import cv2

    _budget = None if n is None else max(1, int(n))
    cv2.setNumThreads(budget() if _budget is not None else -1)


def match_dask_worker():
    """Inside a Dask worker: use that worker's thread count. Elsewhere: nothing changes."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return
    n = getattr(getattr(w, "state", None), "nthreads", None) or getattr(w, "nthreads", None)
    if n and n != _budget:
        set_budget(n)
