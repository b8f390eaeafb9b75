"""Get a Dask worker ready for label_tools' tasks: import what they need before the first one arrives.

A worker unpickles the tasks it is sent on its event-loop thread (a fitted forest in a grid task
imports ``sklearn.ensemble``) while its task thread may be importing the same packages for the task it
runs (the first image task loads a model file). Two threads importing one package whose modules import
each other can be handed a partially initialised module: on a real 2-worker cluster a worker's
scheduler handler died of ``ImportError: cannot import name 'clone' from partially initialized module
'sklearn.base'`` and the worker left the cluster. With everything imported once, before any task, no
import runs in two threads at once.
"""
from __future__ import annotations

import importlib
import pkgutil

from distributed.diagnostics.plugin import WorkerPlugin

#: label_tools modules a worker never needs (the annotator's windows, the command line).
SKIP = ("annotate", "cli")

#: Packages whose objects travel inside tasks, beside label_tools' own.
THIRD_PARTY = ("numpy", "sklearn.ensemble", "sklearn.tree")


def modules() -> list:
    """Names of the modules :class:`Preload` imports, in order."""
    import label_tools

    own = [f"label_tools.{m.name}" for m in pkgutil.iter_modules(label_tools.__path__)
           if not m.name.startswith(SKIP)]
    return list(THIRD_PARTY) + own


class Preload(WorkerPlugin):
    """A worker plugin importing :func:`modules` when it is registered (before the run's first task)."""

    name = "label_tools-preload"

    def setup(self, worker):
        for name in modules():
            importlib.import_module(name)
