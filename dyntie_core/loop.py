"""The training loop: one loop for every method, emitting events to whoever subscribes.

A ``Trainer`` owns the model, optimizer, batch sampler and tie policy. Before each
step the policy may switch the tie map; the optimizer follows (``sync_optimizer``).
Evaluation is deterministic (contiguous windows), so validation numbers are
comparable across methods and a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import BatchSampler, TokenData, eval_windows, load_data, sample_windows
from .events import CheckpointEvent, EndEvent, EvalEvent, Event, EventBus, StepEvent, Subscriber, TieChangeEvent
from .memory import measure_memory, predict_memory
from .model import TieChange, TiedGPT
from .optim import configure_optimizer, sync_optimizer
from .policies import TiePolicy, make_policy
from .runlog import RunLogger
from .tying import count_parameters


def lr_at(step: int, cfg: Any) -> float:
    """Learning rate before ``step``: linear warmup, then constant or cosine decay to ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    ratio = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


class Trainer:
    """Train one model with one tie policy; optionally keep a run directory.

    ``run_dir`` receives ``config.json``, ``metrics.jsonl``, ``tie_maps.jsonl``,
    ``summary.json`` and ``checkpoints/``. Use ``Trainer.resume(run_dir)`` to continue.
    """

    def __init__(self, config: RunConfig, run_dir: str | Path | None = None, data: TokenData | None = None,
                 policy: TiePolicy | None = None) -> None:
        if config.train.device == "cpu":
            torch.set_flush_denormal(True)  # tied LM heads can produce denormals: 30x slower steps on CPU
        self.data = data if data is not None else load_data(config.data, config.model.block_size)
        self.notices = list(self.data.notices)
        model_cfg = config.model
        if model_cfg.vocab_size != self.data.vocab_size:
            model_cfg = dataclasses.replace(model_cfg, vocab_size=self.data.vocab_size)
        self.config = config.replace(model=model_cfg)
        train = self.config.train
        self.device = torch.device(train.device)
        torch.manual_seed(train.seed)
        self.policy = policy if policy is not None else make_policy(self.config.method, model_cfg.n_layer, train.seed)
        self.model = TiedGPT(model_cfg, self.policy.initial_tie_map(model_cfg.n_layer)).to(self.device)
        self.optimizer = configure_optimizer(self.model, train)
        self.sampler = BatchSampler(self.data.train, train.batch_size, model_cfg.block_size, seed=train.seed + 1)
        self.bus = EventBus()
        self.step = 0
        self.best_val = math.inf
        self.best_step: int | None = None
        self.train_time = 0.0
        self.tokens_seen = 0
        self.recent_losses: list[float] = []
        self.last_eval: dict[str, Any] | None = None
        self._stop = threading.Event()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.logger: RunLogger | None = None
        if self.run_dir is not None:
            self.logger = RunLogger(self.run_dir)
            self.logger.start(self.config, self.data, self.model.tie_map)
            self.bus.subscribe(self.logger)

    # ---- construction from a run directory ---------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, data: TokenData | None = None,
               policy: TiePolicy | None = None, steps: int | None = None) -> Trainer:
        """Continue a run from its latest checkpoint; ``steps`` may extend the budget."""
        run_dir = Path(run_dir)
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint to resume from in {run_dir / 'checkpoints'}")
        config = RunConfig.from_json_file(run_dir / "config.json")
        if steps is not None:
            config = config.replace(train=dataclasses.replace(config.train, steps=steps))
        trainer = cls(config, run_dir=None, data=data, policy=policy)
        trainer.load_checkpoint(ckpt)
        trainer.run_dir = run_dir
        trainer.logger = RunLogger(run_dir, resume_step=trainer.step)
        if steps is not None:
            trainer.logger.write_config(trainer.config)
        trainer.bus.subscribe(trainer.logger)
        return trainer

    def subscribe(self, fn: Subscriber) -> Any:
        return self.bus.subscribe(fn)

    # ---- tie maps --------------------------------------------------------------------
    def apply_tie_map(self, tie_map: Any, reason: str) -> TieChange:
        """Switch the model's tie map and make the optimizer follow; emits a ``TieChangeEvent``."""
        change = self.model.set_tie_map(tie_map)
        if change.changed:
            sync_optimizer(self.optimizer, self.model)
            counts = count_parameters(self.model)
            self.bus.emit(TieChangeEvent(self.step, change.old, change.new, reason,
                                         counts["unique_blocks"], counts["trainable"]))
        return change

    # ---- what tie policies may use ---------------------------------------------------
    @property
    def tie_map(self) -> tuple[int, ...]:
        return self.model.tie_map

    def emit(self, event: Event) -> None:
        self.bus.emit(event)

    @torch.no_grad()
    def batch_loss(self, split: str, generator: torch.Generator) -> float:
        """Cross-entropy of the model (eval mode) on one random batch of ``split`` drawn with ``generator``."""
        x, y = sample_windows(self.data.split(split), self.config.train.batch_size, self.config.model.block_size,
                              generator)
        was_training = self.model.training
        self.model.eval()
        _, loss = self.model(x.to(self.device), y.to(self.device))
        self.model.train(was_training)
        return float(loss)

    # ---- one step --------------------------------------------------------------------
    def train_step(self) -> float:
        start = time.perf_counter()
        new_map = self.policy.on_step(self.step, self)
        if new_map is not None and tuple(new_map) != self.model.tie_map:
            self.apply_tie_map(new_map, reason=self.policy.name)
        lr = lr_at(self.step, self.config.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(self.device) for t in self.sampler.sample())
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        _, loss = self.model(x, y)
        loss.backward()
        if self.config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                           self.config.train.grad_clip)
        self.optimizer.step()
        value = float(loss.detach())
        self.step += 1
        self.train_time += time.perf_counter() - start
        self.tokens_seen += x.numel()
        self.recent_losses.append(value)
        self.bus.emit(StepEvent(self.step, value, lr))
        return value

    @torch.no_grad()
    def evaluate(self, split: str = "valid", max_tokens: int | None = None, model: TiedGPT | None = None) -> float:
        """Mean token cross-entropy on contiguous windows of a split (eval mode, no dropout)."""
        model = model or self.model
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        block, batch = self.config.model.block_size, self.config.train.batch_size
        for x, y in eval_windows(self.data.split(split), block, batch, max_tokens):
            _, loss = model(x.to(self.device), y.to(self.device))
            total += float(loss) * y.numel()
            count += y.numel()
        model.train(was_training)
        return total / count

    def eval_record(self) -> dict[str, Any]:
        """Evaluate on validation and assemble a ``metrics.jsonl`` row."""
        val = self.evaluate("valid", self.config.train.eval_tokens)
        counts = count_parameters(self.model)
        train_loss = sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None
        self.recent_losses = []
        return {
            "step": self.step,
            "train_loss": train_loss,
            "val_loss": val,
            "val_ppl": math.exp(val),
            "lr": lr_at(max(0, self.step - 1), self.config.train),
            "tie_map": list(self.model.tie_map),
            "unique_blocks": counts["unique_blocks"],
            "trainable_params": counts["trainable"],
            "total_params": counts["total"],
            "memory": measure_memory(self.model, self.optimizer).to_dict(),
            "tokens_per_s": self.tokens_per_s,
            "train_time_s": self.train_time,
        }

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens_seen / self.train_time if self.train_time > 0 else None

    def _eval_and_log(self) -> None:
        record = self.eval_record()
        self.last_eval = record
        improved = record["val_loss"] < self.best_val
        if improved:
            self.best_val, self.best_step = record["val_loss"], self.step
        self.bus.emit(EvalEvent(self.step, record))
        if improved and self.run_dir is not None:
            self.save_checkpoint("best")

    # ---- the loop --------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (thread-safe; used by dashboards)."""
        self._stop.set()

    @property
    def done(self) -> bool:
        return self.step >= self.config.train.steps

    def train(self, max_steps: int | None = None) -> None:
        """Train until the step budget, ``max_steps`` more steps, or a stop request."""
        cfg = self.config.train
        target = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        if self.step == 0 and self.last_eval is None:
            self._eval_and_log()
        while self.step < target and not self._stop.is_set():
            self.train_step()
            if self.step % cfg.eval_interval == 0 or self.step == cfg.steps:
                self._eval_and_log()
            if self.run_dir is not None and cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                self.save_checkpoint("periodic")

    def finish(self) -> dict[str, Any]:
        """Final evaluation, test perplexity (at the best-validation checkpoint), summary, last checkpoint."""
        if self.last_eval is None or self.last_eval["step"] != self.step:
            self._eval_and_log()
        assert self.last_eval is not None
        final_test = self.evaluate("test")
        test, selection = final_test, "final"
        best_path = self.run_dir / "checkpoints" / "best.safetensors" if self.run_dir else None
        if self.best_step is not None and self.best_step != self.step and best_path and best_path.is_file():
            best_model = self._model_from_checkpoint(load_checkpoint(best_path))
            test, selection = self.evaluate("test", model=best_model), f"best validation (step {self.best_step})"
        elif self.best_step == self.step:
            selection = f"best validation (step {self.best_step}, final)"
        counts = count_parameters(self.model)
        predicted = predict_memory(self.config.model, self.model.tie_map, self.config.train.batch_size)
        summary = {
            "method": self.config.method.name,
            "seed": self.config.train.seed,
            "steps": self.step,
            "dataset": self.data.corpus_name,
            "tokenizer": self.data.tokenizer.name,
            "final_val_loss": self.last_eval["val_loss"],
            "final_val_ppl": self.last_eval["val_ppl"],
            "best_val_ppl": math.exp(self.best_val),
            "best_step": self.best_step,
            "test_ppl": math.exp(test),
            "test_selection": selection,
            "final_test_ppl": math.exp(final_test),
            "trainable_params": counts["trainable"],
            "total_params": counts["total"],
            "vanilla_equivalent_params": counts["vanilla_equivalent"],
            "unique_blocks": counts["unique_blocks"],
            "tie_map": list(self.model.tie_map),
            "memory": self.last_eval["memory"],
            "memory_predicted": predicted.to_dict(),
            "tokens_per_s": self.tokens_per_s,
            "train_time_s": self.train_time,
            "stopped_early": self.step < self.config.train.steps,
            "notices": self.notices,
        }
        if self.run_dir is not None:
            self.save_checkpoint("last")
        self.bus.emit(EndEvent(self.step, summary, stopped_early=summary["stopped_early"]))
        return summary

    def run(self) -> dict[str, Any]:
        """Train to the end of the budget (or a stop request) and return the summary."""
        self.train()
        return self.finish()

    # ---- checkpoints -----------------------------------------------------------------
    def checkpoint_payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        for name, p in self.model.named_parameters():
            for key, value in self.optimizer.state.get(p, {}).items():
                if torch.is_tensor(value):
                    tensors[f"optim/{name}/{key}"] = value
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/sampler"] = self.sampler.state()
        policy_state, policy_tensors = self.policy.state_dict()
        tensors.update({f"policy/{k}": v for k, v in policy_tensors.items()})
        state = {
            "step": self.step,
            "tie_map": list(self.model.tie_map),
            "config": self.config.to_dict(),
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_step": self.best_step,
            "train_time": self.train_time,
            "tokens_seen": self.tokens_seen,
            "recent_losses": self.recent_losses,
            "last_eval": self.last_eval,
            "policy": policy_state,
            "torch_version": torch.__version__,
        }
        return state, tensors

    def save_checkpoint(self, kind: str) -> Path:
        """Write ``last``/``best`` or a periodic ``step_NNNNNNN`` checkpoint into the run directory."""
        if self.run_dir is None:
            raise CheckpointError("this trainer has no run directory to write checkpoints into")
        name = f"step_{self.step:07d}" if kind == "periodic" else kind
        state, tensors = self.checkpoint_payload()
        path = save_checkpoint(self.run_dir / "checkpoints" / f"{name}.safetensors", state, tensors)
        self.bus.emit(CheckpointEvent(self.step, str(path), kind))
        return path

    def _model_from_checkpoint(self, ckpt: Any) -> TiedGPT:
        model = TiedGPT(self.config.model, ckpt.state["tie_map"]).to(self.device)
        try:
            model.load_state_dict(ckpt.group("model"))
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not fit this model: {exc}") from None
        return model

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, RNGs, policy and counters from a checkpoint of this run."""
        ckpt = load_checkpoint(path)
        saved = RunConfig.from_dict(ckpt.state["config"])
        if saved.model != self.config.model:
            raise CheckpointError(f"checkpoint {path} was made for a different model: "
                                  f"{saved.model} vs {self.config.model}")
        self.model = self._model_from_checkpoint(ckpt)
        self.optimizer = configure_optimizer(self.model, self.config.train)
        optim = ckpt.group("optim")
        for name, p in self.model.named_parameters():
            state = {key.split("/")[-1]: t.to(self.device) for key, t in optim.items() if key.rsplit("/", 1)[0] == name}
            if state:
                self.optimizer.state[p] = state
        torch.set_rng_state(ckpt.tensors["rng/torch"])
        self.sampler.set_state(ckpt.tensors["rng/sampler"])
        self.policy.load_state_dict(ckpt.state["policy"], ckpt.group("policy"))
        s = ckpt.state
        self.step = int(s["step"])
        self.best_val = math.inf if s["best_val"] is None else float(s["best_val"])
        self.best_step = s["best_step"]
        self.train_time = float(s["train_time"])
        self.tokens_seen = int(s["tokens_seen"])
        self.recent_losses = list(s["recent_losses"])
        self.last_eval = s["last_eval"]

