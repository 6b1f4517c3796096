"""mfctl's CPU fixes for MindFormers' own ``run_mindformer.py`` (launcher 'mindformers' on CPU).

Shipped in the job bundle as ``bundle/cpu_site/sitecustomize.py`` beside a copy of
``cpu_compat.py``; the node launch script puts that folder on PYTHONPATH only when the job's
config targets the CPU. Python imports ``sitecustomize`` at start-up in every process msrun starts
(scheduler and workers), so upstream's script, which mfctl does not change, gets the same fixes
as mfctl's own entry (``train.py``):

- before ``build_context``: the CPU config values (``cpu_compat.fix_config``), and a refusal of
  layouts CPU cannot compile (``cpu_compat.cpu_parallel_problem``);
- after it, in workers: the loss-scale overflow check routed to the inf/nan mode and, distributed,
  the barrier CPU lacks (``cpu_compat.patch_overflow_check`` / ``patch_barrier``). Both run before
  the trainer compiles the train step, as in ``train.py``.

How: an import hook wraps ``build_context`` in ``mindformers.core.context.build_context`` right
after that module runs, before any other module (``mindformers/__init__``, run_mindformer.py)
binds the name. Nothing is imported at start-up: a process that never imports MindFormers
(msrun itself, any other python) pays nothing and sees no change.

Standard library, mindspore and mindformers only (never ``mfctl``). This file shadows any other
``sitecustomize`` on the path, so it runs the next one it finds (Debian's, say) at the end.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_TARGET = "mindformers.core.context.build_context"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _log(message: str) -> None:
    try:
        from mindformers.tools.logger import logger

        logger.info(f"mfctl CPU site: {message}")
    except Exception:  # a log line must never stop training
        print(f"mfctl CPU site: {message}", file=sys.stderr)


def _wrap_build_context(module) -> None:
    original = module.build_context

    def build_context(config, *args, **kwargs):
        import cpu_compat

        context = config.get("context") or {}
        if cpu_compat.is_cpu(context.get("device_target")):
            problem = cpu_compat.cpu_parallel_problem(config)
            if problem:
                raise SystemExit(f"mfctl CPU site: {problem}")
            for change in cpu_compat.fix_config(config):
                _log(change)
        ctx = original(config, *args, **kwargs)
        import mindspore

        if os.environ.get("MS_ROLE") != "MS_SCHED" and cpu_compat.is_cpu(mindspore.get_context("device_target")):
            if cpu_compat.patch_overflow_check():
                _log("loss-scale overflow check routed to the inf/nan (IsFinite) mode")
            if config.get("use_parallel"):
                patched = cpu_compat.patch_barrier()
                if patched:
                    _log("barrier is a no-op in " + ", ".join(patched))
        return ctx

    build_context.__doc__ = original.__doc__
    build_context.__wrapped__ = original
    module.build_context = build_context


class _Loader(importlib.abc.Loader):
    """The module's own loader, plus the wrap once the module has run."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        self._inner.exec_module(module)
        _wrap_build_context(module)

    def __getattr__(self, name):  # get_source, get_filename, ...: the inner loader's
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
