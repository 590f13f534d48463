"""Scoring a model on token data: deterministic evaluation and one-batch losses."""

from __future__ import annotations

import torch
import torch.nn as nn

from .data import eval_windows, sample_windows


@torch.no_grad()
def evaluate(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int,
             max_tokens: int | None = None, device: torch.device | str = "cpu") -> float:
    """Mean token cross-entropy on contiguous windows from the start of ``tokens`` (eval mode, no dropout),
    so numbers are comparable across methods and a resumed run reproduces an uninterrupted one."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in eval_windows(tokens, block_size, batch_size, max_tokens):
        _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


@torch.no_grad()
def batch_loss(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int,
               generator: torch.Generator, device: torch.device | str = "cpu") -> float:
    """Cross-entropy (eval mode) on one random batch drawn with ``generator`` (the agent's reward)."""
    x, y = sample_windows(tokens, batch_size, block_size, generator)
    was_training = model.training
    model.eval()
    _, loss = model(x.to(device), y.to(device))
    model.train(was_training)
    return float(loss)
