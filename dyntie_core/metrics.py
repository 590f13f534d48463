"""What a run measures: its counters, the ``metrics.jsonl`` row, and the summary.

Kept apart from the loop so the numbers a run reports are defined in one readable place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .config import RunConfig
from .data import TokenData
from .memory import measure_memory, predict_memory
from .model import TiedGPT
from .tying import count_parameters


@dataclass
class TrainState:
    """Counters of a run; saved in every checkpoint, so a resumed run continues them exactly."""

    step: int = 0
    best_val: float | None = None  # best validation cross-entropy so far
    best_step: int | None = None
    train_time: float = 0.0
    tokens_seen: int = 0
    recent_losses: list[float] = field(default_factory=list)  # training losses since the last evaluation
    last_eval: dict[str, Any] | None = None
    skipped_steps: int = 0  # steps whose update was dropped for a non-finite loss or gradient (on_divergence=skip)
    diverged: dict[str, Any] | None = None  # where and how training diverged (on_divergence=stop)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens_seen / self.train_time if self.train_time > 0 else None

    def observe_eval(self, record: dict[str, Any]) -> bool:
        """Remember an evaluation; True when it is the best validation loss so far."""
        self.last_eval = record
        improved = self.best_val is None or record["val_loss"] < self.best_val
        if improved:
            self.best_val, self.best_step = record["val_loss"], record["step"]
        return improved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**data)


def eval_record(state: TrainState, model: TiedGPT, optimizer: torch.optim.Optimizer, val_loss: float,
                lr: float) -> dict[str, Any]:
    """One ``metrics.jsonl`` row; consumes the training losses gathered since the last evaluation."""
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
        "tokens_per_s": state.tokens_per_s,
        "train_time_s": state.train_time,
    }


def build_summary(config: RunConfig, data: TokenData, model: TiedGPT, state: TrainState, test_loss: float,
                  final_test_loss: float, selection: str, notices: list[str]) -> dict[str, Any]:
    """The ``summary.json`` of a run: final and best numbers, test at the best-validation checkpoint."""
    assert state.last_eval is not None and state.best_val is not None
    counts = count_parameters(model)
    predicted = predict_memory(config.model, model.tie_map, config.train.batch_size)
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
        "memory_predicted": predicted.to_dict(),
        "tokens_per_s": state.tokens_per_s,
        "train_time_s": state.train_time,
        "stopped_early": state.step < config.train.steps,
        "diverged": state.diverged,
        "skipped_steps": state.skipped_steps,
        "notices": notices,
    }
