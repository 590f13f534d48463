"""Training-step speed and model-state memory of tied maps against vanilla, measured in one run.

The soft-sharing variant (``soft``, ``relax=mix``) ties as many positions as the cycle map, and each of them
mixes the templates' tensors at every step (the mixing is the same at any temperature).
The DLT agent variant includes everything the agent adds to a step: its decision every
K steps and the reward pass (one extra eval-mode forward on a fresh batch). It starts
all tied and explores (epsilon 1), which keeps about 75% of 12 blocks tied (H_12 = 3.1 roots).

Machines are noisy, so every figure is a ratio to vanilla measured in the same process,
with the methods interleaved round by round and the median step time taken.

    python benchmarks/bench_train.py                       # 12 blocks, width 256, batch 16 x 128
    python benchmarks/bench_train.py --n-layer 6 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from dyntie_core import DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig  # noqa: E402
from dyntie_core.data import load_data  # noqa: E402
from dyntie_core.loop import Trainer  # noqa: E402
from dyntie_core.memory import format_bytes, measure_memory, predict_memory  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary trained on the pydoc corpus")
    p.add_argument("--n-unique", type=int, default=3, help="unique blocks of the partly tied map (cycle scheme)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_data(DataConfig(dataset="pydoc", tokenizer="bpe", bpe_vocab_size=args.vocab_size), args.block_size)
    cycle = MethodConfig("cycle", n_unique=args.n_unique)
    variants = [  # (label, model settings, method)
        ("vanilla", {}, MethodConfig("vanilla")),
        ("all-shared", {}, MethodConfig("all-shared")),
        (f"cycle-{args.n_unique} (follow)", {}, cycle),
        (f"cycle-{args.n_unique} (share)", {"tie_mode": "share"}, cycle),
        (f"cycle-{args.n_unique} (follow, relax=norms)", {"relax": "norms"}, cycle),
        (f"cycle-{args.n_unique} (follow, relax=lora r=4)", {"relax": "lora", "relax_rank": 4}, cycle),
        (f"soft-{args.n_unique} (follow, relax=mix)", {"relax": "mix"}, MethodConfig("soft", n_unique=args.n_unique)),
        ("dlt agent (follow, K=4)", {}, MethodConfig("dlt")),
    ]
    trainers = {}
    for label, settings, method in variants:
        cfg = RunConfig(
            model=GPTConfig(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
                            vocab_size=data.vocab_size, **settings),
            train=TrainConfig(steps=10**9, batch_size=args.batch_size, seed=args.seed),
            data=DataConfig(dataset="pydoc"), method=method)
        trainers[label] = Trainer(cfg, data=data)
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.train_step()
    times: dict[str, list[float]] = {k: [] for k in trainers}
    unique: dict[str, list[int]] = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for label, trainer in trainers.items():
            for _ in range(args.steps_per_round):
                t0 = time.perf_counter()
                trainer.train_step()
                times[label].append(time.perf_counter() - t0)
                unique[label].append(len(trainer.model.blocks))

    tokens = args.batch_size * args.block_size
    base_t = statistics.median(times["vanilla"])
    base_mem = measure_memory(trainers["vanilla"].model, trainers["vanilla"].optimizer).model_state
    print(f"# bench_train: {args.n_layer} blocks, width {args.n_embd}, {args.n_head} heads, batch {args.batch_size} x "
          f"{args.block_size} tokens, vocab {data.vocab_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps_per_round} steps (median)")
    print("| variant | unique blocks (mean over timed steps) | ms/step | tokens/s | step time vs vanilla "
          "| model-state memory | memory vs vanilla | measured / analytic floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, trainer in trainers.items():
        t = statistics.median(times[label])
        mem = measure_memory(trainer.model, trainer.optimizer).model_state
        floor = predict_memory(trainer.config.model, trainer.model.tie_map).model_state
        n_unique = statistics.fmean(unique[label])
        print(f"| {label} | {n_unique:.2f} | {t * 1e3:.1f} | {tokens / t:,.0f} | {t / base_t:.3f}x "
              f"| {format_bytes(mem)} | {mem / base_mem:.3f}x | {mem / floor:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
