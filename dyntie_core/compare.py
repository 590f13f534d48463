"""Run several methods on the same data, config, step budget and seeds; tabulate the results."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import AgentConfig, MethodConfig, RunConfig
from .data import TokenData, load_data
from .distributed import init_from_env
from .experiment import run_or_resume
from .fileio import write_text_atomic
from .loop import Trainer
from .memory import format_bytes
from .plots import pareto_html
from .policies import check_method, method_spec

COLUMNS = ("method", "seeds", "val_ppl_mean", "val_ppl_std", "test_ppl_mean", "test_ppl_std", "trainable_params",
           "unique_blocks", "model_state_bytes", "tokens_per_s", "wall_s", "diverged")


def parse_methods(spec: str, default_n_unique: int | None = None,
                  agent: AgentConfig | None = None) -> list[MethodConfig]:
    """``"vanilla,cycle:3,dlt"`` -> method configs. ``name:n`` sets a method's unique-block count;
    ``default_n_unique`` applies to the methods that need one; ``agent`` configures the agent methods."""
    methods = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, n = item.partition(":")
        try:
            explicit = int(n) if n else None
        except ValueError:
            raise ValueError(f"bad method spec {item!r}: expected name or name:n_unique") from None
        kind = method_spec(name)
        n_unique = explicit if explicit is not None else (default_n_unique if kind.n_unique == "required" else None)
        method = MethodConfig(name=name, n_unique=n_unique, agent=agent if kind.agent and agent else AgentConfig())
        check_method(method)
        methods.append(method)
    if not methods:
        raise ValueError("no methods given")
    return methods


def run_label(method: MethodConfig) -> str:
    """``cycle-3``, ``dlt``, ``dlt[reward=loss-improvement]``: runs that differ get different labels."""
    label = method.name + (f"-{method.n_unique}" if method.n_unique is not None else "")
    spec = method_spec(method.name)
    changed = {**(method.agent.changed() if spec.agent else {}),
               **(method.progressive.changed() if spec.progressive else {})}
    if changed:
        label += "[" + ",".join(f"{k}={v}" for k, v in sorted(changed.items())) + "]"
    return label


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_comparison(base: RunConfig, methods: Sequence[MethodConfig], seeds: Sequence[int], out_dir: str | Path,
                   data: TokenData | None = None,
                   on_trainer: Callable[[Trainer, str], None] | None = None) -> list[dict[str, Any]]:
    """Train every (method, seed) into ``out_dir/<method>/seed<seed>``; finished runs are reused and
    interrupted ones resumed, so a killed comparison continues where it stopped. Writes
    ``comparison.md``, ``comparison.csv`` and ``pareto.html``; returns the table rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = init_from_env(base.train.device, base.train.dist_timeout_s)  # under torchrun: rank 0 writes the tables
    if data is None:
        with dist.main_first():
            data = load_data(base.data, base.model.block_size)
    summaries: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        label = run_label(method)
        for seed in seeds:
            cfg = base.replace(method=method, train=dataclasses.replace(base.train, seed=seed))
            attach = (lambda t, name=f"{label} seed {seed}": on_trainer(t, name)) if on_trainer else None
            summary = run_or_resume(cfg, out_dir / label / f"seed{seed}", data=data, on_trainer=attach)
            summaries.setdefault(label, []).append(summary)
    rows = [summarize(label, runs) for label, runs in summaries.items()]
    if dist.is_main:
        write_tables(rows, out_dir, base)
        pareto_html([(label, s) for label, runs in summaries.items() for s in runs], out_dir / "pareto.html")
    return rows


def against(trainer: Trainer, summary: dict[str, Any], methods: Sequence[MethodConfig],
            out_dir: str | Path) -> list[dict[str, Any]]:
    """Table rows for a finished run and the same config re-run with other methods (same data, steps, seed)."""
    out_dir = Path(out_dir)
    rows = [summarize(run_label(trainer.config.method), [summary])]
    for method in methods:
        other = Trainer(trainer.config.replace(method=method), run_dir=out_dir / run_label(method), data=trainer.data)
        rows.append(summarize(run_label(method), [other.run()]))
    return rows


def summarize(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    val = _mean_std([r["best_val_ppl"] for r in runs])
    test = _mean_std([r["test_ppl"] for r in runs])
    return {
        "method": label,
        "seeds": len(runs),
        "val_ppl_mean": val[0], "val_ppl_std": val[1],
        "test_ppl_mean": test[0], "test_ppl_std": test[1],
        "trainable_params": round(statistics.fmean(r["trainable_params"] for r in runs)),
        "unique_blocks": statistics.fmean(r["unique_blocks"] for r in runs),
        "model_state_bytes": round(statistics.fmean(r["memory"]["model_state"] for r in runs)),
        "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in runs),
        "wall_s": statistics.fmean(r["train_time_s"] for r in runs),
        "diverged": sum(1 for r in runs if r.get("diverged")),
    }


def format_mean_std(mean: float, std: float, seeds: int) -> str:
    """``mean ± std`` over several seeds; a single seed has no spread, and ``± 0.00`` would claim one."""
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("| method | seeds | val ppl (best) | test ppl | trainable params | unique blocks | model-state memory "
            "| tokens/s | train time |")
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        label = r["method"] + (f" ({r['diverged']} diverged)" if r.get("diverged") else "")
        lines.append(
            f"| {label} | {r['seeds']} | {format_mean_std(r['val_ppl_mean'], r['val_ppl_std'], r['seeds'])} "
            f"| {format_mean_std(r['test_ppl_mean'], r['test_ppl_std'], r['seeds'])} | {r['trainable_params']:,} "
            f"| {r['unique_blocks']:g} | {format_bytes(r['model_state_bytes'])} | {r['tokens_per_s']:,.0f} "
            f"| {r['wall_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict[str, Any]], out_dir: Path, base: RunConfig) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})
    write_text_atomic(out_dir / "comparison.csv", buf.getvalue())
    m, t, d = base.model, base.train, base.data
    header = (f"# Comparison\n\nData: `{d.dataset}` ({d.tokenizer}), model: {m.n_layer} blocks, width {m.n_embd}, "
              f"{m.n_head} heads, context {m.block_size}, tie mode {m.tie_mode}; {t.steps} steps of batch "
              f"{t.batch_size}, lr {t.lr} ({t.lr_schedule}). Validation perplexity is the best over the run at "
              "the tie map it ends with; test perplexity is measured at that checkpoint. Mean ± std over seeds.\n\n")
    write_text_atomic(out_dir / "comparison.md", header + markdown_table(rows))
