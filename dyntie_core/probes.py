"""Measurements of a tied model that progressive policies decide by (``shrink``, ``grow``).

They read the model and never change it: no optimizer step, no gradient left on a parameter.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from .model import TiedGPT


def root_weights(model: TiedGPT) -> dict[int, torch.Tensor]:
    """Each root block's parameters flattened into one detached vector, keyed by the root's position."""
    return {int(key): torch.cat([p.detach().reshape(-1) for p in block.parameters()])
            for key, block in model.blocks.items()}


def untie_gradient_norms(model: TiedGPT, x: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    """For each tied position, the norm of the gradient its weights would get on batch ``(x, y)`` if it were
    independent: the tensors it runs now (its root's, with its relaxation) become free copies for one
    forward and backward in eval mode."""
    tied = [i for i, r in enumerate(model.roots) if r != i]
    if not tied:
        return {}
    own = {str(i): {n: t.requires_grad_(True) for n, t in model.running_tensors(i).items()} for i in tied}
    was_training = model.training
    model.eval()
    try:
        _, loss = model(x, y, overrides=own)
        grads = torch.autograd.grad(loss, [t for i in tied for t in own[str(i)].values()], allow_unused=True)
    finally:
        model.train(was_training)
    norms, k = {}, 0
    for i in tied:
        squares = [g.float().pow(2).sum() for g in grads[k:k + len(own[str(i)])] if g is not None]
        k += len(own[str(i)])
        norms[i] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return norms


@torch.no_grad()
def tie_losses(model: TiedGPT, tie_maps: Sequence[Sequence[int]], x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The loss on batch ``(x, y)`` (eval mode) that the model would have under each candidate tie map, each
    applied as a tie change (relaxations included) to a throwaway copy, so the model itself never changes."""
    losses = []
    for tie_map in tie_maps:
        trial = copy.deepcopy(model)
        trial.set_tie_map(tie_map)
        trial.eval()
        losses.append(float(trial(x, y)[1]))
    return losses
