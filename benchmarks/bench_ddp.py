"""Data parallelism on this machine: tokens/s of 1 process against 2 torchrun processes (gloo), and the cost of
one tie event (map switch, optimizer sync, and under DDP the wrapper rebuild that re-broadcasts the weights).

Everything runs in one invocation, with the same model, global batch and seed:
  - 1 process, 1 thread; 1 process, 2 threads; 2 processes (torchrun), 1 thread each.
  - tie events: alternate two maps (12 -> 4 unique blocks and back) N times, with the optimizer holding
    Adam state, timed between barriers.

    python benchmarks/bench_ddp.py --steps 60 --events 20

A 2-core machine cannot show a data-parallel speed-up: 2 processes share the cores one process with 2 threads
already uses, and gloo's all-reduce runs on those same cores. The numbers measure overhead, not scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = {"n_layer": 12, "n_head": 4, "n_embd": 128, "block_size": 64}


def worker(args: argparse.Namespace) -> None:
    import torch

    from dyntie_core import DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
    from dyntie_core.distributed import shutdown
    from dyntie_core.loop import Trainer
    from dyntie_core.schemes import make_tie_map

    torch.set_num_threads(args.threads)
    config = RunConfig(model=GPTConfig(**SHAPE), data=DataConfig(dataset="pydoc", tokenizer="char"),
                       train=TrainConfig(steps=args.steps, batch_size=16, eval_interval=10**6, seed=1),
                       method=MethodConfig(name="vanilla"))
    trainer = Trainer(config)
    warm = 5
    for _ in range(warm):
        trainer.train_step()
    trainer.dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps - warm):
        trainer.train_step()
    trainer.dist.barrier()
    tokens_per_s = (args.steps - warm) * 16 * SHAPE["block_size"] / (time.perf_counter() - start)
    maps = [tuple(range(12)), make_tie_map("cycle-rev", 12, 4)]
    times = []
    for i in range(args.events):
        trainer.dist.barrier()
        t0 = time.perf_counter()
        trainer.apply_tie_map(maps[(i + 1) % 2], reason="bench")
        trainer.dist.barrier()
        times.append(time.perf_counter() - t0)
        trainer.train_step()  # new blocks get Adam state before the next switch, as in training
    if trainer.dist.is_main:
        Path(args.record).write_text(json.dumps({"tokens_per_s": tokens_per_s,
                                                 "tie_event_ms": 1000 * statistics.median(times)}))
    shutdown()


def launch(nproc: int, threads: int, args: argparse.Namespace, record: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    me = [str(Path(__file__).resolve()), "--worker", "--threads", str(threads), "--steps", str(args.steps),
          "--events", str(args.events), "--record", str(record)]
    head = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc-per-node={nproc}"]
    subprocess.run([*head, *me], env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(record.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--record", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    cases = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes (DDP, gloo), 1 thread each",
                                                                            2, 1)]
    results = [(name, launch(n, t, args, work / f"{n}x{t}.json")) for name, n, t in cases]
    base = results[0][1]
    print(f"# bench_ddp: {SHAPE['n_layer']} x {SHAPE['n_embd']}, context {SHAPE['block_size']}, global batch 16, "
          f"char-level pydoc, vanilla, {args.steps} steps (5 warm-up), {args.events} tie events (12 <-> 4 unique)")
    print(f"# machine: {os.cpu_count()} CPU cores")
    print("| setup | tokens/s | vs 1 process, 1 thread | ms per tie event | vs 1 process, 1 thread |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results:
        print(f"| {name} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base['tokens_per_s']:.2f}x "
              f"| {r['tie_event_ms']:.1f} | {r['tie_event_ms'] / base['tie_event_ms']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
