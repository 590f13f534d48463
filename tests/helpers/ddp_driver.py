"""Train a tiny run in this process or as one rank of a torchrun job, and record what the DDP tests check.

Used by ``tests/test_distributed.py`` (never imported by the package). Writes ``<record>/rank<R>.json``:
every step's loss, the tie map after every step, and a digest of the final weights + optimizer state.

  python tests/helpers/ddp_driver.py RECORD_DIR RUN_DIR [--steps N] [--resume] [--fail-rank R --fail-step S]
  python -m torch.distributed.run --nproc-per-node 2 tests/helpers/ddp_driver.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from dyntie_core import DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
from dyntie_core.config import AgentConfig
from dyntie_core.distributed import shutdown, state_digest
from dyntie_core.events import StepEvent
from dyntie_core.loop import Trainer


def config(method: str, steps: int, lr: float) -> RunConfig:
    schedule = [[0, [0, 1, 2, 3]], [15, [0, 0, 2, 2]], [40, [0, 1, 1, 3]], [70, [0, 0, 0, 0]], [90, [0, 1, 2, 3]]]
    return RunConfig(
        model=GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16),
        train=TrainConfig(steps=steps, batch_size=8, lr=lr, eval_interval=25, eval_tokens=1024, seed=5,
                          checkpoint_interval=25, dist_timeout_s=60),
        data=DataConfig(dataset="pydoc", tokenizer="char"),
        method=MethodConfig(name=method, agent=AgentConfig(k_steps=2),
                            schedule=schedule if method == "manual" else None),
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("record", type=Path)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--method", default="manual")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail-rank", type=int, default=-1)
    p.add_argument("--fail-step", type=int, default=-1)
    p.add_argument("--perturb-rank", type=int, default=-1,
                   help="add 1e-3 to one weight on this rank after step 16, between two tie changes (rebuilding "
                   "DDP at a change re-broadcasts rank 0's weights)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    if args.resume:
        trainer = Trainer.resume(args.run_dir, steps=args.steps)
    else:
        trainer = Trainer(config(args.method, args.steps, args.lr), run_dir=args.run_dir)
    losses: list[float] = []
    maps: list[list[int]] = []

    def record(event: object) -> None:
        if isinstance(event, StepEvent):
            losses.append(event.loss)
            maps.append(list(trainer.tie_map))
            if rank == args.fail_rank and event.step == args.fail_step:
                raise RuntimeError(f"injected failure on rank {rank} at step {event.step}")
            if rank == args.perturb_rank and event.step == 16:
                with torch.no_grad():
                    next(trainer.model.parameters()).view(-1)[0] += 1e-3

    trainer.subscribe(record)
    summary = trainer.run()
    args.record.mkdir(parents=True, exist_ok=True)
    out = {"losses": losses, "maps": maps, "digest": state_digest(trainer.model, trainer.optimizer, trainer.tie_map),
           "tie_map": list(trainer.tie_map), "test_ppl": summary["test_ppl"], "steps": summary["steps"],
           "world_size": int(os.environ.get("WORLD_SIZE", "1")),
           "model_state": summary["memory"]["model_state"], "predicted": summary["memory_predicted"]["model_state"],
           "wrapper_released": trainer.ddp is trainer.model}
    (args.record / f"rank{rank}.json").write_text(json.dumps(out))
    print(f"rank {rank}: record written, shutting down", file=sys.stderr, flush=True)  # locates a crash at exit
    shutdown()


if __name__ == "__main__":
    main()
