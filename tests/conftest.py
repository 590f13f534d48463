"""Shared fixtures: tiny configs and data that keep the suite fast on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_flush_denormal(True)

from dyntie_core import DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig  # noqa: E402
from dyntie_core.data import CharTokenizer, load_corpus, tokenize  # noqa: E402

SHARED_DATA = Path(os.environ.get("DYNTIE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED_DATA} (set DYNTIE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def tiny_config() -> GPTConfig:
    return GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=64)


@pytest.fixture(scope="session")
def pydoc_chars():
    corpus = load_corpus("pydoc")
    return tokenize(corpus, CharTokenizer.from_corpus(corpus), 32)


def small_run_config(steps: int = 20, method: str = "vanilla", train: dict | None = None, **method_kw) -> RunConfig:
    """4 blocks of width 32 on pydoc, char-level; ``train`` overrides training settings."""
    settings = dict(steps=steps, batch_size=4, lr=3e-3, eval_interval=10, eval_tokens=2048, seed=7) | (train or {})
    return RunConfig(
        model=GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=32, vocab_size=64),
        train=TrainConfig(**settings),
        data=DataConfig(dataset="pydoc", tokenizer="char"),
        method=MethodConfig(name=method, **method_kw),
    )


# a tiny char-level run for ``dyntie train`` (add --method/--steps/--out)
TINY_CLI = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
            "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char"]


def experiment_module(name: str):
    """A script of ``experiments/`` (not a package) loaded as a module, so its functions can be tested."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
