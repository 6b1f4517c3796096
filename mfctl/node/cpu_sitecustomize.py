"""What MindFormers' own ``run_mindformer.py`` needs at run time on CPU (launcher 'mindformers').

Shipped in the job bundle as ``bundle/cpu_site/sitecustomize.py`` beside a copy of
``cpu_train.py``; the node launch script puts that folder on PYTHONPATH only when the job's config
targets the CPU. Python imports ``sitecustomize`` at start-up in every process msrun starts
(scheduler and workers), so upstream's script, which mfctl does not change, trains like mfctl's
own entry (``train.py``).

The config needs nothing here: mfctl renders it CPU-ready on the controller (``cpu_compat``
values, ``runner_wrapper.type`` naming mfctl's CPU train cell, a layout CPU cannot run refused
before anything starts). What is left must happen in the worker, before the trainer builds the
train cell, and needs MindFormers loaded:

- register the CPU train cell with MindFormers' registry (``cpu_train.register_wrapper``, the
  public ``MindFormerRegister.register_cls``), so that ``runner_wrapper.type`` finds it;
- in a distributed worker, route the deprecated barrier CPU lacks to MindSpore's CPU-capable one
  (``cpu_train.route_barrier``, which says why no setting avoids it).

How: an import hook that lets Python load the ``mindformers`` package exactly as it would, then
runs those two steps once the package has finished executing (its ``__init__`` imports the trainer,
the wrappers and the registry). It changes nothing in any module it loads. Nothing is imported at
start-up: a process that never imports MindFormers (msrun itself, any other python) pays nothing.

Standard library only at import (never ``mfctl``). This file shadows any other ``sitecustomize``
on the path, so it runs the next one it finds (Debian's, say) at the end.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_TARGET = "mindformers"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _log(message: str) -> None:
    try:
        from mindformers.tools.logger import logger

        logger.info(f"mfctl CPU site: {message}")
    except Exception:  # a log line must never stop training
        print(f"mfctl CPU site: {message}", file=sys.stderr)


def _distributed_worker() -> bool:
    """A worker of a job with more than one (msrun's environment), not the scheduler."""
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        return False
    try:
        return int(os.environ.get("MS_WORKER_NUM") or os.environ.get("RANK_SIZE") or 1) > 1
    except ValueError:
        return False


def after_mindformers_loaded() -> None:
    """The two run-time steps, once the ``mindformers`` package is loaded."""
    import cpu_train

    cpu_train.register_wrapper()
    _log(f"runner_wrapper {cpu_train.WRAPPER_NAME} registered (loss-scale overflow check by IsFinite)")
    if _distributed_worker():
        routed = cpu_train.route_barrier()
        if routed:
            _log("barrier of " + ", ".join(routed) + " is mindspore.ops.communication.barrier")


class _Loader(importlib.abc.Loader):
    """The package's own loader, then ``after_mindformers_loaded``."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        self._inner.exec_module(module)
        after_mindformers_loaded()

    def __getattr__(self, name):  # get_source, get_filename, get_resource_reader...: the inner loader's
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _run_next_sitecustomize() -> None:
    for entry in sys.path:
        folder = os.path.abspath(entry or os.curdir)
        candidate = os.path.join(folder, "sitecustomize.py")
        if folder == _HERE or not os.path.isfile(candidate):
            continue
        spec = importlib.util.spec_from_file_location("_mfctl_next_sitecustomize", candidate)
        if spec is not None and spec.loader is not None:
            try:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            except Exception:  # as site.py does: a broken sitecustomize is skipped
                pass
        return


sys.meta_path.insert(0, _Finder())
_run_next_sitecustomize()
