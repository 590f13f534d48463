"""AdamW that follows the tie map.

Built once, then reconciled with the model after every tie change: released tensors
lose their parameter slot and Adam moments (so memory really falls), newly independent
blocks join with fresh state (so they really train). See PITFALLS.md: an optimizer built
once over ``requires_grad`` parameters silently never trains blocks untied later.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from .config import TrainConfig


def _wants_decay(p: torch.Tensor) -> bool:
    """Matrices (linear weights, embeddings) decay; biases and norm gains do not (nanoGPT's rule)."""
    return p.dim() >= 2


def _group_kind(name: str, p: torch.Tensor) -> str:
    """``decay``, ``no_decay``, or ``mix`` (soft sharing's mixture logits: no decay, their own learning rate)."""
    if name.startswith("relax.") and name.endswith(".logits"):
        return "mix"
    return "decay" if _wants_decay(p) else "no_decay"


def configure_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW with three groups: decayed matrices, the rest, and mixture logits at ``train.mix_lr_scale`` x the
    learning rate (the loop sets ``lr = schedule x lr_scale`` in every group at every step)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    settings = {"decay": (train.weight_decay, 1.0), "no_decay": (0.0, 1.0), "mix": (0.0, train.mix_lr_scale)}
    groups = [{"params": [p for n, p in named if _group_kind(n, p) == kind], "weight_decay": decay,
               "lr_scale": scale, "kind": kind} for kind, (decay, scale) in settings.items()]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), foreach=True)


def sync_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> tuple[int, int]:
    """Make the optimizer's parameters exactly the model's trainable parameters.

    Returns ``(added, removed)`` counts of parameter tensors. Idempotent.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    wanted = [p for _, p in named]
    wanted_ids = {id(p) for p in wanted}
    removed = 0
    held: set[int] = set()
    for group in optimizer.param_groups:
        kept = []
        for p in group["params"]:
            if id(p) in wanted_ids:
                kept.append(p)
                held.add(id(p))
            else:
                optimizer.state.pop(p, None)
                p.grad = None
                removed += 1
        group["params"] = kept
    added = 0
    for name, p in named:
        if id(p) in held:
            continue
        group = next(g for g in optimizer.param_groups if g["kind"] == _group_kind(name, p))
        group["params"].append(p)
        optimizer.state.pop(p, None)  # fresh Adam moments, created lazily at the next step
        added += 1
    return added, removed


def carry_state(optimizer: torch.optim.Optimizer, pairs: Iterable[tuple[torch.Tensor, dict | None]]) -> int:
    """Give each new parameter a copy of a source's optimizer state (moments and step count), read before
    ``sync_optimizer`` dropped released sources. Returns how many parameters received state."""
    carried = 0
    for new, state in pairs:
        if state:
            optimizer.state[new] = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            carried += 1
    return carried


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by optimizer state tensors (Adam moments and step counters)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def optimizer_state_tensors(optimizer: torch.optim.Optimizer,
                            named_params: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as ``{"<param name>/<key>": tensor}`` (for checkpoints)."""
    out: dict[str, torch.Tensor] = {}
    for name, p in named_params:
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                out[f"{name}/{key}"] = value
    return out


def load_optimizer_state(optimizer: torch.optim.Optimizer, named_params: Iterable[tuple[str, torch.Tensor]],
                         tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of ``optimizer_state_tensors``: replaces the state of every named parameter."""
    by_param: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, field = key.rpartition("/")
        by_param.setdefault(name, {})[field] = value
    optimizer.state.clear()
    for name, p in named_params:
        if name in by_param:
            optimizer.state[p] = {k: v.to(p.device) for k, v in by_param[name].items()}
