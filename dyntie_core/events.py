"""Events the training loop emits, and the bus that delivers them.

The loop never knows who is watching: the CLI progress bar, the JSONL logger and the
dashboard all subscribe to the same bus (minGPT's callback idea, made explicit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepEvent:
    step: int  # steps completed
    loss: float
    lr: float


@dataclass(frozen=True)
class EvalEvent:
    step: int
    record: dict[str, Any]  # the metrics.jsonl row


@dataclass(frozen=True)
class TieChangeEvent:
    """A tie-map change. ``loss_before``/``loss_after``: the validation probe batch's loss just before and
    after the switch (``TrainConfig.probe_transitions``), i.e. what the transition itself cost."""

    step: int
    old: tuple[int, ...]
    new: tuple[int, ...]
    reason: str
    unique_blocks: int
    trainable_params: int
    loss_before: float | None = None
    loss_after: float | None = None


@dataclass(frozen=True)
class DecisionEvent:
    """A tie policy's decision (the agent's block, action, reward, ...), logged as given."""

    step: int
    record: dict[str, Any]


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str
    kind: str  # "periodic", "last" or "best"


@dataclass(frozen=True)
class EndEvent:
    step: int
    summary: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


Event = StepEvent | EvalEvent | TieChangeEvent | DecisionEvent | CheckpointEvent | EndEvent
Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def emit(self, event: Event) -> None:
        for fn in list(self._subscribers):
            fn(event)
