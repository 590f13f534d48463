"""Tie policies: who decides the tie map, and when.

One registry maps method names to builders: the fixed schemes, ``random-fixed`` and
``manual`` (``fixed.py``), the DLT agent ``dlt`` with its control ``random``
(``dlt.py``), and ``shrink`` and ``grow``, progressive tying without RL (``progressive.py``), and ``soft``, soft sharing
hardened late (``soft.py``). To add
a policy: write a class with the ``TiePolicy`` methods and add a
``MethodSpec`` for it to a ``SPECS`` tuple listed below.
"""

from __future__ import annotations

from ..config import MethodConfig
from . import dlt, fixed, progressive, soft
from .base import MethodSpec, PolicyHost, TiePolicy
from .dlt import DLTAgent, QNetwork, slice_start
from .fixed import FixedPolicy, ManualPolicy

METHODS: dict[str, MethodSpec] = {spec.name: spec
                                  for spec in (*fixed.SPECS, *dlt.SPECS, *progressive.SPECS, *soft.SPECS)}


def available_methods() -> list[str]:
    return sorted(METHODS)


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(available_methods())}") from None


def check_method(method: MethodConfig) -> MethodSpec:
    """Reject a method config whose settings would be silently ignored, or that lacks a count it needs."""
    spec = method_spec(method.name)
    if spec.n_unique == "required" and method.n_unique is None:
        raise ValueError(f"method {method.name!r} needs n_unique (the number of unique blocks; --n-unique N)")
    if spec.n_unique == "none" and method.n_unique is not None:
        raise ValueError(f"method {method.name!r} does not take n_unique (it would have no effect); "
                         f"methods that do: {', '.join(n for n, s in METHODS.items() if s.n_unique != 'none')}")
    if method.progressive.adjacent and method.name != "shrink":
        raise ValueError(f"progressive.adjacent applies to shrink only; {method.name!r} would ignore it")
    return spec


def make_policy(method: MethodConfig, n_layer: int, seed: int = 0) -> TiePolicy:
    """Build the tie policy a method config names."""
    return check_method(method).build(method, n_layer, seed)


__all__ = ["METHODS", "DLTAgent", "FixedPolicy", "ManualPolicy", "MethodSpec", "PolicyHost", "QNetwork", "TiePolicy",
           "available_methods", "check_method", "make_policy", "method_spec", "slice_start"]
