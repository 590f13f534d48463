"""Policies whose maps are known in advance: fixed schemes, the random maps, and manual schedules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import MethodConfig
from ..schemes import NEEDS_N_UNIQUE, SCHEMES, make_tie_map, random_contiguous_tie_map, random_tie_map
from ..tying import TieMap, identity_map, validate_tie_map
from .base import MethodSpec, PolicyHost


class FixedPolicy:
    """One tie map for the whole run (vanilla, the fixed schemes, random-fixed)."""

    def __init__(self, name: str, tie_map: Sequence[int]) -> None:
        self.name = name
        self.tie_map = tuple(tie_map)

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return validate_tie_map(self.tie_map, n_layer)

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
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
            parsed.insert(0, (0, identity_map(n_layer)))
        self.schedule = parsed

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return self.schedule[0][1]

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        for s, tie_map in self.schedule:
            if s == step and step > 0:
                return tie_map
        return None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        pass


def _scheme_spec(name: str) -> MethodSpec:
    def build(method: MethodConfig, n_layer: int, seed: int) -> FixedPolicy:
        return FixedPolicy(name, make_tie_map(name, n_layer, method.n_unique))

    return MethodSpec(name, build, SCHEMES[name],
                      n_unique="required" if name in NEEDS_N_UNIQUE else "checked")


def _random_spec(name: str, draw: Callable[[int, int, int], TieMap], description: str) -> MethodSpec:
    """A method that draws one random map of n_unique roots from the run's seed and holds it (random-fixed,
    random-contiguous); ``check_method`` enforces the required count before any build."""
    def build(method: MethodConfig, n_layer: int, seed: int) -> FixedPolicy:
        assert method.n_unique is not None, "check_method requires n_unique"
        return FixedPolicy(name, draw(n_layer, method.n_unique, seed))

    return MethodSpec(name, build, description, n_unique="required")


def _manual(method: MethodConfig, n_layer: int, seed: int) -> ManualPolicy:
    return ManualPolicy(method.schedule or [], n_layer)


SPECS = (
    *(_scheme_spec(name) for name in SCHEMES),
    _random_spec("random-fixed", random_tie_map, "one random map with n_unique roots, held throughout (the agent's "
                 "control)"),
    _random_spec("random-contiguous", random_contiguous_tie_map, "one random map of n_unique contiguous groups "
                 "(random sizes), held throughout (the control for the contiguous shape)"),
    MethodSpec("manual", _manual, "a schedule of [step, tie_map] pairs"),
)
