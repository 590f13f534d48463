"""Tie semantics (METHOD.md section 3): the stack of blocks a tie map describes.

``TiedStack`` holds one block per *root* of the tie map, keyed by the root's position,
and runs position i with its root's block. A tied position owns no tensors, so tying
really frees memory. How a tied position uses its root's weights is the tie mode:

- ``follow`` (the authors' code): the root's tensors enter position i as constants
  (detached), so no weight gradient is computed there: that is where the speed-up
  comes from; only the root's own position trains them.
- ``share`` (ALBERT-style): position i runs the root's parameters themselves, and
  gradients from every position add up in the root.

The blocks themselves are plain transformer blocks (``model.py``); this module only
decides which block runs where, with which tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.func import functional_call

from .tying import TieMap, resolve_roots, validate_tie_map


@dataclass(frozen=True)
class TieChange:
    """What a tie-map change did: the optimizer must forget ``released`` and learn ``created``.
    ``sources``: (created parameter, the parameter it was copied from) pairs, for carrying optimizer state."""

    old: TieMap
    new: TieMap
    created: tuple[nn.Parameter, ...]
    released: tuple[nn.Parameter, ...]
    sources: tuple[tuple[nn.Parameter, nn.Parameter], ...] = ()

    @property
    def changed(self) -> bool:
        return self.old != self.new


class TiedStack(nn.ModuleDict):
    """The transformer's blocks under a tie map; ``stack(x)`` runs every position in order.

    ``make_block`` builds a freshly initialised block. Blocks are built in position order
    whatever the map, so a root at position r starts from the same weights as block r of
    a vanilla model built with the same seed.
    """

    def __init__(self, n_layer: int, make_block: Callable[[], nn.Module], tie_map: Iterable[int],
                 tie_mode: str = "follow") -> None:
        tmap = validate_tie_map(tie_map, n_layer)
        roots = resolve_roots(tmap)
        blocks = {}
        for i in range(n_layer):
            block = make_block()
            if roots[i] == i:
                blocks[str(i)] = block
        super().__init__(blocks)
        self.n_layer = n_layer
        self.tie_mode = tie_mode
        self.tie_map: TieMap = tmap
        self.roots: TieMap = roots

    def block_at(self, position: int) -> nn.Module:
        """The block whose weights run at ``position``."""
        return self[str(self.roots[position])]

    def forward(self, x: torch.Tensor, overrides: Mapping[str, Mapping[str, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        """Run every position. ``overrides``: tensors of tied positions (keyed by position) that replace the
        root's tensors of the same names there (relaxed ties: a position's own LayerNorms; probes)."""
        follow = self.tie_mode == "follow"
        for i, r in enumerate(self.roots):
            block = self[str(r)]
            own = overrides.get(str(i)) if r != i and overrides is not None else None
            if r != i and (follow or own is not None):
                params = {name: p.detach() if follow else p for name, p in block.named_parameters()}
                if own is not None:
                    params.update(own)
                x = functional_call(block, params, (x,))
            else:
                x = block(x)
        return x

    def set_tie_map(self, tie_map: Iterable[int]) -> TieChange:
        """Switch to a new tie map.

        A block that becomes independent starts from a copy of the weights it was running
        (its old root's current weights); a block that becomes tied releases its tensors.
        Pass the returned ``TieChange`` to ``sync_optimizer`` so optimizer state follows.
        """
        new = validate_tie_map(tie_map, self.n_layer)
        old = self.tie_map
        new_roots = resolve_roots(new)
        keep = {str(r) for r in set(new_roots)}
        created: dict[str, nn.Module] = {}
        sources: list[tuple[nn.Parameter, nn.Parameter]] = []
        for key in sorted(keep - set(self.keys()), key=int):
            source = self[str(self.roots[int(key)])]
            block = copy.deepcopy(source)
            for p in block.parameters():
                p.grad = None
            created[key] = block
            sources += zip(block.parameters(), source.parameters(), strict=True)
        released = tuple(p for key, blk in self.items() if key not in keep for p in blk.parameters())
        for p in released:
            p.grad = None
        survivors = {k: b for k, b in self.items() if k in keep} | created
        self.clear()
        self.update({k: survivors[k] for k in sorted(survivors, key=int)})
        self.tie_map, self.roots = new, new_roots
        return TieChange(old=old, new=new, created=tuple(p for b in created.values() for p in b.parameters()),
                         released=released, sources=tuple(sources))
