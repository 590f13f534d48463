"""The CUDA checks, as one prepared script for a GPU machine (CPU runs it too, at a small size, to test it):

1. bf16 autocast, a few hundred steps, vanilla vs the DLT agent in the same run: tokens/s, MFU, and CUDA memory
   by component, predicted next to measured.
2. Exact resume on CUDA: a DLT run interrupted half-way and resumed from its checkpoint against the same run
   uninterrupted, loss by loss (CUDA RNG state is in the checkpoint; dropout on).
3. float32 vs bf16 autocast on the same run: loss and memory.

    python benchmarks/gpu_check.py --out gpu-check                    # CUDA, the paper-gpt2-12 shape
    python benchmarks/gpu_check.py --device cpu --small --out /tmp/gc  # the same logic on CPU, in seconds

Data: Python's bundled docs with a byte-level BPE of 4,096 tokens (no corpus or GPT-2 vocabulary needs to be on
the machine). Writes gpu-check.md into --out and prints it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from dyntie_core import DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
from dyntie_core.config import AgentConfig
from dyntie_core.events import StepEvent
from dyntie_core.loop import Trainer
from dyntie_core.memory import format_bytes

PARTS = ("params", "grads", "optimizer", "activations", "cuda_allocated", "cuda_peak", "cuda_reserved")


def config(args: argparse.Namespace, method: str, dtype: str, steps: int) -> RunConfig:
    if args.small:
        model = GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=32, dropout=0.2)
    else:  # paper-gpt2-12's shape (12 blocks, width 1600, 16 heads, context 256, dropout 0.2)
        model = GPTConfig(n_layer=12, n_head=16, n_embd=1600, block_size=256, dropout=0.2)
    return RunConfig(model=model,
                     train=TrainConfig(steps=steps, batch_size=16, lr=1e-4, eval_interval=max(steps // 2, 1),
                                       eval_tokens=16384, checkpoint_interval=max(steps // 2, 1), seed=1,
                                       device=args.device, dtype=dtype),
                     data=DataConfig(dataset="pydoc", tokenizer="bpe", bpe_vocab_size=4096),
                     method=MethodConfig(name=method, agent=AgentConfig(k_steps=4)))


def run(cfg: RunConfig, out: Path, resume_from: Path | None = None) -> tuple[dict, list[float]]:
    trainer = Trainer.resume(resume_from, steps=cfg.train.steps) if resume_from else Trainer(cfg, run_dir=out)
    losses: list[float] = []
    trainer.subscribe(lambda e: losses.append(e.loss) if isinstance(e, StepEvent) else None)
    return trainer.run(), losses


def memory_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| run | component | measured | predicted |", "| --- | --- | --- | --- |"]
    for name, s in rows:
        for part in PARTS:
            measured, predicted = s["memory"].get(part), s["memory_predicted"].get(part)
            if measured is not None or predicted is not None:
                lines.append(f"| {name} | {part} | {format_bytes(measured)} | {format_bytes(predicted)} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--small", action="store_true", help="4 blocks of width 32 (for a CPU dry run)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    out = args.out
    start = time.perf_counter()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    md = [f"# gpu_check: {device}, torch {torch.__version__}, {'small' if args.small else 'paper-gpt2-12'} shape, "
          f"{args.steps} steps, batch 16, seed 1", "", "Command: `python benchmarks/gpu_check.py " +
          " ".join(sys.argv[1:]) + "`", ""]

    results = {m: run(config(args, m, "bfloat16", args.steps), out / f"bf16-{m}") for m in ("vanilla", "dlt")}
    md += ["## 1. bf16 autocast: vanilla vs DLT", "",
           "| method | val ppl | tokens/s | vs vanilla | MFU | unique blocks |", "|" + " --- |" * 6]
    base = results["vanilla"][0]["tokens_per_s"]
    for m, (s, _) in results.items():
        mfu = "-" if s["mfu"] is None else f"{s['mfu']:.1%}"
        md.append(f"| {m} | {s['best_val_ppl']:.2f} | {s['tokens_per_s']:,.0f} | {s['tokens_per_s'] / base:.3f}x "
                  f"| {mfu} | {s['unique_blocks']} |")
    md += ["", *memory_table([(m, s) for m, (s, _) in results.items()]), ""]

    half = args.steps // 2
    full_losses = results["dlt"][1]
    run(config(args, "dlt", "bfloat16", half), out / "resume")
    _, resumed = run(config(args, "dlt", "bfloat16", args.steps), out / "resume", resume_from=out / "resume")
    diffs = [abs(a - b) for a, b in zip(full_losses[half:], resumed, strict=True)]
    md += ["## 2. Exact resume (DLT, bf16, dropout 0.2)", "",
           f"Interrupted at step {half}, resumed to {args.steps}: {len(diffs)} losses compared with the "
           f"uninterrupted run; identical: {sum(d == 0 for d in diffs)}; max abs difference {max(diffs):.3g}.", ""]

    s32, l32 = run(config(args, "vanilla", "float32", args.steps), out / "fp32-vanilla")
    s16, l16 = results["vanilla"]
    md += ["## 3. float32 vs bf16 autocast (vanilla)", "", "| dtype | val ppl | final train loss | tokens/s | "
           "model state | peak |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s, losses in (("float32", s32, l32), ("bfloat16", s16, l16)):
        md.append(f"| {name} | {s['best_val_ppl']:.2f} | {sum(losses[-20:]) / 20:.4f} | {s['tokens_per_s']:,.0f} "
                  f"| {format_bytes(s['memory']['model_state'])} | {format_bytes(s['memory'].get('cuda_peak'))} |")
    md += ["", f"Wall time: {time.perf_counter() - start:.0f} s.", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
