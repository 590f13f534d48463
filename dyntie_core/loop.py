"""The training loop: one loop for every method, emitting events to whoever subscribes.

A ``Trainer`` wires the model, optimizer, batch sampler and tie policy together and runs
them. Before each step the policy may switch the tie map; the optimizer follows
(``sync_optimizer``). What a run measures lives in ``metrics.py``, scoring in
``evaluation.py``, files in ``rundir.py``: the loop only orders the work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig
from .data import BatchSampler, TokenData, load_data, sample_windows
from .distributed import DistContext, init_from_env, state_digest, wrap_model
from .environment import describe_environment, environment_changes
from .evaluation import batch_loss, evaluate
from .events import CheckpointEvent, EndEvent, EvalEvent, Event, EventBus, StepEvent, Subscriber, TieChangeEvent
from .metrics import TrainState, build_summary, eval_record, flops_per_token, peak_flops, predicted_memory
from .model import TiedGPT
from .optim import carry_state, configure_optimizer, load_optimizer_state, optimizer_state_tensors, sync_optimizer
from .policies import TiePolicy, make_policy
from .probes import root_weights, tie_losses, untie_gradient_norms
from .rundir import RunDir, model_from_checkpoint
from .runlog import RunLogger
from .tie_stack import TieChange
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


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """The global random states a resumed run restores: the CPU generator, and on CUDA the device's (dropout
    there draws from it)."""
    out = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    """Inverse of ``rng_tensors`` (a CUDA state saved on a GPU is ignored when resuming on the CPU)."""
    torch.set_rng_state(tensors["rng/torch"])
    if device.type == "cuda" and "rng/cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/cuda"], device)


def _comparable(config: RunConfig) -> dict[str, Any]:
    """A config as resume compares it: the step budget may be extended, everything else must match."""
    d = config.to_dict()
    for key in ("steps", "episodes", "device", "dist_timeout_s"):  # where and how long may change, not what
        d["train"].pop(key)
    return d


class Trainer:
    """Train one model with one tie policy; optionally keep a run directory.

    ``run_dir`` receives the files ``RunDir`` lists. Use ``Trainer.resume(run_dir)`` to continue.
    Under torchrun every rank builds a ``Trainer``; rank 0 alone decides tie maps, evaluates and
    writes files (``distributed.py``).
    """

    def __init__(self, config: RunConfig, run_dir: str | Path | None = None, data: TokenData | None = None,
                 policy: TiePolicy | None = None, checkpoint: Checkpoint | None = None,
                 dist: DistContext | None = None) -> None:
        """``checkpoint``: start from this saved training state (what ``resume`` passes) instead of a fresh init.
        ``dist``: this process's rank (default: detected from torchrun's environment, else one process)."""
        if config.train.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {config.train.device!r} asked for, but this machine has no CUDA device; use "
                              "--device cpu (or a preset's -cpu twin)")
        self.dist = dist if dist is not None else init_from_env(config.train.device, config.train.dist_timeout_s)
        if config.train.batch_size % self.dist.world_size:
            raise ConfigError(f"batch size {config.train.batch_size} (the global batch) must be divisible by the "
                              f"{self.dist.world_size} processes")
        if config.train.device == "cpu":
            torch.set_flush_denormal(True)  # tied LM heads can produce denormals: 30x slower steps on CPU
        if data is None:
            with self.dist.main_first():  # rank 0 trains and caches the tokenizer; the others read the cache
                data = load_data(config.data, config.model.block_size)
        self.data = data
        self.notices = list(self.data.notices)
        model_cfg = dataclasses.replace(config.model, vocab_size=self.data.vocab_size)
        self.config = config.replace(model=model_cfg)
        train = self.config.train
        self.device = torch.device(self.dist.device(train.device))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later (fp32 elsewhere)
            torch.backends.cudnn.allow_tf32 = True
            torch.cuda.reset_peak_memory_stats(self.device)  # peaks are per run, not per process
        self.environment = describe_environment(self.device)
        torch.manual_seed(train.seed)
        self.policy = policy if policy is not None else make_policy(self.config.method, model_cfg.n_layer, train.seed)
        needs = getattr(self.policy, "needs_relax", None)
        if needs is not None and model_cfg.relax != needs:
            raise ConfigError(f"method {self.policy.name!r} needs relax={needs!r} (--relax {needs}), "
                              f"got relax={model_cfg.relax!r}")
        self.sampler = BatchSampler(self.data.train, train.batch_size, model_cfg.block_size, seed=train.seed + 1)
        self.bus = EventBus()
        self.state = TrainState()
        self._stop = threading.Event()
        if checkpoint is None:
            self.model = TiedGPT(model_cfg, self.policy.initial_tie_map(model_cfg.n_layer)).to(self.device)
            self.optimizer = configure_optimizer(self.model, train)
            self._seed_rank(train.seed)
        else:
            self._restore(checkpoint)
        self.ddp = wrap_model(self.model, self.dist)
        self.run_dir = RunDir(run_dir) if run_dir is not None and self.dist.is_main else None
        if self.run_dir is not None:
            logger = RunLogger(self.run_dir)
            if checkpoint is None:
                logger.start(self.config, self.data, self.model.tie_map)
            else:
                logger.truncate_after(self.step)
            self.bus.subscribe(logger)

    # ---- construction from a run directory ---------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, data: TokenData | None = None, policy: TiePolicy | None = None,
               steps: int | None = None, dist: DistContext | None = None) -> Trainer:
        """Continue a run from its latest checkpoint; ``steps`` may extend the budget. Under torchrun every
        rank reads the same checkpoint, whatever the world size that wrote it."""
        run = RunDir(run_dir)
        candidates = run.resume_candidates()
        if not candidates:
            raise CheckpointError(f"no checkpoint to resume from in {run / RunDir.CHECKPOINTS}")
        unusable = [f"{p.name} is unreadable" for p, step in candidates if step is None]
        for path, _ in candidates:  # the newest full training state that loads; damaged files are kept, not deleted
            try:
                checkpoint = load_checkpoint(path)
                break
            except CheckpointError as exc:
                if str(exc) not in unusable:
                    unusable.append(str(exc))
        else:
            raise CheckpointError("no usable checkpoint to resume from: " + "; ".join(unusable))
        config = run.read_config()
        saved = RunConfig.from_dict(checkpoint.state["config"])
        if _comparable(saved) != _comparable(config):
            raise CheckpointError(f"checkpoint {path} was made by a run with another config than "
                                  f"{run / RunDir.CONFIG}; refusing to mix two runs")
        if steps is not None:
            config = config.replace(train=dataclasses.replace(config.train, steps=steps, episodes=None))
            if dist is None or dist.is_main:
                run.write_config(config)
        trainer = cls(config, run_dir=run.path, data=data, policy=policy, checkpoint=checkpoint, dist=dist)
        if unusable:
            trainer.notices.append(f"resumed from {path.name} at step {trainer.step}; skipped: " + "; ".join(unusable))
        changed = environment_changes(checkpoint.state.get("environment"), trainer.environment)
        if changed:
            trainer.notices.append(f"resumed at step {trainer.step} in another environment ({'; '.join(changed)}): "
                                   "the rest of the run is not bit-identical to an uninterrupted one")
        return trainer

    def subscribe(self, fn: Subscriber) -> Any:
        return self.bus.subscribe(fn)

    # ---- what tie policies see (PolicyHost) ------------------------------------------------
    @property
    def step(self) -> int:
        return self.state.step

    @property
    def tie_map(self) -> tuple[int, ...]:
        return self.model.tie_map

    def emit(self, event: Event) -> None:
        self.bus.emit(event)

    @property
    def total_steps(self) -> int:
        return self.config.train.steps

    def untie_gradient_norms(self) -> dict[int, float]:
        """For each tied position, the norm of the weight gradient it would receive if it were independent, on
        one probe batch of training data (``probes.untie_gradient_norms``; the batch stream is not touched)."""
        x, y = self._probe_batch(3)
        with self.autocast():
            return untie_gradient_norms(self.model, x, y)

    def tie_losses(self, tie_maps: Sequence[Sequence[int]]) -> list[float]:
        """The loss one probe batch of training data would have under each candidate map
        (``probes.tie_losses``: the model and the batch stream are not touched)."""
        x, y = self._probe_batch(4)
        with self.autocast():
            return tie_losses(self.model, tie_maps, x, y)

    def _probe_batch(self, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of training data for a probe, from its own seeded stream (``seed + stream + step``), so the
        training batch stream is never touched and a resumed run probes the same batch."""
        generator = torch.Generator().manual_seed(self.config.train.seed + stream + self.step)
        x, y = sample_windows(self.data.train, self.config.train.batch_size, self.config.model.block_size, generator)
        return x.to(self.device), y.to(self.device)

    def mixture_dominants(self) -> dict[int, int]:
        """Soft sharing (``relax=mix``): each mixing position's dominant root."""
        return self.model.mixture_dominants()

    def root_weights(self) -> dict[int, torch.Tensor]:
        """Each root block's parameters flattened into one detached vector, keyed by the root's position."""
        return root_weights(self.model)

    def batch_loss(self, split: str, generator: torch.Generator) -> float:
        """Cross-entropy of the model (eval mode) on one random batch of ``split`` drawn with ``generator``."""
        with self.autocast():
            return batch_loss(self.model, self.data.split(split), self.config.model.block_size,
                              self.config.train.batch_size, generator, self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast for ``dtype=bfloat16`` (weights and optimizer state stay fp32), else nothing."""
        if self.config.train.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---- tie maps --------------------------------------------------------------------
    def apply_tie_map(self, tie_map: Any, reason: str) -> TieChange:
        """Switch the model's tie map and make the optimizer follow; emits a ``TieChangeEvent``."""
        probe = self.config.train.probe_transitions and tuple(tie_map) != self.model.tie_map
        before = self._probe_loss() if probe else None
        change = self.model.set_tie_map(tie_map)
        if change.changed:
            carry = self.config.train.untie_moments == "carry"
            moments = [(new, self.optimizer.state.get(src)) for new, src in change.sources] if carry else []
            sync_optimizer(self.optimizer, self.model)
            carry_state(self.optimizer, moments)
            self.ddp = wrap_model(self.model, self.dist)  # DDP's hooks belong to the old parameter set
            counts = count_parameters(self.model)
            after = self._probe_loss() if probe else None
            if before is not None and after is not None:
                self.state.transition_jumps.append(after - before)
            self.bus.emit(TieChangeEvent(self.step, change.old, change.new, reason, counts["unique_blocks"],
                                         counts["trainable"], before, after))
        return change

    def _probe_loss(self) -> float:
        """Loss of one fixed validation batch (the same batch at every transition of the run)."""
        return self.batch_loss("valid", torch.Generator().manual_seed(self.config.train.seed + 2))

    def set_step_budget(self, steps: int) -> None:
        """Change the step budget of a running run (never below the steps already done)."""
        train = dataclasses.replace(self.config.train, steps=max(int(steps), self.step), episodes=None)
        self.config = self.config.replace(train=train)

    # ---- one step --------------------------------------------------------------------
    def train_step(self) -> float:
        start = time.perf_counter()
        schedule = getattr(self.policy, "mix_temperature", None)
        if schedule is not None:  # a function of the step, set on every rank (soft sharing)
            self.model.set_mix_temperature(schedule(self.step, self.total_steps))
        new_map = self.policy.on_step(self.step, self) if self.dist.is_main else None
        new_map = self.dist.broadcast_tie_map(new_map, self.config.model.n_layer)
        if new_map is not None and tuple(new_map) != self.model.tie_map:
            self.apply_tie_map(new_map, reason=self.policy.name)
        lr = lr_at(self.step, self.config.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x, y = self.sampler.sample()
        if self.dist.active:  # every rank drew the same global batch; each trains on its slice
            per_rank = x.shape[0] // self.dist.world_size
            x, y = (t[self.dist.rank * per_rank:(self.dist.rank + 1) * per_rank] for t in (x, y))
        x, y = x.to(self.device), y.to(self.device)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            _, loss = self.ddp(x, y)
        value = self.dist.mean(loss)  # the global batch's loss, the same on every rank
        if not math.isfinite(value):
            return self._non_finite("loss", value, lr, start)
        loss.backward()
        clip = self.config.train.grad_clip
        params = [p for p in self.model.parameters() if p.grad is not None]
        if clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
        if not math.isfinite(norm):
            return self._non_finite("gradient norm", norm, lr, start)
        self.optimizer.step()
        s = self.state
        s.step += 1
        s.train_time += time.perf_counter() - start
        s.tokens_seen += x.numel() * self.dist.world_size
        s.model_flops += flops_per_token(self.config.model, self.model.tie_map) * x.numel() * self.dist.world_size
        s.recent_losses.append(value)
        self.bus.emit(StepEvent(self.step, value, lr))
        return value

    def _non_finite(self, what: str, value: float, lr: float, start: float) -> float:
        """A step whose loss or gradient norm is not finite: its update is never applied. ``skip`` counts it and
        goes on; ``stop`` records the divergence and stops, keeping the last good checkpoints and metrics."""
        self.optimizer.zero_grad(set_to_none=True)
        s = self.state
        if self.config.train.on_divergence == "skip":
            s.step += 1
            s.skipped_steps += 1
            s.train_time += time.perf_counter() - start
            self.bus.emit(StepEvent(self.step, value, lr))
        else:
            s.diverged = {"step": self.step + 1, "what": what, "value": repr(value)}
            self.request_stop()
        return value

    def evaluate(self, split: str = "valid", max_tokens: int | None = None, model: TiedGPT | None = None) -> float:
        """Mean token cross-entropy on contiguous windows of a split (eval mode, no dropout)."""
        with self.autocast():
            return evaluate(model or self.model, self.data.split(split), self.config.model.block_size,
                            self.config.train.batch_size, max_tokens, self.device)

    def check_ranks_agree(self) -> None:
        """Under torchrun: raise ``DistributedError`` unless every rank holds bit-identical weights, optimizer
        state and tie map (a collective: every rank calls it at the same step)."""
        if self.dist.active:
            self.dist.check_agree(state_digest(self.model, self.optimizer, self.model.tie_map),
                                  f"weights, optimizer state or tie map at step {self.step}")

    def _eval_and_log(self) -> None:
        """Every rank: the drift check; rank 0: evaluate, log, keep the best checkpoint."""
        self.check_ranks_agree()
        if self.dist.is_main:
            self._evaluate_and_record()

    def _evaluate_and_record(self) -> None:
        val = self.evaluate("valid", self.config.train.eval_tokens)
        lr = lr_at(max(0, self.step - 1), self.config.train)
        predicted = predicted_memory(self.config, self.model.tie_map, self.dist.world_size)
        record = eval_record(self.state, self.model, self.optimizer, val, lr, predicted)
        improved = self.state.observe_eval(record)
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
        if self.ddp is self.model:  # released by an earlier finish()
            self.ddp = wrap_model(self.model, self.dist)
        if self.step == 0 and self.state.last_eval is None:
            self._eval_and_log()
        while self.step < target and not self.dist.any(self._stop.is_set()):
            self.train_step()
            if self.step % cfg.eval_interval == 0 or self.step == cfg.steps:
                self._eval_and_log()
            if self.run_dir is not None and cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                self.save_checkpoint("periodic")

    def finish(self) -> dict[str, Any]:
        """Final evaluation, test perplexity (at the best-validation checkpoint of the final tie map), summary,
        last checkpoint. Under torchrun rank 0 does the work and every rank returns its summary."""
        self.check_ranks_agree()
        summary = self._finish_main() if self.dist.is_main else None
        summary = self.dist.broadcast_object(summary)
        if not self.dist.is_main:
            self.bus.emit(EndEvent(self.step, summary, stopped_early=summary["stopped_early"]))
        # DDP's reducer holds the process group: let it go now, so that shutdown() destroys the group with no wrapper
        # left to tear down at interpreter exit (where gloo once aborted a rank in CI: "terminate called without an
        # active exception")
        self.ddp = self.model
        return summary

    def _finish_main(self) -> dict[str, Any]:
        s = self.state
        if s.diverged is None and (s.last_eval is None or s.last_eval["step"] != self.step):
            self._evaluate_and_record()
        final_test = self.evaluate("test")
        test, selection = final_test, "final"
        best_path = self.run_dir.checkpoint_path("best") if self.run_dir is not None else None
        if s.best_step is not None and s.best_step != self.step and best_path is not None and best_path.is_file():
            best_model = model_from_checkpoint(load_checkpoint(best_path), self.config, str(self.device))
            test, selection = self.evaluate("test", model=best_model), f"best validation (step {s.best_step})"
        elif s.best_step == self.step:
            selection = f"best validation (step {s.best_step}, final)"
        summary = build_summary(self.config, self.data, self.model, s, test, final_test, selection, self.notices,
                                peak=peak_flops(self.device), world_size=self.dist.world_size,
                                environment=self.environment)
        if self.run_dir is not None and s.diverged is None:  # a diverged state never replaces the last good one
            self.save_checkpoint("last")
        self.bus.emit(EndEvent(self.step, summary, stopped_early=summary["stopped_early"]))
        return summary

    def run(self) -> dict[str, Any]:
        """Train to the end of the budget (or a stop request) and return the summary."""
        self.train()
        return self.finish()

    # ---- checkpoints -----------------------------------------------------------------
    def checkpoint_payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Everything a resumed run needs: weights, optimizer state, RNGs, policy, counters."""
        tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        optim = optimizer_state_tensors(self.optimizer, self.model.named_parameters())
        tensors.update({f"optim/{k}": v for k, v in optim.items()})
        tensors.update(rng_tensors(self.device))
        tensors["rng/sampler"] = self.sampler.state()
        policy_state, policy_tensors = self.policy.state_dict()
        tensors.update({f"policy/{k}": v for k, v in policy_tensors.items()})
        state = {"tie_map": list(self.model.tie_map), "config": self.config.to_dict(), "train_state":
                 self.state.to_dict(), "policy": policy_state, "environment": self.environment}
        return state, tensors

    def save_checkpoint(self, kind: str) -> Path:
        """Write ``last``/``best`` or a periodic ``step_NNNNNNN`` checkpoint into the run directory."""
        if self.run_dir is None:
            raise CheckpointError("this trainer has no run directory to write checkpoints into")
        state, tensors = self.checkpoint_payload()
        path = save_checkpoint(self.run_dir.checkpoint_path(kind, self.step), state, tensors)
        keep = self.config.train.keep_checkpoints
        if kind == "periodic" and keep:
            for old in self.run_dir.periodic_checkpoints()[:-keep]:
                old.unlink()
        self.bus.emit(CheckpointEvent(self.step, str(path), kind))
        return path

    def _restore(self, ckpt: Checkpoint) -> None:
        """Load model, optimizer, RNGs, policy and counters from a checkpoint of this run."""
        if "train_state" not in ckpt.state:
            raise CheckpointError("this checkpoint was written by dyntie 0.1 (format 1): its weights load "
                                  "(RunDir.load_model), but its training state cannot be resumed by this version")
        saved = RunConfig.from_dict(ckpt.state["config"])
        if saved.model != self.config.model:
            raise CheckpointError(f"checkpoint was made for a different model: {saved.model} vs {self.config.model}")
        self.model = model_from_checkpoint(ckpt, self.config, str(self.device))
        self.optimizer = configure_optimizer(self.model, self.config.train)
        load_optimizer_state(self.optimizer, self.model.named_parameters(), ckpt.group("optim"))
        restore_rng(ckpt.tensors, self.device)
        self.sampler.set_state(ckpt.tensors["rng/sampler"])
        self.policy.load_state_dict(ckpt.state["policy"], ckpt.group("policy"))
        self.state = TrainState.from_dict(ckpt.state["train_state"])
        self._seed_rank(self.config.train.seed)

    def _seed_rank(self, seed: int) -> None:
        """Ranks other than 0 draw their own dropout masks (rank 0 keeps the single-process stream, which a
        checkpoint restores); derived from the step so that a resumed job does not replay old masks."""
        if self.dist.rank > 0:
            torch.manual_seed(seed + 1_000_003 * self.dist.rank + self.state.step)  # seeds CUDA too
