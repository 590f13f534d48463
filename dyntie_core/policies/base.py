"""What a tie policy is, and the narrow view of the training loop it gets.

A policy gives the initial map and, before every training step, may return a new one.
It sees the loop only through ``PolicyHost`` (the step, the current map, the loss of a
batch, and a way to emit events), so policies never import the loop and tests can drive
them with a fake host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from ..config import MethodConfig
from ..events import Event
from ..tying import TieMap


class PolicyHost(Protocol):
    """What a policy may use from the training loop (a ``Trainer`` provides it)."""

    step: int

    @property
    def tie_map(self) -> TieMap: ...

    def batch_loss(self, split: str, generator: torch.Generator) -> float:
        """Cross-entropy of the model (eval mode) on one random batch of ``split``."""
        ...

    def emit(self, event: Event) -> None: ...

    @property
    def total_steps(self) -> int:
        """The run's step budget (progressive policies schedule against it)."""
        ...

    def root_weights(self) -> dict[int, torch.Tensor]:
        """Each root block's parameters flattened into one detached vector, keyed by the root's position."""
        ...

    def untie_gradient_norms(self) -> dict[int, float]:
        """For each tied position, the norm of the gradient its weights would get if it were independent."""
        ...

    def tie_losses(self, tie_maps: Sequence[Sequence[int]]) -> list[float]:
        """The loss of one probe batch under each candidate map (the model itself is not changed)."""
        ...

    def mixture_dominants(self) -> dict[int, int]:
        """Soft sharing (``relax=mix``): each mixing position's dominant root."""
        ...


class TiePolicy(Protocol):
    """The four methods every policy has. Three hooks are optional, so that a policy written for one experiment
    stays four methods long; the loop looks for them by name:

    - ``needs_relax: str``: the ``GPTConfig.relax`` the policy needs (soft sharing needs ``"mix"``); the trainer
      refuses any other model at construction.
    - ``mix_temperature(step, total_steps) -> float``: the mixture temperature for this step, set on every rank.
    - ``configure(k_steps=None, epsilon=None)``: live changes from the dashboard (the DLT agent).
    """

    name: str

    def initial_tie_map(self, n_layer: int) -> TieMap: ...

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        """Called before training step ``step`` (0-based); return a map to switch to, or None."""
        ...

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-serialisable state and tensors, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    """One entry of the method registry.

    ``n_unique``: "required" (the method needs a unique-block count; a comparison's default
    ``--n-unique`` applies), "checked" (the method fixes its own count; a given one must
    agree) or "none" (giving one is an error: it would have no effect).
    ``agent``: whether ``MethodConfig.agent`` configures it (and so belongs in its run label);
    ``progressive``: the same for ``MethodConfig.progressive``.
    """

    name: str
    build: Callable[[MethodConfig, int, int], TiePolicy]
    help: str
    n_unique: Literal["required", "checked", "none"] = "none"
    agent: bool = False
    progressive: bool = False
