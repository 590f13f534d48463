"""How to spend the cores on a grid: one run with every thread against as many runs at once as there are cores,
one thread each (what ``dyntie reproduce --jobs N`` does). The throughput of each setup, summed over its
processes, as a ratio to one run with one thread, all in one invocation.

    python benchmarks/bench_jobs.py --steps 150      # a CPU-twin cell: paper-gpt2-12-cpu on Tiny Shakespeare
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).with_name("dyntie")
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def start(out: Path, threads: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [str(BIN), "train", "--preset", args.preset, "--method", "vanilla", "--dataset", str(args.dataset),
           "--tokenizer", "char", "--steps", str(args.steps), "--eval-interval", str(args.steps * 10),
           "--eval-tokens", "1024", "--seed", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tokens_per_s(runs: list[Path], args: argparse.Namespace) -> float:
    """Summed over processes that ran at the same time: each one's tokens over its own training time."""
    procs = [start(out, args.threads_per_job, args) for out in runs]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a training run failed; see dyntie train ... --out {runs[0]}")
    return sum(json.loads((out / "summary.json").read_text())["tokens_per_s"] for out in runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--preset", default="paper-gpt2-12-cpu")
    p.add_argument("--dataset", type=Path, default=SHAKESPEARE)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    args.threads_per_job = 1
    one = tokens_per_s([work / "one"], args)
    args.threads_per_job = args.cores
    threaded = tokens_per_s([work / "threaded"], args)
    args.threads_per_job = 1
    parallel = tokens_per_s([work / f"job{k}" for k in range(args.cores)], args)
    print(f"# bench_jobs: {args.preset}, vanilla, {args.steps} steps, char-level {args.dataset.name}, "
          f"{args.cores} cores")
    print("| setup | tokens/s (all processes) | vs 1 run, 1 thread |\n| --- | --- | --- |")
    print(f"| 1 run, 1 thread | {one:,.0f} | 1.00x |")
    print(f"| 1 run, {args.cores} threads | {threaded:,.0f} | {threaded / one:.2f}x |")
    jobs = f"{args.cores} runs at once, 1 thread each (--jobs {args.cores})"
    print(f"| {jobs} | {parallel:,.0f} | {parallel / one:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
