"""Paper-style tables from any folder of runs (``dyntie report DIR``).

Every run directory below the folder (any depth) is one row's sample. Runs are grouped by
dataset, model family (shape) and method label; each group reports validation and test
perplexity (mean and std over seeds), trainable parameters and their reduction from
vanilla-equivalent, unique blocks, model-state memory by component and its ratio to the
same family's vanilla, and tokens/s. Written as Markdown and as one self-contained HTML
page with the Pareto plot and the agent runs' tie-map histories.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .compare import format_mean_std, run_label
from .config import ConfigError, RunConfig
from .fileio import write_text_atomic
from .memory import format_bytes
from .plots import history_figure, pareto_figure
from .rundir import RunDir
from .tying import resolve_roots


def find_runs(root: str | Path) -> list[RunDir]:
    """Run directories below ``root`` that finished (they hold a config and a summary)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"results folder not found: {root}")
    runs = [RunDir(p.parent) for p in sorted(root.rglob(RunDir.SUMMARY)) if (p.parent / RunDir.CONFIG).is_file()]
    if not runs:
        raise ConfigError(f"no finished runs (summary.json beside config.json) below {root}")
    return runs


def dataset_label(spec: str) -> str:
    """``../shared/data/wikitext-2/raw`` -> ``wikitext-2/raw``; names stay as they are."""
    parts = Path(spec).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else spec


def family(config: RunConfig) -> str:
    m = config.model
    return f"{m.n_layer}x{m.n_embd}" + (" post-LN" if m.norm_position == "post" else "") + f" ctx{m.block_size}"


def method_label(config: RunConfig) -> str:
    """The method's run label plus the tie settings outside ``MethodConfig`` that make it another variant:
    ``dlt``, ``dlt{relax=norms}``, ``dlt{tie_mode=share,untie_moments=carry}``."""
    extras = [f"{key}={value}" for key, value, default in (
        ("tie_mode", config.model.tie_mode, "follow"), ("relax", config.model.relax, "none"),
        ("relax_rank", config.model.relax_rank if config.model.relax == "lora" else 4, 4),
        ("untie_moments", config.train.untie_moments, "fresh")) if value != default]
    return run_label(config.method) + ("{" + ",".join(extras) + "}" if extras else "")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def collect(root: str | Path) -> list[dict[str, Any]]:
    """One row per (dataset, family, method), aggregated over seeds; vanilla first in each group."""
    groups: dict[tuple[str, str, str], list[tuple[RunDir, dict[str, Any], int]]] = {}
    for run in find_runs(root):
        config, summary = run.read_config(), run.read_summary()
        assert summary is not None
        key = (dataset_label(config.data.dataset), family(config), method_label(config))
        groups.setdefault(key, []).append((run, summary, config.train.seed))
    rows = []
    for (dataset, fam, label), runs in groups.items():
        s = [summary for _, summary, _ in runs]
        val, test = _mean_std([x["best_val_ppl"] for x in s]), _mean_std([x["test_ppl"] for x in s])
        memory = {k: statistics.fmean(x["memory"][k] for x in s) for k in ("params", "grads", "optimizer",
                                                                            "model_state")}
        predicted = [x["memory_predicted"]["model_state"] for x in s if x.get("memory_predicted")]
        memory["predicted_model_state"] = statistics.fmean(predicted) if predicted else None
        cuda = [x for x in s if x["memory"].get("cuda_peak") is not None]
        trainable = statistics.fmean(x["trainable_params"] for x in s)
        full = statistics.fmean(x["vanilla_equivalent_params"] for x in s)
        rows.append({
            "dataset": dataset, "family": fam, "method": label, "seeds": len(s),
            "val_ppl_mean": val[0], "val_ppl_std": val[1], "test_ppl_mean": test[0], "test_ppl_std": test[1],
            "trainable_params": round(trainable), "reduction_pct": 100.0 * (1 - trainable / full),
            "unique_blocks": statistics.fmean(x["unique_blocks"] for x in s), "memory": memory,
            "tokens_per_s": statistics.fmean(x["tokens_per_s"] or 0.0 for x in s),
            "diverged": sum(1 for x in s if x.get("diverged")), "runs": [str(r.path) for r, _, _ in runs],
            "cuda": {k: statistics.fmean(x["memory"][k] for x in cuda)
                     for k in ("cuda_allocated", "cuda_peak", "cuda_reserved", "activations")} if cuda else None,
            "activations_predicted": statistics.fmean(x["memory_predicted"]["activations"] for x in cuda)
            if cuda else None,
            "mfu": statistics.fmean(x["mfu"] for x in s) if all(x.get("mfu") for x in s) else None,
            "transitions": {k: statistics.fmean(x["transitions"][k] for x in s) for k in ("count", "mean_jump",
                                                                                         "max_jump")}
            if all(x.get("transitions") for x in s) else None,
            "summaries": s,
            "test_by_seed": {seed: x["test_ppl"] for _, x, seed in runs},
            "unique_by_seed": {seed: x["unique_blocks"] for _, x, seed in runs},
        })
    rows.sort(key=lambda r: (r["dataset"], r["family"], r["method"] != "vanilla", r["method"]))
    for r in rows:
        vanilla = next((v for v in rows if (v["dataset"], v["family"], v["method"]) ==
                        (r["dataset"], r["family"], "vanilla")), None)
        r["memory_vs_vanilla"] = (r["memory"]["model_state"] / vanilla["memory"]["model_state"]) if vanilla else None
        r["test_vs_vanilla"] = paired_ratio(r["test_by_seed"], vanilla["test_by_seed"]) if vanilla else None
    return rows


