"""Overhead of the grid runner per cell: one cell through ``dyntie reproduce`` (papermill, a fresh kernel,
the experiment notebook, the report) against the same run through ``dyntie train``, interleaved, in one
invocation; the ratio of median wall times and the difference in seconds.

    python benchmarks/bench_grid.py --rounds 3 --steps 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).with_name("dyntie")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    work = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    cell = {"preset": "debug", "dataset": "pydoc", "steps": args.steps, "seed": 1,
            "overrides": {"data": {"tokenizer": "char"}, "train": {"eval_interval": 20}}}
    grid = work / "grid.yaml"
    grid.write_text(yaml.safe_dump({"parameters": cell, "axes": {"method": ["vanilla"]}}))
    train = [str(BIN), "train", "--preset", "debug", "--dataset", "pydoc", "--tokenizer", "char", "--steps",
             str(args.steps), "--seed", "1", "--eval-interval", "20"]
    direct, grid_times = [], []
    for r in range(args.rounds):
        direct.append(timed([*train, "--out", str(work / f"train{r}")], env))
        grid_times.append(timed([str(BIN), "reproduce", str(grid), "--out", str(work / f"grid{r}")], env))
    a, b = statistics.median(direct), statistics.median(grid_times)
    print(f"# bench_grid: preset debug, {args.steps} steps, char-level pydoc, {args.rounds} rounds, median wall time")
    print("| path | wall s | vs dyntie train |\n| --- | --- | --- |")
    print(f"| dyntie train | {a:.2f} | 1.00x |")
    print(f"| dyntie reproduce (1 cell) | {b:.2f} | {b / a:.2f}x (+{b - a:.2f} s per cell) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
