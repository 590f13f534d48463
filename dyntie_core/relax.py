"""Relaxed ties (issue 9, hypothesis 3): a tied position runs its root's block with a few tensors of its own.

- ``norms``: the position's own LayerNorm gains and biases (4 x width parameters with biases).
- ``lora``: its own norms plus a rank-r delta ``B @ A`` on each of the block's four weight matrices, as in
  relaxed recursive transformers (about 16 r x width parameters); in follow mode the root's weights are
  constants there and only ``A``, ``B`` and the norms train.

Every relaxation parameter counts as trainable, in parameter counts and in the memory floor. Transitions keep
what they can of the function (``init_from``): a position that becomes tied starts from the norms it was
running and, for ``lora``, a truncated SVD of the difference between the weights it was running and its new
root's; a position that becomes independent starts from exactly what it was running (root + delta, own norms).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import GPTConfig

NORMS = ("ln_1", "ln_2")
LORA_TARGETS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def lora_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of each weight matrix a LoRA relaxation adapts."""
    c = config.n_embd
    return {"attn.c_attn.weight": (3 * c, c), "attn.c_proj.weight": (c, c), "mlp.c_fc.weight": (4 * c, c),
            "mlp.c_proj.weight": (c, 4 * c)}


def relaxation_numel(config: GPTConfig) -> int:
    """Parameters one relaxed tied position adds."""
    if config.relax == "none":
        return 0
    norms = 2 * config.n_embd * (1 + int(config.bias))
    if config.relax == "norms":
        return norms
    return norms + sum(config.relax_rank * (out + inp) for out, inp in lora_shapes(config).values())


def relaxation_tensor_count(config: GPTConfig) -> int:
    """Parameter tensors one relaxed tied position adds (each gets an AdamW step counter)."""
    if config.relax == "none":
        return 0
    return (4 if config.bias else 2) + (2 * len(LORA_TARGETS) if config.relax == "lora" else 0)


class Relaxation(nn.Module):
    """A tied position's own tensors; ``tensors(root)`` gives what replaces the root's at that position."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lora = config.relax == "lora"
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        if self.lora:
            for name, (out, inp) in lora_shapes(config).items():
                key = name.replace(".", "_")
                self.lora_a[key] = nn.Parameter(torch.zeros(config.relax_rank, inp))
                self.lora_b[key] = nn.Parameter(torch.zeros(out, config.relax_rank))

    def tensors(self, root: nn.Module, follow: bool) -> dict[str, torch.Tensor]:
        """Tensors this position runs instead of the root's: its norms and, for LoRA, root weight + B @ A."""
        out = {f"{ln}.{n}": p for ln in NORMS for n, p in getattr(self, ln).named_parameters()}
        if self.lora:
            for name in LORA_TARGETS:
                key = name.replace(".", "_")
                weight = root.get_parameter(name)
                out[name] = (weight.detach() if follow else weight) + self.lora_b[key] @ self.lora_a[key]
        return out

    @torch.no_grad()
    def init_from(self, running: dict[str, torch.Tensor], root: nn.Module) -> Relaxation:
        """Start as close as the budget allows to the tensors the position was ``running``: its norms, and the
        best rank-r approximation of ``running - root`` for each adapted weight. Where they are equal, A starts
        small and random and B at zero (LoRA's usual init, so that gradients flow)."""
        for name, p in self.named_parameters():
            if name.split(".")[0] in NORMS:
                p.copy_(running[name])
        for name in LORA_TARGETS if self.lora else ():
            key = name.replace(".", "_")
            a, b = self.lora_a[key], self.lora_b[key]
            diff = (running[name] - root.get_parameter(name)).float()
            if diff.abs().max() == 0:
                a.copy_(torch.randn(a.shape) * 0.02)
                b.zero_()
                continue
            u, s, vh = torch.linalg.svd(diff, full_matrices=False)
            r = a.shape[0]
            b.copy_(u[:, :r] * s[:r])
            a.copy_(vh[:r])
        return self


def running_tensors(block: nn.Module, relaxation: Relaxation | None) -> dict[str, torch.Tensor]:
    """Detached copies of the tensors a position runs: its block's, with its relaxation applied."""
    tensors = {n: p.detach() for n, p in block.named_parameters()}
    if relaxation is not None:
        tensors.update({n: t.detach() for n, t in relaxation.tensors(block, follow=True).items()})
    return {n: t.clone() for n, t in tensors.items()}
