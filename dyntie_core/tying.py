"""The tie map: validation, roots, and parameter accounting.

``tie[i] == i`` means block i is independent; ``tie[i] == j < i`` means block i runs
with block j's weights. Chains are legal; the weights a block runs are those of its
root, found by following the chain (METHOD.md section 2).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TieMap = tuple[int, ...]


def validate_tie_map(tie_map: Iterable[object], n_layer: int) -> TieMap:
    """Return ``tie_map`` as a tuple of ints, or raise ``ValueError`` naming the offending position.

    A valid map has length ``n_layer`` and ``0 <= tie[i] <= i`` for every i; in particular
    block 0 is independent. Booleans and non-integral numbers are rejected.
    """
    if isinstance(tie_map, (str, bytes)):
        raise ValueError(f"tie map must be a sequence of ints, got a string {tie_map!r}")
    try:
        items = list(tie_map)
    except TypeError:
        raise ValueError(f"tie map must be a sequence of ints, got {type(tie_map).__name__}") from None
    if len(items) != n_layer:
        raise ValueError(f"tie map has length {len(items)} but the model has {n_layer} blocks")
    result: list[int] = []
    for i, value in enumerate(items):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"tie map position {i}: expected an int, got {value!r} ({type(value).__name__})")
        j = int(value)
        if j < 0:
            raise ValueError(f"tie map position {i}: negative target {j}")
        if i == 0 and j != 0:
            raise ValueError(f"tie map position 0: block 0 is always independent, got target {j}")
        if j > i:
            raise ValueError(f"tie map position {i}: target {j} is not an earlier block (must be <= {i})")
        result.append(j)
    return tuple(result)


def resolve_roots(tie_map: Sequence[int]) -> TieMap:
    """For each block, the independent block whose weights it runs (chains followed)."""
    roots: list[int] = []
    for i, j in enumerate(tie_map):
        roots.append(i if j == i else roots[j])
    return tuple(roots)


def unique_blocks(tie_map: Sequence[int]) -> int:
    """Number of independent blocks (roots) in a valid map."""
    return sum(1 for i, j in enumerate(tie_map) if i == j)


def identity_map(n_layer: int) -> TieMap:
    """Every block independent (vanilla training)."""
    return tuple(range(n_layer))


def apply_action(tie_map: Sequence[int], block: int, action: int) -> TieMap:
    """The map after one decision: action j < block ties ``block`` to j; action == block unties it."""
    if not 0 <= action <= block:
        raise ValueError(f"action {action} is not valid for block {block} (0..{block})")
    new = list(tie_map)
    new[block] = action
    return tuple(new)


def _unique_tensors(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Drop tensors whose storage was already seen: aliased storage is one tensor's worth of memory."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), str(t.device))
        if t.numel() == 0 or key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts by unique storage.

    Keys: ``total`` (unique parameter elements held), ``trainable`` (those that receive
    optimizer updates), ``unique_blocks``, ``per_block``, ``embedding`` (token + position),
    ``vanilla_equivalent`` (what the same shape holds with no tying), ``relaxation`` (relaxed ties' own
    parameters, included in ``total`` and ``trainable``).
    """
    params = _unique_tensors(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    counts = {"total": total, "trainable": trainable}
    per_block = getattr(model, "block_numel", None)
    tie_map = getattr(model, "tie_map", None)
    if per_block is not None and tie_map is not None:
        n_unique = unique_blocks(tie_map)
        relaxation = int(getattr(model, "relaxation_numel", 0))
        counts.update(
            unique_blocks=n_unique,
            per_block=int(per_block),
            embedding=int(model.embedding_numel),  # type: ignore[attr-defined]
            vanilla_equivalent=total - relaxation + (len(tie_map) - n_unique) * int(per_block),
            relaxation=relaxation,
        )
    return counts
