"""Soak: a long DLT run with a tie decision every step; nothing may grow.

Resident memory (RSS) and model-state bytes are sampled every ``--every`` steps; after a warm-up
their least-squares slope per 1,000 steps must be about zero, and step time must not drift (ratio
of the last tenth's median step time to the first tenth's, after warm-up).

    python benchmarks/soak.py --steps 10000 --every 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dyntie_core import Trainer, preset_config  # noqa: E402
from dyntie_core.memory import measure_memory, predict_memory  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--warmup", type=int, default=1_000)
    args = p.parse_args()
    config = preset_config("debug", train={"steps": args.steps, "eval_interval": args.steps, "eval_tokens": 1024,
                                           "batch_size": 4},
                           data={"dataset": "pydoc", "tokenizer": "char"},
                           method={"name": "dlt", "agent": {"k_steps": 1}})
    trainer = Trainer(config)
    changes = []
    trainer.subscribe(lambda e: changes.append(e.step) if type(e).__name__ == "TieChangeEvent" else None)
    samples, times = [], []
    for step in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
        if (step + 1) % args.every == 0:
            measured = measure_memory(trainer.model, trainer.optimizer).model_state
            floor = predict_memory(trainer.config.model, trainer.model.tie_map).model_state
            samples.append((step + 1, rss_bytes(), measured / floor))
    after = [s for s in samples if s[0] > args.warmup]
    xs = [s[0] / 1000 for s in after]
    rss_slope = statistics.linear_regression(xs, [s[1] for s in after]).slope
    worst = max(abs(s[2] - 1.0) for s in samples)
    tenth = max(1, (args.steps - args.warmup) // 10)
    first = statistics.median(times[args.warmup:args.warmup + tenth])
    last = statistics.median(times[-tenth:])
    print(f"# soak: preset debug (4 blocks x 32), dlt with K=1, {args.steps} steps, {len(changes)} tie changes, "
          f"samples every {args.every} steps after {args.warmup} warm-up steps")
    print("| measure | value |\n| --- | --- |")
    print(f"| RSS slope | {rss_slope / 1024:+.1f} KiB per 1,000 steps (RSS {after[0][1] / 2**20:.1f} -> "
          f"{after[-1][1] / 2**20:.1f} MiB) |")
    print(f"| model-state memory / analytic floor of the map in force | worst deviation {worst:.2e} over "
          f"{len(samples)} samples |")
    print(f"| step time, last tenth / first tenth | {last / first:.3f} ({first * 1e3:.2f} -> {last * 1e3:.2f} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
