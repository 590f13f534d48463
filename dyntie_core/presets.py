"""Named recipes: one table, used by ``--preset``, the experiments, the demo and the tests.

A preset is a partial ``RunConfig`` (model shape *and* training recipe, and where it
matters the tokenizer): what it leaves out keeps the dataclass default. Precedence when
a run is configured (``dyntie train``): explicit flags > ``--config`` file > preset >
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ConfigError, RunConfig, merge_config_dicts

# The paper's optimisation (METHOD.md section 6): AdamW lr 1e-4 constant, weight decay 0.01,
# clip 1.0, batch 16 x 256 tokens, dropout 0.2.
_PAPER_TRAIN = {"lr": 1e-4, "lr_schedule": "constant", "warmup_steps": 0, "weight_decay": 0.01, "grad_clip": 1.0,
                "batch_size": 16}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    sections: dict[str, dict[str, Any]]

    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.sections)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("debug", "4 blocks of width 32: seconds, for tests",
           {"model": {"n_layer": 4, "n_head": 2, "n_embd": 32, "block_size": 32}}),
    Preset("small", "12 blocks of width 128, context 128 (the default shape)",
           {"model": {"n_layer": 12, "n_head": 4, "n_embd": 128, "block_size": 128}}),
    Preset("demo", "make demo: 6 blocks of width 128 on Python's docs, 480 steps, cosine lr (about 1 min a run)",
           {"model": {"n_layer": 6, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0},
            "train": {"steps": 480, "batch_size": 16, "lr": 2e-3, "min_lr": 2e-4, "lr_schedule": "cosine",
                      "warmup_steps": 50, "eval_interval": 80, "eval_tokens": 8192, "seed": 1337},
            "data": {"dataset": "pydoc", "tokenizer": "bpe", "bpe_vocab_size": 2048}}),
    Preset("wikitext2-cpu", "the WikiText-2 CPU convention of docs/RESULTS.md: 12 blocks of width 128, context "
           "128, batch 16, lr 1e-3 constant, BPE 4096",
           {"model": {"n_layer": 12, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.0},
            "train": {"batch_size": 16, "lr": 1e-3, "min_lr": 1e-4, "lr_schedule": "constant", "eval_tokens": 32768},
            "data": {"tokenizer": "bpe", "bpe_vocab_size": 4096}}),
    Preset("nanogpt-shakespeare-cpu", "nanoGPT's Tiny Shakespeare CPU recipe: 4 blocks, 4 heads, width 128, "
           "context 64, batch 12, 2000 steps, lr 1e-3 cosine to 1e-4, warmup 100, char-level",
           {"model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0},
            "train": {"steps": 2000, "batch_size": 12, "lr": 1e-3, "min_lr": 1e-4, "lr_schedule": "cosine",
                      "warmup_steps": 100, "beta2": 0.99, "eval_interval": 250, "eval_tokens": 200 * 64 * 12},
            "data": {"tokenizer": "char"}}),
    Preset("gpt2", "GPT-2 small's shape (124M): 12 blocks, 12 heads, width 768, context 1024",
           {"model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "activation": "gelu_tanh"}}),
    Preset("paper-gpt2-48", "the paper's main model: 48 blocks, width 1600, 16 heads, context 256, dropout 0.2, "
           "and its training (AdamW lr 1e-4 constant, wd 0.01, clip 1.0, batch 16)",
           {"model": {"n_layer": 48, "n_head": 16, "n_embd": 1600, "block_size": 256, "dropout": 0.2},
            "train": _PAPER_TRAIN}),
    Preset("paper-gpt2-12", "the paper's 12-block width-1600 ablation, with its training",
           {"model": {"n_layer": 12, "n_head": 16, "n_embd": 1600, "block_size": 256, "dropout": 0.2},
            "train": _PAPER_TRAIN}),
    Preset("bert-base", "BERT-base's shape (post-LN, 12 blocks, width 768) trained as a causal LM, with the "
           "paper's training",
           {"model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 512, "dropout": 0.1,
                      "norm_position": "post"},
            "train": _PAPER_TRAIN}),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def preset_config(name: str, **overrides: dict[str, Any]) -> RunConfig:
    """The preset's ``RunConfig``; ``overrides`` are partial sections, e.g. ``train={"steps": 400}``."""
    return RunConfig.from_dict(merge_config_dicts(get_preset(name).sections, overrides))
