"""The measured comparison in docs/RESULTS.md, reproducible with one command.

    .venv/bin/python experiments/results_cpu.py --data ../shared/data --out runs/results --threads 1

Part 1, WikiText-2 raw (train on valid.txt, evaluate on test.txt, as ../shared/data/README.md
says; the loader trains on the first 90% of valid.txt and validates on its last 10%):
12 blocks, width 128, 4 heads, context 128, batch 16, BPE vocab 4096, the same step budget
for every method. vanilla and dlt with 3 seeds; random-fixed at dlt's final unique-block
count with the same 3 seeds; dlt with the loss-improvement reward, random, and cycle-rev
at dlt's unique count with 1 seed.
Part 2, Tiny Shakespeare char-level on nanoGPT's published CPU configuration, vanilla vs dlt.
Finished runs are reused, so an interrupted invocation continues.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dyntie_core import AgentConfig, MethodConfig, RunConfig, preset_config  # noqa: E402
from dyntie_core.compare import markdown_table, run_comparison  # noqa: E402
from dyntie_core.data import load_data  # noqa: E402


def wikitext_config(data_dir: Path, steps: int) -> RunConfig:
    return preset_config("wikitext2-cpu", train={"steps": steps, "eval_interval": max(1, steps // 6)},
                         data={"dataset": str(data_dir / "wikitext-2" / "raw")})


def shakespeare_config(data_dir: Path) -> RunConfig:
    return preset_config("nanogpt-shakespeare-cpu",
                         data={"dataset": str(data_dir / "tinyshakespeare" / "input.txt")})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("runs/results"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--part", choices=("all", "wikitext", "shakespeare"), default="all")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if args.part in ("all", "wikitext"):
        base = wikitext_config(args.data, args.steps)
        data = load_data(base.data, base.model.block_size)
        out = args.out / "wikitext2"
        seeds = [1, 2, 3]
        rows = run_comparison(base, [MethodConfig("vanilla"), MethodConfig("dlt")], seeds, out, data=data)
        dlt_unique = [int(s) for s in _dlt_unique(out / "dlt", seeds)]
        n = round(statistics.fmean(dlt_unique))
        print(f"dlt final unique blocks per seed: {dlt_unique} -> controls use {n}", flush=True)
        rows += run_comparison(base, [MethodConfig("random-fixed", n_unique=n)], seeds, out / "controls", data=data)
        rows += run_comparison(base, [MethodConfig("dlt", agent=AgentConfig(reward="loss-improvement")),
                                      MethodConfig("random"), MethodConfig("cycle-rev", n_unique=n)],
                               [1], out / "single", data=data)
        (args.out / "wikitext2.md").write_text(markdown_table(rows), encoding="utf-8")
        print(markdown_table(rows), flush=True)
    if args.part in ("all", "shakespeare"):
        base = shakespeare_config(args.data)
        rows = run_comparison(base, [MethodConfig("vanilla"), MethodConfig("dlt")], [1], args.out / "shakespeare")
        (args.out / "shakespeare.md").write_text(markdown_table(rows), encoding="utf-8")
        print(markdown_table(rows), flush=True)
    return 0


def _dlt_unique(run_root: Path, seeds: list[int]) -> list[int]:
    import json

    return [json.loads((run_root / f"seed{s}" / "summary.json").read_text())["unique_blocks"] for s in seeds]


if __name__ == "__main__":
    sys.exit(main())
