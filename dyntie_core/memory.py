"""Memory meter: model-state memory predicted from config + tie map, and measured.

Components are reported separately (METHOD.md section 6): parameters (unique storage),
gradients, optimizer state, activations, plus on CUDA the peak and the paper's
between-step ``memory_allocated`` figure. Tying shrinks the first three; it cannot
shrink activations, since every position still runs forward and backward.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .config import GPTConfig
from .optim import optimizer_state_bytes
from .relax import relaxation_numel, relaxation_tensor_count
from .tying import _unique_tensors, unique_blocks


@dataclass
class MemoryBreakdown:
    """Bytes per component. ``None`` where a figure does not apply (e.g. CUDA stats on CPU)."""

    params: int
    grads: int
    optimizer: int
    activations: int | None = None
    cuda_allocated: int | None = None
    cuda_peak: int | None = None
    cuda_reserved: int | None = None
    rss_peak: int | None = None

    @property
    def model_state(self) -> int:
        """Parameters + gradients + optimizer state: what tying can shrink."""
        return self.params + self.grads + self.optimizer

    def to_dict(self) -> dict[str, int | None]:
        return {**asdict(self), "model_state": self.model_state}


def block_param_count(config: GPTConfig) -> int:
    """Elements in one transformer block (two LayerNorms, attention, MLP)."""
    c, b = config.n_embd, int(config.bias)
    ln = c * (1 + b)
    attn = c * 3 * c + b * 3 * c + c * c + b * c
    mlp = c * 4 * c + b * 4 * c + 4 * c * c + b * c
    return 2 * ln + attn + mlp


def block_tensor_count(config: GPTConfig) -> int:
    """Parameter tensors per block (each gets its own AdamW step counter)."""
    return 12 if config.bias else 6


def predict_memory(config: GPTConfig, tie_map: Sequence[int], batch_size: int | None = None,
                   bytes_per_element: int = 4, optimizer: str = "adamw",
                   activation_bytes: int | None = None) -> MemoryBreakdown:
    """Analytic memory after a training step: the floor a leak-free implementation reaches.

    Parameters count the embeddings, final norm and unique blocks once each; gradients and
    AdamW moments (two per element, plus a 4-byte step counter per tensor) cover the same
    trainable set. ``activations`` is a rough estimate for float32 pre-LN blocks without
    dropout (tensors saved for backward), given ``batch_size``; it does not depend on the map.
    ``activation_bytes``: bytes per saved activation element (2 under bf16 autocast; default: as weights).
    """
    n_unique = unique_blocks(tie_map)
    c, v, t = config.n_embd, config.vocab_size, config.block_size
    ln_numel = c * (1 + int(config.bias))
    tied = len(tie_map) - n_unique  # each may hold a relaxed tie's own tensors (relax.py)
    numel = v * c + t * c + ln_numel + n_unique * block_param_count(config) + tied * relaxation_numel(config)
    tensors = (2 + (2 if config.bias else 1) + n_unique * block_tensor_count(config)
               + tied * relaxation_tensor_count(config))
    params = numel * bytes_per_element
    if optimizer != "adamw":
        raise ValueError(f"only 'adamw' is modelled, got {optimizer!r}")
    opt = 2 * numel * bytes_per_element + 4 * tensors
    activations = None
    if batch_size is not None:
        tokens = batch_size * t
        per_block = tokens * c * 16 + tokens * config.n_head + tokens * 4  # saved inputs, attention lse, norm stats
        head = tokens * c * 3 + tokens * v * 2  # embedding sum, final norm, logits and log-softmax
        activations = (config.n_layer * per_block + head) * (activation_bytes or bytes_per_element)
    return MemoryBreakdown(params=params, grads=params, optimizer=opt, activations=activations)


def measure_memory(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> MemoryBreakdown:
    """Measured bytes of live tensors: parameters (unique storage), gradients, optimizer state.

    On CUDA it also records ``memory_allocated`` now (the paper's figure when called
    between steps) and the allocator's peak; everywhere, the process's peak RSS.
    """
    params = _unique_tensors(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    grads = _unique_tensors(p.grad for p in params if p.grad is not None)
    grad_bytes = sum(g.numel() * g.element_size() for g in grads)
    opt_bytes = optimizer_state_bytes(optimizer) if optimizer is not None else 0
    breakdown = MemoryBreakdown(params=param_bytes, grads=grad_bytes, optimizer=opt_bytes, rss_peak=peak_rss_bytes())
    device = params[0].device if params else torch.device("cpu")
    if device.type == "cuda":
        add_cuda_figures(breakdown, torch.cuda.memory_allocated(device), torch.cuda.max_memory_allocated(device),
                         torch.cuda.memory_reserved(device))
    return breakdown


def add_cuda_figures(breakdown: MemoryBreakdown, allocated: int, peak: int, reserved: int) -> MemoryBreakdown:
    """The allocator's figures: ``allocated`` now (between steps: the paper's number), the ``peak`` since the
    run started (the trainer resets it), ``reserved`` by the caching allocator; activations are the peak
    minus the model state, i.e. what the forward and backward added on top of it."""
    breakdown.cuda_allocated, breakdown.cuda_peak, breakdown.cuda_reserved = allocated, peak, reserved
    breakdown.activations = max(0, peak - breakdown.model_state)
    return breakdown


def measure_activations(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> int:
    """Bytes of tensors autograd saves for backward in one forward pass (excluding parameters).

    Uses ``saved_tensors_hooks``, so it works on CPU, where allocator statistics do not exist.
    """
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs and ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(idx, targets)
    del loss
    return total


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
