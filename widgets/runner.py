"""Run a Trainer in a background thread so a notebook stays responsive.

The front end cannot reach the kernel while a cell is busy (ipywidgets#1349), so the
loop runs in its own thread. Every change a user asks for (forced ties, the step
budget, the agent's K and epsilon) travels through one command queue and is applied
by the training thread between steps (or at once while paused), so the loop never
races with the front end. Stop always ends in ``Trainer.finish()``: a consistent run
directory and a last checkpoint. A crash is kept in ``error`` and reported to the
``when_failed`` callbacks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from dyntie_core import Trainer, apply_action

Command = Callable[[Trainer], None]


class BackgroundRun:
    """Start, pause, resume and stop a ``Trainer``; queue commands for the next step boundary."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._commands: queue.Queue[Command] = queue.Queue()
        self._lock = threading.Lock()
        self._ended = False
        self._on_done: list[Callable[[dict[str, Any]], None]] = []
        self._on_failed: list[Callable[[BaseException], None]] = []
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
        apply_action(self.trainer.model.tie_map, block, target)  # validates target now, in the caller's thread
        self._commands.put(lambda t: t.apply_tie_map(apply_action(t.model.tie_map, block, target), reason="forced"))

    def set_steps(self, steps: int) -> None:
        """Change the step budget (never below the steps already done)."""
        self._commands.put(lambda t: t.set_step_budget(steps))

    def set_agent(self, k_steps: int | None = None, epsilon: float | None = None) -> None:
        """Change the agent's K or its current epsilon (ignored for policies without them)."""
        configure = getattr(self.trainer.policy, "configure", None)
        if configure is None:
            return
        if epsilon is not None and not 0.0 <= float(epsilon) <= 1.0:  # checked here, not in the training thread
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if k_steps is not None and int(k_steps) < 1:
            raise ValueError(f"K must be >= 1, got {k_steps}")
        self._commands.put(lambda t: configure(k_steps=k_steps, epsilon=epsilon))

    def when_done(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(summary)`` once the run has finished (at once if it already has; never if it failed)."""
        with self._lock:
            if not self._ended:
                self._on_done.append(fn)
                return
        if self.error is None and self.summary is not None:
            fn(self.summary)

    def when_failed(self, fn: Callable[[BaseException], None]) -> None:
        """Call ``fn(error)`` if training raises (at once if it already has)."""
        with self._lock:
            if not self._ended:
                self._on_failed.append(fn)
                return
        if self.error is not None:
            fn(self.error)

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
    def apply_commands(self) -> None:
        """Apply queued commands (the training thread calls this between steps)."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command(self.trainer)

    def _loop(self) -> None:
        summary, error = None, None
        try:
            while not self.trainer.done and not self._stop.is_set():
                while not self._running.wait(0.05):
                    self.apply_commands()  # a forced tie shows at once, even while paused
                self.apply_commands()
                if self._stop.is_set() or self.trainer.done:
                    break
                self.trainer.train(max_steps=1)
            summary = self.trainer.finish()
        except BaseException as exc:  # reported by wait(), when_failed and the dashboard's status line
            error = exc
        with self._lock:
            self.summary, self.error, self._ended = summary, error, True
            callbacks: list[Any] = list(self._on_done) if error is None else list(self._on_failed)
        for fn in callbacks:
            fn(summary if error is None else error)
