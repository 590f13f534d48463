"""Relaxed ties (issue 9, hypothesis 3): a tied position runs its root's block with a few tensors of its own.

- ``norms``: the position's own LayerNorm gains and biases (4 x width parameters with biases).
- ``lora``: its own norms plus a rank-r delta ``B @ A`` on each of the block's four weight matrices, as in
  relaxed recursive transformers (about 16 r x width parameters); in follow mode the root's weights are
  constants there and only ``A``, ``B`` and the norms train.
- ``mix``: soft sharing. The position runs a softmax mixture of *every* root's tensors, with one logit per
  position of the stack (only roots count) and a temperature the ``soft`` method anneals to 0 (hard: exactly its
  dominant root); its map entry names that root. In follow mode only the logits learn there (the roots' tensors
  are constants), so a mixing position costs what a plain tie costs, plus the mixing.

Every relaxation parameter counts as trainable, in parameter counts and in the memory floor. Transitions keep
what they can of the function (``init_from``): a position that becomes tied starts from the norms it was
running and, for ``lora``, a truncated SVD of the difference between the weights it was running and its new
root's; a position that becomes independent starts from exactly what it was running (root + delta, own norms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


MIX_PEAK = 1.0  # a fresh mixture's logit for its own root (the others start at 0): 48% of the weight of 4 roots


def relaxation_numel(config: GPTConfig) -> int:
    """Parameters one relaxed tied position adds."""
    if config.relax == "none":
        return 0
    if config.relax == "mix":
        return config.n_layer
    norms = 2 * config.n_embd * (1 + int(config.bias))
    if config.relax == "norms":
        return norms
    return norms + sum(config.relax_rank * (out + inp) for out, inp in lora_shapes(config).values())


def relaxation_tensor_count(config: GPTConfig) -> int:
    """Parameter tensors one relaxed tied position adds (each gets an AdamW step counter)."""
    if config.relax == "none":
        return 0
    if config.relax == "mix":
        return 1
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


class Mixture(nn.Module):
    """A tied position of ``relax=mix``: ``logits`` over the stack's positions. Only the roots before the position
    take part, so its dominant root is always a valid tie target; a root that appears or vanishes before it changes
    the mixture (a new root joins with the logit the position holds for it, 0 unless learned before)."""

    def __init__(self, config: GPTConfig, position: int, root: int) -> None:
        super().__init__()
        if not 0 <= root < position < config.n_layer:
            raise ValueError(f"a mixing position must follow its root, got position {position}, root {root}")
        self.position = position
        self.logits = nn.Parameter(torch.zeros(config.n_layer))
        with torch.no_grad():
            self.logits[root] = MIX_PEAK

    def candidates(self, roots: Iterable[int]) -> list[int]:
        """The roots this position mixes: those before it."""
        return sorted(r for r in set(roots) if r < self.position)

    def weights(self, roots: Sequence[int], temperature: float, root: int | None = None) -> torch.Tensor:
        """Softmax over the logits of ``roots``, at ``temperature``. Temperature 0 is hard: exactly one-hot on
        ``root`` (the map's; default the dominant one), so the position runs that root bit for bit. The logits then
        no longer matter; they keep the softmax's gradient (straight-through) only so that every parameter takes
        part in the step, as data parallelism requires."""
        roots = list(roots)
        logits = self.logits[roots]
        if temperature > 0:
            return torch.softmax(logits / temperature, dim=0)
        soft = torch.softmax(logits, dim=0)
        hard = torch.zeros_like(soft)
        hard[roots.index(root) if root is not None else int(torch.argmax(logits.detach()))] = 1.0
        return hard + (soft - soft.detach())

    def dominant(self, roots: Sequence[int]) -> int:
        """The root before this position with the largest logit (the earlier one on a tie)."""
        candidates = self.candidates(roots)
        return candidates[int(torch.argmax(self.logits.detach()[candidates]))]

    def tensors(self, blocks: Mapping[str, nn.Module], temperature: float, follow: bool,
                root: int | None = None) -> dict[str, torch.Tensor]:
        """The mixture of the root blocks before this position (constants in follow mode: only the logits learn);
        at temperature 0, exactly ``root``'s tensors."""
        roots = self.candidates(int(k) for k in blocks)
        w = self.weights(roots, temperature, root)
        named = [dict(blocks[str(r)].named_parameters()) for r in roots]
        out = {}
        for name in named[0]:
            stacked = torch.stack([(n[name].detach() if follow else n[name]) for n in named])
            out[name] = torch.tensordot(w.to(stacked.dtype), stacked, dims=1)
        return out


def running_tensors(block: nn.Module, relaxation: Relaxation | None,
                    mixed: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Detached copies of the tensors a position runs: its block's, with its relaxation applied (or, for a
    ``Mixture``, the ``mixed`` tensors it runs, which only the model can compute)."""
    tensors = {n: p.detach() for n, p in block.named_parameters()}
    if mixed is not None:
        tensors.update({n: t.detach() for n, t in mixed.items()})
    elif relaxation is not None:
        tensors.update({n: t.detach() for n, t in relaxation.tensors(block, follow=True).items()})
    return {n: t.clone() for n, t in tensors.items()}
