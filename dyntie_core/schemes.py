"""Fixed sharing schemes as tie maps (METHOD.md section 5; Takase & Kiyono 2021), and the
random fixed maps that control for the agent and for the contiguous shape.

Each function returns a tie map in which every entry points straight at a root, so
its output is already chain-free. To add a scheme: a builder here, its name in
``SCHEMES`` (and ``NEEDS_N_UNIQUE`` if it takes a unique-block count); the policy
registry picks it up.
"""

from __future__ import annotations

import math

import torch

from .tying import TieMap, identity_map, validate_tie_map

SCHEMES = {
    "vanilla": "every block independent",
    "all-shared": "every block runs block 0 (ALBERT)",
    "sequence": "runs of L/n_unique layers share a block (AABBCC)",
    "cycle": "layer i runs block i mod n_unique (ABCABC)",
    "cycle-rev": "cycle, with the last round in reverse order (ABCCBA)",
    "mirror": "first half independent, second half mirrors it",
    "sandwich": "first and last block independent, the middle cycles over n_unique - 2 blocks (Subformer, "
                "Mixture-of-Recursions)",
}
NEEDS_N_UNIQUE = ("sequence", "cycle", "cycle-rev", "sandwich")


def _sequence(n_layer: int, m: int) -> list[int]:
    if n_layer % m:
        raise ValueError(f"sequence needs n_layer ({n_layer}) divisible by n_unique ({m})")
    run = n_layer // m
    return [(i // run) * run for i in range(n_layer)]


def _cycle(n_layer: int, m: int) -> list[int]:
    return [i % m for i in range(n_layer)]


def _cycle_rev(n_layer: int, m: int) -> list[int]:
    head = m * (math.ceil(n_layer / m) - 1)
    return [i % m if i < head else m - 1 - ((i - head) % m) for i in range(n_layer)]


def _sandwich(n_layer: int, m: int) -> list[int]:
    if n_layer <= 2:
        if m != n_layer:
            raise ValueError(f"sandwich with n_layer={n_layer} has {n_layer} unique blocks, not n_unique={m}")
        return list(range(n_layer))
    if m < 3:
        raise ValueError(f"sandwich needs n_unique >= 3 (first, last, and at least one middle block), got {m}")
    return [0, *(1 + (i % (m - 2)) for i in range(n_layer - 2)), n_layer - 1]


def _mirror(n_layer: int) -> list[int]:
    return [i if 2 * i < n_layer else n_layer - 1 - i for i in range(n_layer)]


def make_tie_map(name: str, n_layer: int, n_unique: int | None = None) -> TieMap:
    """The tie map of a named scheme for ``n_layer`` blocks and ``n_unique`` unique blocks.

    ``sequence`` (AABBCC), ``cycle`` (ABCABC) and ``cycle-rev`` (ABCCBA) need ``n_unique``;
    ``vanilla``, ``all-shared`` and ``mirror`` fix their own count.
    """
    if not isinstance(n_layer, int) or n_layer < 1:
        raise ValueError(f"n_layer must be a positive int, got {n_layer!r}")
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; choose from {', '.join(SCHEMES)}")
    if name in NEEDS_N_UNIQUE:
        if n_unique is None:
            raise ValueError(f"scheme {name!r} needs n_unique (the number of unique blocks)")
        if not isinstance(n_unique, int) or not 1 <= n_unique <= n_layer:
            raise ValueError(f"n_unique must be an int in [1, {n_layer}], got {n_unique!r}")
    fixed = {"vanilla": n_layer, "all-shared": 1, "mirror": math.ceil(n_layer / 2)}
    if name in fixed and n_unique is not None and n_unique != fixed[name]:
        raise ValueError(f"scheme {name!r} has {fixed[name]} unique blocks for n_layer={n_layer}, "
                         f"not n_unique={n_unique}")
    builders = {
        "vanilla": lambda: list(identity_map(n_layer)),
        "all-shared": lambda: [0] * n_layer,
        "sequence": lambda: _sequence(n_layer, n_unique),
        "cycle": lambda: _cycle(n_layer, n_unique),
        "cycle-rev": lambda: _cycle_rev(n_layer, n_unique),
        "mirror": lambda: _mirror(n_layer),
        "sandwich": lambda: _sandwich(n_layer, n_unique),
    }
    return validate_tie_map(builders[name](), n_layer)


def _random_roots(n_layer: int, n_unique: int, g: torch.Generator) -> list[int]:
    """Block 0 plus ``n_unique - 1`` distinct blocks drawn uniformly from the rest, sorted: the one draw
    both random maps start from, so at the same seed they have the same roots."""
    if not 1 <= n_unique <= n_layer:
        raise ValueError(f"n_unique must be in [1, {n_layer}], got {n_unique}")
    return sorted([0, *(torch.randperm(n_layer - 1, generator=g)[: n_unique - 1] + 1).tolist()])


def random_tie_map(n_layer: int, n_unique: int, seed: int) -> TieMap:
    """A random map with exactly ``n_unique`` roots: block 0 plus ``n_unique - 1`` random blocks;
    every other block ties to a uniformly chosen earlier root."""
    g = torch.Generator().manual_seed(seed)
    roots = _random_roots(n_layer, n_unique, g)
    tie = []
    for i in range(n_layer):
        if i in roots:
            tie.append(i)
        else:
            earlier = [r for r in roots if r < i]
            tie.append(earlier[int(torch.randint(0, len(earlier), (), generator=g))])
    return validate_tie_map(tie, n_layer)


def random_contiguous_tie_map(n_layer: int, n_unique: int, seed: int) -> TieMap:
    """A random map of ``n_unique`` contiguous groups, each run by its first position.

    The group starts are ``random_tie_map``'s roots at the same seed (the two are paired), a uniform draw
    of ``n_unique - 1`` of the ``n_layer - 1`` gaps, so every composition of ``n_layer`` into ``n_unique``
    groups is equally likely. It separates "the map is contiguous" (as ``sequence`` and shrink's final
    maps are) from "the groups have equal sizes".
    """
    roots = _random_roots(n_layer, n_unique, torch.Generator().manual_seed(seed))
    return validate_tie_map([max(r for r in roots if r <= i) for i in range(n_layer)], n_layer)
