"""What tying a trained model's blocks costs at once, and how much of it each relaxation keeps (issue 9, H2/H3).

    .venv/bin/python experiments/tie_cost.py RUN_DIR [RUN_DIR ...] --relax none,norms,lora:4,lora:16

Takes the best checkpoint of each finished run with independent blocks (vanilla), and, for each relaxation, ties it
down to ``--n-unique`` blocks the way ``shrink`` by loss does (greedily: each time, the pair of roots whose tie
raises a training probe batch's loss least, tried on a copy), with no training in between. After every tie it
measures the validation loss, so the table shows the immediate cost of each tie and what a LoRA relaxation of rank r,
initialised from the truncated SVD of the difference it replaces (``Relaxation.init_from``), keeps of the function.
Comparing a run stopped early with one trained long on the same data shows how the cost grows as blocks diverge.
Prints a Markdown table; ``--plot`` writes the validation loss against the number of ties as a PNG. ``--pairs 0:1,2:3``
adds the cost of each single tie (block B tied to block A) under each relaxation: the same tie, so the relaxations
are compared on equal terms (the greedy sequences may choose different pairs).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from dyntie_core.data import load_data, sample_windows
from dyntie_core.evaluation import evaluate
from dyntie_core.model import TiedGPT
from dyntie_core.policies.progressive import cheapest_pair
from dyntie_core.probes import tie_losses
from dyntie_core.rundir import RunDir
from dyntie_core.tying import count_parameters, resolve_roots, unique_blocks


def parse_relax(text: str) -> tuple[str, int]:
    """``none``, ``norms`` or ``lora:R`` as (relax, rank)."""
    kind, _, rank = text.partition(":")
    if kind not in ("none", "norms", "lora") or (kind == "lora") != bool(rank) or (rank and not rank.isdigit()):
        raise argparse.ArgumentTypeError(f"a relaxation is none, norms or lora:RANK, got {text!r}")
    return kind, int(rank or 4)


def relaxed_copy(model: TiedGPT, relax: str, rank: int) -> TiedGPT:
    """The same weights and map in a model whose ties are relaxed by ``relax`` (rank ``rank`` for LoRA)."""
    if unique_blocks(model.tie_map) != len(model.tie_map):
        raise ValueError("tie_cost needs a run whose checkpoint has independent blocks (a vanilla run)")
    config = dataclasses.replace(model.config, relax=relax, relax_rank=rank)
    out = TiedGPT(config, model.tie_map)
    out.load_state_dict(model.state_dict())
    return out.eval()


def greedy_ties(model: TiedGPT, n_unique: int, probe: tuple[torch.Tensor, torch.Tensor],
                score: Any) -> list[dict[str, Any]]:
    """Tie ``model`` pair by pair down to ``n_unique`` roots, each time the pair whose tie costs the probe batch
    least (``cheapest_pair``, shrink by loss's rule), and ``score`` it after each tie: one row per map, the first
    untied."""
    def row(ties: int) -> dict[str, Any]:
        return {"ties": ties, "map": list(model.tie_map), "val_loss": score(model),
                "trainable": count_parameters(model)["trainable"]}

    rows = [row(0)]
    roots = list(resolve_roots(model.tie_map))
    while len(set(roots)) > n_unique:
        keep, drop = cheapest_pair(roots, lambda maps: tie_losses(model, maps, *probe))
        roots = [keep if r == drop else r for r in roots]
        model.set_tie_map(roots)
        model.eval()
        rows.append(row(len(rows)))
    return rows


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """``A:B,C:D`` as [(A, B), (C, D)]: block B tied to block A, A < B."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        a, _, b = item.partition(":")
        if not (a.isdigit() and b.isdigit() and int(a) < int(b)):
            raise argparse.ArgumentTypeError(f"a pair is A:B with block indices A < B, got {item!r}")
        pairs.append((int(a), int(b)))
    return pairs


def single_ties(model: TiedGPT, pairs: list[tuple[int, int]], score: Any) -> dict[tuple[int, int], float]:
    """{(a, b): the score after tying block b to block a} from ``model``'s current map, on a copy each time."""
    out = {}
    for a, b in pairs:
        if not b < len(model.tie_map):
            raise ValueError(f"pair {a}:{b} is outside the model's {len(model.tie_map)} blocks")
        trial = copy.deepcopy(model)
        trial.set_tie_map([a if r == b else r for r in resolve_roots(model.tie_map)])
        out[(a, b)] = score(trial.eval())
    return out


def measure(run_dir: Path, relaxations: list[tuple[str, int]], n_unique: int, eval_tokens: int | None,
            pairs: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """{relaxation label: greedy_ties rows}, plus ``untied`` (the score before any tie) and ``pairs`` ({label:
    single_ties}) when ``pairs`` are given, for the best checkpoint of the run in ``run_dir``."""
    run = RunDir(run_dir)
    config = run.read_config()
    data = load_data(config.data, config.model.block_size)
    base = run.load_model("best")
    probe = sample_windows(data.train, config.train.batch_size, config.model.block_size,
                           torch.Generator().manual_seed(config.train.seed))
    tokens = eval_tokens or config.train.eval_tokens

    def score(model: TiedGPT) -> float:
        return evaluate(model, data.valid, config.model.block_size, config.train.batch_size, tokens)

    out: dict[str, Any] = {"greedy": {}, "pairs": {}}
    for relax, rank in relaxations:
        label = f"lora:{rank}" if relax == "lora" else relax
        if pairs:
            out["pairs"][label] = single_ties(relaxed_copy(base, relax, rank), list(pairs), score)
        out["greedy"][label] = greedy_ties(relaxed_copy(base, relax, rank), n_unique, probe, score)
    out["untied"] = score(base)
    return out


def pair_table(untied: float, results: dict[str, dict[tuple[int, int], float]]) -> list[str]:
    pairs = list(next(iter(results.values())))
    lines = ["| relaxation | " + " | ".join(f"tie {b} to {a} (nats)" for a, b in pairs) + " |",
             "|" + " --- |" * (len(pairs) + 1)]
    for label, losses in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{losses[p] - untied:+.4f}" for p in pairs) + " |")
    return lines


def table(run_dir: Path, step: int, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [f"**{run_dir}** (best checkpoint, step {step})", "",
             "| relaxation | trainable params at the end | val loss untied | after 1 tie | after all ties | "
             "cost of all ties (nats) | mean cost per tie | final map |", "|" + " --- |" * 8]
    for label, rows in results.items():
        first, last = rows[0]["val_loss"], rows[-1]["val_loss"]
        ties = len(rows) - 1
        lines.append(f"| {label} | {rows[-1]['trainable']:,} | {first:.4f} | {rows[min(1, ties)]['val_loss']:.4f} | "
                     f"{last:.4f} | {last - first:+.4f} | {(last - first) / max(1, ties):+.4f} | "
                     f"{rows[-1]['map']} |")
    return lines


def plot(results: dict[Path, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (run_dir, by_relax) in zip(axes[0], results.items(), strict=True):
        for label, rows in by_relax.items():
            ax.plot([r["ties"] for r in rows], [r["val_loss"] for r in rows], marker="o", ms=3, label=label)
        ax.set_title(str(run_dir), fontsize=8)
        ax.set_xlabel("ties (greedy by probe loss, no training between)")
        ax.set_ylabel("validation loss (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished runs with independent blocks (vanilla)")
    parser.add_argument("--relax", default="none,norms,lora:4,lora:16",
                        help="comma-separated relaxations: none, norms, lora:RANK")
    parser.add_argument("--n-unique", type=int, default=4, help="tie down to this many unique blocks")
    parser.add_argument("--eval-tokens", type=int, default=None, help="validation tokens (default: the run's)")
    parser.add_argument("--plot", type=Path, default=None, help="write the loss-against-ties figure here (PNG)")
    parser.add_argument("--pairs", default="", help="also the cost of these single ties, e.g. 0:1,2:3")
    args = parser.parse_args(argv)
    try:
        relaxations = [parse_relax(t.strip()) for t in args.relax.split(",") if t.strip()]
        pairs = parse_pairs(args.pairs)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    torch.manual_seed(0)  # LoRA's random A where a difference is exactly zero
    everything = {}
    for run_dir in args.runs:
        if not (run_dir / RunDir.CONFIG).is_file():
            print(f"not a run directory (no {RunDir.CONFIG}): {run_dir}", file=sys.stderr)
            return 2
        try:
            measured = measure(run_dir, relaxations, args.n_unique, args.eval_tokens, pairs)
        except ValueError as exc:
            print(f"{run_dir}: {exc}", file=sys.stderr)
            return 2
        everything[run_dir] = measured["greedy"]
        step = RunDir(run_dir).read_summary().get("best_step", "?")
        print("\n".join(table(run_dir, step, measured["greedy"])) + "\n")
        if pairs:
            print("\n".join(pair_table(measured["untied"], measured["pairs"])) + "\n")
    if args.plot:
        plot(everything, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
