"""Named recipes: one table, used by ``--preset``, the experiments, the demo and the tests.

A preset is a partial ``RunConfig`` (model shape *and* training recipe, and where it
matters the tokenizer): what it leaves out keeps the dataclass default. Precedence when
a run is configured (``dyntie train``): explicit flags > ``--config`` file > preset >
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ConfigError, RunConfig, merge_config_dicts, resolve_layers

# The paper's recipe (METHOD.md section 6): AdamW lr 1e-4 constant, weight decay 0.01, clip 1.0,
# batch 16 x 256 tokens, dropout 0.2, GPT-2's BPE, the DLT agent with K = 4 for 300 episodes, on CUDA in bf16
# (the paper kept bf16 weights; we autocast with fp32 master state: docs/SCALING.md).
_PAPER_TRAIN = {"lr": 1e-4, "lr_schedule": "constant", "warmup_steps": 0, "weight_decay": 0.01, "grad_clip": 1.0,
                "batch_size": 16, "episodes": 300, "device": "cuda", "dtype": "bfloat16"}
_PAPER_DATA = {"dataset": "wikitext-2", "tokenizer": "gpt2"}
_PAPER_METHOD = {"name": "dlt", "agent": {"k_steps": 4}}
# A CPU twin keeps the recipe but the size: 12 blocks of width 128, context 64, a BPE of 4,096 tokens trained on
# the corpus (GPT-2's 50,257-token head alone would dominate a CPU step), on the CPU, 10 episodes (440 steps,
# about a minute); pass --episodes 300 for the paper's horizon (13,200 steps).
_TWIN = {"model": {"n_layer": 12, "n_head": 4, "n_embd": 128, "block_size": 64},
         "train": {"device": "cpu", "dtype": "float32", "episodes": 10, "eval_interval": 110, "eval_tokens": 32768},
         "data": {"dataset": "pydoc", "tokenizer": "bpe", "bpe_vocab_size": 4096}}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    sections: dict[str, dict[str, Any]]

    def config(self) -> RunConfig:
        return resolve_layers(self.sections)


def _paper(name: str, description: str, model: dict[str, Any]) -> tuple[Preset, Preset]:
    """A paper recipe and its CPU twin (``<name>-cpu``)."""
    full = {"model": model, "train": _PAPER_TRAIN, "data": _PAPER_DATA, "method": _PAPER_METHOD}
    return (Preset(name, description, full),
            Preset(f"{name}-cpu", f"CPU twin of {name}: its recipe at 12 blocks x 128, context 64, BPE 4096, "
                   "10 episodes", merge_config_dicts(full, _TWIN)))


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
    Preset("gpt2", "GPT-2 small's shape (124M): 12 blocks, 12 heads, width 768, context 1024, GPT-2 BPE",
           {"model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "activation": "gelu_tanh"},
            "data": {"tokenizer": "gpt2"}}),
    *_paper("paper-gpt2-48", "the paper's main run: 48 blocks, width 1600, 16 heads, context 256, dropout 0.2, GPT-2 "
            "BPE, AdamW lr 1e-4 constant, wd 0.01, clip 1.0, batch 16, DLT K=4, 300 episodes, CUDA",
            {"n_layer": 48, "n_head": 16, "n_embd": 1600, "block_size": 256, "dropout": 0.2}),
    *_paper("paper-gpt2-12", "the paper's 12-block width-1600 ablation, with the same recipe",
            {"n_layer": 12, "n_head": 16, "n_embd": 1600, "block_size": 256, "dropout": 0.2}),
    *_paper("paper-bert", "the paper's BERT table: a BERT-base-shaped stack (post-LN, 12 blocks, width 768, 12 "
            "heads) trained as a causal LM, same data and recipe",
            {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 256, "dropout": 0.2,
             "norm_position": "post"}),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def preset_config(name: str, **overrides: dict[str, Any]) -> RunConfig:
    """The preset's ``RunConfig``; ``overrides`` are partial sections, e.g. ``train={"steps": 400}``."""
    return resolve_layers(get_preset(name).sections, overrides)
