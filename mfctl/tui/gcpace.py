"""When the garbage collector's full collections run in a process the dashboard owns (``mfctl watch``).

Once the first poll with ranks is on screen, the heap is collected and frozen (``gc.freeze()``): the
imports, widgets and the state caught up so far live as long as the app, and a full collection
walking them held the event loop ~30 ms of CPU (100-250 ms on a loaded machine) every few seconds
at 1024 ranks (bench/live.py).

From then on full collections no longer start whenever the allocation counts say so, often in
the middle of a frame (at 1024 ranks each took ~25-35 ms, and a frame holding one 50-60 ms): the app
runs one every ``FULL_GC_EVERY`` polls, half a refresh interval after a poll, when nothing else is
due. Every 3 polls each finds less garbage (~5,000 objects instead of ~15,000 every 10) and takes
~12-20 ms. Young collections stay automatic (a few ms each). When the app unmounts, the process's
thresholds are put back (``watch`` may return to a caller; tests build many apps).
"""

from __future__ import annotations

import gc

FULL_GC_EVERY = 3
_NO_AUTO_FULL_GC = 1 << 30  # a third threshold no count reaches: no automatic full collection


class GcPacer:
    """The app's side: ``take_over()`` once, ``polled()`` after each poll (True: run a full
    collection soon, while idle), ``release()`` when the app goes."""

    def __init__(self) -> None:
        self._thresholds: tuple[int, int, int] | None = None
        self.polls = 0

    def take_over(self) -> None:
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], _NO_AUTO_FULL_GC)

    def polled(self) -> bool:
        if self._thresholds is None:
            return False
        self.polls += 1
        return self.polls % FULL_GC_EVERY == 0

    def release(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
