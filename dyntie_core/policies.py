"""Tie policies: who decides the tie map, and when.

A policy gives the initial map and, before every training step, may return a new one.
Methods: ``vanilla``, the fixed schemes, ``manual`` (a schedule), and from ``agent``:
``dlt`` (the Q-learning agent), ``random`` (its control: epsilon 1 forever) and
``random-fixed`` (one random map with a given number of unique blocks, held throughout).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from .config import MethodConfig
from .schemes import SCHEMES, make_tie_map
from .tying import TieMap, validate_tie_map

AGENT_METHODS = ("dlt", "random", "random-fixed")

if TYPE_CHECKING:
    from .loop import Trainer


class TiePolicy(Protocol):
    name: str

    def initial_tie_map(self, n_layer: int) -> TieMap: ...

    def on_step(self, step: int, trainer: Trainer) -> Sequence[int] | None:
        """Called before training step ``step`` (0-based); return a map to switch to, or None."""
        ...

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-serialisable state and tensors, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


class FixedPolicy:
    """One tie map for the whole run (vanilla and the fixed schemes)."""

    def __init__(self, name: str, tie_map: Sequence[int]) -> None:
        self.name = name
        self.tie_map = tuple(tie_map)

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return validate_tie_map(self.tie_map, n_layer)

    def on_step(self, step: int, trainer: Trainer) -> Sequence[int] | None:
        return None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"tie_map": list(self.tie_map)}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.tie_map = tuple(state["tie_map"])


class ManualPolicy:
    """A schedule of (step, tie map): the map switches before the given step."""

    name = "manual"

    def __init__(self, schedule: Sequence[Sequence[Any]], n_layer: int) -> None:
        if not schedule:
            raise ValueError("manual schedule is empty: give at least one (step, tie map) pair")
        parsed: list[tuple[int, TieMap]] = []
        for k, entry in enumerate(schedule):
            if len(entry) != 2 or not isinstance(entry[0], int) or entry[0] < 0:
                raise ValueError(f"manual schedule entry {k}: expected (step >= 0, tie map), got {entry!r}")
            try:
                parsed.append((entry[0], validate_tie_map(entry[1], n_layer)))
            except ValueError as exc:
                raise ValueError(f"manual schedule entry {k} (step {entry[0]}): {exc}") from None
        steps = [s for s, _ in parsed]
        if steps != sorted(set(steps)):
            raise ValueError(f"manual schedule steps must be strictly increasing, got {steps}")
        if steps[0] != 0:
            parsed.insert(0, (0, tuple(range(n_layer))))
        self.schedule = parsed

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return self.schedule[0][1]

    def on_step(self, step: int, trainer: Trainer) -> Sequence[int] | None:
        for s, tie_map in self.schedule:
            if s == step and step > 0:
                return tie_map
        return None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        pass


def available_methods() -> list[str]:
    return sorted(set(SCHEMES) | {"manual"} | set(AGENT_METHODS))


def make_policy(method: MethodConfig, n_layer: int, seed: int = 0) -> TiePolicy:
    """Build the tie policy a method config names."""
    if method.name in AGENT_METHODS:
        from .agent import AgentConfig, DLTAgent, random_tie_map

        if method.name == "random-fixed":
            if method.n_unique is None:
                raise ValueError("random-fixed needs n_unique (the number of unique blocks to draw)")
            return FixedPolicy("random-fixed", random_tie_map(n_layer, method.n_unique, seed))
        agent_cfg = AgentConfig.from_dict(method.options)
        if method.name == "random":  # the control: same actions and schedule, epsilon 1 forever, no learning
            agent_cfg = dataclasses.replace(agent_cfg, epsilon_start=1.0, epsilon_decay=1.0, epsilon_min=1.0,
                                            learn=False)
        return DLTAgent(n_layer, agent_cfg, seed=seed, name=method.name)
    if method.name in SCHEMES:
        return FixedPolicy(method.name, make_tie_map(method.name, n_layer, method.n_unique))
    if method.name == "manual":
        return ManualPolicy(method.schedule or [], n_layer)
    raise ValueError(f"unknown method {method.name!r}; choose from {', '.join(available_methods())}")
