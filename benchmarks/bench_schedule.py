"""Whole-run step time of the dynamic methods against vanilla: every step of a short schedule, measured in one run.

``bench_train.py`` times steps of a fixed map; a dynamic method also pays for its decisions: the DLT agent's
reward pass, shrink's weight comparisons or trial ties, soft sharing's mixing, and every tie change (optimizer
sync, transition). Here each method runs its whole schedule (the same step budget, so shrink ties at the same
fractions of the run as in a real one), and the figure is the mean step time over all steps, decisions included,
as a ratio to vanilla's. The methods advance in interleaved rounds so that machine noise hits all of them alike.

A short schedule overweights what a method pays once per tie change (shrink by loss tries every pair of roots
on a copy of the model: seconds per change, 8 changes whatever the budget). So the script also splits each
method's time into ordinary steps and the extra time of the steps that changed the map, and projects the mean
step time to a real budget (``--project``, default the paper's 13,200 steps): ordinary mean + extra / budget.

    python benchmarks/bench_schedule.py                   # paper-gpt2-12-cpu's shape, batch 16 x 64, 400 steps
    python benchmarks/bench_schedule.py --steps 200 --threads 1
    python benchmarks/bench_schedule.py --only share --only random-fixed   # share mode against follow mode
    python benchmarks/bench_schedule.py --only "share, relax"              # LoRA-relaxed ties in share mode
    python benchmarks/bench_schedule.py --only "share, early"              # the early-window candidate
    python benchmarks/bench_schedule.py --only fast --only sequence        # the fast window, the map it finds, LoRA
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from dyntie_core import DataConfig, MethodConfig, preset_config  # noqa: E402
from dyntie_core.config import ProgressiveConfig  # noqa: E402
from dyntie_core.data import load_data  # noqa: E402
from dyntie_core.events import TieChangeEvent  # noqa: E402
from dyntie_core.loop import Trainer  # noqa: E402

LOSS = ProgressiveConfig(criterion="loss")
FAST = ProgressiveConfig(criterion="loss", start=0.02, end=0.1)  # the fast window of grids/study-horizon-fast.yaml
LORA8 = {"tie_mode": "share", "relax": "lora", "relax_rank": 8}
VARIANTS = (  # (label, method, model settings)
    ("vanilla", MethodConfig("vanilla"), {}),
    ("sandwich-4 (fixed)", MethodConfig("sandwich", n_unique=4), {}),
    ("random-fixed-4 (fixed)", MethodConfig("random-fixed", n_unique=4), {}),
    ("random-fixed-4 (fixed, share)", MethodConfig("random-fixed", n_unique=4), {"tie_mode": "share"}),
    ("shrink-4 (cosine)", MethodConfig("shrink", n_unique=4), {}),
    ("shrink-4 (loss)", MethodConfig("shrink", n_unique=4, progressive=LOSS), {}),
    ("shrink-4 (loss, relax=lora)", MethodConfig("shrink", n_unique=4, progressive=LOSS), {"relax": "lora"}),
    ("shrink-4 (loss, share)", MethodConfig("shrink", n_unique=4, progressive=LOSS), {"tie_mode": "share"}),
    ("shrink-4 (loss, follow, early: ties over 10-50% of the run)",
     MethodConfig("shrink", n_unique=4, progressive=ProgressiveConfig(criterion="loss", start=0.1, end=0.5)), {}),
    ("shrink-4 (loss, share, early: ties over 10-50% of the run)",
     MethodConfig("shrink", n_unique=4, progressive=ProgressiveConfig(criterion="loss", start=0.1, end=0.5)),
     {"tie_mode": "share"}),
    ("shrink-4 (loss, share, fast: ties over 2-10% of the run)", MethodConfig("shrink", n_unique=4, progressive=FAST),
     {"tie_mode": "share"}),
    ("sequence-4 (fixed, share)", MethodConfig("sequence", n_unique=4), {"tie_mode": "share"}),
    ("random-fixed-4 (fixed, share, relax=lora r8)", MethodConfig("random-fixed", n_unique=4), LORA8),
    ("shrink-4 (loss, share, relax=lora r8)", MethodConfig("shrink", n_unique=4, progressive=LOSS), LORA8),
    ("shrink-4 (loss, share, fast: ties over 2-10% of the run, relax=lora r8)",
     MethodConfig("shrink", n_unique=4, progressive=FAST), LORA8),
    ("sequence-4 (fixed, share, relax=lora r8)", MethodConfig("sequence", n_unique=4), LORA8),
    ("soft-4 (relax=mix)", MethodConfig("soft", n_unique=4), {"relax": "mix"}),
    ("dlt (the paper's agent)", MethodConfig("dlt"), {}),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper-gpt2-12-cpu")
    p.add_argument("--steps", type=int, default=400, help="the schedule's step budget (every method runs all)")
    p.add_argument("--steps-per-round", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--project", type=int, default=13200, help="budget to project the mean step time to")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only the methods whose label contains TEXT (repeatable); vanilla always runs")
    args = p.parse_args(argv)
    variants = [v for v in VARIANTS if v[0] == "vanilla" or not args.only or any(t in v[0] for t in args.only)]
    if args.threads:
        torch.set_num_threads(args.threads)
    base = preset_config(args.preset, data={"dataset": "pydoc", "tokenizer": "bpe", "bpe_vocab_size": 4096},
                         train={"steps": args.steps, "episodes": None, "eval_interval": 10**9, "seed": args.seed})
    data = load_data(DataConfig(dataset="pydoc", tokenizer="bpe", bpe_vocab_size=4096), base.model.block_size)
    trainers, changes = {}, {}
    for label, method, model in variants:
        config = base.replace(method=method, model=dataclasses.replace(base.model, **model))
        trainers[label] = Trainer(config, data=data)
        changes[label] = 0
        trainers[label].subscribe(lambda e, k=label: changes.__setitem__(k, changes[k] + isinstance(e, TieChangeEvent)))
    times: dict[str, list[float]] = {k: [] for k in trainers}
    changed: dict[str, list[bool]] = {k: [] for k in trainers}
    while any(t.step < args.steps for t in trainers.values()):
        for label, trainer in trainers.items():
            for _ in range(min(args.steps_per_round, args.steps - trainer.step)):
                before = changes[label]
                t0 = time.perf_counter()
                trainer.train_step()
                times[label].append(time.perf_counter() - t0)
                changed[label].append(changes[label] > before)
    m = base.model
    print(f"# bench_schedule: preset {args.preset} ({m.n_layer} blocks, width {m.n_embd}, batch "
          f"{base.train.batch_size} x {m.block_size}), {args.steps} steps per method, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, rounds of {args.steps_per_round} steps")
    print(f"| method | final unique blocks | tie changes | mean ms/step here | vs vanilla here | ordinary ms/step "
          f"| extra s at tie changes | projected vs vanilla at {args.project:,} steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base_t = statistics.fmean(times["vanilla"])
    for label, trainer in trainers.items():
        t = statistics.fmean(times[label])
        ordinary = statistics.fmean(x for x, c in zip(times[label], changed[label], strict=True) if not c)
        extra = sum(x - ordinary for x, c in zip(times[label], changed[label], strict=True) if c)
        projected = (ordinary + extra / args.project) / base_t
        print(f"| {label} | {len(trainer.model.blocks)} | {changes[label]} | {t * 1e3:.1f} | {t / base_t:.3f}x | "
              f"{ordinary * 1e3:.1f} | {extra:.1f} | {projected:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