def paired_ratio(row: dict[int, float], other: dict[int, float]) -> float | None:
    """Mean of ``row`` over mean of ``other`` ({seed: value}) over the seeds both have: while a grid is part done,
    a mean over different seeds would count one seed's luck as a difference between methods."""
    seeds = sorted(set(row) & set(other))
    if not seeds:
        return None
    return statistics.fmean(row[s] for s in seeds) / statistics.fmean(other[s] for s in seeds)


HEAD = ("| method | seeds | val ppl | test ppl | test vs vanilla | trainable params | reduction | unique blocks "
        "| params | grads | AdamW state | model state | predicted | vs vanilla | tokens/s |")
CUDA_HEAD = ("| method | allocated between steps | peak | reserved | activations (peak - model state) "
             "| activations predicted | MFU |")


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    out = ["# Results", "", "Validation perplexity: the best over each run at the tie map it ends with; test "
           "perplexity at that checkpoint. Mean ± std over seeds. Memory: measured model state (parameters, "
           "gradients, AdamW moments) at the end of training, and the analytic floor predicted from the tie map.", ""]
    for dataset, fam in dict.fromkeys((r["dataset"], r["family"]) for r in rows):
        out += [f"## {dataset}, {fam}", "", HEAD, "|" + " --- |" * 15]
        for r in (x for x in rows if (x["dataset"], x["family"]) == (dataset, fam)):
            m = r["memory"]
            label = r["method"] + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            out.append(f"| {label} | {r['seeds']} | {_spread(r, 'val_ppl')} | {_spread(r, 'test_ppl')} | "
                       f"{_times(r['test_vs_vanilla'])} | "
                       f"{r['trainable_params']:,} | {r['reduction_pct']:.1f}% | "
                       f"{unique_blocks_cell(r['unique_by_seed'])} | {format_bytes(round(m['params']))} | "
                       f"{format_bytes(round(m['grads']))} | {format_bytes(round(m['optimizer']))} | "
                       f"{format_bytes(round(m['model_state']))} | {_bytes(m['predicted_model_state'])} | "
                       f"{_ratio(r)} | {r['tokens_per_s']:,.0f} |")
        out.append("")
        moved = [x for x in rows if (x["dataset"], x["family"]) == (dataset, fam) and x["transitions"]]
        if moved:
            out += ["What tie changes cost (`probe_transitions`: a fixed validation batch's loss just after minus "
                    "just before each change; mean over seeds):", "",
                    "| method | tie changes | mean jump | largest jump |", "| --- | --- | --- | --- |"]
            out += [f"| {r['method']} | {r['transitions']['count']:g} | {r['transitions']['mean_jump']:+.4f} | "
                    f"{r['transitions']['max_jump']:+.4f} |" for r in moved]
            out.append("")
        cuda_rows = [x for x in rows if (x["dataset"], x["family"]) == (dataset, fam) and x["cuda"]]
        if cuda_rows:
            out += ["CUDA memory (allocator figures; the trainer resets the peak at the start of each run):", "",
                    CUDA_HEAD, "|" + " --- |" * 7]
            out += [f"| {r['method']} | {_bytes(r['cuda']['cuda_allocated'])} | {_bytes(r['cuda']['cuda_peak'])} | "
                    f"{_bytes(r['cuda']['cuda_reserved'])} | {_bytes(r['cuda']['activations'])} | "
                    f"{_bytes(r['activations_predicted'])} | "
                    f"{'-' if r['mfu'] is None else format(r['mfu'], '.1%')} |" for r in cuda_rows]
            out.append("")
    return "\n".join(out)


