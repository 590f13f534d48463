"""Data-parallel training with ``torch.distributed``: what each rank is, and the few collectives we use.

Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment), dyntie trains
with ``DistributedDataParallel``: NCCL on CUDA, gloo on CPU. The design (docs/SCALING.md):

- Rank 0 owns the tie policy. It decides, and the new tie map is broadcast before every step, so
  every rank applies the same map at the same step; agents never run on other ranks.
- The DDP wrapper is rebuilt after every tie change. DDP registers its gradient hooks on the
  parameters it was built with (PITFALLS.md: a parameter swapped in later has no hook and ranks drift
  silently); a released block must leave the reducer too. Rebuilding also re-broadcasts rank 0's
  weights. ``benchmarks/bench_ddp.py`` measures what one tie event costs.
- Every rank draws the same global batch and trains on its slice, so a checkpoint resumes on any
  world size that divides the batch, and 1 and N processes follow the same trajectory.
- Logging, evaluation and checkpoints happen on rank 0; ranks compare a checksum of their weights and
  optimizer state at every evaluation, so drift raises instead of passing silently.
- Every collective has a timeout (``TrainConfig.dist_timeout_s``): a rank that dies brings the others
  down with an error, never a hang (torchrun also stops the remaining workers when one fails).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


class DistributedError(RuntimeError):
    """Ranks disagree, or the distributed environment is unusable."""


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when launched by torchrun (or any launcher that sets them)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise DistributedError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local


@dataclass(frozen=True)
class DistContext:
    """Which process this is. The default is one process, where every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """The device this rank trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
        if self.active and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the body first (e.g. trains and caches a tokenizer), then the others (cache hits)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled: for small, rare messages such as a summary)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tie_map(self, tie_map: Sequence[int] | None, n_layer: int) -> tuple[int, ...] | None:
        """Rank 0's decision (a tie map, or None for "no change") on every rank; one small tensor."""
        if not self.active:
            return None if tie_map is None else tuple(tie_map)
        buf = torch.full((n_layer + 1,), -1, dtype=torch.int64, device=self._comm_device())
        if self.is_main and tie_map is not None:
            buf[0] = 1
            buf[1:] = torch.tensor(list(tie_map), dtype=torch.int64)
        dist.broadcast(buf, src=0)
        if int(buf[0]) != 1:
            return None
        return tuple(int(v) for v in buf[1:].tolist())

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop request reaches all ranks at the same step)."""
        if not self.active:
            return flag
        buf = torch.tensor([int(flag)], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        return bool(buf.item())

    def mean(self, value: torch.Tensor) -> float:
        """The mean over ranks of a scalar (the global batch's loss when every rank holds a slice's mean)."""
        if not self.active:
            return float(value.detach())
        buf = value.detach().float().reshape(1).to(self._comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return float(buf) / self.world_size

    def check_agree(self, digest: str, what: str) -> None:
        """Raise on every rank unless every rank holds the same ``digest``."""
        if not self.active:
            return
        digests: list[Any] = [None] * self.world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            detail = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
            raise DistributedError(f"ranks drifted apart: their {what} differ ({detail})")

    def _comm_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE = DistContext()


def init_from_env(device: str = "cpu", timeout_s: float = 600.0) -> DistContext:
    """The context of this process: one process, or a rank of a torchrun job (process group joined once)."""
    env = torchrun_env()
    if env is None or env[1] == 1:
        return SINGLE
    rank, world, local = env
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    elif dist.get_rank() != rank or dist.get_world_size() != world:
        raise DistributedError("the process group does not match RANK/WORLD_SIZE")
    return DistContext(rank, world, local)


def shutdown() -> None:
    """Leave the process group (at the end of a command; a no-op in one process). DDP wrappers that are garbage
    but not yet collected still hold the group; they are freed first, while the group and interpreter are alive."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The module the training step calls: the model itself, or a DDP wrapper over its current parameters."""
    if not ctx.active:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # gradients live in the all-reduce buckets (no second copy); the only buffer (soft sharing's temperature) is set
    # alike on every rank
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


def state_digest(model: nn.Module, optimizer: torch.optim.Optimizer, tie_map: Sequence[int]) -> str:
    """SHA-256 of the tie map, every weight and every optimizer-state tensor: equal iff bit-identical."""
    h = hashlib.sha256(repr(tuple(tie_map)).encode())
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(_tensor_bytes(p))
        for key, value in sorted(optimizer.state.get(p, {}).items()):
            if torch.is_tensor(value):
                h.update(key.encode())
                h.update(_tensor_bytes(value))
    return h.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    return t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
