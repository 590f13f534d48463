"""Progressive tying without RL: ``shrink`` and ``grow``, baselines the paper lacks (issue 9, hypothesis 6).

- ``shrink``: every block trains independently for the first part of the run, then one pair of roots at a
  time is tied, the later block to the earlier, choosing the pair whose weights are most alike (cosine
  similarity of all the block's parameters) or, with ``criterion="loss"``, the pair whose tie raises a
  training probe batch's loss least (every pair is tried on a copy of the model), until ``n_unique`` roots
  remain. With ``adjacent``, only neighbouring groups are candidates, so every map stays contiguous.
- ``grow``: every block starts tied to block 0; one position at a time becomes independent (from the weights
  it was running), choosing the tied position whose weights would receive the largest gradient on a probe
  batch, until ``n_unique`` roots exist.

The changes are evenly spaced between ``ProgressiveConfig.start`` and ``end`` (fractions of the budget). The
policies keep no state: the changes due by a step are read off the current map, so resuming is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import MethodConfig, ProgressiveConfig
from ..tying import TieMap, identity_map, resolve_roots, unique_blocks
from .base import MethodSpec, PolicyHost


def tie_steps(n_ties: int, total_steps: int, cfg: ProgressiveConfig) -> list[int]:
    """The steps before which the 1st, 2nd, ... tie happens: evenly spaced over [start, end] of the budget."""
    if n_ties <= 0:
        return []
    first, last = cfg.start * total_steps, cfg.end * total_steps
    if n_ties == 1:
        return [round(first)]
    return [round(first + (last - first) * k / (n_ties - 1)) for k in range(n_ties)]


def candidate_pairs(roots: Sequence[int], adjacent: bool = False) -> list[tuple[int, int]]:
    """The pairs of roots ``(keep, drop)``, ``keep < drop``, that a shrink step may tie: every pair, or with
    ``adjacent`` only the groups that meet at a position boundary (which keeps a contiguous map contiguous)."""
    if adjacent:
        return sorted({(min(a, b), max(a, b)) for a, b in zip(roots, roots[1:], strict=False) if a != b})
    distinct = sorted(set(roots))
    return [(a, b) for a in distinct for b in distinct if a < b]


def most_similar_pair(weights: dict[int, torch.Tensor],
                      pairs: Sequence[tuple[int, int]] | None = None) -> tuple[int, int]:
    """The roots ``(i, j)``, ``i < j``, whose flattened weights have the largest cosine similarity, among ``pairs``
    (default: every pair of ``weights``' roots); equal similarities go to the first pair."""
    roots = sorted(weights)
    pairs = list(pairs) if pairs is not None else candidate_pairs(roots)
    if len(roots) < 2 or not pairs:
        raise ValueError("need at least two roots to tie a pair")
    stacked = torch.stack([weights[r].float() for r in roots])
    unit = stacked / stacked.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = unit @ unit.T
    index = {r: k for k, r in enumerate(roots)}
    scores = [float(sim[index[a], index[b]]) for a, b in pairs]
    return pairs[max(range(len(pairs)), key=lambda k: (scores[k], -k))]


def cheapest_pair(roots: Sequence[int], tie_losses: Callable[[list[list[int]]], list[float]],
                  adjacent: bool = False) -> tuple[int, int]:
    """The roots ``(keep, drop)``, ``keep < drop``, whose tie gives the lowest of ``tie_losses`` (candidate maps ->
    their losses), every candidate pair tried (``candidate_pairs``); equal losses go to the first pair."""
    pairs = candidate_pairs(roots, adjacent)
    losses = tie_losses([[a if r == b else r for r in roots] for a, b in pairs])
    return pairs[min(range(len(pairs)), key=lambda k: (losses[k], pairs[k]))]


class _ProgressivePolicy:
    """What shrink and grow share: a target unique-block count, a schedule, and no state of their own."""

    name = "progressive"

    def __init__(self, n_layer: int, n_unique: int, config: ProgressiveConfig) -> None:
        if not isinstance(n_unique, int) or not 1 <= n_unique <= n_layer:
            raise ValueError(f"{self.name} needs n_unique in [1, {n_layer}], got {n_unique!r}")
        self.n_layer, self.n_unique, self.config = n_layer, n_unique, config

    def _overdue(self, step: int, host: PolicyHost, n_changes: int, done: int) -> int:
        """How many of the ``n_changes`` scheduled changes are due by ``step`` and not yet made."""
        due = sum(1 for s in tie_steps(n_changes, host.total_steps, self.config) if s <= step)
        return max(0, due - done)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        pass


class ShrinkPolicy(_ProgressivePolicy):
    """Vanilla first; then tie the most similar pair of roots at each scheduled step until ``n_unique`` remain."""

    name = "shrink"

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return identity_map(n_layer)

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        overdue = self._overdue(step, host, self.n_layer - self.n_unique, self.n_layer - unique_blocks(host.tie_map))
        if not overdue:
            return None
        roots = list(resolve_roots(host.tie_map))
        for _ in range(overdue):
            keep, drop = self._pair(roots, host)
            roots = [keep if r == drop else r for r in roots]
        return roots

    def _pair(self, roots: list[int], host: PolicyHost) -> tuple[int, int]:
        """The pair of roots ``(keep, drop)`` to tie next, by the configured criterion."""
        if self.config.criterion == "cosine":
            weights = host.root_weights()
            return most_similar_pair({r: weights[r] for r in set(roots)}, candidate_pairs(roots, self.config.adjacent))
        return cheapest_pair(roots, host.tie_losses, self.config.adjacent)


class GrowPolicy(_ProgressivePolicy):
    """All positions run block 0; untie the position with the largest would-be gradient at each scheduled step."""

    name = "grow"

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return tuple([0] * n_layer)

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        overdue = self._overdue(step, host, self.n_unique - 1, unique_blocks(host.tie_map) - 1)
        if not overdue:
            return None
        roots = list(resolve_roots(host.tie_map))
        norms = host.untie_gradient_norms()
        for position in sorted(norms, key=lambda i: (-norms[i], i))[:overdue]:
            roots[position] = position
        return roots


def scheduled_builder(cls: type[_ProgressivePolicy]) -> Callable[[MethodConfig, int, int], Any]:
    """The registry's builder for a policy of ``n_unique`` blocks scheduled by ``MethodConfig.progressive``
    (its spec says n_unique="required", which ``check_method`` enforces before any build)."""
    def build(method: MethodConfig, n_layer: int, seed: int) -> _ProgressivePolicy:
        assert method.n_unique is not None, "check_method requires n_unique"
        return cls(n_layer, method.n_unique, method.progressive)
    return build


SPECS = (
    MethodSpec("shrink", scheduled_builder(ShrinkPolicy),
               "start independent, tie a pair of blocks (the most alike, or with criterion=loss the cheapest tie) "
               "at evenly spaced steps until n_unique remain (settings: MethodConfig.progressive)",
               n_unique="required", progressive=True),
    MethodSpec("grow", scheduled_builder(GrowPolicy),
               "start with every block tied to block 0, untie the position with the largest would-be "
               "gradient at evenly spaced steps until n_unique exist (settings: MethodConfig.progressive)",
               n_unique="required", progressive=True),
)