def _bytes(n: float | None) -> str:
    return format_bytes(None if n is None else round(n))


def _spread(r: dict[str, Any], key: str) -> str:
    return format_mean_std(r[f"{key}_mean"], r[f"{key}_std"], r["seeds"])


def unique_blocks_cell(by_seed: dict[int, int]) -> str:
    """The count when every seed ends with it; otherwise the mean and each seed's count, in seed order, since a
    dynamic method's mean count (1.67) names no map any run had."""
    counts = [by_seed[seed] for seed in sorted(by_seed)]
    if len(set(counts)) == 1:
        return str(counts[0])
    return f"{statistics.fmean(counts):.2f} ({', '.join(map(str, counts))} by seed)"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}x"


def _ratio(r: dict[str, Any]) -> str:
    return "-" if r["memory_vs_vanilla"] is None else f"{r['memory_vs_vanilla']:.3f}x"


def _html_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("<tr><th>method</th><th>seeds</th><th>val ppl</th><th>test ppl</th><th>trainable params</th>"
            "<th>reduction</th><th>unique blocks</th><th>model state</th><th>predicted</th><th>vs vanilla</th>"
            "<th>tokens/s</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(r['method'] + (' (diverged)' if r['diverged'] else ''))}</td><td>{r['seeds']}</td>"
        f"<td>{_spread(r, 'val_ppl')}</td><td>{_spread(r, 'test_ppl')}</td><td>{r['trainable_params']:,}</td>"
        f"<td>{r['reduction_pct']:.1f}%</td><td>{unique_blocks_cell(r['unique_by_seed'])}</td>"
        f"<td>{format_bytes(round(r['memory']['model_state']))}</td>"
        f"<td>{_bytes(r['memory']['predicted_model_state'])}</td><td>{_ratio(r)}</td>"
        f"<td>{r['tokens_per_s']:,.0f}</td></tr>" for r in rows)
    return f"<table border='1' cellpadding='4' style='border-collapse:collapse'>{head}{body}</table>"


def html_page(rows: Sequence[dict[str, Any]], title: str = "dyntie results") -> str:
    """Tables, the Pareto plot and the tie-map history of each agent run; plotly.js embedded once."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    figures = []
    for dataset, fam in dict.fromkeys((r["dataset"], r["family"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["family"]) == (dataset, fam)]
        parts.append(f"<h2>{html.escape(dataset)}, {html.escape(fam)}</h2>{_html_table(group)}")
        figures.append(pareto_figure([(r["method"], s) for r in group for s in r["summaries"]],
                                     title=f"{dataset}, {fam}: trainable parameters vs validation perplexity"))
        for r in group:
            run = RunDir(r["runs"][0])
            steps, maps = run.tie_log()
            if len(steps) > 1:  # the map changed during the run: show how
                figures.append(history_figure(steps, [resolve_roots(m) for m in maps],
                                              title=f"Tie-map history: {r['method']} ({run.path.name})"))
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'>{''.join(parts)}</body></html>")


def write_report(root: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` for the runs below ``root`` (written into ``out``, default ``root``)."""
    rows = collect(root)
    out_dir = Path(out) if out is not None else Path(root)
    md = write_text_atomic(out_dir / "report.md", markdown(rows))
    page = write_text_atomic(out_dir / "report.html", html_page(rows, f"dyntie results: {Path(root).name}"))
    return md, page
