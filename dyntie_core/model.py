"""A nanoGPT-style GPT-2 whose blocks can be tied at run time.

The model holds one ``Block`` per *root* of the tie map (``blocks`` is keyed by the
root's position). Position i runs the block of its root. In "follow" mode a tied
position uses the root's tensors detached, so no weight gradient is computed there
(that is where the speed-up comes from); in "share" mode gradients from every position
add up in the root. A tied block owns no tensors at all, so nothing leaks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .tying import TieMap, identity_map, resolve_roots, validate_tie_map


def _w(t: torch.Tensor | None, frozen: bool) -> torch.Tensor | None:
    """The tensor as a constant at a tied ("follow") position, else itself."""
    return t.detach() if (frozen and t is not None) else t


def _linear(x: torch.Tensor, layer: nn.Linear, frozen: bool) -> torch.Tensor:
    return F.linear(x, _w(layer.weight, frozen), _w(layer.bias, frozen))  # type: ignore[arg-type]


def _norm(x: torch.Tensor, ln: nn.LayerNorm, frozen: bool) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, _w(ln.weight, frozen), _w(ln.bias, frozen), ln.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = _linear(x, self.c_attn, frozen).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(_linear(y, self.c_proj, frozen))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        h = F.gelu(_linear(x, self.c_fc, frozen), approximate=self.approximate)
        return self.dropout(_linear(h, self.c_proj, frozen))


class Block(nn.Module):
    """One transformer block: the unit that is tied (both norms, attention and MLP)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(_norm(x, self.ln_1, frozen), frozen)
            return x + self.mlp(_norm(x, self.ln_2, frozen), frozen)
        x = _norm(x + self.attn(x, frozen), self.ln_1, frozen)  # BERT-style post-LN
        return _norm(x + self.mlp(x, frozen), self.ln_2, frozen)


@dataclass(frozen=True)
class TieChange:
    """What a tie-map change did: the optimizer must forget ``released`` and learn ``created``."""

    old: TieMap
    new: TieMap
    created: tuple[nn.Parameter, ...]
    released: tuple[nn.Parameter, ...]

    @property
    def changed(self) -> bool:
        return self.old != self.new


class TiedGPT(nn.Module):
    """GPT-2 (learned positions, pre-LN, GELU MLP, LM head tied to the token embedding) with a tie map."""

    def __init__(self, config: GPTConfig, tie_map: Iterable[int] | None = None) -> None:
        super().__init__()
        self.config = config
        tmap = validate_tie_map(identity_map(config.n_layer) if tie_map is None else tie_map, config.n_layer)
        roots = resolve_roots(tmap)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, mean=0.0, std=0.02)
        # Blocks are initialised in position order, whatever the map, so a root at position r
        # starts from the same weights as block r of a vanilla model built with the same seed.
        blocks = {}
        for i in range(config.n_layer):
            block = self._new_block()
            if roots[i] == i:
                blocks[str(i)] = block
        self.blocks = nn.ModuleDict(blocks)
        self._tie_map: TieMap = tmap
        self._roots: TieMap = roots

    def _new_block(self) -> Block:
        block = Block(self.config)
        for name, p in block.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith(".weight") and p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith(".bias") and p.dim() == 1 and "ln_" not in name:
                nn.init.zeros_(p)
        return block

    # ---- tie map -------------------------------------------------------------------
    @property
    def tie_map(self) -> TieMap:
        return self._tie_map

    @property
    def roots(self) -> TieMap:
        return self._roots

    @property
    def block_numel(self) -> int:
        return sum(p.numel() for p in next(iter(self.blocks.values())).parameters())

    @property
    def embedding_numel(self) -> int:
        return self.wte.weight.numel() + self.wpe.weight.numel()

    def block_at(self, position: int) -> Block:
        """The block whose weights run at ``position``."""
        return self.blocks[str(self._roots[position])]  # type: ignore[return-value]

    def set_tie_map(self, tie_map: Iterable[int]) -> TieChange:
        """Switch to a new tie map (METHOD.md section 3).

        A block that becomes independent starts from a copy of the weights it was running
        (its old root's current weights); a block that becomes tied releases its tensors.
        Pass the returned ``TieChange`` to ``sync_optimizer`` so optimizer state follows.
        """
        new = validate_tie_map(tie_map, self.config.n_layer)
        old = self._tie_map
        new_roots = resolve_roots(new)
        keep = {str(r) for r in set(new_roots)}
        created: dict[str, Block] = {}
        for key in sorted(keep - set(self.blocks.keys()), key=int):
            source = self.blocks[str(self._roots[int(key)])]
            block = copy.deepcopy(source)
            for p in block.parameters():
                p.grad = None
            created[key] = block  # type: ignore[assignment]
        released = tuple(p for key, blk in self.blocks.items() if key not in keep for p in blk.parameters())
        survivors = {k: b for k, b in self.blocks.items() if k in keep}
        survivors.update(created)
        for p in released:
            p.grad = None
        self.blocks = nn.ModuleDict({k: survivors[k] for k in sorted(survivors, key=int)})
        self._tie_map, self._roots = new, new_roots
        return TieChange(old=old, new=new, created=tuple(p for b in created.values() for p in b.parameters()),
                         released=released)

    # ---- forward -------------------------------------------------------------------
    def forward(self, idx: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, loss)``; ``loss`` is the mean token cross-entropy when targets are given."""
        _, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        follow = self.config.tie_mode == "follow"
        for i, r in enumerate(self._roots):
            x = self.blocks[str(r)](x, frozen=follow and r != i)
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
