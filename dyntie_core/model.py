"""A nanoGPT-style GPT-2 whose blocks can be tied at run time.

The transformer reads as usual: embeddings, a stack of pre-LN blocks, a final norm and
an LM head tied to the token embedding. The one difference is the stack: a
``TiedStack`` (``tie_stack.py``) that runs each position with its root's block, so the
tie machinery stays out of the blocks themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .relax import Mixture, Relaxation, running_tensors
from .tie_stack import TieChange, TiedStack
from .tying import TieMap, identity_map, resolve_roots, validate_tie_map


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """One transformer block: the unit that is tied (both norms, attention and MLP)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x))  # BERT-style post-LN
        return self.ln_2(x + self.mlp(x))


class TiedGPT(nn.Module):
    """GPT-2 (learned positions, pre-LN, GELU MLP, LM head tied to the token embedding) with a tie map."""

    def __init__(self, config: GPTConfig, tie_map: Iterable[int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, mean=0.0, std=0.02)
        self.blocks = TiedStack(config.n_layer, self._new_block,
                                identity_map(config.n_layer) if tie_map is None else tie_map, config.tie_mode)
        self.relax = nn.ModuleDict()  # relaxed ties: tied positions' own tensors, keyed by position (relax.py)
        if config.relax == "mix":  # soft sharing's temperature: a buffer, so checkpoints carry it
            self.register_buffer("mix_temperature", torch.tensor(1.0))
        if config.relax != "none":
            for i, r in enumerate(self.blocks.roots):
                if r != i:
                    self.relax[str(i)] = self._fresh_relaxation(i, r, running_tensors(self.blocks[str(r)], None))

    def _fresh_relaxation(self, position: int, root: int, running: dict[str, torch.Tensor]) -> nn.Module:
        """A new relaxation for a tied ``position`` of ``root``, as close as it can be to what it ``running``."""
        if self.config.relax == "mix":
            return Mixture(self.config, position, root).to(self.wte.weight.device)
        return Relaxation(self.config).to(self.wte.weight.device).init_from(running, self.blocks[str(root)])

    def _own_tensors(self, position: int, follow: bool) -> dict[str, torch.Tensor]:
        """What a relaxed tied position runs instead of its root's tensors."""
        module = self.relax[str(position)]
        if isinstance(module, Mixture):
            return module.tensors(self.blocks, float(self.mix_temperature), follow, self.blocks.roots[position])
        return module.tensors(self.blocks.block_at(position), follow)

    def running_tensors(self, position: int) -> dict[str, torch.Tensor]:
        """Detached copies of the tensors ``position`` runs now."""
        module = self.relax[str(position)] if str(position) in self.relax else None
        mixed = self._own_tensors(position, True) if isinstance(module, Mixture) else None
        return running_tensors(self.block_at(position), module, mixed)

    def set_mix_temperature(self, temperature: float) -> None:
        """Soft sharing (``relax=mix``): the softmax temperature of every mixture (lower is harder; 0 is hard)."""
        if self.config.relax != "mix":
            raise ValueError(f"the mixture temperature needs relax='mix', this model has relax={self.config.relax!r}")
        if not temperature >= 0:
            raise ValueError(f"the mixture temperature must be >= 0 (0 is hard), got {temperature!r}")
        self.mix_temperature.fill_(float(temperature))

    def mixture_dominants(self) -> dict[int, int]:
        """Soft sharing: each mixing position's dominant root (its largest logit among the roots)."""
        return {int(k): m.dominant(self.blocks.roots) for k, m in self.relax.items() if isinstance(m, Mixture)}

    def _new_block(self) -> Block:
        """A block with GPT-2's init: N(0, 0.02), output projections scaled by 1/sqrt(2L)."""
        block = Block(self.config)
        for name, p in block.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith(".weight") and p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith(".bias") and p.dim() == 1 and "ln_" not in name:
                nn.init.zeros_(p)
        return block

    # ---- tie map (delegated to the stack) ----------------------------------------------
    @property
    def tie_map(self) -> TieMap:
        return self.blocks.tie_map

    @property
    def roots(self) -> TieMap:
        return self.blocks.roots

    def set_tie_map(self, tie_map: Iterable[int]) -> TieChange:
        """Switch to a new tie map; see ``TiedStack.set_tie_map``.

        With relaxed ties (``relax.py``) the change keeps what it can of each position's function: a position
        that becomes tied, or changes root, starts its relaxation from the tensors it was running; one that
        becomes independent starts from exactly what it was running; the others keep their relaxation.
        A mixture (``relax=mix``) is kept across a change of root when the new root is its dominant one."""
        if self.config.relax == "none":
            return self.blocks.set_tie_map(tie_map)
        old_roots = self.blocks.roots
        new_roots = resolve_roots(validate_tie_map(tie_map, self.config.n_layer))
        running = {i: self.running_tensors(i) for i in range(self.config.n_layer) if old_roots[i] != new_roots[i]}
        change = self.blocks.set_tie_map(tie_map)
        relax = {}
        for i, r in enumerate(self.blocks.roots):
            if r != i:
                current = self.relax[str(i)] if str(i) in self.relax else None
                if isinstance(current, Mixture) and current.dominant(new_roots) == r or i not in running:
                    relax[str(i)] = current
                else:
                    relax[str(i)] = self._fresh_relaxation(i, r, running[i])
            elif i in running:  # newly independent: exactly what it ran (root + delta, its own norms)
                with torch.no_grad():
                    for name, p in self.blocks[str(i)].named_parameters():
                        p.copy_(running[i][name])
        kept, old = {id(m) for m in relax.values()}, {id(m) for m in self.relax.values()}
        released = tuple(p for m in self.relax.values() if id(m) not in kept for p in m.parameters())
        created = tuple(p for m in relax.values() if id(m) not in old for p in m.parameters())
        self.relax = nn.ModuleDict(relax)
        return TieChange(change.old, change.new, change.created + created, change.released + released,
                         change.sources)

    @property
    def relaxation_numel(self) -> int:
        """Parameters of relaxed ties (counted as trainable; not part of any block)."""
        return sum(p.numel() for p in self.relax.parameters())

    def block_at(self, position: int) -> nn.Module:
        return self.blocks.block_at(position)

    @property
    def block_numel(self) -> int:
        return sum(p.numel() for p in next(iter(self.blocks.values())).parameters())

    @property
    def embedding_numel(self) -> int:
        return self.wte.weight.numel() + self.wpe.weight.numel()

    # ---- forward -------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                overrides: dict[str, dict[str, torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, loss)``; ``loss`` is the mean token cross-entropy when targets are given.
        ``overrides``: per tied position, tensors to run instead of the root's (on top of relaxed ties)."""
        _, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        follow = self.config.tie_mode == "follow"
        own = {k: self._own_tensors(int(k), follow) for k in self.relax}
        for k, tensors in (overrides or {}).items():
            own[k] = {**own.get(k, {}), **tensors}
        x = self.blocks(x, own or None)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    # ---- interop -------------------------------------------------------------------
    @classmethod
    def from_hf_gpt2(cls, hf_model: nn.Module, tie_mode: str = "follow") -> TiedGPT:
        """Import a Hugging Face ``GPT2LMHeadModel`` (all blocks independent)."""
        hf_cfg = hf_model.config
        act_names = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
        act = act_names.get(hf_cfg.activation_function)
        if act is None:
            raise ValueError(f"unsupported GPT-2 activation {hf_cfg.activation_function!r}")
        config = GPTConfig(n_layer=hf_cfg.n_layer, n_head=hf_cfg.n_head, n_embd=hf_cfg.n_embd,
                           block_size=hf_cfg.n_positions, vocab_size=hf_cfg.vocab_size, dropout=0.0,
                           bias=True, tie_mode=tie_mode, activation=act)
        model = cls(config)
        sd = hf_model.state_dict()
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            model.wte.weight.copy_(sd["transformer.wte.weight"])
            model.wpe.weight.copy_(sd["transformer.wpe.weight"])
            model.ln_f.weight.copy_(sd["transformer.ln_f.weight"])
            model.ln_f.bias.copy_(sd["transformer.ln_f.bias"])
            for i in range(config.n_layer):
                for name, p in model.blocks[str(i)].named_parameters():
                    src = sd[f"transformer.h.{i}.{name}"]
                    p.copy_(src.t() if name in conv1d else src)  # HF Conv1D stores (in, out)
        return model
