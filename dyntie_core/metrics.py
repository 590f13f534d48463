"""What a run measures: its counters, the ``metrics.jsonl`` row, and the summary.

Kept apart from the loop so the numbers a run reports are defined in one readable place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .config import GPTConfig, RunConfig
from .data import TokenData
from .memory import block_param_count, measure_memory, predict_memory
from .model import TiedGPT
from .tying import count_parameters, resolve_roots

# Dense bf16 peak FLOP/s by GPU name (vendor data sheets); MFU is reported only for these.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


@dataclass
class TrainState:
    """Counters of a run; saved in every checkpoint, so a resumed run continues them exactly."""

    step: int = 0
    best_val: float | None = None  # best validation cross-entropy so far at the tie map ``best_map``
    best_step: int | None = None
    train_time: float = 0.0
    tokens_seen: int = 0
    model_flops: float = 0.0  # training FLOPs done, at the tie map of each step (``flops_per_token``)
    recent_losses: list[float] = field(default_factory=list)  # training losses since the last evaluation
    last_eval: dict[str, Any] | None = None
    skipped_steps: int = 0  # steps whose update was dropped for a non-finite loss or gradient (on_divergence=skip)
    diverged: dict[str, Any] | None = None  # where and how training diverged (on_divergence=stop)
    transition_jumps: list[float] = field(default_factory=list)  # probe loss after - before, per tie change
    best_map: list[int] | None = None  # the tie map the best evaluation ran

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens_seen / self.train_time if self.train_time > 0 else None

    def observe_eval(self, record: dict[str, Any]) -> bool:
        """Remember an evaluation; True when it is the best validation loss at the current tie map.

        A change of map starts a new best, so the best checkpoint (where test perplexity is measured) always runs
        the map the run ends with: a method that ties blocks late is never credited with a model that still had
        more unique blocks than it reports."""
        self.last_eval = record
        tie_map = [int(i) for i in record["tie_map"]]
        if self.best_map is None and self.best_val is not None:  # a checkpoint written before maps were kept
            self.best_map = tie_map
        improved = self.best_val is None or tie_map != self.best_map or record["val_loss"] < self.best_val
        if improved:
            self.best_val, self.best_step, self.best_map = record["val_loss"], record["step"], tie_map
        return improved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**data)


def flops_per_token(config: GPTConfig, tie_map: Sequence[int]) -> float:
    """Training FLOPs per token, nanoGPT's estimate (PaLM appendix B): 6 N + 12 L H Q T, N counting every
    position's block (a tied position still runs) and the token embedding (the LM head). In follow mode a
    tied position skips its weight gradients, so it costs 4 instead of 6 FLOPs per parameter."""
    per_block = block_param_count(config)
    n = config.vocab_size * config.n_embd + config.n_layer * per_block
    flops = 6 * n + 12 * config.n_layer * config.n_embd * config.block_size
    if config.tie_mode == "follow":
        tied = sum(1 for i, r in enumerate(resolve_roots(tuple(tie_map))) if r != i)
        flops -= 2 * per_block * tied
    return float(flops)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, when dyntie knows it (CUDA GPUs in ``PEAK_BF16_FLOPS``); None on CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def throughput(state: TrainState, peak: float | None) -> dict[str, float | None]:
    """Model FLOP/s achieved over the run and MFU against ``peak`` (None where the peak is unknown)."""
    achieved = state.model_flops / state.train_time if state.train_time > 0 and state.model_flops else None
    return {"model_flops_per_s": achieved, "mfu": achieved / peak if achieved is not None and peak else None}


def predicted_memory(config: RunConfig, tie_map: Sequence[int], world_size: int = 1) -> dict[str, int | None]:
    """``predict_memory`` for a run's model, per-process batch and precision, as a dict."""
    return predict_memory(config.model, tie_map, config.train.batch_size // world_size,
                          activation_bytes=2 if config.train.dtype == "bfloat16" else None).to_dict()


def eval_record(state: TrainState, model: TiedGPT, optimizer: torch.optim.Optimizer, val_loss: float,
                lr: float, predicted: dict[str, int | None] | None = None) -> dict[str, Any]:
    """One ``metrics.jsonl`` row; consumes the training losses gathered since the last evaluation.
    ``predicted``: the analytic memory (``predicted_memory``), stored beside the measured one."""
    counts = count_parameters(model)
    train_loss = sum(state.recent_losses) / len(state.recent_losses) if state.recent_losses else None
    state.recent_losses = []
    return {
        "step": state.step,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_ppl": math.exp(val_loss),
        "lr": lr,
        "tie_map": list(model.tie_map),
        "unique_blocks": counts["unique_blocks"],
        "trainable_params": counts["trainable"],
        "total_params": counts["total"],
        "memory": measure_memory(model, optimizer).to_dict(),
        "memory_predicted": predicted,
        "tokens_per_s": state.tokens_per_s,
        "train_time_s": state.train_time,
    }


def transition_summary(jumps: Sequence[float]) -> dict[str, float | int] | None:
    """What the probed tie changes cost: how many, and the mean and largest rise of the probe batch's loss."""
    if not jumps:
        return None
    return {"count": len(jumps), "mean_jump": sum(jumps) / len(jumps), "max_jump": max(jumps)}


def build_summary(config: RunConfig, data: TokenData, model: TiedGPT, state: TrainState, test_loss: float,
                  final_test_loss: float, selection: str, notices: list[str],
                  peak: float | None = None, world_size: int = 1,
                  environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``summary.json`` of a run: final and best numbers, test at the best-validation checkpoint.
    ``peak``: the device's peak FLOP/s, for MFU (per process: the summary's tokens/s are the job's).
    ``environment``: where the process that finished the run ran (``describe_environment``)."""
    assert state.last_eval is not None and state.best_val is not None
    counts = count_parameters(model)
    predicted = predicted_memory(config, model.tie_map, world_size)
    return {
        "method": config.method.name,
        "seed": config.train.seed,
        "steps": state.step,
        "dataset": data.corpus_name,
        "tokenizer": data.tokenizer.name,
        "final_val_loss": state.last_eval["val_loss"],
        "final_val_ppl": state.last_eval["val_ppl"],
        "best_val_ppl": math.exp(state.best_val),
        "best_step": state.best_step,
        "test_ppl": math.exp(test_loss),
        "test_selection": selection,
        "final_test_ppl": math.exp(final_test_loss),
        "trainable_params": counts["trainable"],
        "total_params": counts["total"],
        "vanilla_equivalent_params": counts["vanilla_equivalent"],
        "unique_blocks": counts["unique_blocks"],
        "tie_map": list(model.tie_map),
        "memory": state.last_eval["memory"],
        "memory_predicted": predicted,
        "tokens_per_s": state.tokens_per_s,
        **throughput(state, peak * world_size if peak else None),
        "dtype": config.train.dtype,
        "world_size": world_size,
        "train_time_s": state.train_time,
        "stopped_early": state.step < config.train.steps,
        "diverged": state.diverged,
        "skipped_steps": state.skipped_steps,
        "transitions": transition_summary(state.transition_jumps),
        "notices": notices,
        "environment": environment,
    }
