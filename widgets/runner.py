"""Run a Trainer in a background thread so a notebook stays responsive.

The front end cannot reach the kernel while a cell is busy (ipywidgets#1349), so the
loop runs in its own thread and takes commands (pause, resume, stop, forced ties)
between steps. Stop always ends in ``Trainer.finish()``: a consistent run directory
and a last checkpoint.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from dyntie_core.agent import apply_action
from dyntie_core.loop import Trainer


class BackgroundRun:
    """Start, pause, resume and stop a ``Trainer``; queue forced ties for the next step boundary."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._forced: queue.Queue[tuple[int, int]] = queue.Queue()
        self._on_done: list[Callable[[dict[str, Any]], None]] = []
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    # ---- commands (any thread) -------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this run was already started")
        self._thread = threading.Thread(target=self._loop, name="dyntie-train", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self.trainer.request_stop()
        self._running.set()

    def force_tie(self, block: int, target: int) -> None:
        """Tie ``block`` to ``target`` (``target == block``: make it independent) at the next step boundary."""
        n_layer = self.trainer.config.model.n_layer
        if not 1 <= block < n_layer:
            raise ValueError(f"block must be in 1..{n_layer - 1}, got {block}")
        apply_action(self.trainer.model.tie_map, block, target)  # validates target
        self._forced.put((block, target))

    def when_done(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(summary)`` on the training thread once the run has finished."""
        if self.summary is not None:
            fn(self.summary)
        else:
            self._on_done.append(fn)

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.summary

    # ---- state ----------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the loop (training thread) --------------------------------------------------
    def _apply_forced(self) -> None:
        while not self._forced.empty():
            block, target = self._forced.get_nowait()
            new = apply_action(self.trainer.model.tie_map, block, target)
            self.trainer.apply_tie_map(new, reason="forced")

    def _loop(self) -> None:
        try:
            while not self.trainer.done and not self._stop.is_set():
                while not self._running.wait(0.05):
                    self._apply_forced()  # a forced tie shows at once, even while paused
                self._apply_forced()
                if self._stop.is_set():
                    break
                self.trainer.train(max_steps=1)
            self.summary = self.trainer.finish()
            for fn in self._on_done:
                fn(self.summary)
        except BaseException as exc:  # surfaced by wait() and the dashboard's status line
            self.error = exc
