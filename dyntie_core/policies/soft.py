"""Soft sharing, hardened late: ``soft``, a dynamic baseline without RL (issue 9, hypothesis 6).

The first ``n_unique`` blocks are templates and stay independent; every later position runs a learned softmax
mixture of the templates (``GPTConfig.relax="mix"``, ``relax.Mixture``), starting peaked at template
``i mod n_unique``. The temperature is 1 until ``ProgressiveConfig.start``, falls geometrically to
``FINAL_SOFT`` at ``end``, and is 0 (hard) after that. Until the first hard step the tie map follows each
position's dominant template, so the dashboard shows the assignment as it forms; at that step the map is final,
and from then on each position runs exactly its map entry's template (a plain follow tie, plus the mixing).
Templates never change, so the map keeps ``n_unique`` blocks throughout.

The policy keeps no state: the temperature is a function of the step and the map is read off the model, so
resuming is exact. Every rank of a data-parallel job sets the same temperature (``mix_temperature``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import ProgressiveConfig
from ..tying import TieMap
from .base import MethodSpec, PolicyHost
from .progressive import _ProgressivePolicy, scheduled_builder

FINAL_SOFT = 0.05  # the last soft temperature, reached at ProgressiveConfig.end; after it, hard (0)


class SoftPolicy(_ProgressivePolicy):
    """Templates ``0 .. n_unique-1``; the other positions mix them, annealed to hard by ``config.end``."""

    name = "soft"
    needs_relax = "mix"

    def __init__(self, n_layer: int, n_unique: int, config: ProgressiveConfig) -> None:
        if not isinstance(n_unique, int) or not 1 <= n_unique < n_layer:
            raise ValueError(f"soft needs n_unique in [1, {n_layer - 1}] (templates, with positions left to mix "
                             f"them), got {n_unique!r}")
        super().__init__(n_layer, n_unique, config)

    def initial_tie_map(self, n_layer: int) -> TieMap:
        return tuple(i if i < self.n_unique else i % self.n_unique for i in range(n_layer))

    def mix_temperature(self, step: int, total_steps: int) -> float:
        """1 before ``start``; geometric from 1 to ``FINAL_SOFT`` over [start, end); 0 (hard) from ``end`` on."""
        start, end = self.config.start * total_steps, self.config.end * total_steps
        if step >= end:
            return 0.0
        if step <= start:
            return 1.0
        return float(FINAL_SOFT ** ((step - start) / (end - start)))

    def on_step(self, step: int, host: PolicyHost) -> Sequence[int] | None:
        """Follow each position's dominant template until the first hard step; the map is final from then on."""
        if step > 0 and self.mix_temperature(step - 1, host.total_steps) == 0.0:
            return None
        dominants = host.mixture_dominants()
        new = tuple(dominants.get(i, r) for i, r in enumerate(host.tie_map))
        return new if new != tuple(host.tie_map) else None


SPECS = (
    MethodSpec("soft", scheduled_builder(SoftPolicy),
               "soft sharing: blocks 0..n_unique-1 are templates, every later position a learned "
               "mixture of them (needs relax=mix), annealed to hard between the progressive start and end",
               n_unique="required", progressive=True),
)
